"""The pages over HTTP (in-process server): sessions and CSRF, every form's bad input, sign-up to
trading, API keys, password change and reset, the second-factor hook, languages, CSP hygiene."""

from __future__ import annotations

import ast
import html
import json
import re
import string
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import jinja2
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from jinja2.ext import extract_from_ast

from node.bootstrap import start_exchange, web_app
from node.config import Config
from node.exchange import Exchange
from node.web.forms import qr_data_uri
from node.web.i18n import JS_MESSAGES, FormError, catalog
from node.web.pages import MEMBERS
from node.web.session import SECOND_FACTOR, SESSIONS
from tests.conftest import config_with
from tests.test_members import CHEAP, Outbox

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "correct horse battery"


class Visitor:
    """One browser: a cookie jar, the last page, and forms posted with or without the CSRF token."""

    def __init__(self, client: TestClient) -> None:
        self.c = client
        self.text = ""

    async def get(self, path: str, **kw: Any) -> int:
        r = await self.c.get(path, **kw)
        self.text = await r.text()
        return r.status

    async def token(self) -> str:
        await self.get("/login")  # a form for visitors; members are sent on to a page with the log out form
        m = re.search(r'name="csrf_token" value="([^"]+)"', self.text)
        assert m, "no CSRF field on the page"
        return m.group(1)

    async def post(self, path: str, data: dict[str, Any] | list[tuple[str, str]], csrf: bool = True,
                   json_reply: bool = False) -> tuple[int, str]:
        items = list(data.items()) if isinstance(data, dict) else list(data)
        if csrf:
            items.append(("csrf_token", await self.token()))
        headers = {"Accept": "application/json"} if json_reply else {}
        r = await self.c.post(path, data=items, headers=headers, allow_redirects=not json_reply)
        self.text = await r.text()
        return r.status, self.text

    def error_of(self, field: str) -> str:
        m = re.search(rf'<p class="field-error" id="f-{field}-error"[^>]*>([^<]*)</p>', self.text)
        return html.unescape(m.group(1)) if m else ""

    def value_of(self, field: str) -> str | None:
        m = re.search(rf'<input id="f-{field}" name="{field}"[^>]*?value="([^"]*)"', self.text)
        return html.unescape(m.group(1)) if m else None

    def general_error(self) -> str:
        m = re.search(r'<div class="alert error form-error"[^>]*>([^<]*)</div>', self.text)
        return html.unescape(m.group(1)) if m else ""


class Site:
    def __init__(self, ex: Exchange, server: TestServer, outbox: Outbox) -> None:
        self.ex = ex
        self.server = server
        self.outbox = outbox
        self.clients: list[TestClient] = []

    async def visitor(self, source: str | None = None, **headers: str) -> Visitor:
        """A new browser; `source`: the local address it connects from (127.0.0.2: another client IP)."""
        connector = aiohttp.TCPConnector(local_addr=(source, 0)) if source else None
        c = TestClient(self.server, headers=headers or None, connector=connector)
        await c.start_server()
        self.clients.append(c)
        return Visitor(c)

    async def member(self, email: str = "ann@example.com", usd: str | None = "100000", btc: str | None = "5") -> Visitor:
        """A visitor who signed up, activated the account from the mail, and logged in; funded."""
        v = await self.visitor()
        status, _ = await v.post("/signup", {"email": email, "password": PASSWORD, "password_confirmation": PASSWORD,
                                            "terms": "on"})
        assert status == 200 and "Check your mail" in v.text
        assert await v.get(f"/activate/{self.outbox.link('activate')}") == 200
        status, _ = await v.post("/login", {"email": email, "password": PASSWORD})
        assert status == 200 and "Welcome back" in v.text, v.text[:3000]
        mid = int((await self.ex.member_by_email(email))["id"])
        if usd:
            await self.ex.deposit(mid, "usd", usd)
        if btc:
            await self.ex.deposit(mid, "btc", btc)
        return v

    async def mid(self, email: str) -> int:
        return int((await self.ex.member_by_email(email))["id"])


@asynccontextmanager
async def serve_site(config: Config, tmp_path: Path,
                     prepare: Callable[[web.Application], None] | None = None) -> AsyncIterator[Site]:
    """The one way the in-process page tests run an exchange: its app with mail kept in memory and the
    cheap password hasher, served until the block ends; `prepare` adjusts the app before it starts."""
    ex = await start_exchange(config)
    app = web_app(ex, key_file=tmp_path / "secret.key")
    outbox = Outbox()
    app[MEMBERS].mailer = outbox
    app[MEMBERS].hasher = CHEAP
    if prepare is not None:
        prepare(app)
    server = TestServer(app)
    await server.start_server()
    site = Site(ex, server, outbox)
    try:
        yield site
    finally:
        for c in site.clients:
            await c.close()
        await server.close()
        await ex.stop()


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    async with serve_site(config_with(f"sqlite:///{tmp_path}/pages.db"), tmp_path) as s:
        yield s


@pytest.fixture
async def any_site(database_url: str, tmp_path: Path) -> AsyncIterator[Site]:
    async with serve_site(config_with(database_url), tmp_path) as s:
        yield s


async def count(ex: Exchange, table: str, where: str = "", *args: Any) -> int:
    return int(await ex.store.fetchval(f"SELECT COUNT(*) FROM {table} {where}", *args))


async def balances(ex: Exchange, mid: int) -> dict[str, tuple[int, int]]:
    return {a["currency"]: (int(a["balance"]), int(a["locked"])) for a in await ex.accounts_of(mid)}


