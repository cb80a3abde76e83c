"""The websocket API at `/ws`: Peatio's protocol unchanged, plus public and private subscriptions.

Protocol (docs/websocket.md has the full description): every frame is a JSON object with one key.
On open the server sends `{"challenge": …}`; `{"auth": {"access_key", "answer"}}` authenticates as
in Peatio and, as Peatio did, starts the `orderbook` stream of every market and the member's own
`trade` frames. `subscribe` / `unsubscribe` add public channels per market (ticker, trades, depth
with a snapshot and sequenced diffs, k-lines) and private ones after auth (order, trade, account,
notice). The site's own pages authenticate with `{"auth": "session"}`: their log-in cookie, honoured
only when the handshake's Origin is this site (see `same_origin`).

How it stays fast and fair:

* The hub never sits in the matching path: it listens to the market data service, whose bus callback
  only enqueues. Each drain turns a batch of events into frames, **encodes each frame once** (JSON and
  the websocket header: server frames are unmasked, so the bytes are the same for every client) and
  writes, per client, the frames of that drain in one `transport.write` of shared bytes.
* Back-pressure is per client and bounded: what the kernel does not take stays in the transport's
  buffer; a client with more than `max_pending` bytes waiting is dropped with close code 4001 (the
  close frame is queued behind its data, and the connection is cut after `close_grace` seconds if it
  does not read that far). Nothing ever waits for a client, so a slow one cannot slow the others.
* Heartbeats: a ping every `ping_interval`; a client silent (no frame, no pong) for `idle_timeout`
  is closed with 4002. Frames above `max_frame` bytes are refused (1009) with a reason, and so is a
  client sending too many bad frames (1008). An unmasked client frame closes the connection with
  1002 (RFC 6455 §5.1; node/web/edge.py checks, aiohttp does not).
* Limits at the door: at most `max_per_ip` connections per client address (503 beyond); the
  handshake is an HTTP request, so the edge's header time limit and connection caps apply to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import time
from collections import deque
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from node.apikeys import ApiKeys, Token
from node.clock import now_ms
from node.config import Market
from node.errors import ExchangeError
from node.events import Event
from node.exchange import Exchange
from node.i18n import Translator, translator
from node.marketdata import PERIODS, Item, MarketData, Ticker
from node.money import format_units
from node.notices import Notices
from node.notices import text as notice_text
from node.web.edge import Quiet
from node.web.edge import WebSocketResponse as MaskedWebSocketResponse
from node.web.format import funds_str, iso, order_json, price_str, volume_str
from node.web.inputs import shown
from node.web.market_status import MarketStatus, Status
from node.web.session import SESSION_KEY, TRANSLATOR_KEY, Session, key_hash
from node.web.signature import generate_challenge, verify_ws_answer

log = logging.getLogger(__name__)

PATH = "/ws"
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_SLOW = 4001
CLOSE_IDLE = 4002
FULL_BOOK = 1 << 30
HISTORY = 1024  # depth diffs kept per market, to bring a snapshot fetched from another node up to date

MARKET_CHANNELS = ("ticker", "trades", "depth", "status")
PRIVATE_CHANNELS = ("order", "trade", "account", "orderbook", "notice")
MIRROR_LIMIT = 100_000  # resting orders asked of another node per side, for Peatio's orderbook stream
KLINE_CHANNELS = tuple(f"kline_{p}" for p in PERIODS)
CHANNEL_SCOPES = {"order": ("history", "trade"), "trade": ("history", "trade"), "account": ("profile", "history"),
                  "notice": ("profile", "history"), "orderbook": ()}
NOTICE_MARGIN = 200  # the newest notice ids read at each look: ids of other nodes may commit out of order

Key = tuple[Any, ...]
"""A subscription: ("ticker"|"trades"|"depth", market), ("kline", market, period), ("orderbook",),
or ("order"|"trade"|"account"|"notice", member_id)."""


@dataclass
class WsConfig:
    max_frame: int = 4096
    """Largest frame a client may send (commands are small)."""
    max_pending: int = 1 << 20
    """Bytes waiting in user space for one client before it is dropped as too slow."""
    close_grace: float = 5.0
    ping_interval: float = 20.0
    idle_timeout: float = 60.0
    max_clients: int = 20_000
    max_per_ip: int = 64
    """Open connections per client address (`[http] ws_max_per_ip`); more are answered 503."""
    max_subscriptions: int = 200
    max_errors: int = 50
    max_auth_failures: int = 5
    tick: float = 1.0
    """How often tickers (24 h window) and k-lines (period boundaries) are checked for changes."""
    sndbuf: int | None = None
    """SO_SNDBUF of each connection; None leaves it to the kernel's autotuning (up to megabytes),
    a small value makes a stalled client show up in `max_pending` sooner and caps kernel memory."""


# -- frames ---------------------------------------------------------------------------------------------
def ws_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """A complete, unmasked, unfragmented server frame (RFC 6455 §5.2)."""
    n = len(payload)
    if n < 126:
        return bytes((0x80 | opcode, n)) + payload
    if n < 65536:
        return struct.pack("!BBH", 0x80 | opcode, 126, n) + payload
    return struct.pack("!BBQ", 0x80 | opcode, 127, n) + payload


def frame(obj: Any) -> bytes:
    return ws_frame(orjson.dumps(obj))


PING = ws_frame(b"", 0x9)


def levels_json(m: Market, levels: Iterable[tuple[int, int]]) -> list[list[str]]:
    return [[price_str(m, p), volume_str(m, v)] for p, v in levels]


def ticker_body(m: Market, t: Ticker) -> dict[str, Any]:
    def p(v: int | None) -> str:
        return price_str(m, v) if v is not None else "0.0"

    return {"market": m.id, "at": t.at, "buy": p(t.buy), "sell": p(t.sell), "low": p(t.low), "high": p(t.high),
            "last": p(t.last), "open": p(t.open), "vol": volume_str(m, t.vol)}


def kline_row(m: Market, row: tuple[int, ...]) -> list[Any]:
    f = orjson.Fragment
    return [row[0], f(price_str(m, row[1])), f(price_str(m, row[2])), f(price_str(m, row[3])),
            f(price_str(m, row[4])), f(volume_str(m, row[5]))]


def public_trade(m: Market, ev: Event) -> dict[str, Any]:
    return {"id": ev["id"], "price": price_str(m, ev["price"]), "volume": volume_str(m, ev["volume"]),
            "funds": funds_str(m, ev["funds"]), "created_at": iso(ev["created_at"]), "at": ev["created_at"],
            "taker_type": ev["taker_side"]}


def legacy_order(m: Market, o: Event) -> dict[str, Any]:
    """An order in Peatio's `orderbook` frames (`volume` is what still rests)."""
    return {"id": o["id"], "timestamp": o["created_at"] // 1000, "type": "bid" if o["side"] == "buy" else "ask",
            "volume": volume_str(m, o["remaining"]), "price": price_str(m, o["price"]), "market": m.id,
            "ord_type": o["ord_type"]}


