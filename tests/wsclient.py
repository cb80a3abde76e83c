"""Test helpers for the websocket API: a node's app on a real socket, and a recording client."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from aiohttp.test_utils import TestServer

from node.bootstrap import web_app
from node.exchange import Exchange, OrderInput
from node.web.app import KEYS
from node.web.signature import ws_answer
from node.web.ws import HUB, Hub


@dataclass
class Node:
    ex: Exchange
    app: web.Application
    server: TestServer
    session: aiohttp.ClientSession

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    @property
    def hub(self) -> Hub:
        return self.app[HUB]

    async def member(self, email: str, usd: str = "10000000", btc: str = "1000") -> tuple[int, str, str]:
        """A funded member with an API key: (member id, access key, secret key)."""
        mid = await self.ex.create_member(email)
        await self.ex.deposit(mid, "usd", usd)
        await self.ex.deposit(mid, "btc", btc)
        ak, sk = await self.app[KEYS].create(mid, "ws", "all", now=int(time.time() * 1000))
        return mid, ak, sk

    async def order(self, member: int, side: str, volume: str, price: str | None = None, market: str = "btcusd") -> Any:
        return await self.ex.submit_order(member, OrderInput(market, side, volume, price,
                                                             ord_type="limit" if price else "market"))

    async def get(self, path: str, **params: Any) -> Any:
        async with self.session.get(self.base + path, params=params) as r:
            assert r.status == 200, await r.text()
            return await r.json()

    async def connect(self, **kw: Any) -> WsClient:
        ws = await self.session.ws_connect(self.base + "/ws", **kw)
        c = WsClient(ws)
        c.start()
        await c.wait(lambda f: "challenge" in f)
        return c


@asynccontextmanager
async def serve(ex: Exchange, tmp: Path) -> AsyncIterator[Node]:
    app = web_app(ex, key_file=tmp / "secret.key")
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    session = aiohttp.ClientSession()
    try:
        yield Node(ex, app, server, session)
    finally:
        await session.close()
        await server.close()


@dataclass
class WsClient:
    """Reads every frame in the background; tests wait for the frames they expect."""

    ws: aiohttp.ClientWebSocketResponse
    frames: list[dict[str, Any]] = field(default_factory=list)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    close_code: int | None = None
    close_reason: str = ""
    _task: asyncio.Task[None] | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def start(self) -> None:
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for msg in self.ws:
                if msg.type is aiohttp.WSMsgType.TEXT:
                    self.frames.append(orjson.loads(msg.data))
                    self._changed.set()
            self.close_code = self.ws.close_code
            ext = self.ws.exception()
            self.close_reason = str(ext) if ext else ""
        finally:
            self.closed.set()
            self._changed.set()

    async def wait(self, pred: Callable[[dict[str, Any]], bool], timeout: float = 10.0, start: int = 0) -> dict[str, Any]:
        """The first frame (from index `start`) that satisfies `pred`."""
        deadline = time.monotonic() + timeout
        i = start
        while True:
            while i < len(self.frames):
                if pred(self.frames[i]):
                    return self.frames[i]
                i += 1
            if self.closed.is_set():
                raise AssertionError(f"closed ({self.close_code}) before the expected frame; got {self.frames[-5:]}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no expected frame within {timeout}s; last frames {self.frames[-5:]}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except TimeoutError:
                pass

    async def send(self, obj: Any) -> None:
        await self.ws.send_str(orjson.dumps(obj).decode())

    async def auth(self, access_key: str, secret_key: str, **extra: Any) -> dict[str, Any]:
        challenge = next(f["challenge"] for f in self.frames if "challenge" in f)
        n = len(self.frames)
        await self.send({"auth": {"access_key": access_key, "answer": ws_answer(secret_key, access_key, challenge),
                                  **extra}})
        return await self.wait(lambda f: "success" in f or "error" in f, start=n)

    async def command(self, obj: Any, expect: str) -> dict[str, Any]:
        """Send and wait for the reply frame with key `expect` (e.g. subscribed, error, pong)."""
        n = len(self.frames)
        await self.send(obj)
        return (await self.wait(lambda f: expect in f, start=n))[expect]

    async def close(self) -> None:
        await self.ws.close()
        if self._task is not None:
            await self._task


class Book:
    """A local order book kept from depth frames, as a client would: snapshot, then diffs in order."""

    def __init__(self) -> None:
        self.asks: dict[str, str] = {}
        self.bids: dict[str, str] = {}
        self.seq: int | None = None
        self.snapshots = 0

    def apply(self, d: dict[str, Any]) -> None:
        if d.get("snapshot"):
            self.asks = {p: v for p, v in d["asks"]}
            self.bids = {p: v for p, v in d["bids"]}
            self.snapshots += 1
        else:
            assert self.seq is not None, "a diff before any snapshot"
            assert d["sequence"] == self.seq + 1, f"gap: {self.seq} -> {d['sequence']}"
            for side, levels in ((self.asks, d["asks"]), (self.bids, d["bids"])):
                for p, v in levels:
                    if Decimal(v) == 0:
                        side.pop(p, None)
                    else:
                        side[p] = v
        self.seq = d["sequence"]

    def levels(self, side: str) -> list[tuple[Decimal, Decimal]]:
        book = self.asks if side == "asks" else self.bids
        return sorted(((Decimal(p), Decimal(v)) for p, v in book.items()), reverse=side == "bids")