# -- sessions -----------------------------------------------------------------------------------------------
async def test_sign_up_activate_log_in_and_out_on_both_backends(any_site: Site) -> None:
    site = any_site
    v = await site.visitor()
    assert await v.get("/funds", allow_redirects=False) == 303  # members only
    r = await v.c.get("/login")
    cookie = r.cookies["sid"]
    assert cookie["httponly"] and cookie["samesite"] == "Lax" and not cookie["secure"] and cookie["path"] == "/"
    anonymous_key = cookie.value
    await v.post("/signup", {"email": "ann@example.com", "password": PASSWORD, "password_confirmation": PASSWORD,
                             "terms": "on"})
    assert "We have sent an activation link to ann@example.com" in v.text
    mid = await site.mid("ann@example.com")
    assert await v.get(f"/activate/{site.outbox.link('activate')}") == 200 and "You can log in now" in v.text
    r = await v.c.post("/login", data={"email": "ann@example.com", "password": PASSWORD,
                                       "csrf_token": await v.token()}, allow_redirects=False)
    assert r.status == 303 and r.headers["Location"] == "/funds"
    member_key = r.cookies["sid"].value
    assert member_key != anonymous_key  # a new key at log in: a planted key is worth nothing
    assert await count(site.ex, "web_sessions", "WHERE member_id = ?", mid) == 1
    # the old (anonymous) key is gone from the store and no longer opens anything
    other = await site.visitor()
    other.c.session.cookie_jar.update_cookies({"sid": anonymous_key})
    assert await other.get("/funds", allow_redirects=False) == 303
    assert await v.get("/funds") == 200 and "ann@example.com" in v.text
    history = await site.ex.store.fetch("SELECT ok FROM login_history WHERE member_id = ?", mid)
    assert [int(h["ok"]) for h in history] == [1]
    await v.post("/logout", {})
    assert "You are logged out." in v.text
    assert await v.get("/funds", allow_redirects=False) == 303
    assert await count(site.ex, "web_sessions", "WHERE member_id = ?", mid) == 0


async def test_sessions_are_stored_hashed_and_expire(site: Site) -> None:
    v = await site.member()
    r = await v.c.get("/account")
    key = next(c.value for c in v.c.session.cookie_jar if c.key == "sid")
    assert r.status == 200
    assert await count(site.ex, "web_sessions", "WHERE id = ?", key) == 0
    import hashlib

    assert await count(site.ex, "web_sessions", "WHERE id = ?", hashlib.sha256(key.encode()).hexdigest()) == 1
    await site.ex.store.execute("UPDATE web_sessions SET expires_at = 1")
    assert await v.get("/account", allow_redirects=False) == 303


async def test_secure_cookie_over_tls(site: Site) -> None:
    """Behind TLS (here: a request that says https) the cookie is Secure with the __Host- prefix."""
    from aiohttp.test_utils import make_mocked_request

    from node.web.session import set_cookie

    req = make_mocked_request("GET", "/", headers={"Host": "exchange.example"})
    req = req.clone(scheme="https")
    from aiohttp import web

    resp = web.Response()
    set_cookie(req, resp, "__Host-sid", "k", 60)
    morsel = resp.cookies["__Host-sid"]
    assert morsel["secure"] and morsel["httponly"] and morsel["samesite"] == "Lax"


async def test_every_form_refuses_a_missing_or_wrong_csrf_token_and_changes_nothing(site: Site) -> None:
    ann = await site.member()
    mid = await site.mid("ann@example.com")
    status, _ = await ann.post("/markets/btcusd/orders", {"side": "buy", "ord_type": "limit", "price": "100", "volume": "1"})
    assert status == 200
    order_id = int((await site.ex.orders_of(mid))[0]["id"])
    await ann.post("/api_keys", [("label", "bot"), ("scopes", "trade"), ("expiry", "30")])
    key_id = int((await site.ex.store.fetchrow("SELECT id FROM api_tokens"))["id"])
    before = {t: await count(site.ex, t) for t in ("members", "orders", "api_tokens", "member_tokens", "web_sessions")}
    bal = await balances(site.ex, mid)
    forms = [
        ("/signup", {"email": "new@example.com", "password": PASSWORD, "password_confirmation": PASSWORD, "terms": "on"}),
        ("/login", {"email": "ann@example.com", "password": PASSWORD}),
        ("/activation/resend", {"email": "ann@example.com"}),
        ("/password/forgot", {"email": "ann@example.com"}),
        ("/password/reset/whatever", {"password": "a new passphrase", "password_confirmation": "a new passphrase"}),
        ("/account/password", {"current_password": PASSWORD, "password": "a new passphrase",
                               "password_confirmation": "a new passphrase"}),
        ("/markets/btcusd/orders", {"side": "buy", "ord_type": "limit", "price": "100", "volume": "1"}),
        (f"/orders/{order_id}/cancel", {}),
        ("/markets/btcusd/orders/cancel_all", {}),
        ("/api_keys", {"label": "x", "scopes": "all", "expiry": "never"}),
        (f"/api_keys/{key_id}/delete", {}),
        ("/funds/btc/withdraw", {"address": "x", "amount": "1"}),
        ("/logout", {}),
    ]
    for path, data in forms:
        for token in (None, "forged-token"):
            items = list(data.items()) + ([("csrf_token", token)] if token else [])
            r = await ann.c.post(path, data=items, allow_redirects=False)
            text = await r.text()
            assert r.status == 403, (path, token, r.status)
            assert "This form has expired" in text and "nothing was changed" in text, path
        r = await ann.c.post(path, data=data, headers={"X-CSRF-Token": "forged"}, allow_redirects=False)
        assert r.status == 403, path
    assert {t: await count(site.ex, t) for t in before} == before
    assert await balances(site.ex, mid) == bal
    assert (await site.ex.order_row(order_id))["state"] in ("wait", "pending")
    assert await site.ex.store.fetchval("SELECT deleted_at FROM api_tokens WHERE id = ?", key_id) is None
    assert await ann.get("/account") == 200  # still logged in
    # a token of another session does not work either
    bob = await site.visitor()
    bob_token = await bob.token()
    r = await ann.c.post("/logout", data={"csrf_token": bob_token}, allow_redirects=False)
    assert r.status == 403


