"""The websocket API over real sockets: exact books from snapshot + diffs, private streams, bad input,
slow and idle clients, and resynchronisation after a gap."""

from __future__ import annotations

import asyncio
import base64
import os
import random
import socket
import struct
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from node.bootstrap import start_exchange
from node.errors import ExchangeError
from node.exchange import Exchange
from node.web.ws import CLOSE_IDLE, CLOSE_POLICY, CLOSE_SLOW, CLOSE_TOO_BIG
from tests.conftest import config_with
from tests.wsclient import Book, Node, WsClient, serve


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    ex = await start_exchange(config_with(f"sqlite:///{tmp_path}/exchange.db"))
    try:
        async with serve(ex, tmp_path) as n:
            yield n
    finally:
        await ex.stop()


def depth_frames(c: WsClient, market: str = "btcusd") -> list[dict[str, Any]]:
    return [f["depth"] for f in c.frames if "depth" in f and f["depth"]["market"] == market]


async def rebuilt(c: WsClient, seq: int) -> Book:
    await c.wait(lambda f: "depth" in f and f["depth"]["sequence"] >= seq)
    book = Book()
    for d in depth_frames(c):
        book.apply(d)
    assert book.seq == seq
    return book


async def random_trading(node: Node, members: list[int], rng: random.Random, n: int,
                         midway: Any = None) -> int:
    """`n` random limit/market orders and cancels, sent a few at a time so batches hold several."""
    resting: list[int] = []
    trades_before = node.ex.markets["btcusd"].trades_total

    async def one() -> None:
        member = rng.choice(members)
        r = rng.random()
        try:
            if r < 0.2 and resting:
                await node.ex.cancel_order(None, resting.pop(rng.randrange(len(resting))))
            elif r < 0.3:
                await node.order(member, rng.choice(["buy", "sell"]), f"0.{rng.randint(1, 500):04d}")
            else:
                o = await node.order(member, rng.choice(["buy", "sell"]), f"0.{rng.randint(1, 500):04d}",
                                     str(rng.randint(29_980, 30_020)))
                resting.append(o["id"])
        except ExchangeError:
            pass  # an order already filled, a thin book for a market order: fine here

    for i in range(0, n, 5):
        await asyncio.gather(*(one() for _ in range(5)))
        if midway is not None and i == n // 2:
            await midway()
    await node.ex.quiesce()
    return node.ex.markets["btcusd"].trades_total - trades_before


async def test_depth_rebuilt_from_snapshot_and_diffs_equals_depth_and_engine(exchange: Exchange, tmp_path: Path) -> None:
    async with serve(exchange, tmp_path) as node:
        members = [(await node.member(f"d{i}@example.com"))[0] for i in range(4)]
        early = await node.connect()
        await early.command({"subscribe": {"market": "btcusd", "channels": ["depth"]}}, "subscribed")
        late: list[WsClient] = []

        async def join() -> None:  # a client that subscribes while orders are flowing
            c = await node.connect()
            await c.command({"subscribe": {"market": "btcusd", "channels": ["depth"]}}, "subscribed")
            late.append(c)

        trades = await random_trading(node, members, random.Random(4), 400, midway=join)
        assert trades > 20
        actor = node.ex.markets["btcusd"]
        seq = actor.book_seq
        asks, bids = actor.engine.depth(10_000)
        engine = {"asks": [(Decimal(p) / 100, Decimal(v) / 10_000) for p, v in asks],
                  "bids": [(Decimal(p) / 100, Decimal(v) / 10_000) for p, v in bids]}
        rest = await node.get("/api/v2/depth", market="btcusd", limit=1000)
        api = {"asks": sorted((Decimal(p), Decimal(v)) for p, v in rest["asks"]),
               "bids": sorted(((Decimal(p), Decimal(v)) for p, v in rest["bids"]), reverse=True)}
        assert engine["asks"] and engine["bids"]
        for c in (early, *late):
            book = await rebuilt(c, seq)
            assert book.levels("asks") == engine["asks"] == api["asks"]
            assert book.levels("bids") == engine["bids"] == api["bids"]
        assert len(depth_frames(early)) > 50  # it really followed diffs, not one snapshot
        for c in (early, *late):
            await c.close()