# -- clients --------------------------------------------------------------------------------------------
class Client:
    __slots__ = ("hub", "ws", "transport", "remote", "challenge", "token", "member_id", "subs", "depth_seq", "out",
                 "closing", "close_timer", "done", "last_seen", "unanswered", "errors", "auth_failures", "frames",
                 "session_member", "session_id", "translate", "notice_after")

    def __init__(self, hub: Hub, ws: web.WebSocketResponse, transport: asyncio.Transport, remote: str | None) -> None:
        self.hub = hub
        self.ws = ws
        self.transport = transport
        self.remote = remote
        self.challenge = generate_challenge()
        self.token: Token | None = None
        self.member_id: int | None = None
        self.subs: set[Key] = set()
        self.depth_seq: dict[str, int] = {}  # market -> sequence of the snapshot it got; older diffs skipped
        self.out: list[bytes] = []
        self.closing = False  # no more frames for it
        self.close_timer: asyncio.TimerHandle | None = None  # set once the hub has sent a close frame
        self.done = asyncio.Event()  # its handler has finished
        self.last_seen = time.monotonic()
        self.unanswered = 0  # pings sent since the client last sent anything
        self.errors = 0
        self.auth_failures = 0
        self.frames = 0
        self.session_member: int | None = None  # the page session's member, if its Origin is this site
        self.session_id: str | None = None  # that session's row, checked with every heartbeat
        self.translate: Translator | None = None  # the page's language, for notice texts
        self.notice_after = 0  # notices up to this id are old news to it

    def send(self, data: bytes) -> None:
        """Queue bytes on the socket, or drop the client if too much is already waiting."""
        if self.closing:
            return
        t = self.transport
        if t.is_closing():
            self.hub.forget(self)
            return
        if t.get_write_buffer_size() > self.hub.cfg.max_pending:
            self.hub.stats["dropped_slow"] += 1
            self.hub.close(self, CLOSE_SLOW, f"slow consumer: more than {self.hub.cfg.max_pending} bytes waiting")
            return
        t.write(data)


class CommandError(Exception):
    """A bad command: answered with an error frame, the connection stays open."""