# -- forms: bad input shows a message next to the field, keeps what was typed, changes nothing --------------
async def test_sign_up_form_errors(site: Site) -> None:
    v = await site.visitor()
    cases = [
        ({"email": "", "password": PASSWORD, "password_confirmation": PASSWORD, "terms": "on"},
         "email", "Please enter your e-mail address"),
        ({"email": "x" * 300 + "@example.com", "password": PASSWORD, "password_confirmation": PASSWORD, "terms": "on"},
         "email", "Too long: at most 254 characters"),
        ({"email": "ann@", "password": PASSWORD, "password_confirmation": PASSWORD, "terms": "on"},
         "email", "This is not a valid e-mail address"),
        ({"email": "ann@example.com", "password": "short", "password_confirmation": "short", "terms": "on"},
         "password", "The password is too short (at least 8 characters)"),
        ({"email": "ann@example.com", "password": PASSWORD, "password_confirmation": "other", "terms": "on"},
         "password_confirmation", "The two passwords are not the same"),
        ({"email": "ann@example.com", "password": PASSWORD, "password_confirmation": PASSWORD},
         "terms", "Please accept the terms to continue"),
    ]
    for data, field, message in cases:
        status, _ = await v.post("/signup", data)
        assert status == 400, data
        assert v.error_of(field) == message, (field, v.error_of(field))
        assert 'aria-invalid="true"' in v.text
        if field != "email":
            assert v.value_of("email") == data["email"]  # kept
        assert PASSWORD not in v.text  # passwords are never sent back
    assert await count(site.ex, "members", "WHERE email NOT LIKE ?", "%@exchange.invalid") == 0
    assert site.outbox.mails == []


async def test_log_in_form_errors(site: Site) -> None:
    await site.member()
    v = await site.visitor()
    status, _ = await v.post("/login", {"email": "", "password": ""})
    assert status == 400 and v.error_of("email") == "Please enter your e-mail address"
    assert v.error_of("password") == "Please enter your password"
    status, _ = await v.post("/login", {"email": "ann@example.com", "password": "wrong password!"})
    assert status == 400 and v.general_error() == "Wrong e-mail address or password"
    assert v.value_of("email") == "ann@example.com"
    status, _ = await v.post("/login", {"email": "x" * 300, "password": "p"})
    assert status == 400 and "too long" in v.error_of("email")
    # not activated: says so, next to the e-mail, with a link to a new activation mail
    await v.post("/signup", {"email": "bob@example.com", "password": PASSWORD, "password_confirmation": PASSWORD,
                             "terms": "on"})
    status, _ = await v.post("/login", {"email": "bob@example.com", "password": PASSWORD})
    assert status == 400 and "not activated" in v.error_of("email") and "/activation/resend" in v.text
    assert await v.get("/funds", allow_redirects=False) == 303


async def test_log_in_goes_back_to_the_page_asked_for_but_never_off_site(site: Site) -> None:
    await site.member()
    v = await site.visitor()
    assert await v.get("/api_keys") == 200 and "next" in v.text
    assert 'name="next" value="/api_keys"' in v.text
    r = await v.c.post("/login", data={"email": "ann@example.com", "password": PASSWORD, "next": "/api_keys",
                                       "csrf_token": await v.token()}, allow_redirects=False)
    assert r.headers["Location"] == "/api_keys"
    for evil in ("https://evil.example/", "//evil.example/", "/\\evil.example"):
        w = await site.visitor()
        r = await w.c.post("/login", data={"email": "ann@example.com", "password": PASSWORD, "next": evil,
                                           "csrf_token": await w.token()}, allow_redirects=False)
        assert r.headers["Location"] == "/funds", evil
        r = await w.c.get(f"/lang/zh-CN?next={evil}", allow_redirects=False)
        assert r.headers["Location"] == "/"


