"""The untriggered stop orders of an engine: two lists of (stop_price, id), sorted ascending.

A stop waits here, out of the book and out of depth, until a trade price reaches it; the triggered
ones are then a prefix (buy stops) or a suffix (sell stops) of their list, found with one bisect.
Engine._cascade (node/market/engine.py) matches what ``pop_triggered`` returns.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from typing import TYPE_CHECKING

from .order import Order

if TYPE_CHECKING:
    from .engine import Engine


def pop_triggered(e: Engine, lo: int, hi: int) -> list[Order]:
    """Remove and return (by id) the stops reached by a trade price in [lo, hi].

    A buy stop fires when a trade price >= its stop price, a sell stop when one is <= it.
    """
    fired: list[Order] = []
    orders = e._orders
    bs = e._buy_stops
    if bs and bs[0][0] <= hi:
        n = bisect_left(bs, (hi + 1,))
        fired.extend(orders.pop(oid) for _, oid in bs[:n])
        del bs[:n]
    ss = e._sell_stops
    if ss and ss[-1][0] >= lo:
        n = bisect_left(ss, (lo,))
        fired.extend(orders.pop(oid) for _, oid in ss[n:])
        del ss[n:]
    fired.sort(key=_by_id)
    return fired

def add_stop(e: Engine, o: Order) -> None:
    """Park an untriggered stop: not in the book, not in depth, never matched."""
    insort(e._buy_stops if o.kind.buy else e._sell_stops, (o.stop_price, o.id))
    e._orders[o.id] = o

def remove_stop(e: Engine, o: Order) -> None:
    stops = e._buy_stops if o.kind.buy else e._sell_stops
    i = bisect_left(stops, (o.stop_price, o.id))
    del stops[i]


def _by_id(o: Order) -> int:
    return o.id
