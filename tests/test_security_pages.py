"""Two-factor authentication through the pages: set-up, log in, every protected action (a wrong code
changes nothing), recovery codes, SMS through a local stand-in for Twilio, and the audit log."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import pyotp
import pytest
from aiohttp import web

from node.security import audit
from node.web.pages.security import SECURITY, UNLOCK_KEY, require_admin_unlock, unlock_admin
from node.web.session import session_of
from tests.security_site import (
    PASSWORD,
    TOKEN,
    TOKEN_ENV,
    FakeTwilio,
    Site,
    code,
    enable_totp,
    recovery_codes_on_page,
    security_site,
)
from tests.test_pages import count

ADDRESS = "ext-cold-wallet-1"


async def actions(site: Site, member_id: int) -> list[str]:
    return [e["action"] for e in reversed(await audit.of_member(site.ex.store, member_id, limit=500))]


async def test_totp_set_up_and_log_in_with_a_second_step(tmp_path: Path) -> None:
    async with security_site(tmp_path) as (site, clock):
        ann = await site.member()
        mid = await site.mid("ann@example.com")
        assert await ann.get("/security") == 200 and 'id="totp-setup"' in ann.text
        assert await ann.get("/security/totp") == 200
        assert 'src="data:image/svg+xml' in ann.text  # the QR code is drawn here, no outside service
        status, _ = await ann.post("/security/totp", {"code": "123456"})
        assert status == 400 and "This code is not right" in ann.error_of("code")
        assert not await site.server.app[SECURITY].totp.enabled(mid)
        secret, codes = await enable_totp(ann, clock)
        assert len(codes) == 10
        assert await ann.get("/security") == 200
        assert "Recovery codes left: 10" in ann.text and not any(c in ann.text for c in codes)  # shown once
        assert await ann.get("/security/totp", allow_redirects=False) == 303  # already on

        await ann.post("/logout", {})
        v = await site.visitor()
        r = await v.c.post("/login", data={"email": "ann@example.com", "password": PASSWORD,
                                           "csrf_token": await v.token()}, allow_redirects=False)
        assert r.status == 303 and r.headers["Location"] == "/login/2fa"
        assert await v.get("/funds", allow_redirects=False) == 303  # not in yet
        status, _ = await v.post("/login/2fa", {"otp_code": "000000"})
        assert status == 400 and v.error_of("otp_code") == "The two-factor code is wrong"
        good = code(secret, clock)
        status, _ = await v.post("/login/2fa", {"otp_code": good})
        assert status == 200 and "Welcome back" in v.text
        # the same code once more (another browser, same password): refused, it was used
        w = await site.visitor()
        await w.post("/login", {"email": "ann@example.com", "password": PASSWORD})
        status, _ = await w.post("/login/2fa", {"otp_code": good})
        assert status == 400 and "already used" in w.error_of("otp_code")
        # a recovery code instead of the phone: once
        status, _ = await w.post("/login/2fa", {"otp_code": codes[0].upper()})
        assert status == 200 and "Welcome back" in w.text
        x = await site.visitor()
        await x.post("/login", {"email": "ann@example.com", "password": PASSWORD})
        status, _ = await x.post("/login/2fa", {"otp_code": codes[0]})
        assert status == 400
        log = await actions(site, mid)
        assert log[:2] == [audit.LOGIN, audit.TOTP_ENABLE]
        assert log.count(audit.LOGIN) == 3 and audit.RECOVERY_USED in log and log.count(audit.OTP_FAILED) == 3
        entry = (await audit.search(site.ex.store, member_id=mid, action=audit.LOGIN))[0]
        assert entry["ip"] == "127.0.0.1" and entry["detail"] == {"second_factor": True} and entry["channel"] == "web"


async def test_every_protected_action_asks_for_the_code_and_a_wrong_one_changes_nothing(tmp_path: Path) -> None:
    def admin_routes(app: web.Application) -> None:
        async def area(request: web.Request) -> web.Response:
            return web.Response(text=f"admin area of {require_admin_unlock(request)}")

        async def unlock(request: web.Request) -> web.Response:
            await unlock_admin(request, str((await request.post()).get("otp_code", "")))
            return web.Response(text="unlocked")

        app.router.add_get("/admin/test-area", area)
        app.router.add_post("/admin/test-unlock", unlock)

    async with security_site(tmp_path, routes=admin_routes, security={
            "withdraw_hold_hours": 0, "withdraw_confirmation": False, "otp_max_failures": 100}) as (site, clock):
        ann = await site.member(btc="5")
        mid = await site.mid("ann@example.com")
        secret, codes = await enable_totp(ann, clock)
        sec = site.server.app[SECURITY]
        btc = lambda: site.ex.store.fetchrow(  # noqa: E731
            "SELECT balance, locked FROM accounts WHERE member_id = ? AND currency = 'btc'", mid)
        before_btc = dict(await btc())
        wrong = "999999" if pyotp.TOTP(secret).at(clock.now) != "999999" else "888888"

        # each protected form: no code, a wrong code → 400 next to the field, nothing done
        cases: list[tuple[str, dict[str, Any] | list[tuple[str, str]], Any]] = [
            ("/api_keys", [("label", "bot"), ("scopes", "trade"), ("expiry", "30")], lambda: count(site.ex, "api_tokens")),
            ("/security/addresses", {"currency": "btc", "address": ADDRESS, "label": "cold"},
             lambda: count(site.ex, "withdraw_addresses", "WHERE deleted_at IS NULL")),
            ("/funds/btc/withdraw", {"address": ADDRESS, "amount": "1"}, lambda: count(site.ex, "withdraws")),
            ("/security/totp/disable", {}, lambda: sec.totp.enabled(mid)),
            ("/security/recovery", {}, lambda: sec.totp.recovery_left(mid)),
            ("/security/sms", {"phone": "+44 7400 123456"}, lambda: count(site.ex, "security_sms_codes")),
        ]
        for path, data, state in cases:
            seen = await state()
            for given in (None, wrong):
                items = list(data.items()) if isinstance(data, dict) else list(data)
                if given is not None:
                    items.append(("otp_code", given))
                status, _ = await ann.post(path, items)
                assert status == 400, (path, given, ann.text[:2000])
                assert ann.error_of("otp_code"), (path, given)
                assert await state() == seen, path
        assert dict(await btc()) == before_btc
        assert await ann.get("/admin/test-area", allow_redirects=False) == 303  # locked
        status, _ = await ann.post("/admin/test-unlock", {"otp_code": wrong})
        assert status == 400
        assert await ann.get("/admin/test-area", allow_redirects=False) == 303  # still locked

        # the right code does each of them
        status, _ = await ann.post("/api_keys", [("label", "bot"), ("scopes", "trade"), ("expiry", "30"),
                                                 ("otp_code", code(secret, clock))])
        assert status == 200 and await count(site.ex, "api_tokens") == 1
        status, _ = await ann.post("/security/addresses", {"currency": "btc", "address": ADDRESS, "label": "cold",
                                                           "otp_code": code(secret, clock)})
        assert status == 200 and await count(site.ex, "withdraw_addresses") == 1
        status, _ = await ann.post("/funds/btc/withdraw", {"address": ADDRESS, "amount": "1",
                                                           "otp_code": code(secret, clock)})
        assert status == 200 and await count(site.ex, "withdraws") == 1
        status, _ = await ann.post("/admin/test-unlock", {"otp_code": code(secret, clock)})
        assert status == 200
        assert await ann.get("/admin/test-area") == 200 and f"admin area of {mid}" in ann.text
        status, _ = await ann.post("/security/recovery", {"otp_code": codes[3]})
        assert status == 200 and len(recovery_codes_on_page(ann)) == 10
        status, _ = await ann.post("/security/totp/disable", {"otp_code": code(secret, clock)})
        assert status == 200 and not await sec.totp.enabled(mid)
        log = await actions(site, mid)
        for action in (audit.API_KEY_CREATE, audit.ADDRESS_ADD, audit.WITHDRAW_REQUEST, audit.ADMIN_UNLOCK,
                       audit.RECOVERY_USED, audit.RECOVERY_CODES, audit.TOTP_DISABLE):
            assert action in log, (action, log)
        # the API path of a withdrawal asks too (POST /withdraws `otp`): see test_security_withdraw.py


async def test_admin_unlock_slides_and_needs_2fa(tmp_path: Path) -> None:
    """`require_admin_unlock`: members without 2FA cannot unlock; an unlock lasts admin_unlock_minutes
    after the last admin request (sliding), then the area locks itself."""

    def admin_routes(app: web.Application) -> None:
        async def area(request: web.Request) -> web.Response:
            return web.Response(text=str(require_admin_unlock(request)))

        async def unlock(request: web.Request) -> web.Response:
            try:
                await unlock_admin(request, str((await request.post()).get("otp_code", "")))
            except Exception as e:
                return web.Response(status=400, text=str(e))
            return web.Response(text="unlocked")

        async def until(request: web.Request) -> web.Response:
            return web.Response(text=str(session_of(request).data.get(UNLOCK_KEY)))

        async def age(request: web.Request) -> web.Response:  # test-only: pretend the unlock is older
            s = session_of(request)
            s.set(UNLOCK_KEY, int(s.data[UNLOCK_KEY]) - int(request.query["ms"]))
            return web.Response(text="ok")

        app.router.add_get("/admin/t", area)
        app.router.add_post("/admin/t-unlock", unlock)
        app.router.add_get("/admin/t-until", until)
        app.router.add_get("/admin/t-age", age)

    async with security_site(tmp_path, routes=admin_routes, security={"admin_unlock_minutes": 10}) as (site, clock):
        ann = await site.member()
        status, text = await ann.post("/admin/t-unlock", {"otp_code": "123456"})
        assert status == 400 and "Set up two-factor authentication first" in text
        r = await ann.c.post("/admin/t", data={"csrf_token": await ann.token()}, allow_redirects=False)
        assert r.status in (403, 405)
        secret, _ = await enable_totp(ann, clock)
        status, _ = await ann.post("/admin/t-unlock", {"otp_code": code(secret, clock)})
        assert status == 200 and await ann.get("/admin/t") == 200
        await ann.get("/admin/t-age?ms=300000")  # five minutes without an admin request
        await ann.get("/admin/t-until")
        aged = int(ann.text)
        assert await ann.get("/admin/t") == 200  # still inside the ten minutes: slides forward
        await ann.get("/admin/t-until")
        assert int(ann.text) > aged + 250_000
        await ann.get("/admin/t-age?ms=600001")  # ten minutes idle: locked again
        assert await ann.get("/admin/t", allow_redirects=False) == 303


async def test_sms_second_factor_through_a_local_twilio(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    twilio = FakeTwilio()
    async with security_site(tmp_path, twilio=twilio) as (site, clock):
        ann = await site.member()
        mid = await site.mid("ann@example.com")
        for bad, message in (("", "Please enter your mobile phone number"), ("12345", "country code"),
                             ("+44 20 7946 0000 12", "not a valid phone number"),
                             ("+1 800 555 0199", "cannot receive text messages")):
            status, _ = await ann.post("/security/sms", {"phone": bad})
            assert status == 400 and message in ann.error_of("phone"), (bad, ann.error_of("phone"))
        assert twilio.messages == []
        status, _ = await ann.post("/security/sms", {"phone": "+44 7400 123456"})
        assert status == 200 and "We sent a code to +44" in ann.text
        assert twilio.messages[-1]["To"] == "+447400123456" and twilio.messages[-1]["From"] == "+15005550006"
        assert twilio.auth[-1].startswith("Basic ")
        setup_code = twilio.code()
        status, _ = await ann.post("/security/sms/resend", {})
        assert "ask for another in" in ann.text and len(twilio.messages) == 1  # throttled
        status, _ = await ann.post("/security/sms/verify", {"code": "000000" if setup_code != "000000" else "111111"})
        assert status == 400 and "wrong or has expired" in ann.error_of("code")
        status, _ = await ann.post("/security/sms/verify", {"code": setup_code})
        assert status == 200 and "SMS codes are switched on" in ann.text
        phone = await site.ex.store.fetchval("SELECT phone FROM security_phones WHERE member_id = ?", mid)
        assert phone == "+447400123456"

        await ann.post("/logout", {})
        v = await site.visitor()
        await v.post("/login", {"email": "ann@example.com", "password": PASSWORD})
        assert 'formaction="/login/2fa/sms"' in v.text
        clock.now += 61  # the resend interval
        status, _ = await v.post("/login/2fa/sms", {})
        assert status == 200 and "We sent a code to +44" in v.text and len(twilio.messages) == 2
        sms = twilio.code()
        status, _ = await v.post("/login/2fa", {"otp_code": sms})
        assert status == 200 and "Welcome back" in v.text
        w = await site.visitor()
        await w.post("/login", {"email": "ann@example.com", "password": PASSWORD})
        status, _ = await w.post("/login/2fa", {"otp_code": sms})
        assert status == 400  # single use
        # an SMS code expires after code_ttl_s
        clock.now += 61
        await w.post("/login/2fa/sms", {})
        late = twilio.code()
        clock.now += 301
        status, _ = await w.post("/login/2fa", {"otp_code": late})
        assert status == 400
        # the provider refuses: a clear message, nothing leaks to the log
        twilio.fail = (400, {"code": 21211, "message": "The 'To' number is not valid.", "status": 400})
        clock.now += 61
        status, _ = await w.post("/login/2fa/sms", {})
        assert "could not be sent right now" in w.text
        assert audit.SMS_ENABLE in await actions(site, mid)
    logged = caplog.text
    assert TOKEN not in logged and "+447400123456" not in logged
    for m in twilio.messages:
        assert m["Body"] not in logged and re.search(r"\b\d{6}\b", m["Body"]).group(0) not in logged  # type: ignore[union-attr]


async def test_members_see_their_own_security_log_only(tmp_path: Path) -> None:
    async with security_site(tmp_path) as (site, clock):
        ann = await site.member("ann@example.com")
        bob = await site.member("bob@example.com")
        bad = await site.visitor()
        await bad.post("/login", {"email": "bob@example.com", "password": "not the password"})
        await bob.post("/api_keys", [("label", "bob's bot"), ("scopes", "trade"), ("expiry", "30")])
        assert await ann.get("/security/audit") == 200
        assert "Logged in" in ann.text and "bob&#39;s bot" not in ann.text and "Failed log in" not in ann.text
        assert await bob.get("/security/audit") == 200
        assert "API key created" in bob.text and "bob&#39;s bot" in bob.text and "Failed log in" in bob.text
        report = await audit.verify_chain(site.ex.store)
        assert report.ok and report.entries >= 4


def main(page: str) -> str:
    m = re.search(r"<main.*?</main>", page, re.S)
    return m.group(0) if m else page


SECURITY_PAGES = ["/security", "/security/totp", "/security/sms", "/security/audit", "/security/addresses"]


async def test_security_pages_in_both_languages_without_inline_code(tmp_path: Path) -> None:
    async with security_site(tmp_path) as (site, clock):
        ann = await site.member()
        secret, codes = await enable_totp(ann, clock)
        await ann.post("/security/addresses", {"currency": "btc", "address": "ext-1", "otp_code": code(secret, clock)})
        english_only = re.compile(r">\s*([A-Z][a-z]+(?: [a-z]+){2,})\s*<")
        for lang in ("en", "zh-CN"):
            await ann.get(f"/lang/{lang}")
            for path in [*SECURITY_PAGES, "/login/2fa"]:
                assert await ann.get(path) in (200, 303), path
                assert not re.search(r"<script(?![^>]*\bsrc=)(?![^>]*application/json)[^>]*>", ann.text), path
                assert " style=" not in ann.text and " on" + "click=" not in ann.text, path
                if lang == "zh-CN":  # the page's own part (the header and footer are tests/test_pages.py's)
                    left = english_only.findall(main(ann.text))
                    assert not left, (path, left)
            status, _ = await ann.post("/security/recovery", {"otp_code": code(secret, clock)})
            assert status == 200
            assert lang == "en" or not english_only.findall(main(ann.text))


def test_every_security_text_has_a_chinese_translation() -> None:
    """Texts of node/security and node/web/pages/security/ (the templates are checked by
    tests/test_pages.py's catalog test), with the same placeholders."""
    import ast
    import string

    from node.web.i18n import catalog

    root = Path(__file__).resolve().parents[1]
    zh = catalog("zh-CN")
    found: set[str] = set()
    for p in [*sorted((root / "node/web/pages/security").glob("*.py")), *sorted((root / "node/security").glob("*.py"))]:
        for node in ast.walk(ast.parse(p.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("_", "N_")
                    and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
                found.add(node.args[0].value)
    assert len(found) > 60
    missing = sorted(t for t in found if t not in zh.messages)
    assert not missing, missing
    names = lambda s: sorted(f for _, f, _, _ in string.Formatter().parse(s) if f)  # noqa: E731
    assert not [t for t in found if names(t) != names(zh.messages[t])]
