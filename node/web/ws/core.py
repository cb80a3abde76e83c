"""The hub's state: clients, subscriptions, closing, and the background work they start."""

from __future__ import annotations

import asyncio
import logging
import struct
from collections import deque
from collections.abc import Coroutine
from typing import Any

from node.apikeys import ApiKeys
from node.events import Event
from node.exchange import Exchange
from node.marketdata import MarketData
from node.money import format_units
from node.notices import Notices
from node.web.edge import Quiet
from node.web.market_status import MarketStatus
from node.web.ws.client import Client, Key, WsConfig
from node.web.ws.frames import CLOSE_POLICY, DepthDiff, frame, ws_frame

log = logging.getLogger(__name__)

class HubCore:
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
        self.book_ids: dict[str, str] = {}  # market -> the actor instance its sequence comes from
        self.history: dict[str, deque[DepthDiff]] = {}  # market -> its latest depth diffs
        self.resting: dict[str, dict[int, Event]] = {}  # market -> order id -> order, while Peatio's orderbook is followed
        self.last_ticker: dict[str, tuple[Any, ...]] = {}
        self.last_kline: dict[tuple[str, int], tuple[int, ...]] = {}
        self.stats: dict[str, int] = {"connections": 0, "frames": 0, "writes": 0, "dropped_slow": 0, "idle": 0,
                                      "errors": 0, "drains": 0, "fanout_ns": 0}
        self._task: asyncio.Task[None] | None = None
        self._accounts_dirty: set[tuple[int, str]] = set()
        self._accounts_task: asyncio.Task[None] | None = None
        self._watch_tasks: set[asyncio.Task[None]] = set()
        self._mirroring: dict[str, set[int]] = {}  # market -> ids whose events came while its mirror was asked for
        self._following: dict[Key, asyncio.Task[None]] = {}  # the last (un)follow of each stream
        self._resyncing: set[str] = set()  # markets whose depth subscribers wait for a new snapshot
        self.status: MarketStatus | None = None
        self.notices: Notices | None = None
        self._notice_seen: set[int] = set()  # ids already pushed, among the newest NOTICE_MARGIN
        self._notice_task: asyncio.Task[None] | None = None
        self._sessions_task: asyncio.Task[None] | None = None

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

    def _watch(self, key: Key, on: bool) -> None:
        """The first subscriber of a stream has come (or the last has gone): follow what it needs
        (node/events.py), so that in a cluster this node receives those events only meanwhile."""
        before = self._following.get(key)
        task = self._spawn(self._follow(key, on, before))
        self._following[key] = task
        task.add_done_callback(lambda t: self._following.pop(key, None) if self._following.get(key) is t else None)

    async def _follow(self, key: Key, on: bool, before: asyncio.Task[None] | None) -> None:
        if before is not None:  # one stream's follows and unfollows run in order
            await asyncio.gather(before, return_exceptions=True)
        kind = key[0]
        try:
            if kind in ("ticker", "trades", "kline"):
                await (self.md.follow(key[1]) if on else self.md.unfollow(key[1]))
            elif kind == "depth":
                await (self.ex.bus.follow if on else self.ex.bus.unfollow)(f"market.{key[1]}")
            elif kind == "orderbook":
                await (self.ex.bus.follow if on else self.ex.bus.unfollow)("market.*")
            elif kind in ("order", "trade", "account"):
                await (self.ex.bus.follow if on else self.ex.bus.unfollow)(f"member.{int(key[1])}")
            else:
                return  # status and notices: every node has them (halts always bound, notices in the store)
        except Exception as e:
            log.warning("could not %s the events of %s: %r", "follow" if on else "drop", key, e)
        await self._followed(key, on)

    async def _followed(self, key: Key, on: bool) -> None:
        """After a stream's events started (or stopped) coming: what depends on it (books.py)."""

    async def _ready(self, key: Key, timeout: float = 10.0) -> None:
        """Wait until the stream's events come here (its follow is done), within `timeout`."""
        task = self._following.get(key)
        if task is not None:
            await asyncio.wait([task], timeout=timeout)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Background work of the hub (mirrors, bindings, re-checks), cancelled when it stops."""
        task = asyncio.get_running_loop().create_task(work)
        self._watch_tasks.add(task)
        task.add_done_callback(self._watch_tasks.discard)
        return task

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

    async def _send_accounts(self, c: Client) -> None:
        if c.member_id is None:
            return
        for a in await self.ex.accounts_of(c.member_id):
            c.send(self._account_frame(a))

    def _account_frame(self, a: Any) -> bytes:
        cur = self.ex.config.currencies[a["currency"]]
        return frame({"account": {"currency": a["currency"], "balance": format_units(int(a["balance"]), cur.precision),
                                  "locked": format_units(int(a["locked"]), cur.precision)}})

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


def _cut(transport: asyncio.Transport) -> None:
    """End of a close's grace: a connection still open, or still holding unsent data, is cut."""
    if not transport.is_closing() or transport.get_write_buffer_size():
        transport.abort()