ORDER_CASES = [
    ({"side": "buy", "ord_type": "limit", "price": "30000", "volume": ""}, "volume", "Please enter a number"),
    ({"side": "buy", "ord_type": "limit", "price": "", "volume": "1"}, "price", "Please enter a number"),
    ({"side": "buy", "ord_type": "limit", "price": "30000", "volume": "0.00001"}, "volume", "At most 4 decimal places"),
    ({"side": "buy", "ord_type": "limit", "price": "30000.001", "volume": "1"}, "price", "At most 2 decimal places"),
    ({"side": "buy", "ord_type": "limit", "price": "30000", "volume": "1e3"}, "volume",
     "Enter a positive number like 12.5 (digits and one dot)"),
    ({"side": "buy", "ord_type": "limit", "price": "-5", "volume": "1"}, "price",
     "Enter a positive number like 12.5 (digits and one dot)"),
    ({"side": "buy", "ord_type": "limit", "price": "30000", "volume": "1" * 41}, "volume", "Too long: at most 30 characters"),
    ({"side": "buy", "ord_type": "limit", "price": "30000", "volume": "0"}, "volume", "Must be greater than zero"),
    ({"side": "buy", "ord_type": "limit", "price": "30000", "volume": "100"}, "volume",
     "Insufficient balance: this order needs 3000000.00 USD, you have 100000.00 USD available"),
    ({"side": "sell", "ord_type": "limit", "price": "30000", "volume": "6"}, "volume",
     "Insufficient balance: this order needs 6.00000000 BTC, you have 5.00000000 BTC available"),
    ({"side": "buy", "ord_type": "market", "price": "30000", "volume": "1"}, "price",
     "A market order has no price: leave it empty"),
    ({"side": "buy", "ord_type": "market", "price": "", "volume": "1"}, "volume",
     "Not enough orders in the book for this amount"),
    ({"side": "up", "ord_type": "limit", "price": "1", "volume": "1"}, "side", "Choose buy or sell"),
    ({"side": "buy", "ord_type": "stop", "price": "1", "volume": "1"}, "ord_type", "Choose a limit, market or stop-limit order"),
]


async def test_order_form_errors_change_nothing(site: Site) -> None:
    ann = await site.member()
    mid = await site.mid("ann@example.com")
    bal = await balances(site.ex, mid)
    for data, field, message in ORDER_CASES:
        # the page (no script): errors next to the field, values kept
        status, _ = await ann.post("/markets/btcusd/orders", data)
        assert status == 400, data
        got = ann.error_of(field) if field in ("volume", "price") else re.sub(r"<[^>]+>", "", ann.text)
        assert message in got, (data, field, got)
        if field == "volume" and data["volume"]:
            assert ann.value_of("volume") == data["volume"]
        # the script's fetch: the same errors as JSON
        status, text = await ann.post("/markets/btcusd/orders", data, json_reply=True)
        assert status == 400 and json.loads(text)["errors"][field] == message, text
    assert await count(site.ex, "orders") == 0
    assert await balances(site.ex, mid) == bal


async def test_order_form_in_chinese(site: Site) -> None:
    ann = await site.member()
    await ann.get("/lang/zh-CN")
    status, text = await ann.post("/markets/btcusd/orders", {"side": "buy", "ord_type": "limit", "price": "30000",
                                                             "volume": "0.00001"}, json_reply=True)
    assert json.loads(text)["errors"]["volume"] == "最多 4 位小数"


async def test_place_and_cancel_orders(site: Site) -> None:
    ann = await site.member()
    bob = await site.member("bob@example.com", usd=None)
    mid, bob_id = await site.mid("ann@example.com"), await site.mid("bob@example.com")
    status, text = await ann.post("/markets/btcusd/orders", {"side": "buy", "ord_type": "limit", "price": "30000",
                                                             "volume": "0.5"}, json_reply=True)
    assert status == 200 and json.loads(text)["ok"]
    await site.ex.quiesce()
    assert await balances(site.ex, mid) == {**await balances(site.ex, mid), "usd": (85_000_000_000, 15_000_000_000)}
    r = await ann.c.get("/markets/btcusd/me.json")
    me = await r.json()
    assert [(o["side"], o["price"], o["volume"], o["state"]) for o in me["open"]] == [("buy", "30000.00", "0.5000", "wait")]
    assert me["balances"]["usd"] == {"symbol": "USD", "available": "85000.00", "locked": "15000.00",
                                     "units": "85000000000", "precision": 6}
    order_id = me["open"][0]["id"]
    # the page shows it in the book and in "open orders"
    assert await ann.get("/markets/btcusd") == 200
    assert 'data-price="30000.00"' in ann.text and f'action="/orders/{order_id}/cancel"' in ann.text
    # bob sells into it through the form without JavaScript: redirect back with a message
    status, _ = await bob.post("/markets/btcusd/orders", {"side": "sell", "ord_type": "market", "volume": "0.2"})
    assert status == 200 and "Order placed" in bob.text
    await site.ex.quiesce()
    me = await (await ann.c.get("/markets/btcusd/me.json")).json()
    assert me["open"][0]["executed"] == "0.2000"
    assert me["trades"][0]["price"] == "30000.00" and me["trades"][0]["role"] == "maker"
    assert me["balances"]["btc"]["available"] == "5.19980000"  # 0.2 less the 0.1 % maker fee
    # bob cannot cancel ann's order: it does not exist for him
    status, text = await bob.post(f"/orders/{order_id}/cancel", {}, json_reply=True)
    assert status == 400 and json.loads(text)["message"] == "This order does not exist"
    assert (await site.ex.order_row(order_id))["state"] == "wait"
    status, text = await ann.post(f"/orders/{order_id}/cancel", {}, json_reply=True)
    assert status == 200 and json.loads(text)["message"] == "Order cancelled"
    await site.ex.quiesce()
    assert (await site.ex.order_row(order_id))["state"] == "cancel"
    me = await (await ann.c.get("/markets/btcusd/me.json")).json()
    assert me["open"] == [] and me["balances"]["usd"]["locked"] == "0.00"
    assert me["history"][0]["state"] == "cancel" and me["history"][0]["executed"] == "0.2000"
    # cancel all
    for price in ("100", "101"):
        await ann.post("/markets/btcusd/orders", {"side": "buy", "ord_type": "limit", "price": price, "volume": "1"})
    status, _ = await ann.post("/markets/btcusd/orders/cancel_all", {})
    assert "2 orders cancelled" in ann.text
    await site.ex.quiesce()
    assert await site.ex.orders_of(mid) == []
    assert await site.ex.orders_of(bob_id) == []