async def test_gap_after_actor_restart_sends_a_new_snapshot(node: Node) -> None:
    a = (await node.member("gap@example.com"))[0]
    c = await node.connect()
    await c.command({"subscribe": {"market": "btcusd", "channels": ["depth"]}}, "subscribed")
    await node.order(a, "buy", "1", "100")
    actor = node.ex.markets["btcusd"]
    await c.wait(lambda f: "depth" in f and f["depth"]["sequence"] == actor.book_seq)
    actor.book_seq += 1  # what recover() does: clients' books may be stale
    await node.order(a, "buy", "2", "101")
    snap = await c.wait(lambda f: "depth" in f and f["depth"].get("snapshot") and f["depth"]["sequence"] > 1)
    book = Book()
    for d in depth_frames(c):
        book.apply(d)
    assert snap["depth"]["sequence"] == actor.book_seq == book.seq
    assert book.levels("bids") == [(Decimal("101"), Decimal("2")), (Decimal("100"), Decimal("1"))]


async def test_a_new_actor_instance_resets_books_even_with_a_lower_sequence(node: Node) -> None:
    """A restarted or moved market starts its sequence again: the diff of the new actor (another
    `book_id`) is a break whatever its number, and subscribers get a fresh snapshot marked `resync`;
    the same for Peatio's orderbook mirror, which announces what it did not know."""
    a, ak, sk = await node.member("reset@example.com")
    c = await node.connect()
    await c.command({"subscribe": {"market": "btcusd", "channels": ["depth"]}}, "subscribed")
    legacy = await node.connect()
    assert "success" in await legacy.auth(ak, sk)
    await node.order(a, "buy", "1", "100")
    actor = node.ex.markets["btcusd"]
    await c.wait(lambda f: "depth" in f and f["depth"]["sequence"] == actor.book_seq)
    assert actor.book_seq > 1
    actor.book_id, actor.book_seq = "another", 0  # what a new actor instance starts from
    await node.order(a, "buy", "2", "101")
    snap = await c.wait(lambda f: "depth" in f and f["depth"].get("resync"))
    assert snap["depth"]["snapshot"] and snap["depth"]["sequence"] == actor.book_seq == 1
    book = Book()
    for d in depth_frames(c):
        book.apply(d)
    assert book.levels("bids") == [(Decimal("101"), Decimal("2")), (Decimal("100"), Decimal("1"))]
    added = [f["orderbook"]["order"]["price"] for f in legacy.frames if f.get("orderbook", {}).get("action") == "add"]
    assert sorted(added) == ["100.0", "101.0"]
    await c.close()
    await legacy.close()

async def test_public_streams_ticker_trades_kline(node: Node) -> None:
    a = (await node.member("pa@example.com"))[0]
    b = (await node.member("pb@example.com"))[0]
    await node.order(a, "sell", "1", "30000")
    await node.order(b, "buy", "0.25", "30000")
    await node.ex.quiesce()
    await asyncio.sleep(0.05)  # events reach the market data a moment after the commit (coalescing)
    c = await node.connect()  # no auth: public streams need none
    await c.command({"subscribe": {"market": "btcusd", "channels": ["ticker", "trades", "kline_1", "kline_10080"]}},
                    "subscribed")
    snap = await c.wait(lambda f: "trades" in f and f["trades"].get("snapshot"))
    assert [t["volume"] for t in snap["trades"]["trades"]] == ["0.25"]
    t0 = await c.wait(lambda f: "ticker" in f)
    assert t0["ticker"]["last"] == "30000.0" and t0["ticker"]["vol"] == "0.25" and t0["ticker"]["sell"] == "30000.0"
    await c.wait(lambda f: "kline" in f and f["kline"]["period"] == 10080)
    n = len(c.frames)
    await node.order(b, "buy", "0.5", "30000")
    tr = await c.wait(lambda f: "trades" in f, start=n)
    assert tr["trades"]["trades"][0]["price"] == "30000.0" and tr["trades"]["trades"][0]["taker_type"] == "buy"
    tk = await c.wait(lambda f: "ticker" in f, start=n)
    assert tk["ticker"]["vol"] == "0.75"
    k = await c.wait(lambda f: "kline" in f and f["kline"]["period"] == 1, start=n)
    assert k["kline"]["k"][1:] == [30000.0, 30000.0, 30000.0, 30000.0, 0.75]
    # unsubscribe stops the stream
    await c.command({"unsubscribe": {"market": "btcusd", "channels": ["trades", "ticker", "kline_1", "kline_10080"]}},
                    "unsubscribed")
    n = len(c.frames)
    await node.order(b, "buy", "0.1", "30000")
    await node.ex.quiesce()
    await asyncio.sleep(0.2)
    assert not [f for f in c.frames[n:] if {"trades", "ticker", "kline"} & set(f)]
    await c.close()


