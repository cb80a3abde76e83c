"""The API's one-frame middleware chain (node/web/app.py `api_chain`) answers exactly as the full
chain does: the same status, body and headers for answers, refusals, limits and errors; the audit
origin is set for the handler; and a middleware added to the application later is not skipped."""

from __future__ import annotations

import inspect
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from node.bootstrap import start_exchange, web_app
from node.security import audit
from tests.conftest import config_with

IGNORED = {"Date", "Server"}


@web.middleware
async def tagged(request: web.Request, handler: Any) -> web.StreamResponse:
    """A middleware added after the app was made: the full chain must then serve the API too."""
    resp = await handler(request)
    resp.headers["X-Tagged"] = "yes"
    return resp


async def origin(request: web.Request) -> web.Response:
    o = audit.origin()
    frames = [f.function for f in inspect.stack(0)]  # which middlewares this request went through
    return web.json_response({"channel": o.channel, "ip": o.ip, "user_agent": o.user_agent, "frames": frames})


@asynccontextmanager
async def served(tmp_path: Path, name: str, extra: bool) -> AsyncIterator[str]:
    ex = await start_exchange(config_with(f"sqlite:///{tmp_path}/{name}.db"))
    app = web_app(ex, key_file=tmp_path / f"{name}.key")
    app.router.add_get("/api/v2/test_origin", origin)
    if extra:
        app.middlewares.append(tagged)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        await server.close()
        await ex.stop()


REQUESTS: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/api/v2/markets", {}),
    ("GET", "/api/v2/markets.json", {}),
    ("GET", "/api/v2/depth?market=btcusd&limit=5", {}),
    ("GET", "/api/v2/depth?market=nope", {}),
    ("GET", "/api/v2/depth?market=btc%01usd", {}),  # a control character: refused by the text check
    ("GET", "/api/v2/nowhere", {}),  # 404 in the API's envelope
    ("DELETE", "/api/v2/markets", {}),  # 405
    ("GET", "/api/v2/members/me?access_key=x&tonce=1&signature=y", {}),  # 401: unknown key
    ("POST", "/api/v2/orders", {"data": "market=btcusd&side=buy"}),  # unsigned
    ("POST", "/api/v2/orders", {"data": b"x" * (64 * 1024 + 1),
                                "headers": {"Content-Type": "application/x-www-form-urlencoded"}}),  # 413
    ("GET", "/login", {}),  # a page: the full chain in both
]


async def answers(base: str) -> list[tuple[int, dict[str, str], bytes]]:
    out = []
    async with aiohttp.ClientSession() as http:
        for method, path, kw in REQUESTS:
            async with http.request(method, base + path, **kw) as r:
                body = await r.read()
                headers = {k: v for k, v in r.headers.items() if k not in IGNORED and not k.startswith("Set-Cookie")}
                body = re.sub(rb'"timestamp":\d+', b'"timestamp":0', body)  # the two runs may straddle a second
                out.append((r.status, headers, body if path.startswith("/api/") else b""))
    return out


async def test_the_api_chain_answers_as_the_full_chain(tmp_path: Path) -> None:
    async with served(tmp_path, "fast", extra=False) as fast, served(tmp_path, "full", extra=True) as full:
        got, want = await answers(fast), await answers(full)
    for (method, path, _), (s1, h1, b1), (s2, h2, b2) in zip(REQUESTS, got, want, strict=True):
        # the added middleware ran on the full chain, API included (an error raised past it skips it)
        assert h2.pop("X-Tagged", None) == ("yes" if s2 == 200 else None), path
        assert (s1, b1) == (s2, b2), (method, path)
        assert h1 == h2, (method, path)
    statuses = [s for s, _, _ in got]
    assert statuses == [200, 200, 200, 400, 400, 404, 405, 401, 400, 413, 200]
    for (_, path, _), (_, headers, _) in zip(REQUESTS, got, strict=True):
        assert headers["X-Frame-Options"] == "DENY" and headers["X-Content-Type-Options"] == "nosniff", path
        assert headers["Referrer-Policy"] == "same-origin", path
        assert ("Content-Security-Policy" in headers) == (not path.startswith("/api/")), path
        if path.startswith("/api/"):
            assert headers["Content-Type"] == "application/json", path


async def test_the_api_chain_sets_the_audit_origin(tmp_path: Path) -> None:
    async with served(tmp_path, "fast", extra=False) as base, aiohttp.ClientSession() as http:
        async with http.get(base + "/api/v2/test_origin", headers={"User-Agent": "bot/1 " + "x" * 400}) as r:
            o = await r.json()
    assert o["channel"] == "api" and o["ip"] == "127.0.0.1"
    assert o["user_agent"].startswith("bot/1 x") and len(o["user_agent"]) == 256
    assert audit.origin().channel == "system"  # reset after the request
    assert "chain" in o["frames"] and "security_headers" not in o["frames"] and "gate" not in o["frames"]