async def test_private_pages_need_a_member(site: Site) -> None:
    v = await site.visitor()
    for path in ("/funds", "/api_keys", "/account"):
        r = await v.c.get(path, allow_redirects=False)
        assert r.status == 303 and r.headers["Location"].startswith("/login?next="), path
    r = await v.c.get("/markets/btcusd/me.json")
    assert r.status == 401
    assert await v.get("/markets/btcusd") == 200 and "Log in to see your orders" in v.text
    assert await v.get("/markets/nosuch") == 404 and "Page not found" in v.text


async def test_api_keys_page(site: Site) -> None:
    ann = await site.member()
    bob = await site.member("bob@example.com")
    mid = await site.mid("ann@example.com")
    bad = [
        ([("label", ""), ("scopes", "trade"), ("expiry", "30")], "label", "This field is required"),
        ([("label", "x" * 65), ("scopes", "trade"), ("expiry", "30")], "label", "Too long: at most 64 characters"),
        ([("label", "bot"), ("expiry", "30")], "scopes", "Choose at least one permission"),
        ([("label", "bot"), ("scopes", "root"), ("expiry", "30")], "scopes", "Unknown permission"),
        ([("label", "bot"), ("scopes", "trade"), ("ip_whitelist", "10.0.0.1, banana"), ("expiry", "30")], "ip_whitelist",
         "banana is not an IP address or network (like 203.0.113.7 or 10.0.0.0/24)"),
        ([("label", "bot"), ("scopes", "trade"), ("ip_whitelist", " ".join(f"10.0.0.{i}" for i in range(21))),
          ("expiry", "30")], "ip_whitelist", "At most 20 addresses or networks"),
        ([("label", "bot"), ("scopes", "trade"), ("ip_whitelist", "1" * 1001), ("expiry", "30")], "ip_whitelist",
         "Too long: at most 1000 characters"),
        ([("label", "bot"), ("scopes", "trade"), ("expiry", "tomorrow")], "expiry", "Choose one of the offered expiry dates"),
    ]
    for data, field, message in bad:
        status, _ = await ann.post("/api_keys", data)
        assert status == 400 and message in html.unescape(ann.text), (field, message)
        assert f'id="f-{field}-error"' in ann.text
        label = dict(data).get("label", "")
        if field != "label" and label:
            assert ann.value_of("label") == label
    assert await count(site.ex, "api_tokens") == 0
    status, _ = await ann.post("/api_keys", [("label", "my bot"), ("scopes", "history"), ("scopes", "trade"),
                                             ("ip_whitelist", "203.0.113.7\n10.0.0.0/24"), ("expiry", "90")])
    assert status == 200 and "shown this once" in ann.text
    secret = re.search(r'id="new-secret-key">([A-Za-z0-9]{40})<', ann.text)
    access = re.search(r'id="new-access-key">([A-Za-z0-9]{40})<', ann.text)
    assert secret and access
    row = await site.ex.store.fetchrow("SELECT * FROM api_tokens WHERE member_id = ?", mid)
    assert row["label"] == "my bot" and row["scopes"] == "history trade" and row["ip_whitelist"] == "203.0.113.7 10.0.0.0/24"
    assert row["expires_at"] is not None and secret.group(1) not in row["secret_enc"]
    assert await ann.get("/api_keys") == 200
    assert access.group(1) in ann.text and secret.group(1) not in ann.text  # the secret is shown once only
    # bob cannot revoke ann's key
    await bob.post(f"/api_keys/{row['id']}/delete", {})
    assert "This API key does not exist" in bob.text
    assert await site.ex.store.fetchval("SELECT deleted_at FROM api_tokens WHERE id = ?", row["id"]) is None
    await ann.post(f"/api_keys/{row['id']}/delete", {})
    assert "The API key is revoked." in ann.text
    assert await site.ex.store.fetchval("SELECT deleted_at FROM api_tokens WHERE id = ?", row["id"]) is not None


class FakeSecondFactor:
    """Stands in for the security module: the pages must ask it and obey it."""

    def __init__(self) -> None:
        self.asked: list[tuple[int, str]] = []
        self.on = False  # off while the test's member signs up and first logs in

    async def required(self, member_id: int, action: str) -> bool:
        return self.on

    async def verify(self, member_id: int, action: str, code: str) -> None:
        self.asked.append((member_id, action))
        if code != "123456":
            raise FormError("otp_code", "The code is wrong")


async def test_second_factor_hook_at_log_in_and_api_keys(tmp_path: Path) -> None:
    hook = FakeSecondFactor()
    async with serve_site(config_with(f"sqlite:///{tmp_path}/pages.db"), tmp_path,
                          lambda app: app.__setitem__(SECOND_FACTOR, hook)) as site:
        await _second_factor_at_log_in_and_api_keys(site, hook)


