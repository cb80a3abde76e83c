"""What the security tests share: a site (in-process HTTP server) with chosen `[security]` / `[sms]`
settings and a fake coin wallet, a controllable clock, a local stand-in for Twilio's REST API, and
members who switch on two-factor authentication through the pages."""

from __future__ import annotations

import base64
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pyotp
from aiohttp import web
from aiohttp.test_utils import TestServer

from node.config import parse_config
from node.wallet import FAMILIES
from node.web.pages.security import SECURITY
from tests.conftest import Clock
from tests.regtest import config_data
from tests.test_pages import PASSWORD, Site, Visitor, serve_site
from tests.test_wallet import FAKE_BTC, WALLETS, FakeChannel, FakeWallet

SID = "ACfa4e0000000000000000000000000001"
TOKEN_ENV = "TEST_SMS_AUTH_TOKEN"
TOKEN = "twilio-test-auth-token-5f3c"


class FakeTwilio:
    """Twilio's Messages endpoint at the wire level: basic auth, form fields, its JSON answers."""

    def __init__(self) -> None:
        self.messages: list[dict[str, str]] = []
        self.auth: list[str] = []
        self.fail: tuple[int, dict[str, Any]] | None = None
        self.server: TestServer | None = None

    async def handle(self, request: web.Request) -> web.Response:
        self.auth.append(request.headers.get("Authorization", ""))
        if request.match_info["sid"] != SID:
            return web.json_response({"code": 20404, "message": "not found", "status": 404}, status=404)
        expected = "Basic " + base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return web.json_response({"code": 20003, "message": "Authenticate", "status": 401}, status=401)
        form = dict(await request.post())
        if self.fail is not None:
            return web.json_response(self.fail[1], status=self.fail[0])
        self.messages.append({k: str(v) for k, v in form.items()})
        return web.json_response({"sid": f"SM{len(self.messages):032d}", "status": "queued", "to": form.get("To"),
                                  "body": form.get("Body")}, status=201)

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", self.handle)
        self.server = TestServer(app, host="127.0.0.1")
        await self.server.start_server()
        return f"http://127.0.0.1:{self.server.port}"

    async def close(self) -> None:
        if self.server is not None:
            await self.server.close()

    def code(self) -> str:
        m = re.search(r"\b(\d{6})\b", self.messages[-1]["Body"])
        assert m, self.messages[-1]
        return m.group(1)


def set_clock(app: web.Application, clock: Callable[[], float]) -> None:
    sec = app[SECURITY]
    for part in (sec, sec.totp, sec.sms, sec.throttle, sec.addresses):
        part.clock = clock


@asynccontextmanager
async def security_site(tmp_path: Path, database: str | None = None, wallet: bool = True,
                        twilio: FakeTwilio | None = None, routes: Callable[[web.Application], None] | None = None,
                        **tables: Any) -> AsyncIterator[tuple[Site, Clock]]:
    """A site whose config has these top-level tables (`security={…}`, `sms={…}`), a fake BTC wallet
    (tests/test_wallet.py's in-memory channel, `WALLETS["btc"]`) and, with `twilio`, SMS through the
    local stand-in."""
    had = FAMILIES.get("fake")
    FAMILIES["fake"] = FakeChannel
    WALLETS.clear()
    WALLETS["btc"] = FakeWallet()
    data = config_data(database or f"sqlite:///{tmp_path}/security.db", {"btc": FAKE_BTC} if wallet else {})
    if twilio is not None:
        base = await twilio.start()
        tables.setdefault("sms", {"provider": "twilio", "account_sid": SID, "auth_token_env": TOKEN_ENV,
                                  "from": "+15005550006", "base_url": base})
    data.update(tables)
    clock = Clock(time.time())  # the real time: cookies and links stay plausible

    def prepare(app: web.Application) -> None:
        set_clock(app, clock)
        if routes is not None:
            routes(app)

    try:
        async with serve_site(parse_config(data, "test"), tmp_path, prepare) as site:
            yield site, clock
    finally:
        if twilio is not None:
            await twilio.close()
        WALLETS.clear()
        if had is None:
            FAMILIES.pop("fake", None)


def secret_on_page(v: Visitor) -> str:
    m = re.search(r'<code id="totp-secret">([A-Z2-7 ]+)</code>', v.text)
    assert m, v.text[:2000]
    return m.group(1).replace(" ", "")


def recovery_codes_on_page(v: Visitor) -> list[str]:
    block = re.search(r'<ol class="recovery-list" id="codes">(.*?)</ol>', v.text, re.S)
    assert block, v.text[:2000]
    return re.findall(r"<code>([a-z2-9]{5}-[a-z2-9]{5})</code>", block.group(1))


async def enable_totp(v: Visitor, clock: Clock) -> tuple[str, list[str]]:
    """Switch the authenticator on through the pages; returns its secret and the recovery codes.
    The clock is moved on a step, so the next code asked for is a fresh one."""
    assert await v.get("/security/totp") == 200
    secret = secret_on_page(v)
    status, _ = await v.post("/security/totp", {"code": pyotp.TOTP(secret).at(clock.now)})
    assert status == 200, v.text[:3000]
    codes = recovery_codes_on_page(v)
    clock.now += 30
    return secret, codes


def code(secret: str, clock: Clock) -> str:
    """The current code, then a step later for the next one (a code is accepted only once)."""
    value = pyotp.TOTP(secret).at(clock.now)
    clock.now += 30
    return value


__all__ = ["PASSWORD", "Clock", "FakeTwilio", "Site", "Visitor", "code", "enable_totp", "security_site"]
