"""Read-only views of an engine's book: depth, iteration, estimates, state hash, consistency check.

Kept out of node/market/engine.py, which holds the hot paths; the Engine methods of the same names
call these.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from .errors import InvalidOrder
from .order import BUY, SELL, STOP_LIMIT, WAIT, Order

if TYPE_CHECKING:
    from .engine import Engine


def depth(e: Engine, limit: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(asks, bids), each best-first, as aggregated (price, volume), at most ``limit`` levels."""
    if limit <= 0:
        return [], []
    al = e._ask_levels
    bl = e._bid_levels
    asks = [(-k, al[k].total) for k in reversed(e._ask_keys[-limit:])]
    bids = [(k, bl[k].total) for k in reversed(e._bid_keys[-limit:])]
    return asks, bids


def level_volume(e: Engine, side: str, price: int) -> int:
    """Aggregated remaining volume at one price (0 when the level is empty)."""
    if side == BUY:
        lv = e._bid_levels.get(price)
    elif side == SELL:
        lv = e._ask_levels.get(-price)
    else:
        raise InvalidOrder(f"bad side {side!r}")
    return 0 if lv is None else lv.total


def orders(e: Engine, side: str) -> Iterator[Order]:
    """Resting orders of one side in priority order (best price, then time)."""
    if side == BUY:
        keys, levels = e._bid_keys, e._bid_levels
    elif side == SELL:
        keys, levels = e._ask_keys, e._ask_levels
    else:
        raise InvalidOrder(f"bad side {side!r}")
    out: list[Order] = []
    for k in reversed(keys):
        out.extend(levels[k])
    return iter(out)


def stop_orders(e: Engine) -> list[Order]:
    """Untriggered stop orders, by id (not part of the book, not in depth)."""
    by_id = e._orders
    stops = [by_id[oid] for _, oid in e._buy_stops]
    stops.extend(by_id[oid] for _, oid in e._sell_stops)
    stops.sort(key=_by_id)
    return stops


def estimate_market_buy(e: Engine, volume: int) -> int | None:
    """Funds a market buy of ``volume`` lots would spend now; None if the asks are too thin."""
    if volume <= 0:
        return 0
    need = volume
    total = 0
    al = e._ask_levels
    for k in reversed(e._ask_keys):
        v = al[k].total
        if v >= need:
            return total - k * need
        total -= k * v
        need -= v
    return None


def state_hash(e: Engine) -> str:
    """Hex sha256 of the resting orders (bids then asks, priority order) and untriggered stops."""
    h = hashlib.sha256()
    parts: list[str] = []
    for side in (BUY, SELL):
        for o in orders(e, side):
            parts.append(f"{o.id},{o.side},{o.price},{o.remaining},{o.seq}\n")
    for o in stop_orders(e):
        parts.append(f"stop,{o.id},{o.side},{o.price},{o.stop_price},{o.remaining},{o.tif}\n")
    h.update("".join(parts).encode())
    return h.hexdigest()


def check_consistency(e: Engine) -> None:
    """Raise AssertionError if the indexes disagree (not ``assert``: must survive ``-O``)."""

    def fail(msg: str) -> None:
        raise AssertionError(f"{e.market}: {msg}")

    seen: set[int] = set()
    for side, keys, levels, sgn in (
        (BUY, e._bid_keys, e._bid_levels, 1),
        (SELL, e._ask_keys, e._ask_levels, -1),
    ):
        if keys != sorted(set(keys)):
            fail(f"{side} keys not strictly sorted")
        if set(keys) != set(levels):
            fail(f"{side} keys and levels disagree")
        for k in keys:
            lv = levels[k]
            total = 0
            prev: Order | None = None
            if lv.head.prev is not None:
                fail(f"{side} level {k * sgn}: head {lv.head.id} has a predecessor")
            o: Order | None = lv.head
            while o is not None:
                oid = o.id
                if o.prev is not prev:
                    fail(f"order {oid}: back link broken")
                if o.side != side or o.price != k * sgn:
                    fail(f"order {oid} in the wrong level")
                if not (0 if prev is None else prev.seq) < o.seq < e.next_seq:
                    fail(f"order {oid} seq {o.seq} out of order")
                if o.state is not WAIT:
                    fail(f"order {oid} rests in state {o.state!r}")
                if e._orders.get(oid) is not o:
                    fail(f"order {oid} not indexed")
                if oid in seen:
                    fail(f"order {oid} linked twice")
                if not 0 < o.remaining <= o.volume:
                    fail(f"order {oid} cannot rest: {o!r}")
                if o.ord_type == STOP_LIMIT and not o.triggered:
                    fail(f"untriggered stop {oid} in the book")
                total += o.remaining
                seen.add(oid)
                prev = o
                o = o.next
            if lv.tail is not prev:
                fail(f"{side} level {k * sgn}: tail is not the last order")
            if lv.total != total:
                fail(f"{side} level {k * sgn} total {lv.total} != {total}")
    if e._bid_keys and e._ask_keys and e._bid_keys[-1] >= -e._ask_keys[-1]:
        fail("book is crossed")
    for side, stops in ((BUY, e._buy_stops), (SELL, e._sell_stops)):
        if stops != sorted(set(stops)):
            fail(f"{side} stops not sorted")
        for sp, oid in stops:
            s = e._orders.get(oid)
            if s is None or s.side != side or s.stop_price != sp or s.triggered or s.state != WAIT:
                fail(f"stop {oid} badly indexed")
            if oid in seen:
                fail(f"order {oid} both in book and stops")
            seen.add(oid)
    if seen != set(e._orders):
        fail("id map holds orders that are neither resting nor stops")


def fok_fillable(e: Engine, o: Order, lim: int) -> bool:
    """Could ``o`` fill completely right now, honouring its limit and self-trade prevention?"""
    if o.kind.buy:
        keys, levels = e._ask_keys, e._ask_levels
    else:
        keys, levels = e._bid_keys, e._bid_levels
    need = o.remaining
    stp = e._stp
    member = o.member_id
    for i in range(len(keys) - 1, -1, -1):
        k = keys[i]
        if k < lim:
            return False
        lv = levels[k]
        if not stp:
            need -= lv.total
            if need <= 0:
                return True
            continue
        maker: Order | None = lv.head
        while maker is not None:
            if maker.member_id == member:
                if stp == 1:
                    return False
                # cancel_maker: it would be removed, not traded
            else:
                need -= maker.remaining
                if need <= 0:
                    return True
            maker = maker.next
    return False


def _by_id(o: Order) -> int:
    return o.id
