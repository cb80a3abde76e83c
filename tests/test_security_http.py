"""HTTP hardening: the session cookie over real TLS (Secure, __Host-, HttpOnly, SameSite) and over
plain HTTP, HSTS only over TLS, the other headers, every form of the site refusing a missing CSRF
token with nothing changed, and no secret in the logs."""

from __future__ import annotations

import datetime as dt
import logging
import re
import ssl
from pathlib import Path
from typing import Any

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from node.bootstrap import start_exchange, web_app
from node.web.pages import MEMBERS
from tests.conftest import config_with
from tests.security_site import PASSWORD, code, enable_totp, recovery_codes_on_page, security_site
from tests.test_members import CHEAP, Outbox
from tests.test_pages import count


def tls_context(tmp_path: Path) -> ssl.SSLContext:
    """A self-signed certificate for 127.0.0.1, made here (no outside service, no openssl binary)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    import ipaddress

    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .sign(key, hashes.SHA256()))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    return ctx


def set_cookies(resp: aiohttp.ClientResponse) -> dict[str, str]:
    return {h.split("=", 1)[0]: h for h in resp.headers.getall("Set-Cookie", [])}


async def test_session_cookie_and_hsts_over_tls_and_plain_http(tmp_path: Path) -> None:
    from aiohttp.test_utils import TestServer

    ex = await start_exchange(config_with(f"sqlite:///{tmp_path}/tls.db"))
    app = web_app(ex, key_file=tmp_path / "secret.key")
    app[MEMBERS].mailer, app[MEMBERS].hasher = Outbox(), CHEAP
    tls = TestServer(app, host="127.0.0.1")
    await tls.start_server(ssl=tls_context(tmp_path))
    client_ctx = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_ctx)) as http:
            async with http.get(f"https://127.0.0.1:{tls.port}/login") as r:
                assert r.status == 200
                cookie = set_cookies(r)["__Host-sid"]  # the __Host- prefix: only this origin can set it
                parts = [p.strip().lower() for p in cookie.split(";")]
                assert "secure" in parts and "httponly" in parts and "samesite=lax" in parts and "path=/" in parts
                assert not any(p.startswith("domain=") for p in parts)
                assert r.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
                assert r.headers["X-Frame-Options"] == "DENY" and r.headers["X-Content-Type-Options"] == "nosniff"
                assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
                assert r.headers["Cache-Control"] == "no-store"
            async with http.get(f"https://127.0.0.1:{tls.port}/api/v2/markets") as r:
                assert r.status == 200 and "Strict-Transport-Security" in r.headers
    finally:
        await tls.close()
    plain = TestServer(app, host="127.0.0.1")
    await plain.start_server()
    try:
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{plain.port}/login") as r:
            cookie = set_cookies(r)["sid"]
            parts = [p.strip().lower() for p in cookie.split(";")]
            assert "httponly" in parts and "samesite=lax" in parts and "secure" not in parts
            assert "Strict-Transport-Security" not in r.headers  # RFC 6797: never over plain HTTP
        # Answers raised for aiohttp to send (a page's redirect to the log-in, a page not found)
        # carry the security headers too.
        async with aiohttp.ClientSession() as http:
            for path, status in (("/funds", 303), ("/no-such-page", 404)):
                async with http.get(f"http://127.0.0.1:{plain.port}{path}", allow_redirects=False) as r:
                    assert r.status == status, path
                    assert r.headers["X-Frame-Options"] == "DENY" and r.headers["X-Content-Type-Options"] == "nosniff", path
                    assert r.headers["Referrer-Policy"] == "same-origin", path
    finally:
        await plain.close()
        await ex.stop()


SAMPLE = {"id": "1", "token": "x" * 20, "market": "btcusd", "currency": "btc", "lang": "en", "slug": "fees",
          "member": "1", "role": "support", "name": "x"}


def concrete(path: str) -> str:
    return re.sub(r"\{(\w+)(:[^}]*)?\}", lambda m: SAMPLE.get(m.group(1), "1"), path)


async def test_every_form_of_the_site_refuses_a_missing_csrf_token_and_changes_nothing(tmp_path: Path) -> None:
    """Walks every state-changing route the app has (pages of every module, admin included), as a
    logged-in member with 2FA on and a right code in the form: no token, a forged one, another
    session's token; each is a 403 and no table changes."""
    async with security_site(tmp_path) as (site, clock):
        ann = await site.member()
        secret, _ = await enable_totp(ann, clock)
        other = await site.visitor()
        foreign = await other.token()
        tables = [r["name"] for r in await site.ex.store.fetch(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT IN ('web_sessions', 'sqlite_sequence')")]

        async def snapshot() -> dict[str, int]:
            return {t: await count(site.ex, t) for t in tables}

        before = await snapshot()
        posts = sorted({(r.method, r.resource.canonical) for r in site.server.app.router.routes()
                        if r.method not in ("GET", "HEAD", "OPTIONS", "*") and r.resource is not None
                        and not r.resource.canonical.startswith(("/api/", "/static/"))})
        assert len(posts) >= 30 and ("POST", "/security/totp/disable") in posts and ("POST", "/login") in posts
        for method, path in posts:
            url = concrete(path)
            data: dict[str, Any] = {"otp_code": code(secret, clock), "email": "ann@example.com", "password": PASSWORD,
                                    "phone": "+44 7400 123456", "address": "ext-1", "currency": "btc", "amount": "1"}
            for token in (None, "forged-token", foreign):
                form = dict(data, csrf_token=token) if token else data
                r = await ann.c.request(method, url, data=form, allow_redirects=False)
                assert r.status == 403, (method, url, token, r.status)
        assert await snapshot() == before
        assert await ann.get("/security") == 200 and "Recovery codes left: 10" in ann.text  # still logged in, 2FA on


async def test_no_secret_reaches_the_log(tmp_path: Path, caplog: Any) -> None:
    """Passwords, TOTP secrets, recovery codes, API secrets, session keys and CSRF tokens are never
    logged (the node runs without an access log: links carry single-use tokens in their path)."""
    caplog.set_level(logging.DEBUG)
    async with security_site(tmp_path) as (site, clock):
        ann = await site.member()
        secret, codes = await enable_totp(ann, clock)
        await ann.post("/api_keys", [("label", "bot"), ("scopes", "trade"), ("expiry", "30"),
                                     ("otp_code", code(secret, clock))])
        api_secret = re.search(r'<code id="new-secret-key">([A-Za-z0-9]{40})</code>', ann.text)
        assert api_secret
        await ann.post("/security/recovery", {"otp_code": code(secret, clock)})
        codes += recovery_codes_on_page(ann)
        bad = await site.visitor()
        await bad.post("/login", {"email": "ann@example.com", "password": "my secret guess"})
        await bad.post("/login", {"email": "ann@example.com", "password": PASSWORD, "csrf_token": "forged"})
        session_key = next(c.value for c in ann.c.session.cookie_jar if c.key == "sid")
        csrf = await ann.token()
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name != "aiohttp.access")
    for value in (PASSWORD, "my secret guess", secret, api_secret.group(1), session_key, csrf, *codes):
        assert value not in logged, value


def test_the_node_serves_without_an_access_log() -> None:
    """Links in mails carry single-use tokens in their path: an access log would keep them."""
    import node.__main__ as cli

    assert "access_log=None" in Path(cli.__file__).read_text()


def test_secrets_are_compared_in_constant_time() -> None:
    """Every place a secret is compared uses hmac.compare_digest / secrets.compare_digest."""
    root = Path(__file__).resolve().parents[1] / "node"
    for name in ("security/totp.py", "security/sms.py", "web/session.py", "web/signature.py"):
        text = (root / name).read_text()
        assert "compare_digest" in text, name
    # no `==` between a stored hash or token and what a client sent, in the security package
    for p in (root / "security").glob("*.py"):
        for line in p.read_text().splitlines():
            if "==" in line and any(w in line for w in ("code_hash", "token_hash ==", "secret ==", "csrf ==")):
                raise AssertionError(f"{p.name}: {line.strip()}")