async def test_private_streams_and_peatio_frames(node: Node) -> None:
    a, ak, sk = await node.member("alice@example.com")
    b, bk, bs = await node.member("bob@example.com")
    legacy = await node.connect()
    assert (await legacy.auth(ak, sk)) == {"success": {"message": "Authenticated."}}
    modern = await node.connect()
    assert "success" in await modern.auth(ak, sk, legacy=False)
    await modern.command({"subscribe": {"channels": ["order", "trade", "account"]}}, "subscribed")
    await modern.wait(lambda f: "account" in f and f["account"]["currency"] == "usd")
    other = await node.connect()
    assert "success" in await other.auth(bk, bs, legacy=False)
    await other.command({"subscribe": {"channels": ["order"]}}, "subscribed")

    n_l, n_m = len(legacy.frames), len(modern.frames)
    sell = await node.order(a, "sell", "1", "30000")
    await node.order(b, "buy", "0.4", "30000")
    # Peatio's frames: the book of every market to every authenticated old client, own trades
    add = await legacy.wait(lambda f: "orderbook" in f, start=n_l)
    assert add["orderbook"] == {"action": "add", "order": {
        "id": sell["id"], "timestamp": add["orderbook"]["order"]["timestamp"], "type": "ask", "volume": "1.0",
        "price": "30000.0", "market": "btcusd", "ord_type": "limit"}}
    upd = await legacy.wait(lambda f: "orderbook" in f and f["orderbook"]["action"] == "update", start=n_l)
    assert upd["orderbook"]["order"]["volume"] == "0.6"
    trade = (await legacy.wait(lambda f: "trade" in f, start=n_l))["trade"]
    assert trade["side"] == "ask" and trade["volume"] == "0.4" and trade["funds"] == "12000.0"
    assert trade["ask"]["id"] == sell["id"] and trade["ask"]["remaining_volume"] == "0.6" and "bid" not in trade
    # our private channels
    o = await modern.wait(lambda f: "order" in f and f["order"]["executed_volume"] == "0.4", start=n_m)
    assert o["order"]["id"] == sell["id"] and o["order"]["state"] == "wait"
    assert (await modern.wait(lambda f: "trade" in f, start=n_m))["trade"]["id"] == trade["id"]
    usd = await modern.wait(lambda f: "account" in f and f["account"]["currency"] == "usd", start=n_m)
    assert Decimal(usd["account"]["balance"]) > Decimal("10000000")
    assert not [f for f in modern.frames if "orderbook" in f]  # legacy streams were declined
    # bob sees his own order only
    await other.wait(lambda f: "order" in f and f["order"]["side"] == "buy")
    assert not [f for f in other.frames if "order" in f and f["order"]["id"] == sell["id"]]
    await node.ex.cancel_order(a, sell["id"])
    rm = await legacy.wait(lambda f: "orderbook" in f and f["orderbook"]["action"] == "remove", start=n_l)
    assert rm["orderbook"]["order"]["id"] == sell["id"]
    for c in (legacy, modern, other):
        await c.close()


