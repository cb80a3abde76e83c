"""The account actor: where orders take money out of a member's available balance (withdrawal
requests in node/wallet/funds.py and approved admin corrections in node/admin/service.py do it in
transactions of their own; all of them post through the money writer, node/store/ledger.py).

For a batch of order submissions it reads the members' balances inside one write transaction
(row-locked on PostgreSQL, exclusive on SQLite), decides each order in arrival order, moves
`balance → locked`, stores the orders as `pending` with an `order_submit` ledger row, commits, and
only then answers and hands the orders to their market actors. Because the market actor only ever
*adds* to available balances, these decisions can never be invalidated by a concurrent trade.

Members' accounts are split into account shards (node/actors/shards.py), and one account actor
writes every shard its node runs: all of them, unleased, on a node without a cluster; in a cluster
the shards whose leases the node holds, adopted and given up one by one (`adopt`, `release`,
`lose`), each batch fenced by the epochs of them all. It also applies the settlements that markets
on other nodes wrote for its members, in the same batches as new orders. (An actor per shard made a
transaction per shard for the same orders.)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Protocol

from node.actors import shards
from node.actors.messages import ApplySettlements, NewOrder, OrderRequest, SubmitOrders
from node.actors.runtime import Actor, SweepingActor
from node.clock import now_ms
from node.config import Currency
from node.errors import CreateOrderFailed, ExchangeError, Fenced, TonceReused, Unavailable
from node.events import EventBus
from node.market.settlement import ORDER_SUBMIT
from node.money import format_units
from node.store import Bulk, IdAllocator, Store, ledger
from node.tonces import TonceBook

log = logging.getLogger(__name__)

SWEEP_AFTER_MS = 5_000  # a settlement still unapplied this long is taken from the store
SETTLE_WAIT = 0.02  # s: a settlement notice waits at most this long for a batch of orders to go with
CLAIM_CHUNK = 500  # settlement ids per claim statement (SQLite's variables per statement)

ORDERS_INSERT_BULK = Bulk.insert("orders", (
    "id", "member_id", "market", "side", "ord_type", "tif", "price", "stop_price", "volume", "remaining", "funds",
    "origin_locked", "locked", "funds_used", "trades_count", "state", "seq", "triggered", "client_id", "created_at",
    "updated_at"))

# PostgreSQL: the batch's reads with arrays for their lists (SQLite gets `?` lists). The accounts
# are locked in the order given, (member, currency), each found by its key, as the money writer
# updates them (node/store/ledger.py): one order for every lock. (A join of the whole key list was
# planned as a scan of the accounts table on a small one.) The arrays are read through sub-selects,
# so the planner cannot count them: its plan is then the same for every batch and PostgreSQL keeps
# it, where it planned the statement anew at every run (measured: ~40 us of server CPU a run, not ~90).
LOCK_ACCOUNTS_PG = ("SELECT k.m AS member_id, k.c AS currency, a.balance FROM unnest((SELECT $1::bigint[]), "
                    "(SELECT $2::text[])) WITH ORDINALITY AS k(m, c, n) CROSS JOIN LATERAL (SELECT balance "
                    "FROM accounts WHERE member_id = k.m AND currency = k.c FOR UPDATE) a ORDER BY k.n")
CLIENT_IDS_PG = "SELECT * FROM orders WHERE member_id = ANY($1::bigint[]) AND client_id = ANY($2::text[])"


class MarketRef(Protocol):
    """Where accepted orders go: a local market actor or, in a cluster, a remote one. Either may
    refuse (a market being moved or fenced): the order is in the store, and the market's owner
    takes it from there."""

    def offer(self, msg: Any) -> bool:
        """Hand over at once if that needs no waiting (a local mailbox with room); else False."""
        ...

    async def put(self, msg: Any) -> None: ...

    async def put_all(self, msgs: Sequence[Any]) -> None:
        """`put` for several, in order (to a remote market: one message)."""
        ...


def order_row_view(r: Mapping[str, Any]) -> dict[str, Any]:
    """An order as the store holds it, in the shape the web layer formats."""
    return {
        "id": int(r["id"]),
        "member_id": int(r["member_id"]),
        "market": r["market"],
        "side": r["side"],
        "ord_type": r["ord_type"],
        "tif": r["tif"],
        "price": int(r["price"]),
        "stop_price": int(r["stop_price"]),
        "volume": int(r["volume"]),
        "remaining": int(r["remaining"]),
        "funds_used": int(r["funds_used"]),
        "trades_count": int(r["trades_count"]),
        "state": r["state"],
        "created_at": int(r["created_at"]),
        "client_id": r["client_id"],
    }


class AccountActor(SweepingActor[SubmitOrders | ApplySettlements]):
    """The writer of its node's account shards' rows on the order path (node/actors/shards.py): it
    locks funds for new orders and applies the settlements markets wrote for its members, each batch
    in one transaction that starts with the shards' epoch fence when they are leased.

    `shard` may name several shards, all unleased (a node without a cluster); a leased actor starts
    with one and `adopt`s the others its node takes. On PostgreSQL's default of 4 shards, an actor
    per shard made four transactions where one does, for the same orders: 25% more of the node's
    CPU per order and 40% more of PostgreSQL's (bench/bench_api.py).

    A batch is fenced by every leased shard held. One found taken over fails the batch (every
    asker: Unavailable, nothing written) and is forgotten here (`lost`, which the lease keeper
    reads); the others go on. Only with none left is the actor fenced for good.
    """

    def __init__(
        self,
        store: Store,
        markets: Mapping[str, MarketRef],
        currencies: Mapping[str, Currency],
        shard: int | Sequence[int] = 0,
        tonces: TonceBook | None = None,
        *,
        shard_count: int | None = None,
        epoch: int | None = None,
        sweep_after_ms: int = SWEEP_AFTER_MS,
        bus: EventBus | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(sweep_after_ms=sweep_after_ms, **kw)
        self.bus = bus  # account events of the settlements applied here
        self.tonces = tonces or TonceBook()
        first = (shard,) if isinstance(shard, int) else tuple(sorted(shard))
        if not first or (epoch is not None and len(first) > 1):
            raise ValueError("an account actor starts with one leased shard, or one or more unleased ones")
        # The shards written here, each with its lease epoch (None: not leased, not fenced).
        self.epochs: dict[int, int | None] = dict.fromkeys(first, epoch)
        self.leased = epoch is not None
        self.lost: set[int] = set()  # leased shards a batch found taken over, until the keeper drops them
        self.shard_count = shard_count  # None: not known, so any member's pending order counts as this shard's
        self.name = f"accounts:{_spelled(first) if epoch is None else 'leased'}"
        self.store = store
        self.markets = markets
        self.currencies = currencies
        self.order_ids = IdAllocator(store, "orders")
        self.settled = 0  # settlement rows this actor applied
        # Settlement ids told (not asked) to this actor: applied by its next batch, which a notice
        # starts itself only after SETTLE_WAIT (`_owe`), so that busy shards apply them with their
        # orders instead of in a transaction of their own.
        self._owed: set[int] = set()
        self._owed_timer: asyncio.TimerHandle | None = None
        # Direct hand-overs (`_direct`): the markets none of this shard's orders was pending in when
        # this actor started, and the one mailbox each market's orders have been handed to since.
        self._clean: set[str] = set()
        self._handed: dict[str, MarketRef] = {}

    @property
    def shards(self) -> tuple[int, ...]:
        return tuple(sorted(self.epochs))

    @property
    def epoch(self) -> int | None:
        """The lease epoch of the one shard written here (None: unleased, or several shards)."""
        return next(iter(self.epochs.values())) if len(self.epochs) == 1 else None

    def _any_shard(self) -> int:
        """A shard for an empty settlement notice (its batch takes every owed id, whoever's)."""
        return next(iter(self.epochs), 0)

    # -- the shards held (a cluster) ----------------------------------------------------------------
    async def adopt(self, shard: int, epoch: int) -> None:
        """Write a leased shard from now on (its lease just taken, before any request of it is sent
        here): as a new actor would, its members' pending orders keep their markets checked by the
        store (`_direct`), and what its previous owner left unapplied is swept at once."""
        if not self.leased or self.shard_count is None:
            raise ValueError("only a leased account actor that knows the shard count adopts shards")
        self._clean -= await self._pending_in({shard})
        self.epochs[shard] = epoch
        self.lost.discard(shard)
        try:
            await self.sweep_settlements(0, [shard])
        except BaseException:
            self.epochs.pop(shard, None)  # not adopted: the lease keeper gives the lease back
            raise

    async def release(self, shard: int) -> None:
        """Stop writing a shard without losing anything accepted (its requests no longer sent here):
        every message taken before now is committed first; what comes after is refused. The last
        shard stops the actor, as it did an actor of its own."""
        if set(self.epochs) == {shard}:
            await self.stop()
            self.epochs.clear()
            return
        answer = await self.ask_later(ApplySettlements(shard, ()))
        try:
            await answer
        except ExchangeError:
            pass  # the batch failed: nothing of it was written, and nothing after it is ours
        self.epochs.pop(shard, None)

    def lose(self, shard: int, why: str) -> None:
        """Stop writing a shard at once: its lease is gone, what is queued for it is refused."""
        self.epochs.pop(shard, None)
        self.lost.discard(shard)
        if not self.epochs:
            self.fence(why)

    async def recover(self) -> None:
        self.order_ids.reset()
        self._handed = {}
        self._clean = set(self.markets) - await self._pending_in(self.epochs)

    async def _pending_in(self, held: Collection[int]) -> set[str]:
        """The markets in which a member of the `held` shards has an order still `pending` (any
        member's, when the shard count is not known)."""
        markets = list(self.markets)
        if not markets:
            return set()
        rows = await self.store.fetch(
            f"SELECT DISTINCT market, member_id FROM orders WHERE market IN ({','.join('?' * len(markets))}) "
            "AND state = 'pending'", *markets)
        count = self.shard_count
        return {r["market"] for r in rows if count is None or shards.shard_of(int(r["member_id"]), count) in held}

    def _direct(self, market: str, ref: MarketRef) -> bool:
        """Whether an order handed to `ref` now is direct (`NewOrder.direct`): none of its shards'
        orders for the market was pending when this actor started or adopted the shard (a previous
        owner's, or this actor's before a crash), and every one since went to this same mailbox, in
        order. The market
        then knows that no older order of the member is still on its way, as on a single node. A
        market ever handed to another ref (a remote one, an earlier actor of it), or whose orders
        once could not be handed over, stays checked by the store until this actor restarts."""
        if market not in self._clean:
            return False
        if self._handed.setdefault(market, ref) is not ref:
            self._clean.discard(market)
            return False
        return True

    # -- settlement notices: applied with the next batch ---------------------------------------------
    def tell(self, msg: SubmitOrders | ApplySettlements) -> None:
        if not self._owe(msg):
            super().tell(msg)

    def offer(self, msg: SubmitOrders | ApplySettlements) -> bool:
        return self._owe(msg) or super().offer(msg)

    async def put(self, msg: SubmitOrders | ApplySettlements) -> None:
        if not self._owe(msg):
            await super().put(msg)

    def _owe(self, msg: SubmitOrders | ApplySettlements) -> bool:
        """Keep a notice's ids for the next batch (True), unless the actor is stopping (then the
        store keeps them for the sweep of whoever runs the shard next) or it is for another shard."""
        if not isinstance(msg, ApplySettlements) or msg.shard not in self.epochs or self._stopping:
            return False
        self._owed.update(msg.ids)
        if self._owed_timer is None:
            self._owed_timer = asyncio.get_running_loop().call_later(SETTLE_WAIT, self._settle_owed)
        return True

    def _settle_owed(self) -> None:
        """No batch took the owed ids within SETTLE_WAIT: a batch of their own (an empty notice
        marks it; the batch takes every owed id)."""
        self._owed_timer = None
        if self._stopping:  # fenced or stopping: unapplied rows wait in the store for the next owner's sweep
            return
        if self._owed and not super().offer(ApplySettlements(self._any_shard(), ())):
            self._owed_timer = asyncio.get_running_loop().call_later(SETTLE_WAIT, self._settle_owed)

    def _take_owed(self) -> set[int]:
        owed, self._owed = self._owed, set()
        if self._owed_timer is not None:
            self._owed_timer.cancel()
            self._owed_timer = None
        return owed

    async def drained(self) -> None:
        """Every message and owed settlement so far is handled (tests, quiescing)."""
        while True:
            await self.mailbox.join()
            if not self._owed or self._stopping:
                return
            await asyncio.sleep(SETTLE_WAIT)

    # -- the settlement sweep: rows whose message was lost (or never sent: the market's node died) --
    sweep_at_start = True  # a new owner applies at once what the previous one left unapplied

    async def stop(self) -> None:
        if self._owed and not self._stopping:  # applied before the mailbox is drained, not left to the sweep
            await Actor.put(self, ApplySettlements(self._any_shard(), ()))
        await super().stop()

    async def sweep_settlements(self, older_than_ms: int | None = None, only: Sequence[int] | None = None) -> int:
        """Ask for every unapplied settlement of the shards (or of `only`) older than `older_than_ms`
        (all of them with 0); answers how many were found (the batch applies those still unapplied)."""
        age = self.sweep_after_ms if older_than_ms is None else older_than_ms
        held = self.shards if only is None else tuple(only)
        if not held:
            return 0
        sql, args = shards.unapplied_sql(held, now_ms() - age + 1)
        ids = tuple(int(r["id"]) for r in await self.store.fetch(sql, *args))
        if ids:  # late already: into the mailbox now, not kept for the next batch
            await Actor.put(self, ApplySettlements(held[0], ids))
        return len(ids)

    async def sweep(self, at_start: bool) -> None:
        found = await self.sweep_settlements(0 if at_start else None)
        if found and not at_start:
            log.warning("%s: %d settlements had not been applied; applying them now", self.name, found)

    # -- the batch ---------------------------------------------------------------------------------
    async def handle_batch(self, batch: Sequence[SubmitOrders | ApplySettlements]) -> list[Any]:
        owed = self._take_owed()
        try:
            return await self._handle(batch, owed)
        except _ShardsLost as e:
            self._owed |= owed
            for shard in e.shards:
                self.epochs.pop(shard, None)
            if not self.epochs:
                raise Fenced(f"{self.name}: {e}") from None
            self.lost |= e.shards
            log.error("%s: %s; the batch is refused, the other shards go on", self.name, e)
            return [Unavailable(f"account shard taken over by another node ({e}), try again")] * len(batch)
        except BaseException:
            self._owed |= owed  # not applied: the next batch (or the sweep) takes them
            raise

    async def _handle(self, batch: Sequence[SubmitOrders | ApplySettlements], owed: set[int]) -> list[Any]:
        results: list[Any] = [None] * len(batch)
        ts = now_ms()
        accepted: list[NewOrder] = []
        subs = [(i, b) for i, b in enumerate(batch) if isinstance(b, SubmitOrders)]
        held = self.epochs
        if self.leased and self.shard_count is not None:  # a request routed here just before its shard left
            count = self.shard_count
            for i, b in subs:
                if any(r.member_id % count not in held for r in b.orders):
                    results[i] = Unavailable("the member's account shard is not run here now, try again")
            subs = [(i, b) for i, b in subs if results[i] is None]
        settle = sorted(owed | {sid for b in batch if isinstance(b, ApplySettlements) and b.shard in held
                                for sid in b.ids})
        if not subs and not settle:
            return results
        members = sorted({r.member_id for _, b in subs for r in b.orders})
        wanted = sorted({(r.member_id, r.lock_currency) for _, b in subs for r in b.orders})
        client_ids = sorted({r.client_id for _, b in subs for r in b.orders if r.client_id})
        signed = [(i, sub.tonce) for i, sub in subs if sub.tonce is not None]
        tonces = [tonce for _, tonce in signed]
        order_rows: list[tuple[Any, ...]] = []
        async with self.store.transaction() as tx:
            # One trip for every read (two with settlements to apply): the shard's fence first (a
            # deposed owner's batch rolls back here), the tonces burnt (a replay is refused, not
            # decided), the settlements claimed, the balances (only the rows this batch moves are
            # locked, in one global order: no deadlocks), the orders that client ids may name.
            head: list[tuple[str, list[Any]]] = []  # what locks no account row
            pg = self.store.backend == "postgresql"
            fenced = dict(held) if self.leased else {}  # shard -> epoch
            if fenced:
                head.append(shards.fence_sql(self.store, list(fenced)))
            if signed:
                head.append(self.tonces.insert(tonces, self.store.backend))
            claims = [shards.claim_sql(self.store, list(held), settle[i:i + CLAIM_CHUNK], ts)
                      for i in range(0, len(settle), CLAIM_CHUNK)]
            head.extend(claims)

            def locks(accounts: list[tuple[int, str]]) -> list[tuple[str, list[Any]]]:
                out: list[tuple[str, list[Any]]] = []
                if pg:  # one statement text whatever the counts: prepared once per connection
                    if accounts:
                        out.append((LOCK_ACCOUNTS_PG, [[m for m, _ in accounts], [c for _, c in accounts]]))
                    if client_ids:
                        out.append((CLIENT_IDS_PG, [members, client_ids]))
                    return out
                if accounts:
                    pairs = " OR ".join("(member_id = ? AND currency = ?)" for _ in accounts)
                    out.append((f"SELECT member_id, currency, balance FROM accounts WHERE {pairs} "
                                f"ORDER BY member_id, currency{self.store.for_update}",
                                [x for pair in accounts for x in pair]))
                if client_ids:
                    marks = ",".join("?" * len(members))
                    cmarks = ",".join("?" * len(client_ids))
                    out.append((f"SELECT * FROM orders WHERE member_id IN ({marks}) AND client_id IN ({cmarks})",
                                [*members, *client_ids]))
                return out

            if claims:
                # The settlements first, then every account the batch moves (its orders' and the
                # settlements') locked by one statement in (member, currency) order, as every
                # writer locks them: a row locked later out of order could deadlock with a market
                # batch settling the same shard inline on this node.
                fetched = await tx.fetch_many(head)
                claimed = [row for rows in fetched[len(fetched) - len(claims):] for row in shards.claimed_rows(rows)]
                del fetched[len(fetched) - len(claims):]
                accounts = sorted(set(wanted) | {(row[0], row[1]) for row in claimed})
                fetched += await tx.fetch_many(locks(accounts))
            else:
                claimed, accounts = [], wanted
                fetched = await tx.fetch_many(head + locks(accounts))
            if fenced:
                lost = shards.lost_shards(fetched.pop(0), fenced)
                if lost:
                    raise _ShardsLost(lost)
            if signed:
                fresh = await self.tonces.settle(tx, tonces, fetched.pop(0))
                for (i, tonce), ok in zip(signed, fresh, strict=True):
                    if not ok:
                        results[i] = TonceReused(*tonce)
            available = {(int(r["member_id"]), r["currency"]): int(r["balance"])
                         for r in (fetched.pop(0) if accounts else [])}
            existing = ({(int(r["member_id"]), r["client_id"]): order_row_view(r) for r in fetched.pop(0)}
                        if client_ids else {})
            # The settlements this batch claimed (copies applied before claim nothing): their rows
            # go to the ledger with the orders', in this transaction.
            ledger_rows: list[ledger.LedgerRow] = claimed
            settled = len(ledger_rows)
            for i, sub in subs:
                if results[i] is not None:  # a replayed tonce: refused, nothing taken
                    continue
                outcome = self._decide(sub, available, existing)
                if isinstance(outcome, ExchangeError):
                    results[i] = outcome
                    continue
                views: list[dict[str, Any]] = []
                for req in outcome:
                    if isinstance(req, dict):  # an idempotent retry: the order already exists
                        views.append(req)
                        continue
                    oid = await self.order_ids.take(tx)
                    order_rows.append((oid, req.member_id, req.market, req.side, req.ord_type, req.tif, req.price,
                                       req.stop_price, req.volume, req.volume, req.funds, req.lock_amount,
                                       req.lock_amount, 0, 0, "pending", 0, 0, req.client_id, ts, ts))
                    ledger_rows.append((req.member_id, req.lock_currency, -req.lock_amount, req.lock_amount, 0,
                                        ORDER_SUBMIT, "order", oid, ts))
                    view = {"id": oid, "member_id": req.member_id, "market": req.market, "side": req.side,
                            "ord_type": req.ord_type, "tif": req.tif, "price": req.price, "stop_price": req.stop_price,
                            "volume": req.volume, "remaining": req.volume, "funds_used": 0, "trades_count": 0,
                            "state": "wait", "created_at": ts, "client_id": req.client_id}
                    if req.client_id:
                        existing[(req.member_id, req.client_id)] = view
                    views.append(view)
                    accepted.append(NewOrder(oid, req.member_id, req.side, req.ord_type, req.price, req.volume, req.tif,
                                             req.stop_price, req.funds, req.lock_amount, ts))
                results[i] = views
            if ledger_rows:
                # The batch decided on balances it read under lock: if a lock does not apply
                # (a wrong decision), the writer raises and the whole batch rolls back.
                await ledger.post(tx, ledger_rows, epoch=self._ledger_epoch(fenced))
            if order_rows:
                await tx.executemany(ORDERS_INSERT_BULK, order_rows)
        self.settled += settled
        if settled and self.bus is not None:  # one envelope per member, as a market's (node/events.py)
            moved: dict[int, dict[str, list[int]]] = {}
            for member, currency, d_balance, d_locked, *_ in ledger_rows[:settled]:
                d = moved.setdefault(member, {}).setdefault(currency, [0, 0])
                d[0] += d_balance
                d[1] += d_locked
            for member, by_currency in moved.items():
                self.bus.publish(f"member.{member}", {
                    "member_id": member, "at": ts, "orders": [], "trades": [],
                    "accounts": [{"currency": c, "d_balance": d[0], "d_locked": d[1]} for c, d in by_currency.items()]})
        for i, msg in enumerate(batch):
            if isinstance(msg, ApplySettlements):
                results[i] = settled
        by_id = {row[0]: row[2] for row in order_rows}
        if accepted:
            # Local mailboxes with room take theirs at once. The rest are handed over all together,
            # each market's in one `put_all` (one bus message for a remote market). Once one order
            # of a market waits, the later ones of that market wait behind it, so every market still
            # sees its orders in order.
            waiting: dict[str, tuple[MarketRef, list[NewOrder]]] = {}
            for o in accepted:
                market = by_id[o.id]
                ref = self.markets.get(market)
                if ref is None:  # not running anywhere reachable now: its next owner takes it from the store
                    self._clean.discard(market)
                    log.warning("order %d accepted while market %s has no owner here; it waits in the store", o.id, market)
                    continue
                if self._direct(market, ref):
                    o = o._replace(direct=True)
                if market in waiting or not ref.offer(o):
                    waiting.setdefault(market, (ref, []))[1].append(o)
            outcomes = await asyncio.gather(*(ref.put_all(orders) for ref, orders in waiting.values()),
                                            return_exceptions=True)
            for (market, (_, orders)), handed in zip(waiting.items(), outcomes, strict=True):
                if isinstance(handed, BaseException):
                    self._clean.discard(market)  # in the store only now: its owner's sweep takes them
                if isinstance(handed, ExchangeError):
                    # Committed already: the orders are accepted whatever happens to the hand-over;
                    # the market's pending sweep will take them from the store.
                    log.warning("%d orders accepted but not handed to market %s (%s); the sweep will",
                                len(orders), market, handed.message)
                elif isinstance(handed, BaseException):
                    log.error("%d orders: hand-over to %s failed (%r); the sweep will take them",
                              len(orders), market, handed)
        return results

    def _ledger_epoch(self, fenced: Mapping[int, int | None]) -> ledger.Epoch:
        """The epoch each ledger row records: its member's shard's (0 unleased)."""
        if not fenced:
            return 0
        if len(fenced) == 1:
            return next(iter(fenced.values())) or 0
        count = self.shard_count
        assert count is not None  # several leased shards only by `adopt`, which needs it
        return lambda member: fenced.get(member % count) or 0

    def _decide(
        self,
        sub: SubmitOrders,
        available: dict[tuple[int, str], int],
        existing: dict[tuple[int, str], dict[str, Any]],
    ) -> list[OrderRequest | dict[str, Any]] | ExchangeError:
        """All or nothing: every order of the submission is covered, or none is taken."""
        plan: list[OrderRequest | dict[str, Any]] = []
        need: dict[tuple[int, str], int] = {}
        seen: set[str] = set()
        for req in sub.orders:
            if req.client_id:
                if req.client_id in seen:
                    return CreateOrderFailed(f"client_id {req.client_id!r} is repeated in one submission")
                seen.add(req.client_id)
                if (req.member_id, req.client_id) in existing:
                    plan.append(existing[(req.member_id, req.client_id)])
                    continue
            key = (req.member_id, req.lock_currency)
            need[key] = need.get(key, 0) + req.lock_amount
            if need[key] > available.get(key, 0):
                cur = self.currencies[req.lock_currency]
                return CreateOrderFailed(
                    f"cannot lock funds (amount: {format_units(req.lock_amount, cur.precision)})"
                )
            plan.append(req)
        for key, amt in need.items():
            available[key] -= amt
        return plan


def _spelled(shards: Sequence[int]) -> str:
    """`3`, or `0-3` for a run of shards (an actor's name, and its label in /metrics)."""
    if len(shards) > 1 and list(shards) == list(range(shards[0], shards[-1] + 1)):
        return f"{shards[0]}-{shards[-1]}"
    return ",".join(map(str, shards))


class _ShardsLost(Exception):
    """A batch's fence found leased shards at another epoch: taken over by another node."""

    def __init__(self, lost: Sequence[int]) -> None:
        self.shards = set(lost)
        super().__init__(f"account shard{'s' if len(lost) > 1 else ''} {', '.join(map(str, sorted(lost)))} "
                         "held at a newer epoch elsewhere")
