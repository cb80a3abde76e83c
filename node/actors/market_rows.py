"""What a market actor writes and reads, as statements and rows: the batch's bulk writes, the claim
of new orders, the recovery query, and the per-order record it keeps beside the engine's order.
Kept apart from the actor (node/actors/market.py) so that its batch logic reads on its own."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from node.actors import shards
from node.actors.messages import NewOrder
from node.market import CODED_COLUMNS, LIMIT, STOP_LIMIT, TAIL_BITS, Order
from node.store import Bulk

FINISHED_MEMORY = 100_000
TAKEN_MEMORY = 200_000  # ids the store confirmed as taken in; older copies are checked in the store
SWEEP_AFTER_MS = 5_000
# The batch writes, as Bulk statements (one step per batch on SQLite; on PostgreSQL one statement
# over column arrays for the trades and one for the orders). Keys never repeat in a batch: one row per touched order. Accounts and ledger
# rows go through the money writer (node/store/ledger.py).
TRADES_BULK = Bulk.insert("trades", ("id", "market", "price", "volume", "funds", "ask_id", "bid_id", "ask_member_id",
                                     "bid_member_id", "taker_side", "ask_fee", "bid_fee", "created_at"))
# Every touched order's row, and the claim of the orders the batch takes in: a row whose last value
# is 1 is updated only while the order is still `pending`, so a copy taken already leaves the count
# short and the batch rolls back (ClaimLost). One write per order, where a claim statement before it
# moved each new order in the state indexes twice (and left two row versions on PostgreSQL).
# PostgreSQL reads the arrays through sub-selects: the planner cannot count them, so its plan is the
# same for every batch and kept, where it planned the statement anew at every batch (as it does any
# statement whose arrays it can count, and a few rows' custom plan always looked cheaper). A kept
# plan lives as long as the connection, whatever the table grows to: so each row is found by its
# key (`OFFSET 0` keeps that lookup a subquery the planner cannot fold into a join) and updated by
# its row address. A plain join of the arrays with `orders`, planned while the table was small, was
# a hash join over a scan of the whole table for every batch after (measured in bench_cluster's
# 20-second runs from an empty store: 4-6 ms a batch at ~13,000 orders, against 0.25 ms at 20,000
# for this one). One writer per order row (its market) means no row address changes under it; a
# claim that lost the row to another writer's update still leaves the count short.
ORDERS_UPDATE_BULK = replace(
    Bulk.update(
        "orders",
        "remaining = {0}, state = {1}, funds_used = {2}, locked = {3}, trades_count = {4}, seq = {5}, triggered = {6}, "
        "updated_at = {7}, intake = {8}",
        "{t}.id = {9} AND ({10} = 0 OR {t}.state = 'pending')",
    ),
    arrays="WITH v AS (SELECT o.tid, k.* "
           "FROM unnest((SELECT $1::bigint[]), (SELECT $2::text[]), (SELECT $3::bigint[]), (SELECT $4::bigint[]), "
           "(SELECT $5::int[]), (SELECT $6::bigint[]), (SELECT $7::int[]), (SELECT $8::bigint[]), "
           "(SELECT $9::bigint[]), (SELECT $10::bigint[]), (SELECT $11::int[])) "
           "AS k(remaining, state, funds_used, locked, trades_count, seq, triggered, updated_at, intake, id, claim) "
           "CROSS JOIN LATERAL (SELECT ctid AS tid FROM orders WHERE orders.id = k.id OFFSET 0) o) "
           "UPDATE orders SET remaining = v.remaining, state = v.state, funds_used = v.funds_used, locked = v.locked, "
           "trades_count = v.trades_count, seq = v.seq, triggered = v.triggered, updated_at = v.updated_at, "
           "intake = v.intake "
           "FROM v WHERE orders.ctid = v.tid AND (v.claim = 0 OR orders.state = 'pending')",
    arrays_cols=tuple(range(11)),
)
RECOVER_SQL = (f"SELECT {', '.join(CODED_COLUMNS)}, origin_locked, created_at, intake FROM orders "
               "WHERE market = ? AND state = 'wait' ORDER BY seq")
STATE_UPDATE_SQL = ("UPDATE markets_state SET next_seq = ?, last_price = ?, halted = ?, maker_fee = ?, taker_fee = ?, "
                    "next_intake = ?, updated_at = ? WHERE market = ? AND epoch = ?")
# PostgreSQL, for a batch that settles members of this process's shards inline: the state row's
# fence and the shards' fences in one statement (node/actors/shards.py), the shards as an array.
STATE_UPDATE_FENCED_PG = shards.fenced_returning_pg(STATE_UPDATE_SQL, 10)


# What the actor keeps beside an engine order while it lives (`MarketActor.live`): its lock, its
# birth time and its intake number, packed in one int: 48 bytes per resting order, where a record
# of three ints took ~150 (most of a node's memory per order beyond the engine's own). Packed as the
# engine's loader packs a row's tail, so that recovery has the loader make them (RECOVER_SQL's last
# three columns).
BITS = TAIL_BITS
BITS2 = 2 * BITS
LOW = (1 << BITS) - 1


def live_of(origin_locked: int, created_at: int, intake: int) -> int:
    if not (0 <= created_at <= LOW and 0 <= intake <= LOW and origin_locked >= 0):
        raise ValueError(f"order fields out of range: locked {origin_locked}, created_at {created_at}, intake {intake}")
    return (origin_locked << BITS2) | (created_at << BITS) | intake


def origin_locked_of(live: int) -> int:
    return live >> BITS2


def created_at_of(live: int) -> int:
    return (live >> BITS) & LOW


def intake_of(live: int) -> int:
    return live & LOW


def rests(o: Order) -> bool:
    """The order rests in the book once its batch is done (an untriggered stop does not)."""
    return o.state == "wait" and (o.ord_type == LIMIT or (o.ord_type == STOP_LIMIT and o.triggered))


def new_order_from_row(r: Any) -> NewOrder:
    return NewOrder(
        id=int(r["id"]), member_id=int(r["member_id"]), side=r["side"], ord_type=r["ord_type"], price=int(r["price"]),
        volume=int(r["volume"]), tif=r["tif"], stop_price=int(r["stop_price"]), funds=int(r["funds"]),
        origin_locked=int(r["origin_locked"]), created_at=int(r["created_at"]),
    )