async def test_bad_input_gets_errors_and_other_clients_are_unaffected(node: Node) -> None:
    a, ak, sk = await node.member("bad@example.com")
    b = (await node.member("bystander@example.com"))[0]
    good = await node.connect()
    await good.command({"subscribe": {"market": "btcusd", "channels": ["trades"]}}, "subscribed")
    bad = await node.connect()
    errors = []
    for raw in ("not json", "[1, 2]", '{"a": 1, "b": 2}', '"auth"', "{}"):
        n = len(bad.frames)
        await bad.ws.send_str(raw)
        errors.append((await bad.wait(lambda f: "error" in f, start=n))["error"]["message"])
    assert errors[0] == "malformed JSON" and all("one key" in e for e in errors[1:])
    cases = [
        ({"launch": {}}, "unknown command"),
        ({"subscribe": {"market": "nosuch", "channels": ["ticker"]}}, "unknown market"),
        ({"subscribe": {"market": "btcusd", "channels": ["nosuch"]}}, "unknown channel"),
        ({"subscribe": {"market": "btcusd", "channels": []}}, "channels must be"),
        ({"subscribe": {"channels": ["depth"]}}, "needs a market"),
        ({"subscribe": {"channels": ["order"]}}, "needs authentication"),
        ({"subscribe": "btcusd"}, "expected"),
        ({"auth": {"access_key": ak, "answer": "00" * 32}}, "Authentication failed."),
        ({"auth": {"access_key": "nosuchkey", "answer": "x"}}, "Authentication failed."),
        ({"auth": "garbage"}, "Authentication failed."),
    ]
    for obj, expected in cases:
        assert expected in (await bad.command(obj, "error"))["message"], obj
    n = len(bad.frames)
    await bad.ws.send_bytes(b"\x00\x01")
    assert "binary" in (await bad.wait(lambda f: "error" in f, start=n))["error"]["message"]
    assert await bad.command({"ping": 7}, "pong") == 7  # still alive and answering
    n = len(good.frames)
    await node.order(a, "sell", "1", "30000")
    await node.order(b, "buy", "0.1", "30000")
    await good.wait(lambda f: "trades" in f and not f["trades"].get("snapshot"), start=n)
    # an oversized frame: an error frame, then a close with the reason
    await bad.ws.send_str(orjson.dumps({"ping": "x" * 10_000}).decode())
    await asyncio.wait_for(bad.closed.wait(), 10)
    assert bad.close_code == CLOSE_TOO_BIG
    assert any("too large" in f.get("error", {}).get("message", "") for f in bad.frames)
    # repeated wrong answers close the connection (1008); the bystander still gets trades
    guesser = await node.connect()
    for _ in range(node.hub.cfg.max_auth_failures):
        await guesser.send({"auth": {"access_key": ak, "answer": "ab" * 32}})
    await asyncio.wait_for(guesser.closed.wait(), 10)
    assert guesser.close_code == CLOSE_POLICY
    n = len(good.frames)
    await node.order(b, "buy", "0.2", "30000")
    await good.wait(lambda f: "trades" in f, start=n)
    assert not good.closed.is_set()
    await good.close()


async def test_idle_client_is_closed_and_a_live_one_is_kept(node: Node) -> None:
    hub = node.hub
    hub.cfg.tick, hub.cfg.ping_interval, hub.cfg.idle_timeout = 0.05, 0.1, 0.5
    silent = await node.connect(autoping=False)  # never answers pings
    alive = await node.connect()  # aiohttp answers pings by itself
    await asyncio.wait_for(silent.closed.wait(), 10)
    assert silent.close_code == CLOSE_IDLE
    assert not alive.closed.is_set() and hub.stats["idle"] >= 1
    assert await alive.command({"ping": 1}, "pong") == 1
    await alive.close()