# -- the hub --------------------------------------------------------------------------------------------
class Hub:
    def __init__(self, ex: Exchange, md: MarketData, keys: ApiKeys, cfg: WsConfig | None = None) -> None:
        self.ex = ex
        self.md = md
        self.keys = keys
        self.cfg = cfg or WsConfig()
        self.clients: dict[Client, None] = {}
        self.per_ip: dict[str | None, int] = {}
        self.quiet = Quiet()
        self.subs: dict[Key, dict[Client, None]] = {}
        self.book_seq: dict[str, int] = {}
        self.history: dict[str, deque[tuple[int, bytes]]] = {}
        self.resting: dict[str, dict[int, int]] = {}  # market -> order id -> remaining, for Peatio's orderbook frames
        self.last_ticker: dict[str, tuple[Any, ...]] = {}
        self.last_kline: dict[tuple[str, int], tuple[int, ...]] = {}
        self.stats: dict[str, int] = {"connections": 0, "frames": 0, "writes": 0, "dropped_slow": 0, "idle": 0,
                                      "errors": 0, "drains": 0, "fanout_ns": 0}
        self._task: asyncio.Task[None] | None = None
        self._accounts_dirty: set[tuple[int, str]] = set()
        self._accounts_task: asyncio.Task[None] | None = None
        self._watch_tasks: set[asyncio.Task[None]] = set()
        self._mirroring: dict[str, set[int]] = {}  # market -> ids that left the book while its mirror was asked for
        self.status: MarketStatus | None = None
        self.notices: Notices | None = None
        self._notice_seen: set[int] = set()  # ids already pushed, among the newest NOTICE_MARGIN
        self._notice_task: asyncio.Task[None] | None = None
        self._sessions_task: asyncio.Task[None] | None = None
        md.listeners.append(self.on_events)

    def follow_status(self, status: MarketStatus) -> None:
        """Halts and resumptions (with the admin's reason) go to the market's `status` subscribers."""
        self.status = status
        status.listeners.append(self._on_status)

    def follow_notices(self, notices: Notices) -> None:
        """After each look of the notices service, the new notices (credited deposits, withdrawal
        states, KYC decisions, written by whichever node saw them first) go to their members'
        `notice` subscribers here."""
        self.notices = notices
        notices.listeners.append(self._on_notices)

    def _on_notices(self) -> None:
        if any(k[0] == "notice" for k in self.subs) and (self._notice_task is None or self._notice_task.done()):
            self._notice_task = self._spawn(self._push_notices())

    async def _push_notices(self) -> None:
        """The newest notices of every member; each goes once to the member's subscribers that had not
        seen it yet (`notice_after`: what the page knew when it subscribed)."""
        rows = await self.ex.store.fetch(
            "SELECT * FROM notices WHERE id > (SELECT COALESCE(MAX(id), 0) FROM notices) - ? ORDER BY id", NOTICE_MARGIN)
        seen = self._notice_seen
        for n in rows:
            nid = int(n["id"])
            if nid in seen:
                continue
            seen.add(nid)
            subs = self.subs.get(("notice", int(n["member_id"])))
            for c in list(subs or ()):
                if nid > c.notice_after:
                    _ = c.translate or translator("en")
                    c.send(frame({"notice": {"id": nid, "kind": n["kind"], "state": str(n["state"]).split(":")[0],
                                             "text": notice_text(dict(n), _)}}))
        if rows:
            floor = int(rows[0]["id"])
            self._notice_seen = {i for i in seen if i >= floor}

    def _on_status(self, st: Status) -> None:
        subs = self.subs.get(("status", st.market))
        if subs:
            data = frame({"status": st.json()})
            for c in list(subs):
                c.send(data)

    # -- life cycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        for mid, actor in self.ex.markets.items():
            self.book_seq[mid] = actor.book_seq
            self.resting[mid] = {o.id: o.remaining for side in ("buy", "sell") for o in actor.engine.orders(side)}
        for mid in self.ex.refs:
            if mid not in self.ex.markets:  # run by another node: asked for its resting orders
                self._mirroring[mid] = set()
                self._spawn(self._mirror(mid))
        self._task = asyncio.create_task(self._ticker_loop(), name="ws-tick")

    async def _mirror(self, mid: str, tries: int = 5) -> None:
        """The resting orders of a market run by another node, asked once at start: without them,
        Peatio's `orderbook` stream here could not say `remove` for an order that was resting before
        this node started. Events that arrive meanwhile win over the answer (an order they took out
        of the book is not put back)."""
        sides: list[list[dict[str, Any]]] = []
        for attempt in range(tries):
            try:
                sides = [await self.ex.book_orders(mid, side, MIRROR_LIMIT) for side in ("buy", "sell")]
                break
            except Exception as e:  # its node is not up yet: ask again a little later
                if attempt == tries - 1:
                    log.warning("market %s: resting orders not known here (%r); Peatio's orderbook stream "
                                "will only know the orders placed from now on", mid, e)
                else:
                    await asyncio.sleep(2.0)
        gone = self._mirroring.pop(mid, set())
        known = self.resting.setdefault(mid, {})
        for orders in sides:
            for o in orders:
                if o["id"] not in gone:
                    known.setdefault(o["id"], o["remaining"])

    async def shutdown(self, app: web.Application | None = None) -> None:
        """Close every client with 1001 (aiohttp waits for open handlers at shutdown otherwise)."""
        clients = list(self.clients)
        for c in clients:
            self.close(c, CLOSE_GOING_AWAY, "server shutting down")
        waits = [asyncio.ensure_future(c.done.wait()) for c in clients]
        if waits:
            await asyncio.wait(waits, timeout=self.cfg.close_grace + 1)
            for w in waits:
                w.cancel()

    async def stop(self) -> None:
        task: asyncio.Task[None] | None
        for task in list(self._watch_tasks):  # mirrors being asked for, bindings being changed
            task.cancel()
        for task in (self._task, self._accounts_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        with contextlib.suppress(ValueError):
            self.md.listeners.remove(self.on_events)

    # -- clients and subscriptions ------------------------------------------------------------------
    def add(self, c: Client) -> None:
        self.clients[c] = None
        self.per_ip[c.remote] = self.per_ip.get(c.remote, 0) + 1
        self.stats["connections"] += 1

    def forget(self, c: Client) -> None:
        """Take a client out of every stream (it is closing or gone)."""
        c.closing = True
        if self.clients.pop(c, 0) is None:
            left = self.per_ip.get(c.remote, 1) - 1
            if left > 0:
                self.per_ip[c.remote] = left
            else:
                self.per_ip.pop(c.remote, None)
        for key in c.subs:
            subs = self.subs.get(key)
            if subs is not None:
                subs.pop(c, None)
                if not subs:
                    del self.subs[key]
                    self._watch(key, False)
        c.subs.clear()

    def close(self, c: Client, code: int, reason: str) -> None:
        """Close a client without waiting for it: the close frame goes after what is already queued
        (so a slow client learns why once it gets there) and the connection is cut if the client has
        not answered within `close_grace`. The handler keeps reading meanwhile: its answer completes
        the handshake, and a socket closed with unread input would be reset by the kernel, losing
        what the client has yet to read."""
        self.forget(c)
        if c.close_timer is not None or c.ws.closed or c.transport.is_closing():
            return
        c.transport.write(ws_frame(struct.pack("!H", code) + reason.encode()[:123], 0x8))
        c.close_timer = asyncio.get_running_loop().call_later(self.cfg.close_grace, _cut, c.transport)

    def _sub(self, c: Client, key: Key) -> None:
        if key not in c.subs:
            c.subs.add(key)
            first = key not in self.subs
            self.subs.setdefault(key, {})[c] = None
            if first:
                self._watch(key, True)

    def _unsub(self, c: Client, key: Key) -> None:
        c.subs.discard(key)
        subs = self.subs.get(key)
        if subs is not None:
            subs.pop(c, None)
            if not subs:
                del self.subs[key]
                self._watch(key, False)
        if key[0] == "depth":
            c.depth_seq.pop(key[1], None)

    def on_rights_change(self, member_id: int, access_key: str | None) -> None:
        """A key deleted or disabled, or a member's API switched off (node/auth_changes.py, on any
        node): the connections it authenticated are checked again and closed if it no longer works,
        so a revocation ends private streams too, not only new requests."""
        hit = [c for c in self.clients if c.token is not None and not c.closing
               and (c.token.access_key == access_key if access_key is not None else c.member_id == member_id)]
        if hit:
            self._spawn(self._recheck(hit))

    async def _recheck(self, clients: list[Client]) -> None:
        now = now_ms()
        for c in clients:
            if c.token is None or c.closing:
                continue
            token = await self.keys.find(c.token.access_key)
            if token is None or token.deleted or token.disabled or token.expired(now):
                c.send(frame({"error": {"message": "The access key was revoked or disabled."}}))
                self.close(c, CLOSE_POLICY, "access key revoked")

    def _watch(self, key: Key, on: bool) -> None:
        """In a cluster, a member's account events come from other nodes only while this node has an
        `account` stream of that member (they are the bulk of the events): the cluster link is told
        when the first subscriber comes and the last goes. Once events flow, the member's balances are
        sent afresh, so a change made while the node started listening is not missed."""
        if key[0] != "account":
            return
        member = int(key[1])
        if self.ex.link is None:
            return  # one node: every event is here already
        task = self._spawn(self.ex.watch_accounts(member, on))
        task.add_done_callback(lambda t: self._watched(member, on, t))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Background work of the hub (mirrors, bindings, re-checks), cancelled when it stops."""
        task = asyncio.get_running_loop().create_task(work)
        self._watch_tasks.add(task)
        task.add_done_callback(self._watch_tasks.discard)
        return task

    def _watched(self, member: int, on: bool, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        if task.exception() is not None:
            log.warning("could not %s the account events of member %d: %r", "follow" if on else "drop", member,
                        task.exception())
        if on and ("account", member) in self.subs:
            self._accounts_dirty.update((member, code) for code in self.ex.config.currencies)
            self._schedule_accounts()

    def _schedule_accounts(self) -> None:
        if self._accounts_dirty and (self._accounts_task is None or self._accounts_task.done()):
            self._accounts_task = asyncio.get_running_loop().create_task(self._refresh_accounts())

    def error(self, c: Client, message: str) -> None:
        """Peatio's error frame; a client that keeps sending garbage is eventually closed."""
        c.errors += 1
        self.stats["errors"] += 1
        c.send(frame({"error": {"message": message}}))
        if c.errors >= self.cfg.max_errors:
            self.close(c, CLOSE_POLICY, "too many bad frames")

    # -- commands -----------------------------------------------------------------------------------
    async def command(self, c: Client, text: str) -> None:
        try:
            obj = orjson.loads(text)
        except orjson.JSONDecodeError:
            self.error(c, "malformed JSON")
            return
        if not isinstance(obj, dict) or len(obj) != 1:
            self.error(c, "a frame must be a JSON object with exactly one key, the command")
            return
        ((cmd, arg),) = obj.items()
        try:
            if cmd == "auth":
                await self._auth(c, arg)
            elif cmd == "subscribe":
                await self._subscribe(c, arg)
            elif cmd == "unsubscribe":
                self._unsubscribe(c, arg)
            elif cmd == "ping":
                c.send(frame({"pong": arg}))
            else:
                raise CommandError(f"unknown command {str(cmd)[:40]!r} (auth, subscribe, unsubscribe, ping)")
        except CommandError as e:
            self.error(c, str(e))

    async def _auth(self, c: Client, arg: Any) -> None:
        if c.member_id is not None:
            raise CommandError("already authenticated")
        if arg == "session":
            # The page's own log in (its cookie came with the handshake, from a page of this site).
            if c.session_member is None:
                c.auth_failures += 1
                c.send(frame({"error": {"message": "No page session here: log in, or authenticate with an API key."}}))
                if c.auth_failures >= self.cfg.max_auth_failures:
                    self.close(c, CLOSE_POLICY, "too many failed authentications")
                return
            c.member_id = c.session_member
            c.send(frame({"success": {"message": "Authenticated."}}))
            return
        token: Token | None = None
        if isinstance(arg, dict):
            ak, answer = arg.get("access_key"), arg.get("answer")
            if isinstance(ak, str) and isinstance(answer, str) and 0 < len(ak) <= 64 and len(answer) <= 128:
                found = await self.keys.find(ak)
                now = now_ms()
                if (found is not None and not found.deleted and not found.disabled
                        and (found.expires_at is None or found.expires_at > now) and found.ip_allowed(c.remote)
                        and verify_ws_answer(found.secret_key, ak, c.challenge, answer)):
                    token = found
        if token is None:
            c.auth_failures += 1
            c.send(frame({"error": {"message": "Authentication failed."}}))
            if c.auth_failures >= self.cfg.max_auth_failures:
                self.close(c, CLOSE_POLICY, "too many failed authentications")
            return
        if c.closing:
            return
        c.token, c.member_id = token, token.member_id
        c.send(frame({"success": {"message": "Authenticated."}}))
        if not (isinstance(arg, dict) and arg.get("legacy") is False):
            # Peatio's streams for old clients: every market's book, and the member's own trades.
            self._sub(c, ("orderbook",))
            if _allowed(token, "trade"):
                self._sub(c, ("trade", token.member_id))

    def _keys(self, c: Client, arg: Any) -> tuple[str | None, list[str], list[Key]]:
        """Parse a (un)subscribe argument into subscription keys; all or nothing."""
        if not isinstance(arg, dict):
            raise CommandError('expected {"market": …, "channels": […]}')
        market = arg.get("market")
        channels = arg.get("channels")
        if isinstance(channels, str):
            channels = [channels]
        if not isinstance(channels, list) or not channels or len(channels) > 50 or not all(
                isinstance(ch, str) for ch in channels):
            raise CommandError("channels must be a list of channel names")
        if market is not None and (not isinstance(market, str) or market not in self.ex.config.markets):
            raise CommandError(f"unknown market {str(market)[:40]!r}")
        keys: list[Key] = []
        for ch in channels:
            if ch in MARKET_CHANNELS or ch in KLINE_CHANNELS:
                if market is None:
                    raise CommandError(f"channel {ch} needs a market")
                keys.append(("kline", market, int(ch[6:])) if ch.startswith("kline_") else (ch, market))
            elif ch in PRIVATE_CHANNELS:
                if c.member_id is None:
                    raise CommandError(f"channel {ch} needs authentication (send auth first)")
                if c.token is not None and not _allowed(c.token, ch):  # a page session may read all its own
                    raise CommandError(f"channel {ch} is out of the access key's scopes")
                keys.append(("orderbook",) if ch == "orderbook" else (ch, c.member_id))
            else:
                raise CommandError(f"unknown channel {ch[:40]!r} (ticker, trades, depth, status, kline_<minutes>, "
                                   "order, trade, account, notice, orderbook)")
        return market, channels, keys

    async def _subscribe(self, c: Client, arg: Any) -> None:
        market, channels, keys = self._keys(c, arg)
        if len(c.subs | set(keys)) > self.cfg.max_subscriptions:
            raise CommandError(f"too many subscriptions (at most {self.cfg.max_subscriptions})")
        c.send(frame({"subscribed": {"market": market, "channels": channels}}))
        for key in keys:
            if c.closing:
                return
            if key[0] == "depth":
                await self._depth_snapshot(c, key[1])
                continue
            if key[0] == "notice":
                after = arg.get("after") if isinstance(arg, dict) else None
                if not isinstance(after, int) or isinstance(after, bool) or after < 0:
                    after = int(await self.ex.store.fetchval(
                        "SELECT COALESCE(MAX(id), 0) FROM notices WHERE member_id = ?", key[1]) or 0)
                c.notice_after = after  # older news is not replayed
            self._sub(c, key)
            m = self.ex.config.markets[key[1]] if key[0] in ("ticker", "trades", "kline") else None
            if key[0] == "ticker" and m is not None:
                t = self.md.ticker_now(m.id)
                if t is not None:
                    c.send(frame({"ticker": ticker_body(m, t)}))
            elif key[0] == "trades" and m is not None:
                recent = [public_trade(m, ev) for ev in self.md.recent_trades(m.id)]
                c.send(frame({"trades": {"market": m.id, "trades": recent, "snapshot": True}}))
            elif key[0] == "kline" and m is not None:
                row = self.md.current_candle(m.id, key[2])
                if row is not None:
                    c.send(frame({"kline": {"market": m.id, "period": key[2], "k": kline_row(m, row)}}))
            elif key[0] == "status" and self.status is not None:
                c.send(frame({"status": self.status.get(key[1]).json()}))
            elif key[0] == "account":
                await self._send_accounts(c)

    async def _depth_snapshot(self, c: Client, mid: str) -> None:
        """A full snapshot with its sequence number; later diffs continue from it exactly.

        Here the book is read in one synchronous step, so it matches `book_seq` (a batch caught half
        way is completed by its diff, which carries the final volume of every level it touched).
        A market run by another node is asked for a snapshot; the diffs that passed meanwhile are
        replayed from the history."""
        m = self.ex.config.markets[mid]
        c.depth_seq[mid] = FULL_BOOK * 8  # while the snapshot is on its way, skip every diff
        self._sub(c, ("depth", mid))
        actor = self.ex.markets.get(mid)
        if actor is not None:
            asks, bids = actor.engine.depth(FULL_BOOK)
            seq = actor.book_seq
        else:
            try:
                snap = await self.ex.depth(mid, FULL_BOOK)
            except ExchangeError as e:
                self._unsub(c, ("depth", mid))
                raise CommandError(f"depth of {mid} is not available: {e.message}") from None
            asks, bids, seq = snap["asks"], snap["bids"], int(snap["seq"])
            if c.closing or ("depth", mid) not in c.subs:
                return
        c.depth_seq[mid] = seq
        c.send(frame({"depth": {"market": mid, "sequence": seq, "snapshot": True, "asks": levels_json(m, asks),
                                "bids": levels_json(m, bids), "at": now_ms()}}))
        for s, data in self.history.get(mid, ()):
            if s > seq:
                c.send(data)
                c.depth_seq[mid] = s

    def _unsubscribe(self, c: Client, arg: Any) -> None:
        market, channels, keys = self._keys(c, arg)
        for key in keys:
            self._unsub(c, key)
        c.send(frame({"unsubscribed": {"market": market, "channels": channels}}))

    async def _send_accounts(self, c: Client) -> None:
        if c.member_id is None:
            return
        for a in await self.ex.accounts_of(c.member_id):
            c.send(self._account_frame(a))

    def _account_frame(self, a: Any) -> bytes:
        cur = self.ex.config.currencies[a["currency"]]
        return frame({"account": {"currency": a["currency"], "balance": format_units(int(a["balance"]), cur.precision),
                                  "locked": format_units(int(a["locked"]), cur.precision)}})

    # -- events -> frames ---------------------------------------------------------------------------
    def on_events(self, items: list[Item]) -> None:
        """Called by the market data service after each drain (synchronously: nothing here awaits)."""
        self.stats["drains"] += 1
        subs = self.subs
        markets = self.ex.config.markets
        entries: list[tuple[bytes, dict[Client, None], str | None, int]] = []
        trades: dict[str, list[Event]] = {}
        touched: set[str] = set()
        run: list[Event] = []  # consecutive trades of one market (one actor batch): one `trades` frame
        orders = {ev["id"]: ev for kind, ev, _ in items if kind == "order"}
        legacy = subs.get(("orderbook",))
        for kind, ev, in_book in items:
            if run and (kind != "trade" or ev["market"] != run[0]["market"]):
                self._trades(run, entries)
                run = []
            if kind == "trade":
                mid = ev["market"]
                run.append(ev)
                trades.setdefault(mid, []).append(ev)
                touched.add(mid)
                for member in {ev["ask_member_id"], ev["bid_member_id"]}:
                    s = subs.get(("trade", member))
                    if s:
                        entries.append((frame({"trade": self._legacy_trade(markets[mid], ev, member, orders)}), s, None, 0))
            elif kind == "book":
                mid = ev["market"]
                touched.add(mid)
                self._book(mid, ev, entries)
            elif kind == "order":
                m = markets.get(ev["market"])
                if m is None:
                    continue
                action = self._resting(m.id, ev, in_book)
                if action is not None and legacy:
                    entries.append((frame({"orderbook": {"action": action, "order": legacy_order(m, ev)}}), legacy, None, 0))
                s = subs.get(("order", ev["member_id"]))
                if s:
                    entries.append((frame({"order": order_json(m, ev)}), s, None, 0))
                if ("account", ev["member_id"]) in subs:
                    self._accounts_dirty.add((ev["member_id"], m.quote.code if ev["side"] == "buy" else m.base.code))
            elif kind == "account":
                if ("account", ev["member_id"]) in subs:
                    self._accounts_dirty.add((ev["member_id"], ev["currency"]))
        if run:
            self._trades(run, entries)
        for mid in touched:
            self._ticker(mid, entries)
            if mid in trades:
                for p in PERIODS:
                    if ("kline", mid, p) in subs:
                        self._kline(mid, p, entries)
        if entries:
            t0 = time.perf_counter_ns()
            self._fanout(entries)
            self.stats["fanout_ns"] += time.perf_counter_ns() - t0
        self._schedule_accounts()

    def _trades(self, run: list[Event], entries: list[tuple[bytes, dict[Client, None], str | None, int]]) -> None:
        mid = run[0]["market"]
        s = self.subs.get(("trades", mid))
        if s:
            m = self.ex.config.markets[mid]
            entries.append((frame({"trades": {"market": mid, "trades": [public_trade(m, e) for e in run]}}), s, None, 0))

    def _book(self, mid: str, ev: Event, entries: list[tuple[bytes, dict[Client, None], str | None, int]]) -> None:
        seq = int(ev["seq"])
        last = self.book_seq.get(mid)
        if last is not None and seq <= last:
            return  # already seen (a redelivered bridge event)
        self.book_seq[mid] = seq
        m = self.ex.config.markets[mid]
        asks: list[list[str]] = []
        bids: list[list[str]] = []
        for side, price, vol in ev["changes"]:
            (bids if side == "buy" else asks).append([price_str(m, price), volume_str(m, vol)])
        data = frame({"depth": {"market": mid, "sequence": seq, "asks": asks, "bids": bids, "at": ev["at"]}})
        hist = self.history.get(mid)
        if hist is None:
            hist = self.history[mid] = deque(maxlen=HISTORY)
        hist.append((seq, data))
        s = self.subs.get(("depth", mid))
        if not s:
            return
        if last is not None and seq != last + 1:
            # The market's actor restarted (or bridged events were lost): every local book is stale.
            self._resync(mid, s, entries)
            return
        entries.append((data, s, mid, seq))

    def _resync(self, mid: str, subs: dict[Client, None], entries: list[tuple[bytes, dict[Client, None], str | None, int]]) -> None:
        actor = self.ex.markets.get(mid)
        if actor is None:
            # Another node's market: ask each client to resubscribe through a gap it can see.
            return
        m = self.ex.config.markets[mid]
        asks, bids = actor.engine.depth(FULL_BOOK)
        seq = actor.book_seq
        data = frame({"depth": {"market": mid, "sequence": seq, "snapshot": True, "asks": levels_json(m, asks),
                                "bids": levels_json(m, bids), "at": now_ms()}})
        for c in subs:
            c.depth_seq[mid] = seq
        entries.append((data, subs, None, 0))

    def _resting(self, mid: str, ev: Event, in_book: bool) -> str | None:
        """Peatio's orderbook action for an order event: add, update, remove, or nothing."""
        known = self.resting.setdefault(mid, {})
        oid = ev["id"]
        gone = self._mirroring.get(mid)
        if gone is not None and not in_book:
            gone.add(oid)  # out of the book: not to be put back by the mirror's answer
        if in_book:
            before = known.get(oid)
            known[oid] = ev["remaining"]
            if before is None:
                return "add"
            return "update" if before != ev["remaining"] else None
        if known.pop(oid, None) is not None:
            return "remove"
        return None

    def _legacy_trade(self, m: Market, ev: Event, member: int, orders: dict[int, Event]) -> dict[str, Any]:
        """Peatio's `trade` frame: side ask/bid/both, and only the member's own order(s) attached."""
        ask_mine = ev["ask_member_id"] == member
        bid_mine = ev["bid_member_id"] == member
        out: dict[str, Any] = {
            "id": ev["id"], "price": price_str(m, ev["price"]), "volume": volume_str(m, ev["volume"]),
            "funds": funds_str(m, ev["funds"]), "market": m.id, "created_at": iso(ev["created_at"]),
            "side": "both" if ask_mine and bid_mine else ("ask" if ask_mine else "bid"),
        }
        for mine, key in ((ask_mine, "ask"), (bid_mine, "bid")):
            o = orders.get(ev[f"{key}_id"]) if mine else None
            if o is not None:
                out[key] = order_json(m, o)
        return out

    def _ticker(self, mid: str, entries: list[tuple[bytes, dict[Client, None], str | None, int]]) -> None:
        s = self.subs.get(("ticker", mid))
        if not s:
            return
        t = self.md.ticker_now(mid)
        if t is None:
            return
        sig = (t.buy, t.sell, t.low, t.high, t.last, t.open, t.vol)
        if self.last_ticker.get(mid) == sig:
            return
        self.last_ticker[mid] = sig
        entries.append((frame({"ticker": ticker_body(self.ex.config.markets[mid], t)}), s, None, 0))

    def _kline(self, mid: str, period: int, entries: list[tuple[bytes, dict[Client, None], str | None, int]]) -> None:
        s = self.subs.get(("kline", mid, period))
        row = self.md.current_candle(mid, period)
        if not s or row is None or self.last_kline.get((mid, period)) == row:
            return
        self.last_kline[(mid, period)] = row
        m = self.ex.config.markets[mid]
        entries.append((frame({"kline": {"market": mid, "period": period, "k": kline_row(m, row)}}), s, None, 0))

    def _fanout(self, entries: list[tuple[bytes, dict[Client, None], str | None, int]]) -> None:
        """Each client gets its frames of this drain in one write; clients with the same frames share
        the joined bytes (with one subscription set, that is one join for everyone)."""
        if len(entries) == 1 and entries[0][2] is None:  # the common case at low rates: one frame for all
            data, subs = entries[0][0], entries[0][1]
            clients = list(subs)  # a send may drop a client, which edits `subs`
            for c in clients:
                c.frames += 1
                c.send(data)
            self.stats["frames"] += len(clients)
            self.stats["writes"] += len(clients)
            return
        touched: list[Client] = []
        for data, subs, market, seq in entries:
            if market is None:
                for c in subs:
                    if not c.out:
                        touched.append(c)
                    c.out.append(data)
            else:
                for c in subs:
                    if c.depth_seq.get(market, 0) >= seq:
                        continue  # its snapshot already has this diff
                    if not c.out:
                        touched.append(c)
                    c.out.append(data)
        joined: dict[tuple[int, ...], bytes] = {}
        frames = 0
        for c in touched:
            out = c.out
            c.out = []
            if len(out) == 1:
                data = out[0]
            else:
                key = tuple(map(id, out))
                got = joined.get(key)
                if got is None:
                    got = joined[key] = b"".join(out)
                data = got
            frames += len(out)
            c.frames += len(out)
            c.send(data)
        self.stats["frames"] += frames
        self.stats["writes"] += len(touched)

    async def _refresh_accounts(self) -> None:
        """Absolute balances (Peatio's `account` frames) of the members whose accounts changed."""
        while self._accounts_dirty:
            dirty, self._accounts_dirty = self._accounts_dirty, set()
            members: dict[int, set[str]] = {}
            for member, cur in dirty:
                members.setdefault(member, set()).add(cur)
            for member, curs in members.items():
                s = self.subs.get(("account", member))
                if not s:
                    continue
                try:
                    rows = await self.ex.accounts_of(member)
                except Exception:
                    log.exception("could not read the accounts of member %d", member)
                    continue
                for a in rows:
                    if a["currency"] in curs:
                        data = self._account_frame(a)
                        for c in list(s):
                            c.send(data)

    # -- periodic: tickers, k-line boundaries, heartbeats ------------------------------------------
    async def _ticker_loop(self) -> None:
        last_ping = time.monotonic()
        while True:
            await asyncio.sleep(self.cfg.tick)
            try:
                entries: list[tuple[bytes, dict[Client, None], str | None, int]] = []
                for key in list(self.subs):
                    if key[0] == "ticker":
                        self._ticker(key[1], entries)
                    elif key[0] == "kline":
                        self._kline(key[1], key[2], entries)
                if entries:
                    self._fanout(entries)
                now = time.monotonic()
                if now - last_ping >= self.cfg.ping_interval:
                    last_ping = now
                    self._heartbeat(now)
                    if self._sessions_task is None or self._sessions_task.done():
                        self._sessions_task = self._spawn(self._check_sessions())
            except Exception:
                log.exception("websocket periodic work failed")

    async def _check_sessions(self) -> None:
        """A page session that ended (log out, a password change that logs out everywhere, expiry)
        ends the private streams it opened: one query per `ping_interval` for all such clients."""
        clients = [c for c in self.clients if c.session_id is not None and c.member_id is not None and not c.closing]
        ids = sorted({c.session_id for c in clients if c.session_id is not None})
        live: set[str] = set()
        try:
            for i in range(0, len(ids), 500):
                chunk = ids[i:i + 500]
                rows = await self.ex.store.fetch(
                    f"SELECT id FROM web_sessions WHERE expires_at > ? AND id IN ({', '.join('?' * len(chunk))})",
                    now_ms(), *chunk)
                live.update(str(r["id"]) for r in rows)
        except Exception as e:  # the store is away for a moment: next round
            log.warning("could not check the page sessions of websocket clients: %r", e)
            return
        for c in clients:
            if c.session_id not in live and not c.closing:
                c.send(frame({"error": {"message": "The page session has ended: log in again."}}))
                self.close(c, CLOSE_POLICY, "session ended")

    def _heartbeat(self, now: float) -> None:
        """Ping everyone; close those that were pinged and stayed silent for `idle_timeout`."""
        for c in list(self.clients):
            if c.unanswered and now - c.last_seen > self.cfg.idle_timeout:
                self.stats["idle"] += 1
                self.close(c, CLOSE_IDLE, f"idle timeout: nothing received for {self.cfg.idle_timeout:g} s")
            else:
                c.unanswered += 1
                c.send(PING)


def _cut(transport: asyncio.Transport) -> None:
    """End of a close's grace: a connection still open, or still holding unsent data, is cut."""
    if not transport.is_closing() or transport.get_write_buffer_size():
        transport.abort()


def same_origin(request: web.Request, base_url: str = "") -> bool:
    """The handshake came from a page of this site. Browsers send the page's session cookie with a
    websocket to any site's page (there is no CORS for websockets), so a session is only honoured
    when the `Origin` is the address the browser reached this node at (its Host, with the scheme of
    this connection or, behind a TLS-terminating proxy, the configured public address)."""
    origin = request.headers.get("Origin")
    if not origin or origin == "null":
        return False
    host = request.headers.get("Host", "")
    allowed = {f"{request.scheme}://{host}".lower()}
    if request.scheme == "http":
        allowed.add(f"https://{host}".lower())  # TLS ended at a proxy in front of the node
    if base_url:
        parts = base_url.split("/")
        if len(parts) >= 3:
            allowed.add(f"{parts[0]}//{parts[2]}".lower())
    return bool(host) and origin.lower() in allowed


def _allowed(token: Token, channel: str) -> bool:
    scopes = CHANNEL_SCOPES.get(channel, ())
    return not scopes or any(token.allows(s) for s in scopes)


HUB = web.AppKey("ws_hub", Hub)


async def handle(request: web.Request) -> web.StreamResponse:
    """One websocket connection: read commands until the client goes; all writing is the hub's."""
    hub = request.app[HUB]
    cfg = hub.cfg
    if len(hub.clients) >= cfg.max_clients:
        return web.Response(status=503, text="too many websocket clients, try again later")
    if hub.per_ip.get(request.remote, 0) >= cfg.max_per_ip:
        hub.quiet.warn(log, "refused a websocket from %s: %d open from this address", shown(request.remote or ""),
                       cfg.max_per_ip)
        return web.Response(status=503, text="too many websocket connections from this address, try again later")
    ws = MaskedWebSocketResponse(autoping=False, autoclose=True, compress=False, timeout=cfg.close_grace,
                               max_msg_size=max(cfg.max_frame * 16, 65536))
    await ws.prepare(request)
    transport = request.transport
    if transport is None:
        return ws
    if cfg.sndbuf is not None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, cfg.sndbuf)
    c = Client(hub, ws, transport, request.remote)
    session = request.get(SESSION_KEY)
    if isinstance(session, Session) and session.member_id is not None and same_origin(request, hub.ex.config.mail.base_url):
        c.session_member = session.member_id
        c.session_id = key_hash(session.key)
    translate = request.get(TRANSLATOR_KEY)
    c.translate = translate if isinstance(translate, Translator) else None
    hub.add(c)
    c.send(frame({"challenge": c.challenge}))
    try:
        # Read until the connection closes; once the hub has started closing it (slow, idle, bad
        # input), frames still arriving are ignored while the close handshake completes.
        while True:
            msg = await ws.receive()
            c.last_seen = time.monotonic()
            c.unanswered = 0
            t = msg.type
            if c.closing and t in (WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.PING, WSMsgType.PONG):
                continue
            if t is WSMsgType.TEXT:
                data = msg.data
                if len(data) > cfg.max_frame // 4 and len(data.encode()) > cfg.max_frame:
                    reason = f"frame too large: more than {cfg.max_frame} bytes"
                    c.send(frame({"error": {"message": reason}}))
                    hub.close(c, CLOSE_TOO_BIG, reason)
                    continue
                await hub.command(c, data)
            elif t is WSMsgType.BINARY:
                hub.error(c, "binary frames are not supported: send JSON text")
            elif t is WSMsgType.PING:
                c.send(ws_frame(msg.data, 0xA))
            elif t is WSMsgType.PONG:
                pass
            else:  # CLOSE, CLOSING, CLOSED, ERROR (aiohttp has answered or closed already)
                break
    finally:
        hub.forget(c)
        c.done.set()
    return ws


def setup(app: web.Application, hub: Hub) -> None:
    """The hub's route; it is started and stopped with the app, after the market data service."""
    exchange = hub.ex
    app[HUB] = hub

    async def lifecycle(app: web.Application):  # type: ignore[no-untyped-def]
        await hub.start()
        exchange.auth_changes.listeners.append(hub.on_rights_change)
        yield
        with contextlib.suppress(ValueError):
            exchange.auth_changes.listeners.remove(hub.on_rights_change)
        await hub.stop()

    app.cleanup_ctx.append(lifecycle)
    app.on_shutdown.append(hub.shutdown)
    app.router.add_get(PATH, handle)
