"""The market actor: one per market in the whole cluster, owner of its order book.

It feeds accepted orders and cancels through the pure engine (`node.market`), then writes a batch's
trades, order updates, settlement deltas and ledger rows in one transaction, and only then answers
and publishes events. Settlement deltas of members whose account shard this process does not own
are written as settlement rows instead, which the shard's owner applies (node/actors/shards.py). On start (and after a crash) it rebuilds the book from the store: resting
orders by sequence, then the `pending` ones (accepted, locked, never matched) in acceptance order.

Exactly once is decided by the store, in the batch's own transaction (docs/exactly-once.md):
- the state row is written `WHERE epoch = <this actor's lease epoch>`: a deposed owner's batch
  changes nothing (`Fenced`), and the actor stops for good;
- every order the batch took in is claimed with `… WHERE state = 'pending'`: if one was already
  taken by another copy (the sweep, a redelivery, a recovery elsewhere), the whole batch rolls back
  (`ClaimLost`) and the actor rebuilds from the store, where that order is no longer pending.
Copies are also dropped before matching when memory or the store already says they were taken, so
a claim is lost only in races that the store alone can settle.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import secrets
from collections.abc import Awaitable, Callable, Sequence
from itertools import islice
from typing import Any

from node.actors import shards
from node.actors.market_events import batch_events
from node.actors.market_rows import (
    FINISHED_MEMORY,
    ORDERS_UPDATE_BULK,
    RECOVER_SQL,
    STATE_UPDATE_FENCED_PG,
    STATE_UPDATE_SQL,
    SWEEP_AFTER_MS,
    TAKEN_MEMORY,
    TRADES_BULK,
    created_at_of,
    intake_of,
    live_of,
    new_order_from_row,
    origin_locked_of,
    rests,
)
from node.actors.messages import CancelAll, CancelOrder, NewOrder, QueryBook, SetFees, SetHalted
from node.actors.runtime import SweepingActor
from node.clock import now_ms
from node.config import FEE_SCALE, Market
from node.errors import (
    CancelOrderFailed,
    ClaimLost,
    ExchangeError,
    Fenced,
    InvalidParameter,
    OrderNotFound,
    ShardMoved,
)
from node.events import EventBus
from node.fees import rates_from
from node.market import (
    MARKET,
    Engine,
    EngineError,
    Loader,
    Order,
    Trade,
)
from node.market.settlement import (
    ORDER_CANCEL,
    ORDER_FULFILLED,
    Effects,
    release,
    settle_trade,
)
from node.store import IdAllocator, Store, ledger
from node.tuning import thaw_startup_objects

log = logging.getLogger(__name__)

class MarketActor(SweepingActor[Any]):
    def __init__(self, market: Market, store: Store, bus: EventBus, fee_member: int, *, epoch: int = 0,
                 verify_intake: bool = False, sweep_after_ms: int = SWEEP_AFTER_MS,
                 shard_map: shards.ShardMap | None = None,
                 settle_out: Callable[[dict[int, list[int]]], None] | None = None, **kw: Any) -> None:
        super().__init__(sweep_after_ms=sweep_after_ms, **kw)
        # Members' accounts of shards this process does not own are settled through the outbox
        # (node/actors/shards.py): `settle_out` tells their owners after the commit.
        self.shard_map = shard_map
        self.settle_out = settle_out
        self.settlement_ids = IdAllocator(store, "settlements")
        self.epoch = epoch  # the lease epoch this actor writes under (see the module docstring)
        # Check unknown orders in the store before matching them: where copies can come from a
        # durable queue (a cluster), or after a claim was lost once.
        self.verify_intake = verify_intake
        self.taken: dict[int, None] = {}  # orders the store confirmed as taken in (committed claims)
        self.inbox: set[int] = set()  # new orders now in the mailbox: the sweep never sends them again
        self.next_intake = 1
        self.claims_lost = 0
        self.duplicates_dropped = 0
        self.intake_reads = 0  # batches whose new orders the store was asked about (`_intake_plan`)
        self.name = f"market:{market.id}"
        self.market = market
        self.store = store
        self.bus = bus
        self.fee_member = fee_member
        self.trade_ids = IdAllocator(store, "trades")
        self.engine = Engine(market.id, stp=market.self_trade)
        self.live: dict[int, int] = {}  # order id -> live_of(…), for every order in the engine or in flight
        self.finished: dict[int, tuple[int, str]] = {}  # recently finished orders: (member, state)
        self.halted = False
        self._halted_published = False
        self.fees = (market.maker_fee, market.taker_fee)  # (maker, taker) in force, units of 1e-8
        self.book_seq = 0  # sequence of depth diffs, for websocket clients keeping a local book
        self.book_id = secrets.token_hex(4)  # this actor's sequence: a new one (a restart, a move) is a reset
        self.trades_total = 0

    # -- recovery ---------------------------------------------------------------------------------
    async def recover(self) -> None:
        m = self.market
        self.trade_ids.reset()
        self.settlement_ids.reset()
        async with self.store.transaction() as tx:
            await tx.execute(
                "INSERT INTO markets_state (market, next_seq, updated_at) VALUES (?, 1, ?) ON CONFLICT (market) DO NOTHING",
                m.id,
                now_ms(),
            )
            st = await tx.fetchrow("SELECT * FROM markets_state WHERE market = ?", m.id)
        assert st is not None
        if int(st["epoch"]) != self.epoch:
            raise Fenced(f"{self.name}: the market's epoch is {st['epoch']}, this actor's {self.epoch}")
        self.next_intake = int(st["next_intake"])
        engine = Engine(m.id, stp=m.self_trade, next_seq=int(st["next_seq"]))
        engine.last_price = None if st["last_price"] is None else int(st["last_price"])
        self.halted = bool(st["halted"])
        self.fees = rates_from(st, m)
        # The book is read in pages of plain tuples and built as they come (node/market/recovery.py):
        # a million stored rows never exist at once beside the book they make. The loader makes
        # each order's `live` record from the row's last three columns (live_of's packing).
        live: dict[int, int] = {}
        loader = Loader(engine)
        resting = 0
        # No cyclic collection until the book is built: between pages, young collections would
        # scan the orders just made, and again as they age.
        # Other actors run meanwhile without it too; the pause ends however the recovery does.
        collecting = gc.isenabled()
        gc.disable()
        try:
            async for page in self.store.pages(RECOVER_SQL, m.id):
                loader.add_coded(page, live)
                resting += len(page)
            loader.install()
        finally:
            if collecting:
                gc.enable()
        self.live = live
        if len(self.engine):  # a book this actor rebuilds: the old one may have been frozen at start
            thaw_startup_objects()
        self.engine = engine
        self.book_seq += 1  # any client's local book is stale now: a gap forces a new snapshot
        self.finished = {}
        pending = await self.store.fetch(
            "SELECT * FROM orders WHERE market = ? AND state = 'pending' ORDER BY created_at, id", m.id)
        if pending:
            log.info("%s: matching %d pending orders after restart", self.name, len(pending))
            for i in range(0, len(pending), self.max_batch):
                await self.handle_batch([new_order_from_row(r) for r in pending[i:i + self.max_batch]])
        log.info("%s: book rebuilt with %d resting orders", self.name, resting)

    # -- the batch --------------------------------------------------------------------------------
    pipelined = True

    async def prepare_batch(self, batch: Sequence[Any]) -> tuple[list[Any], Callable[[], Awaitable[None]] | None]:
        """Match the batch in memory and snapshot every row it must write (the next batch may move
        the same orders on before this one is written)."""
        engine = self.engine
        results: list[Any] = []
        touched: dict[int, Order] = {}
        trades: list[Trade] = []
        claims: list[int] = []  # orders taken in by this batch: claimed in its transaction
        state_changed = False  # halted flag or fees: the market's state row must be written
        stale, before = await self._intake_plan(batch)
        for msg in batch:
            try:
                if isinstance(msg, NewOrder):
                    self.inbox.discard(msg.id)
                    for older in before.get(msg.id, ()):  # accepted earlier, not here yet: first
                        if not self._known(older.id):
                            claims.append(older.id)
                            self._submit(older, touched, trades)
                    if msg.id in stale or self._known(msg.id):
                        self.duplicates_dropped += 1
                        results.append(None)
                        continue
                    claims.append(msg.id)
                    results.append(self._submit(msg, touched, trades))
                elif isinstance(msg, CancelOrder):
                    results.append(await self._cancel(msg, touched, claims))
                elif isinstance(msg, CancelAll):
                    cancelled = engine.cancel_all(msg.member_id, msg.side) if msg.member_id is not None else self._cancel_every(msg.side)
                    for o in cancelled:
                        touched[o.id] = o
                    pending = await self._pending_of(msg.member_id, msg.side)
                    results.append([o.id for o in cancelled] + [self._take_in_cancelled(r, touched, claims) for r in pending])
                elif isinstance(msg, SetHalted):
                    self.halted = msg.halted
                    state_changed = True
                    results.append(msg.halted)
                elif isinstance(msg, QueryBook):
                    results.append(self.query(msg))
                elif isinstance(msg, SetFees):
                    if not (0 <= msg.maker < FEE_SCALE // 10 and 0 <= msg.taker < FEE_SCALE // 10):
                        raise InvalidParameter("fees must be between 0 and 0.1", "fee")
                    self.fees = (msg.maker, msg.taker)
                    state_changed = True
                    results.append({"maker": msg.maker, "taker": msg.taker})
                else:
                    results.append(ExchangeError(f"unknown message {type(msg).__name__}"))
            except ExchangeError as e:
                results.append(e)
        if not touched and not state_changed:
            return results, None
        write = await self._rows(touched, trades, claims)
        return results, write

    def _known(self, order_id: int) -> bool:
        """Taken in already, by a batch in flight (live, finished) or a committed one (taken)."""
        return order_id in self.live or order_id in self.finished or order_id in self.taken

    async def _intake_plan(self, batch: Sequence[Any]) -> tuple[set[int], dict[int, list[NewOrder]]]:
        """Where copies of orders can arrive out of order or late (a cluster's queues, or after a
        lost claim), the store decides what the batch takes in: the new orders it says are no longer
        pending are stale copies (dropped), and a member's orders accepted earlier but not yet
        arrived are taken in first, so each member's orders reach the book in the order they were
        accepted. A pending order changes state only by this market's owner, and the previous
        owner's last batch committed before our lease was granted: this read is exact for them.
        The claim in the write stays the authority.

        A direct order (`NewOrder.direct`: handed over in this process by the account actor that
        accepted it, every earlier order of the member for this market before it) needs no read, as
        on a single node: recovery took in whatever was pending when it started. Until a claim is
        lost: then copies exist that memory cannot tell, and every order is read."""
        if not self.verify_intake:
            return set(), {}
        trust = not self.claims_lost
        new = [m for m in batch if isinstance(m, NewOrder) and not (trust and m.direct) and not self._known(m.id)]
        if not new:
            return set(), {}
        members = sorted({m.member_id for m in new})
        self.intake_reads += 1
        rows = await self.store.fetch(
            f"SELECT * FROM orders WHERE member_id IN ({','.join('?' * len(members))}) AND state = 'pending' "
            "AND market = ? ORDER BY created_at, id", *members, self.market.id)
        pending = {int(r["id"]): r for r in rows}
        stale = {m.id for m in new if m.id not in pending}
        for oid in stale:
            self._remember(oid)
        queues: dict[int, list[Any]] = {}
        for r in rows:
            if not self._known(int(r["id"])):
                queues.setdefault(int(r["member_id"]), []).append(r)
        before: dict[int, list[NewOrder]] = {}
        for m in new:
            row = pending.get(m.id)
            queue = queues.get(m.member_id)
            if row is None or not queue:
                continue
            key = (int(row["created_at"]), m.id)
            older: list[NewOrder] = []
            while queue and (int(queue[0]["created_at"]), int(queue[0]["id"])) < key:
                older.append(new_order_from_row(queue.pop(0)))
            if queue and int(queue[0]["id"]) == m.id:
                queue.pop(0)
            if older:
                before[m.id] = older
        return stale, before

    def _remember(self, order_id: int) -> None:
        self.taken[order_id] = None
        if len(self.taken) > TAKEN_MEMORY:
            del self.taken[next(iter(self.taken))]

    def _take_in(self, msg: NewOrder, touched: dict[int, Order], *, into_book: bool = True) -> Order:
        """Take an accepted order in. One that reaches the book gets the next intake number (the
        order in which the market took its orders in); one cancelled before it ever did keeps 0,
        so it takes no place in that order ahead of the member's older pending orders."""
        o = Order(msg.id, msg.member_id, msg.side, msg.ord_type, msg.price, msg.volume,
                  tif=msg.tif, stop_price=msg.stop_price, funds=msg.funds)
        self.live[o.id] = live_of(msg.origin_locked, msg.created_at, self.next_intake if into_book else 0)
        if into_book:
            self.next_intake += 1
        touched[o.id] = o
        return o

    def _submit(self, msg: NewOrder, touched: dict[int, Order], trades: list[Trade]) -> int | None:
        o = self._take_in(msg, touched)
        if self.halted:
            o.state = "cancel"
            return o.id
        try:
            res = self.engine.submit(o)
        except EngineError as e:  # post-only that would cross, or an order the engine refuses
            log.debug("%s: order %d refused by engine: %s", self.name, o.id, e)
            o.state = "cancel"
            return o.id
        for t in res.trades:
            trades.append(t)
            touched[t.maker.id] = t.maker
            touched[t.taker.id] = t.taker
        for group in (res.cancelled, res.triggered, res.done, res.rested):
            for x in group:
                touched[x.id] = x
        return o.id

    async def _cancel(self, msg: CancelOrder, touched: dict[int, Order], claims: list[int]) -> dict[str, Any]:
        """Cancel a resting order, or one still `pending` in the store (accepted, not taken in yet:
        its hand-over is late or lost). The latter is taken in as cancelled by this batch, claimed in
        its transaction like any new order: if another copy took it in first, the batch rolls back
        (`ClaimLost`) and nothing is cancelled twice; later copies find it no longer pending."""
        o = self.engine.get(msg.order_id)
        if o is not None and (msg.member_id is None or o.member_id == msg.member_id):
            before = self.order_view(o)
            self.engine.cancel(o.id)
            touched[o.id] = o
            return before
        member: int | None
        state: str | None
        row = None
        gone = self.finished.get(msg.order_id)
        if gone is not None:
            member, state = gone
        else:
            row = await self.store.fetchrow("SELECT * FROM orders WHERE id = ? AND market = ?",
                                            msg.order_id, self.market.id)
            member, state = (None, None) if row is None else (int(row["member_id"]), row["state"])
        if member is None or (msg.member_id is not None and member != msg.member_id):
            raise OrderNotFound(f"order {msg.order_id} doesn't exist")
        if row is not None and state == "pending" and not self._known(msg.order_id):
            self._take_in_cancelled(row, touched, claims)
            return {**self.order_view(touched[msg.order_id]), "state": "pending"}
        raise CancelOrderFailed(f"order {msg.order_id} is already {state}, cannot cancel")

    def _take_in_cancelled(self, row: Any, touched: dict[int, Order], claims: list[int]) -> int:
        """An order still `pending` in the store, taken in by this batch as cancelled (see `_cancel`)."""
        oid = int(row["id"])
        claims.append(oid)
        self._take_in(new_order_from_row(row), touched, into_book=False).state = "cancel"
        return oid

    async def _pending_of(self, member_id: int | None, side: str | None) -> list[Any]:
        """A cancel-all's orders still `pending` in the store (a member's, or everyone's), not yet taken in."""
        sql = "SELECT * FROM orders WHERE market = ? AND state = 'pending'"
        args: list[Any] = [self.market.id]
        if member_id is not None:
            sql += " AND member_id = ?"
            args.append(member_id)
        if side is not None:
            sql += " AND side = ?"
            args.append(side)
        rows = await self.store.fetch(sql + " ORDER BY created_at, id", *args)
        return [r for r in rows if not self._known(int(r["id"]))]

    def query(self, q: QueryBook) -> Any:
        """Reads of the book, answered from memory (for other nodes, and for this one's web layer)."""
        e = self.engine
        if q.what == "depth":
            asks, bids = e.depth(max(1, q.limit))
            return {"asks": asks, "bids": bids, "seq": self.book_seq, "book_id": self.book_id}
        if q.what == "orders":
            out: list[dict[str, Any]] = []
            for o in e.orders(q.side or "buy"):
                if len(out) >= q.limit:
                    break
                out.append(self.order_view(o))
            return out
        if q.what == "resting":  # both sides and the sequence they are at, in one read
            views = [self.order_view(o) for side in ("buy", "sell") for o in islice(e.orders(side), q.limit)]
            return {"orders": views, "seq": self.book_seq, "book_id": self.book_id}
        if q.what == "estimate":
            return e.estimate_market_buy(q.volume)
        return {"halted": self.halted, "fees": list(self.fees), "last_price": e.last_price, "best_bid": e.best_bid(), "best_ask": e.best_ask(),
                "resting": len(e), "book_seq": self.book_seq, "state_hash": e.state_hash()}

    async def sweep_pending(self, older_than_ms: int | None = None) -> int:
        """Safety net: match accepted orders whose hand-over message was lost (a bus outage, a node
        that died between commit and hand-over), oldest first. Orders now in the mailbox or taken
        in are not sent again; any other copy is dropped or refused by its claim."""
        age = self.sweep_after_ms if older_than_ms is None else older_than_ms
        rows = await self.store.fetch(
            "SELECT * FROM orders WHERE market = ? AND state = 'pending' AND created_at < ? ORDER BY created_at, id",
            self.market.id, now_ms() - age)
        n = 0
        for r in rows:
            oid = int(r["id"])
            if oid not in self.inbox and not self._known(oid):
                await self.put(new_order_from_row(r))
                n += 1
        if n:
            log.warning("%s: %d accepted orders had not reached the market; matching them now", self.name, n)
        return n

    async def sweep(self, at_start: bool) -> None:
        await self.sweep_pending()

    # New orders are noted as they enter the mailbox, so that the sweep never sends them again.
    def tell(self, msg: Any) -> None:
        super().tell(msg)
        if isinstance(msg, NewOrder):
            self.inbox.add(msg.id)

    def offer(self, msg: Any) -> bool:
        ok = super().offer(msg)
        if ok and isinstance(msg, NewOrder):
            self.inbox.add(msg.id)
        return ok

    async def put(self, msg: Any) -> None:
        if isinstance(msg, NewOrder):
            self.inbox.add(msg.id)
        await super().put(msg)

    async def put_all(self, msgs: Sequence[Any]) -> None:
        for msg in msgs:
            await self.put(msg)

    async def ask(self, msg: Any, timeout: float | None = None) -> Any:
        if isinstance(msg, NewOrder):
            self.inbox.add(msg.id)
        try:
            return await super().ask(msg, timeout)
        except ExchangeError:
            if isinstance(msg, NewOrder) and msg.id not in self.live and msg.id not in self.finished:
                self.inbox.discard(msg.id)
            raise

    async def ask_later(self, msg: Any, timeout: float | None = None) -> asyncio.Future[Any]:
        if isinstance(msg, NewOrder):
            self.inbox.add(msg.id)
        return await super().ask_later(msg, timeout)

    async def on_stop(self) -> None:
        await super().on_stop()
        if len(self.engine):  # the book goes with this actor (the market moved or the node stops)
            thaw_startup_objects()

    def on_crash(self, error: BaseException) -> None:
        if isinstance(error, ClaimLost):
            self.claims_lost += 1
            self.verify_intake = True  # copies exist that memory cannot tell: ask the store from now on

    def _cancel_every(self, side: str | None) -> list[Order]:
        members = {o.member_id for i in self.live if (o := self.engine.get(i)) is not None}
        out: list[Order] = []
        for member in sorted(members):
            out.extend(self.engine.cancel_all(member, side))
        return out

    def order_view(self, o: Order) -> dict[str, Any]:
        live = self.live.get(o.id)
        k = o.kind  # one read for side, type and time in force (each a property of the order)
        return {
            "id": o.id,
            "member_id": o.member_id,
            "market": self.market.id,
            "side": k.side,
            "ord_type": k.ord_type,
            "tif": k.tif,
            "price": o.price,
            "stop_price": o.stop_price,
            "volume": o.volume,
            "remaining": o.remaining,
            "funds_used": o.funds_used,
            "trades_count": o.trades_count,
            "state": o.state,
            "created_at": 0 if live is None else created_at_of(live),
        }

    async def _rows(self, touched: dict[int, Order], trades: list[Trade], claims: list[int]) -> Callable[[], Awaitable[None]]:
        """Everything the batch changes, as rows and events fixed now; returns the write."""
        m = self.market
        ts = now_ms()
        eff = Effects(created_at=ts)
        trade_rows: list[tuple[Any, ...]] = []
        order_rows: list[tuple[Any, ...]] = []
        finished: list[Order] = []
        levels: set[tuple[str, int]] = set()
        trade_ids = await self.trade_ids.take_own_many(len(trades))  # no await per trade
        # The loops below run per trade and per touched order: they read an order's side, type and
        # stop flag from its shared `kind` (a property each, else) and its lock from `live` inline.
        for t, trade_id in zip(trades, trade_ids, strict=True):
            t.id = trade_id
            taker, maker = t.taker, t.maker
            bid, ask = (taker, maker) if taker.kind.buy else (maker, taker)
            s = settle_trade(eff, m, self.fee_member, trade_id, t.price, t.volume, bid.member_id, ask.member_id,
                             bid_is_maker=maker is bid, fees=self.fees)
            trade_rows.append((trade_id, m.id, t.price, t.volume, s.funds, ask.id, bid.id, ask.member_id,
                               bid.member_id, taker.kind.side, s.ask_fee, s.bid_fee, ts))
            levels.add((maker.kind.side, maker.price))
        claimed = set(claims)
        live = self.live
        quote, base = m.quote.code, m.base.code
        for o in touched.values():
            k, state, packed = o.kind, o.state, live[o.id]
            left = origin_locked_of(packed) - m.quote_units(o.funds_used) if k.buy else m.base_units(o.remaining)
            if state != "wait":
                release(eff, o.member_id, quote if k.buy else base, left,
                        ORDER_FULFILLED if state == "done" else ORDER_CANCEL, o.id)
                left = 0
                finished.append(o)
            if k.ord_type != MARKET and o.price:
                levels.add((k.side, o.price))
            order_rows.append((o.remaining, state, o.funds_used, left, o.trades_count, o.seq,
                               int(k.triggered), ts, intake_of(packed), o.id, int(o.id in claimed)))
        events = self._events(touched, trades, trade_rows, eff, levels, ts)
        for o in finished:
            self.finished[o.id] = (o.member_id, o.state)
            self.live.pop(o.id, None)
        while len(self.finished) > FINISHED_MEMORY:
            del self.finished[next(iter(self.finished))]
        state_row = (self.engine.next_seq, self.engine.last_price, int(self.halted), self.fees[0], self.fees[1],
                     self.next_intake, ts, m.id, self.epoch)
        ledger_rows = eff.ledger
        inline: dict[int, int] = {}  # shards settled in this transaction, with their epochs (the fence)
        outbox: list[tuple[Any, ...]] = []
        told: dict[int, list[int]] = {}
        if self.shard_map is not None:
            ledger_rows, away, inline = self.shard_map.split(eff.ledger, house=self.fee_member)
            if away:
                ids = await self.settlement_ids.take_own_many(sum(map(len, away.values())))
                outbox, told = shards.outbox_rows(ids, away)
                # Their account events come from the shard's owner, once it has applied them.
                gone = {row[0] for rows in away.values() for row in rows}
                for topic, env in events:
                    if topic.startswith("member.") and env.get("member_id") in gone:
                        env["accounts"] = []
        # The accounts' moves as settlement summed them, when every row is written here (the usual).
        sums = eff.sums() if len(ledger_rows) == len(eff.ledger) else None
        writer: ledger.Epoch = 0  # the epochs of the shards settled inline, on their ledger rows
        if self.shard_map is not None and self.shard_map.leased:
            count, house, epoch = self.shard_map.count, self.fee_member, self.epoch
            # the market's fee account is written under the market's own epoch (ShardMap.split)
            writer = lambda member: epoch if member == house else inline.get(member % count, 0)  # noqa: E731

        pg = self.store.backend == "postgresql"

        async def write() -> None:
            # Rows are always locked in (member, currency) order, by every actor: no deadlock on PostgreSQL.
            # All of it is held and sent with the COMMIT: on SQLite the whole write is one trip.
            async with self.store.transaction() as tx:
                # First the fence: on PostgreSQL it also locks the state row, so a new owner's
                # lease grant waits for this batch (or this batch sees the new epoch and rolls back).
                # Then the members' shards settled here must still be ours at the epochs read: else
                # nothing of the batch counts (a shard moved: the market rebuilds, its next batch
                # sends them to the new owner). On PostgreSQL both are one statement. (The whole
                # batch as one PL/pgSQL function call, one trip in all, was measured against this:
                # round trips per order -28%, the node's CPU per order unchanged, PostgreSQL's
                # +8-14%, orders/s lower. A trip here costs less than PL/pgSQL's statements cost
                # the server.)
                fenced = Fenced(f"{self.name}: epoch {self.epoch} no longer holds the market")
                moved = ShardMoved(f"{self.name}: an account shard moved")
                if inline and pg:
                    row = await tx.fetchrow(STATE_UPDATE_FENCED_PG, *state_row, sorted(inline))
                    if row is None:
                        raise fenced
                    shards.check_fence_pairs(row[0], inline, moved)
                else:
                    await tx.expect(STATE_UPDATE_SQL, state_row, 1, fenced)
                    await shards.fence(tx, self.store, inline, moved)
                # Every order row, the claims with them: all of them change, or nothing counts.
                await tx.expect_many(ORDERS_UPDATE_BULK, order_rows, len(order_rows),
                                     ClaimLost(f"{self.name}: an order of the batch was taken already"))
                await tx.executemany(TRADES_BULK, trade_rows)
                await ledger.post(tx, ledger_rows, epoch=writer, sums=sums)
                if outbox:
                    await tx.executemany(shards.SETTLEMENTS_BULK, outbox)
            if told and self.settle_out is not None:
                self.settle_out(told)
            for oid in claims:
                self._remember(oid)
            self.trades_total += len(trade_rows)
            for topic, event in events:
                self.bus.publish(topic, event)

        return write

    def _events(self, touched: dict[int, Order], trades: list[Trade], trade_rows: list[tuple[Any, ...]],
                eff: Effects, levels: set[tuple[str, int]], ts: int) -> list[tuple[str, dict[str, Any]]]:
        """The batch's events, built now (while the book is as the batch left it) and sent after the
        commit (node/actors/market_events.py)."""
        book: dict[str, Any] | None = None
        if levels:
            self.book_seq += 1
            changes = [(side, price, self.engine.level_volume(side, price)) for side, price in sorted(levels)]
            book = {"id": self.book_id, "seq": self.book_seq, "changes": changes}
        halted: bool | None = None
        if self._halted_published != self.halted:
            self._halted_published = halted = self.halted
        views = [(o.member_id, self.order_view(o), rests(o)) for o in touched.values()]
        return batch_events(self.market.id, ts, trades, trade_rows, views, book, halted, eff)