async def _second_factor_at_log_in_and_api_keys(site: Site, hook: FakeSecondFactor) -> None:
    ann = await site.member()
    mid = await site.mid("ann@example.com")
    await ann.post("/logout", {})
    hook.on = True
    v = await site.visitor()
    r = await v.c.post("/login", data={"email": "ann@example.com", "password": PASSWORD, "csrf_token": await v.token()},
                       allow_redirects=False)
    assert r.status == 303 and r.headers["Location"] == "/login/2fa"
    assert await v.get("/funds", allow_redirects=False) == 303  # not logged in yet
    status, _ = await v.post("/login/2fa", {"otp_code": "000000"})
    assert status == 400 and v.error_of("otp_code") == "The code is wrong"
    status, _ = await v.post("/login/2fa", {"otp_code": "123456"})
    assert status == 200 and "Welcome back" in v.text
    assert hook.asked == [(mid, "login"), (mid, "login")]
    history = await site.ex.store.fetch("SELECT ok, reason FROM login_history WHERE member_id = ? ORDER BY id", mid)
    assert [(int(h["ok"]), h["reason"]) for h in history][-2:] == [(0, "wrong code"), (1, "")]
    await v.get("/api_keys")
    assert 'name="otp_code"' in v.text
    status, _ = await v.post("/api_keys", [("label", "bot"), ("scopes", "trade"), ("expiry", "30"), ("otp_code", "1")])
    assert status == 400 and v.error_of("otp_code") == "The code is wrong" and await count(site.ex, "api_tokens") == 0
    status, _ = await v.post("/api_keys", [("label", "bot"), ("scopes", "trade"), ("expiry", "30"),
                                           ("otp_code", "123456")])
    assert status == 200 and await count(site.ex, "api_tokens") == 1


async def test_change_password_logs_out_the_other_sessions(site: Site) -> None:
    ann = await site.member()
    mid = await site.mid("ann@example.com")
    other = await site.visitor()
    await other.post("/login", {"email": "ann@example.com", "password": PASSWORD})
    assert await count(site.ex, "web_sessions", "WHERE member_id = ?", mid) == 2
    for data, field, message in [
        ({"current_password": "", "password": "", "password_confirmation": ""}, "current_password",
         "Please enter your current password"),
        ({"current_password": "nope", "password": "a new passphrase", "password_confirmation": "a new passphrase"},
         "current_password", "The current password is wrong"),
        ({"current_password": PASSWORD, "password": "short", "password_confirmation": "short"}, "password",
         "The password is too short (at least 8 characters)"),
        ({"current_password": PASSWORD, "password": "a new passphrase", "password_confirmation": "other"},
         "password_confirmation", "The two passwords are not the same"),
    ]:
        status, _ = await ann.post("/account/password", data)
        assert status == 400 and ann.error_of(field) == message
    assert await count(site.ex, "web_sessions", "WHERE member_id = ?", mid) == 2
    await ann.post("/account/password", {"current_password": PASSWORD, "password": "a new passphrase",
                                         "password_confirmation": "a new passphrase"})
    assert "Your other sessions are logged out" in ann.text
    assert await ann.get("/account") == 200
    assert await other.get("/account", allow_redirects=False) == 303
    assert "was just changed" in site.outbox.mails[-1].text


async def test_password_reset_pages(site: Site) -> None:
    ann = await site.member()
    v = await site.visitor()
    for email, message in [("", "Please enter your e-mail address"), ("nope", "This is not a valid e-mail address")]:
        status, _ = await v.post("/password/forgot", {"email": email})
        assert status == 400 and v.error_of("email") == message
    status, _ = await v.post("/password/forgot", {"email": "ann@example.com"})
    assert status == 200 and "is on its way" in v.text
    token = site.outbox.link("password/reset")
    assert await v.get(f"/password/reset/{token}") == 200 and 'id="f-password"' in v.text
    status, _ = await v.post(f"/password/reset/{token}", {"password": "x", "password_confirmation": "x"})
    assert status == 400 and "too short" in v.error_of("password")
    status, _ = await v.post(f"/password/reset/{token}", {"password": "a new passphrase", "password_confirmation": "y"})
    assert status == 400 and v.error_of("password_confirmation") == "The two passwords are not the same"
    status, _ = await v.post(f"/password/reset/{token}", {"password": "a new passphrase",
                                                          "password_confirmation": "a new passphrase"})
    assert status == 200 and "Your password is changed" in v.text
    assert await ann.get("/account", allow_redirects=False) == 303  # every session ended
    assert await v.get(f"/password/reset/{token}") == 400 and "already been used" in v.text
    status, _ = await v.post(f"/password/reset/{token}", {"password": "another passphrase",
                                                          "password_confirmation": "another passphrase"})
    assert status == 400 and "already been used" in v.text
    status, _ = await v.post("/login", {"email": "ann@example.com", "password": "a new passphrase"})
    assert "Welcome back" in v.text


async def test_activation_pages(site: Site) -> None:
    v = await site.visitor()
    assert await v.get("/activate/not-a-token") == 400 and "not valid" in v.text
    status, _ = await v.post("/activation/resend", {"email": ""})
    assert status == 400 and v.error_of("email") == "Please enter your e-mail address"
    await v.post("/signup", {"email": "ann@example.com", "password": PASSWORD, "password_confirmation": PASSWORD,
                             "terms": "on"})
    first = site.outbox.link("activate")
    status, _ = await v.post("/activation/resend", {"email": "ann@example.com"})
    assert status == 200 and "is on its way" in v.text  # throttled within the minute, same answer
    assert site.outbox.link("activate") == first
    assert await v.get(f"/activate/{first}") == 200


