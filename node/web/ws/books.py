"""Order books for websocket clients: depth snapshots and sequenced diffs, and the resting orders
behind Peatio's `orderbook` stream."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any

from node.actors.messages import QueryBook
from node.clock import now_ms
from node.errors import ExchangeError
from node.events import Event
from node.web.ws.client import Client, CommandError, Entries, Key
from node.web.ws.core import HubCore
from node.web.ws.frames import FULL_BOOK, DepthDiff, frame, legacy_order, levels_json

log = logging.getLogger(__name__)

HISTORY = 1024  # depth diffs kept per market, to bring a snapshot fetched from another node up to date
MIRROR_LIMIT = 100_000  # resting orders asked of another node per side, for Peatio's orderbook stream


class Books(HubCore):
    """Depth: a subscriber gets a snapshot (from the actor here, or asked of the owner) and then the
    diffs after it. A diff whose sequence is not the last plus one, or that comes from another actor
    instance (`book_id`: the owner restarted, the market moved), means every local book is stale:
    each subscriber gets a fresh snapshot marked `resync`. Peatio's `orderbook` stream works from a
    mirror of every market's resting orders, taken when its first subscriber comes and taken again
    (announcing the differences) after such a break."""

    def _market_followed(self, mid: str) -> bool:
        bus = self.ex.bus
        return mid in self.ex.markets or bus.followed(f"market.{mid}") or bus.followed("market.*")

    async def _followed(self, key: Key, on: bool) -> None:
        if key[0] == "orderbook":
            if on and ("orderbook",) in self.subs:
                await asyncio.gather(*(self._mirror(mid) for mid in self.ex.config.markets))
            elif not on and ("orderbook",) not in self.subs:
                self.resting.clear()
                self._mirroring.clear()
        if not on and key[0] in ("ticker", "trades", "kline", "depth", "orderbook"):
            for mid in ([key[1]] if len(key) > 1 else list(self.book_seq)):
                if not self._market_followed(mid):  # its diffs stop coming: what is kept goes stale
                    self.book_seq.pop(mid, None)
                    self.book_ids.pop(mid, None)
                    self.history.pop(mid, None)

    # -- Peatio's orderbook: resting orders --------------------------------------------------------
    async def _mirror(self, mid: str, announce: bool = False, tries: int = 5) -> None:
        """Take the resting orders of a market (from the actor here, or asked of its owner). Order
        events that come meanwhile win over the answer (an order they moved is left as they say).
        With `announce`, the differences from what was known go to the stream's subscribers."""
        if mid in self._mirroring:
            return  # already being asked for
        self._mirroring[mid] = set()
        self.resting.setdefault(mid, {})
        orders: list[Event] | None = None
        actor = self.ex.markets.get(mid)
        if actor is not None:
            orders = [actor.order_view(o) for side in ("buy", "sell") for o in actor.engine.orders(side)]
        else:
            for attempt in range(tries):
                try:
                    got = await self.ex.query(mid, QueryBook("resting", limit=MIRROR_LIMIT))
                    orders = list(got["orders"])
                    break
                except Exception as e:  # its node is not up yet: ask again a little later
                    if attempt == tries - 1:
                        log.warning("market %s: resting orders not known here (%r); Peatio's orderbook stream "
                                    "will only know the orders placed from now on", mid, e)
                    else:
                        await asyncio.sleep(2.0)
        touched = self._mirroring.pop(mid, set())
        known = self.resting.get(mid)
        if known is None or orders is None:
            return
        fresh = {o["id"]: o for o in orders}
        frames: list[bytes] = []
        m = self.ex.config.markets[mid]
        for oid, o in fresh.items():
            if oid in touched:
                continue
            before = known.get(oid)
            known[oid] = o
            if before is None or before["remaining"] != o["remaining"]:
                frames.append(frame({"orderbook": {"action": "add" if before is None else "update",
                                                   "order": legacy_order(m, o)}}))
        for oid in [oid for oid in known if oid not in fresh and oid not in touched]:
            frames.append(frame({"orderbook": {"action": "remove", "order": legacy_order(m, known.pop(oid))}}))
        legacy = self.subs.get(("orderbook",))
        if announce and frames and legacy:
            for c in list(legacy):
                c.send(b"".join(frames))

    def _resting(self, mid: str, ev: Event, in_book: bool) -> str | None:
        """Peatio's orderbook action for an order event: add, update, remove, or nothing (also while
        the stream has no subscriber: then no mirror is kept)."""
        known = self.resting.get(mid)
        if known is None:
            return None
        oid = ev["id"]
        touched = self._mirroring.get(mid)
        if touched is not None:
            touched.add(oid)  # moved by an event: not to be changed by the mirror's answer
        if in_book:
            before = known.get(oid)
            known[oid] = ev
            if before is None:
                return "add"
            return "update" if before["remaining"] != ev["remaining"] else None
        if known.pop(oid, None) is not None:
            return "remove"
        return None

    # -- depth: snapshots and diffs -----------------------------------------------------------------
    async def _depth_snapshot(self, c: Client, mid: str) -> None:
        """A full snapshot with its sequence number; later diffs continue from it exactly.

        Here the book is read in one synchronous step, so it matches `book_seq` (a batch caught half
        way is completed by its diff, which carries the final volume of every level it touched).
        A market run by another node is asked for a snapshot once its diffs come here; the diffs
        that passed meanwhile are replayed from the history."""
        c.depth_seq[mid] = FULL_BOOK * 8  # while the snapshot is on its way, skip every diff
        self._sub(c, ("depth", mid))
        await self._ready(("depth", mid))
        try:
            data, seq, book_id = await self._snapshot(mid, resync=False)
        except ExchangeError as e:
            self._unsub(c, ("depth", mid))
            raise CommandError(f"depth of {mid} is not available: {e.message}") from None
        if c.closing or ("depth", mid) not in c.subs:
            return
        self._deliver(c, mid, data, seq, book_id)

    async def _snapshot(self, mid: str, resync: bool) -> tuple[bytes, int, str | None]:
        m = self.ex.config.markets[mid]
        actor = self.ex.markets.get(mid)
        book_id: str | None
        if actor is not None:
            asks, bids = actor.engine.depth(FULL_BOOK)
            seq, book_id = actor.book_seq, actor.book_id
        else:
            snap = await self.ex.depth(mid, FULL_BOOK)
            asks, bids, seq, book_id = snap["asks"], snap["bids"], int(snap["seq"]), snap.get("book_id")
        body: dict[str, Any] = {"market": mid, "sequence": seq, "snapshot": True, "asks": levels_json(m, asks),
                                "bids": levels_json(m, bids), "at": now_ms()}
        if resync:
            body["resync"] = True
        return frame({"depth": body}), seq, book_id

    def _deliver(self, c: Client, mid: str, data: bytes, seq: int, book_id: str | None) -> None:
        """A snapshot, then the diffs of the same actor that came after it."""
        c.depth_seq[mid] = seq
        c.send(data)
        if book_id is not None and book_id != self.book_ids.get(mid, book_id):
            return  # the diffs kept are of another actor instance: the next diff is a break, seen then
        for diff in self.history.get(mid, ()):
            if diff.seq > seq:
                c.send(diff.data)
                c.depth_seq[mid] = diff.seq

    def _book(self, mid: str, book: Event, at: int, entries: Entries) -> None:
        seq = int(book["seq"])
        book_id = book.get("id")
        last = self.book_seq.get(mid)
        reset = last is not None and book_id != self.book_ids.get(mid)
        if last is not None and not reset and seq <= last:
            return  # already seen (a redelivered bridge event)
        if reset:
            self.history.pop(mid, None)
        self.book_seq[mid] = seq
        if isinstance(book_id, str):
            self.book_ids[mid] = book_id
        diff = DepthDiff(seq, self.ex.config.markets[mid], at, book["changes"])
        hist = self.history.get(mid)
        if hist is None:
            hist = self.history[mid] = deque(maxlen=HISTORY)
        hist.append(diff)
        if last is not None and (reset or seq != last + 1):
            # The market's actor restarted or moved, or batches were lost on the way: every local
            # book (depth subscribers', Peatio's mirror) is stale.
            self._break(mid, entries)
            return
        s = self.subs.get(("depth", mid))
        if s:
            entries.append((diff.data, s, mid, seq))

    def _break(self, mid: str, entries: Entries) -> None:
        subs = self.subs.get(("depth", mid))
        if subs:
            for c in subs:
                c.depth_seq[mid] = FULL_BOOK * 8  # no diff until its new snapshot
            if mid in self.ex.markets:
                self._resync_now(mid, subs, entries)
            else:
                self._spawn(self._resync(mid))
        if mid in self.resting:
            self._spawn(self._mirror(mid, announce=True))

    def _resync_now(self, mid: str, subs: dict[Client, None], entries: Entries) -> None:
        actor = self.ex.markets[mid]
        m = self.ex.config.markets[mid]
        asks, bids = actor.engine.depth(FULL_BOOK)
        seq = actor.book_seq
        data = frame({"depth": {"market": mid, "sequence": seq, "snapshot": True, "resync": True,
                                "asks": levels_json(m, asks), "bids": levels_json(m, bids), "at": now_ms()}})
        for c in subs:
            c.depth_seq[mid] = seq
        entries.append((data, subs, None, 0))

    async def _resync(self, mid: str, tries: int = 3) -> None:
        """A fresh snapshot from the owner for every depth subscriber of its market."""
        if mid in self._resyncing:
            return
        self._resyncing.add(mid)
        try:
            for attempt in range(tries):
                try:
                    data, seq, book_id = await self._snapshot(mid, resync=True)
                    break
                except ExchangeError as e:
                    if attempt == tries - 1:
                        log.warning("market %s: no depth snapshot for a resync (%s)", mid, e.message)
                        for c in list(self.subs.get(("depth", mid), ())):
                            c.send(frame({"error": {"message": f"depth of {mid} is not available: subscribe again"}}))
                            self._unsub(c, ("depth", mid))
                        return
                    await asyncio.sleep(1.0)
            for c in list(self.subs.get(("depth", mid), ())):
                self._deliver(c, mid, data, seq, book_id)
        finally:
            self._resyncing.discard(mid)
