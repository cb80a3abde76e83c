"""Order books for websocket clients: depth snapshots and sequenced diffs, and the resting orders
behind Peatio's `orderbook` stream."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any

from node.clock import now_ms
from node.errors import ExchangeError
from node.events import Event
from node.web.format import price_str, volume_str
from node.web.ws.client import Client, CommandError, Entries
from node.web.ws.core import HubCore
from node.web.ws.frames import FULL_BOOK, frame, levels_json

log = logging.getLogger(__name__)

HISTORY = 1024  # depth diffs kept per market, to bring a snapshot fetched from another node up to date
MIRROR_LIMIT = 100_000  # resting orders asked of another node per side, for Peatio's orderbook stream


class Books(HubCore):
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

    def _book(self, mid: str, ev: Event, entries: Entries) -> None:
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

    def _resync(self, mid: str, subs: dict[Client, None], entries: Entries) -> None:
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