async def test_funds_page_shows_balances_deposits_and_the_ledger(site: Site) -> None:
    ann = await site.member()
    assert await ann.get("/funds?currency=usd") == 200
    assert "100000.00" in ann.text and "Deposit history" in ann.text and "Account history (USD)" in ann.text
    assert ann.text.count("<tr") >= 4
    await ann.post("/markets/btcusd/orders", {"side": "buy", "ord_type": "limit", "price": "100", "volume": "1"})
    await site.ex.quiesce()
    await ann.get("/funds?currency=usd")
    assert "Order placed (funds locked)" in ann.text and "−100.00" in ann.text
    r = await ann.c.get("/funds/balances.json")
    usd = next(b for b in await r.json() if b["code"] == "usd")
    assert usd["available"] == "99900.00" and usd["locked"] == "100.00"
    assert await ann.get("/funds?currency=nosuch") == 404
    # no wallet is configured in the test config: the page says so, the withdrawal form is refused
    status, _ = await ann.post("/funds/btc/withdraw", {"address": "1BoatSLRHtKNngkdXEeobR76b53LETtpyT", "amount": "1"})
    assert status == 400 and "not open on this exchange yet" in ann.text
    assert await balances(site.ex, await site.mid("ann@example.com")) == {
        **await balances(site.ex, await site.mid("ann@example.com"))}
    assert await count(site.ex, "ledger", "WHERE reason LIKE 'withdraw%'") == 0


def test_qr_codes_are_drawn_here() -> None:
    uri = qr_data_uri("bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq")
    assert uri.startswith("data:image/svg+xml") and len(uri) > 500


# -- languages --------------------------------------------------------------------------------------------------
async def test_switch_language_and_browser_preference(site: Site) -> None:
    v = await site.visitor()
    await v.get("/")
    assert '<html lang="en">' in v.text and "Markets" in v.text
    r = await v.c.get("/lang/zh-CN?next=/markets/btcusd", allow_redirects=False)
    assert r.status == 303 and r.headers["Location"] == "/markets/btcusd"
    assert r.cookies["lang"].value == "zh-CN" and r.cookies["lang"]["httponly"]
    await v.get("/markets/btcusd")
    assert '<html lang="zh-Hans">' in v.text and "盘口" in v.text and "最新成交" in v.text
    await v.get("/lang/en")
    await v.get("/")
    assert "Markets" in v.text
    w = await site.visitor(**{"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"})
    await w.get("/signup")
    assert "创建您的账户" in w.text
    assert await v.get("/lang/fr") == 404


PAGES = ["/", "/markets/btcusd", "/markets/ltcbtc", "/signup", "/login", "/password/forgot", "/activation/resend",
         "/funds", "/funds?currency=usd", "/api_keys", "/account", "/solvency", "/solvency/me", "/no-such-page"]


async def test_every_page_in_both_languages_is_translated_and_has_no_inline_code(site: Site) -> None:
    ann = await site.member()
    await ann.post("/markets/btcusd/orders", {"side": "buy", "ord_type": "limit", "price": "100", "volume": "1"})
    anon = await site.visitor()
    english_only = re.compile(r">\s*([A-Z][a-z]+(?: [a-z]+){2,})\s*<")
    for lang in ("en", "zh-CN"):
        for v in (ann, anon):
            await v.get(f"/lang/{lang}")
            for path in PAGES:
                await v.get(path)
                assert not re.search(r"<script(?![^>]*\bsrc=)(?![^>]*application/json)[^>]*>", v.text), path
                assert " style=" not in v.text and " on" + "click=" not in v.text, path
                if lang == "zh-CN":
                    leftovers = [m for m in english_only.findall(v.text) if m not in ("Proof of solvency",)]
                    assert not leftovers, (path, leftovers)