class RawWs:
    """A bare websocket client on a socket with a tiny receive buffer, that reads only when told."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int) -> RawWs:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=4096)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write((f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(reader, writer)

    def send(self, obj: Any) -> None:
        payload = orjson.dumps(obj)
        mask = os.urandom(4)
        n = len(payload)
        head = bytes((0x81, 0x80 | n)) if n < 126 else struct.pack("!BBH", 0x81, 0xFE, n)
        self.writer.write(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    async def frame(self) -> tuple[int, bytes]:
        b0, b1 = await self.reader.readexactly(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", await self.reader.readexactly(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", await self.reader.readexactly(8))[0]
        return b0 & 0x0F, await self.reader.readexactly(n)


async def test_slow_client_is_dropped_without_slowing_anyone(node: Node) -> None:
    hub = node.hub
    hub.cfg.max_pending, hub.cfg.sndbuf = 64 * 1024, 16 * 1024
    a = (await node.member("slow-a@example.com"))[0]
    b = (await node.member("slow-b@example.com"))[0]
    for i in range(300):  # a deep book makes big snapshots
        await node.order(a, "sell", "0.01", str(31_000 + i))
    await node.ex.quiesce()
    fast = await node.connect()
    await fast.command({"subscribe": {"market": "btcusd", "channels": ["trades", "depth"]}}, "subscribed")
    slow = await RawWs.connect(node.server.port)
    assert (await slow.frame())[0] == 1  # the challenge; from now on it reads nothing
    for _ in range(400):  # each answer is a full snapshot: megabytes it never reads
        slow.send({"subscribe": {"market": "btcusd", "channels": ["depth"]}})
    await slow.writer.drain()
    n = len(fast.frames)
    for i in range(20):  # trading goes on at full speed, and the fast client follows
        await node.order(b, "buy", "0.01", str(31_000 + i))
    await fast.wait(lambda f: "trades" in f and f["trades"]["trades"][-1]["price"] == "31019.0", start=n)
    for _ in range(100):
        if hub.stats["dropped_slow"]:
            break
        await asyncio.sleep(0.05)
    assert hub.stats["dropped_slow"] == 1 and len(hub.clients) == 1
    # the slow client, reading at last, finds its data then the close frame with the reason
    while True:
        op, payload = await asyncio.wait_for(slow.frame(), 10)
        if op == 8:
            break
    assert struct.unpack("!H", payload[:2])[0] == CLOSE_SLOW and b"slow consumer" in payload
    slow.writer.close()
    book = await rebuilt(fast, node.ex.markets["btcusd"].book_seq)
    assert len(book.asks) == 280
    await fast.close()


async def test_shutdown_closes_clients_with_going_away(tmp_path: Path) -> None:
    ex = await start_exchange(config_with(f"sqlite:///{tmp_path}/exchange.db"))
    try:
        async with serve(ex, tmp_path) as node:
            c = await node.connect()
            await node.server.close()
            await asyncio.wait_for(c.closed.wait(), 10)
            assert c.close_code == 1001
    finally:
        await ex.stop()


async def test_too_many_clients_get_503(node: Node) -> None:
    node.hub.cfg.max_clients = 1
    c = await node.connect()
    with pytest.raises(aiohttp.WSServerHandshakeError) as e:
        await node.session.ws_connect(node.base + "/ws")
    assert e.value.status == 503
    await c.close()


async def test_a_revoked_key_ends_its_private_streams(node: Node) -> None:
    """Disabling a key (here, or on any node: the change comes through the store's feed) closes the
    websocket connections it authenticated; other members' connections stay."""
    from node.web.app import KEYS

    a, ak, sk = await node.member("alice@example.com")
    _, bk, bs = await node.member("bob@example.com")
    alice, bob = await node.connect(), await node.connect()
    assert "success" in await alice.auth(ak, sk, legacy=False)
    assert "success" in await bob.auth(bk, bs, legacy=False)
    await alice.command({"subscribe": {"channels": ["order"]}}, "subscribed")
    token_id = (await node.app[KEYS].list(a))[0]["id"]
    assert await node.app[KEYS].set_disabled(a, token_id, True)
    await node.ex.auth_changes.poll()  # what the feed does every second
    await asyncio.wait_for(alice.closed.wait(), 5)
    assert alice.close_code == CLOSE_POLICY
    assert any("revoked" in f.get("error", {}).get("message", "") for f in alice.frames)
    assert not bob.closed.is_set()
    await bob.close()


def test_a_page_session_counts_only_from_this_sites_pages() -> None:
    """Cross-site websocket hijacking: a browser sends the session cookie with a websocket opened by any
    site's page, so only an Origin that is this site lets `{"auth": "session"}` through."""
    from aiohttp.test_utils import make_mocked_request

    from node.web.ws import same_origin

    def ok(origin: str | None, host: str = "ex.example:8080", base_url: str = "") -> bool:
        headers = {"Host": host} | ({"Origin": origin} if origin is not None else {})
        return same_origin(make_mocked_request("GET", "/ws", headers=headers), base_url)

    assert ok("http://ex.example:8080") and ok("HTTP://EX.example:8080") and ok("https://ex.example:8080")
    for origin in (None, "null", "http://evil.example", "http://ex.example:8081", "http://ex.example:8080.evil.example",
                   "http://ex.example"):
        assert not ok(origin), origin
    assert not ok("http://ex.example:8080", host="")
    assert ok("https://exchange.example", base_url="https://exchange.example")  # behind a proxy that rewrites Host


async def test_notices_reach_their_member_only_and_old_news_is_not_replayed(node: Node) -> None:
    a, ak, sk = await node.member("alice@example.com")
    b, bk, bs = await node.member("bob@example.com")
    for _ in range(100):  # the notices of their first deposits are written: old news from now on
        if await node.ex.store.fetchval("SELECT COUNT(*) FROM notices") == 4:
            break
        await asyncio.sleep(0.1)
    alice, bob = await node.connect(), await node.connect()
    for c, k, s in ((alice, ak, sk), (bob, bk, bs)):
        assert "success" in await c.auth(k, s, legacy=False)
        await c.command({"subscribe": {"channels": ["notice"]}}, "subscribed")
    await node.ex.deposit(a, "btc", "0.5")
    n = (await alice.wait(lambda f: "notice" in f, timeout=15))["notice"]
    assert (n["kind"], n["state"]) == ("deposit", "accepted") and "0.5" in n["text"] and "credited" in n["text"], n
    assert [f["notice"]["id"] for f in alice.frames if "notice" in f] == [n["id"]]  # not the deposits before
    assert not [f for f in bob.frames if "notice" in f]
    other = await node.connect()  # a page that knew the notices up to an id gets what comes after it only
    assert "success" in await other.auth(ak, sk, legacy=False)
    await other.command({"subscribe": {"channels": ["notice"], "after": n["id"]}}, "subscribed")
    await node.ex.deposit(a, "usd", "7")
    m = (await other.wait(lambda f: "notice" in f, timeout=15))["notice"]
    assert m["id"] > n["id"] and "7" in m["text"]
    assert (await alice.wait(lambda f: "notice" in f and f["notice"]["id"] == m["id"], timeout=15))
    for c in (alice, bob, other):
        await c.close()


async def test_a_page_session_socket_ends_with_its_session(node: Node) -> None:
    """Log out everywhere (a password change) ends the private streams of the pages' sockets too."""
    from node.web.session import SESSIONS

    a, _, _ = await node.member("alice@example.com")
    sessions = node.app[SESSIONS]
    s = sessions.new("127.0.0.1")
    sessions.rotate(s, a, "alice@example.com")
    await sessions.save(s)
    node.hub.cfg.ping_interval = 0.5
    c = await node.connect(headers={"Origin": node.base, "Cookie": f"sid={s.key}"})
    assert await c.command({"auth": "session"}, "success") == {"message": "Authenticated."}
    await c.command({"subscribe": {"channels": ["order", "account", "notice"]}}, "subscribed")
    await asyncio.sleep(1.5)  # heartbeats pass: the session is alive
    assert not c.closed.is_set()
    await sessions.end_member_sessions(a)
    await c.wait(lambda f: f.get("error", {}).get("message") == "The page session has ended: log in again.", timeout=5)
    await asyncio.wait_for(c.closed.wait(), 5)
    assert c.close_code == CLOSE_POLICY