def _marked_texts() -> dict[str, str]:
    """Every text the pages mark for translation: `_()` in templates and code, `N_()`, and JS_MESSAGES."""
    found: dict[str, str] = {}
    env = jinja2.Environment()
    for p in sorted((ROOT / "templates").glob("*.html")):
        for _, _, msg in extract_from_ast(env.parse(p.read_text()), gettext_functions=("_",)):
            first = msg[0] if isinstance(msg, tuple) else msg
            if isinstance(first, str):
                found.setdefault(first, p.name)
    member_pages = [f"node/web/pages/{m}.py" for m in ("__init__", "common", "home", "market", "trading", "login",
                                                        "account", "funds", "apikeys", "notices")]
    for name in (*member_pages, "node/web/session.py", "node/web/forms.py", "node/members.py"):
        for node in ast.walk(ast.parse((ROOT / name).read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("_", "N_")
                    and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
                found.setdefault(node.args[0].value, name)
    for m in JS_MESSAGES:
        found.setdefault(m, "JS_MESSAGES")
    return found


def test_the_chinese_catalog_covers_every_text_with_the_same_placeholders() -> None:
    zh = catalog("zh-CN")
    texts = _marked_texts()
    assert len(texts) > 250
    missing = sorted(t for t in texts if t not in zh.messages)
    assert not missing, missing
    names = lambda s: sorted(f for _, f, _, _ in string.Formatter().parse(s) if f)  # noqa: E731
    wrong = [t for t in texts if names(t) != names(zh.messages[t])]
    assert not wrong, wrong
    for pattern, template in zh.patterns:
        assert set(names(template)) <= set(pattern.groupindex), pattern.pattern


async def test_sessions_survive_on_another_node_store(site: Site) -> None:
    """The session lives in the database, not in the process: a second app on the same store knows it."""
    ann = await site.member()
    key = next(c.value for c in ann.c.session.cookie_jar if c.key == "sid")
    sessions = site.server.app[SESSIONS]
    s = await sessions.load(key)
    assert s is not None and s.member_id == await site.mid("ann@example.com") and s.email == "ann@example.com"


# -- funds with wallets (the wallet module's in-memory coin channel, and its bank channel) ---------------------
@pytest.fixture
async def wallet_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Site]:
    from node.config import parse_config
    from tests.regtest import config_data
    from tests.test_wallet import BANK, FAKE_BTC, WALLETS, FakeChannel, FakeWallet

    monkeypatch.setitem(__import__("node.wallet", fromlist=["FAMILIES"]).FAMILIES, "fake", FakeChannel)
    WALLETS.clear()
    WALLETS["btc"] = FakeWallet()
    config = parse_config(config_data(f"sqlite:///{tmp_path}/w.db", {"btc": FAKE_BTC, "usd": BANK}), "test")
    try:
        async with serve_site(config, tmp_path) as site:
            yield site
    finally:
        WALLETS.clear()


async def test_funds_page_with_wallets(wallet_site: Site) -> None:
    site = wallet_site
    ann = await site.member(usd="1000", btc="2")
    mid = await site.mid("ann@example.com")
    # a coin: the deposit address and its QR code, drawn here
    assert await ann.get("/funds?currency=btc") == 200
    address = re.search(r'<code id="deposit-address">([^<]+)</code>', ann.text)
    assert address and address.group(1).startswith("fake")
    assert re.search(r'<img class="qr" src="data:image/svg\+xml', ann.text)
    assert 'id="withdraw-form"' in ann.text and "Minimum 0.01000000 BTC; network fee 0.00100000 BTC" in ann.text
    # fiat: the exchange's bank account and the member's reference code, no QR
    assert await ann.get("/funds?currency=usd") == 200
    assert "First Test Bank" in ann.text and "DE89 3704 0044 0532 0130 00" in ann.text
    assert re.search(r'<code id="deposit-address">PX[A-Z0-9]+</code>', ann.text) and 'class="qr"' not in ann.text
    bal = await balances(site.ex, mid)
    for data, field, message in [
        ({"address": "", "amount": "1"}, "address", "This field is required"),
        ({"address": "fakeX" * 50, "amount": "1"}, "address", "Too long: at most 200 characters"),
        ({"address": "ext1", "amount": ""}, "amount", "Please enter a number"),
        ({"address": "ext1", "amount": "0.000000001"}, "amount", "At most 8 decimal places"),
        ({"address": "ext1", "amount": "1,5"}, "amount", "Enter a positive number like 12.5 (digits and one dot)"),
        ({"address": "ext1", "amount": "0.001"}, "amount", "amount is below the minimum withdrawal of 0.01 BTC"),
        ({"address": "bad-address", "amount": "1"}, "address", "address is not a valid BTC address"),
        ({"address": address.group(1), "amount": "1"}, "address",
         "address belongs to this exchange; withdraw to an address of your own"),
    ]:
        status, _ = await ann.post("/funds/btc/withdraw", data)
        assert status == 400 and ann.error_of(field) == message, (data, ann.error_of(field))
        if data["amount"]:
            assert ann.value_of("amount") == data["amount"]
    status, _ = await ann.post("/funds/btc/withdraw", {"address": "ext1", "amount": "5"})
    assert status == 400 and "balance too low" in ann.general_error()
    assert await balances(site.ex, mid) == bal and await count(site.ex, "withdraws") == 0
    # in Chinese, the wallet module's messages are translated too
    await ann.get("/lang/zh-CN")
    status, _ = await ann.post("/funds/btc/withdraw", {"address": "bad-address", "amount": "1"})
    assert ann.error_of("address") == "这不是有效的 BTC 地址"
    await ann.get("/lang/en")
    # above the automatic threshold (1 BTC) a withdrawal waits for an admin: it can still be cancelled
    status, _ = await ann.post("/funds/btc/withdraw", {"address": "ext1", "amount": "1.5"})
    assert status == 200 and re.search(r"Withdrawal \S+ requested: waiting for your confirmation by the link we mailed you \(until [0-9: -]+ UTC\); new address on hold until", ann.text)
    assert "ext1" in ann.text and "1.50000000" in ann.text
    btc = (await balances(site.ex, mid))["btc"]
    assert btc == (2 * 10**8 - 150_100_000, 150_100_000)  # amount and fee locked
    wid = int(await site.ex.store.fetchval("SELECT id FROM withdraws"))
    other = await site.member("bob@example.com")
    await other.post(f"/funds/withdraws/{wid}/cancel", {})
    assert "doesn&#39;t exist" in other.text
    await ann.post(f"/funds/withdraws/{wid}/cancel", {})
    assert "Withdrawal cancelled" in ann.text
    assert (await balances(site.ex, mid))["btc"] == (2 * 10**8, 0)
    assert "Reason: canceled by the member" in ann.text
    # a bank withdrawal: holder, IBAN (its check digits checked), BIC, reference; no crypto address field
    await ann.get("/funds?currency=usd")
    assert 'id="f-account_holder"' in ann.text and 'id="f-address"' not in ann.text
    bank = {"account_holder": "Ann Example", "account_number": "DE89 3704 0044 0532 0130 01", "bic": "DEUTDEFF",
            "reference": "rent", "amount": "100"}
    status, _ = await ann.post("/funds/usd/withdraw", bank)
    assert status == 400 and "This IBAN is not valid" in ann.error_of("account_number")
    status, _ = await ann.post("/funds/usd/withdraw", {**bank, "bic": "XX"})
    assert status == 400 and ann.error_of("bic").startswith("A BIC has 8 or 11")
    status, _ = await ann.post("/funds/usd/withdraw", {**bank, "account_number": "GB29 NWBK 6016 1331 9268 19"})
    assert status == 200 and "Ann Example | GB29NWBK60161331926819 | DEUTDEFF | rent" in ann.text
