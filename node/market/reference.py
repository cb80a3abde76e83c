"""The naive reference book: the baseline the engine is measured and checked against.

It is the book a competent programmer writes first: per side a ``SortedDict`` of price -> ``deque``
of orders, an id -> order dict, and cancels that only mark the order dead (matching pops dead
orders when it reaches them, and a level whose orders are all dead is dropped then). Same
price-time priority, market-buy budget and self-trade prevention (cancel the taker) as the engine,
for GTC limit and market orders only: no IOC/FOK/post-only, no stops, no other STP mode.

bench/bench_engine.py times it against the engine on the same operations, and
tests/test_engine_property.py checks that both give the same fills and the same book. It takes each
order as plain arguments and builds its own small order object, as its callers would. Nothing in
the node imports it: it needs ``sortedcontainers``, a test/bench dependency.
"""

from __future__ import annotations

from collections import deque

from sortedcontainers import SortedDict

from .order import BUY, MARKET

#: (id, member_id, side, ord_type, price, volume, tif, stop_price, funds): Order's own arguments.
OrderArgs = tuple[int, int, str, str, int, int, str, int, int]


class RefOrder:
    """A resting order of the reference book; ``live`` turns False when it is cancelled."""

    __slots__ = ("id", "member", "side", "price", "remaining", "live")

    def __init__(self, id: int, member: int, side: str, price: int, remaining: int) -> None:
        self.id = id
        self.member = member
        self.side = side
        self.price = price
        self.remaining = remaining
        self.live = True


class RefBook:
    """Naive price-time book: SortedDict price -> deque of orders per side, lazy cancels."""

    def __init__(self) -> None:
        self.bids: SortedDict = SortedDict()  # best = last key
        self.asks: SortedDict = SortedDict()  # best = first key
        self.orders: dict[int, RefOrder] = {}
        self.trades = 0
        self.lots = 0

    def submit(self, args: OrderArgs) -> list[tuple[int, int, int]]:
        """Match and rest one order; returns its fills as (maker id, price, volume)."""
        oid, member, side, ord_type, price, volume, _tif, _stop, funds = args
        o = RefOrder(oid, member, side, price, volume)
        book = self.asks if side == BUY else self.bids
        market = ord_type == MARKET
        used = 0
        fills = []
        while o.remaining and book:
            best_price, level = book.peekitem(0 if side == BUY else -1)
            if not market and (best_price > price if side == BUY else best_price < price):
                break
            while level and o.remaining:
                m = level[0]
                if not m.live:
                    level.popleft()
                    continue
                if m.member == member:  # self-trade prevention: cancel the taker
                    o.remaining = 0
                    break
                v = min(o.remaining, m.remaining)
                if funds:
                    afford = (funds - used) // best_price
                    if afford == 0:
                        o.remaining = 0
                        break
                    v = min(v, afford)
                    used += v * best_price
                m.remaining -= v
                o.remaining -= v
                fills.append((m.id, best_price, v))
                self.trades += 1
                self.lots += v
                if not m.remaining:
                    level.popleft()
                    del self.orders[m.id]
            if not level:
                del book[best_price]
            else:
                break
        if o.remaining and not market:
            own = self.bids if side == BUY else self.asks
            level = own.get(price)
            if level is None:
                own[price] = level = deque()
            level.append(o)
            self.orders[oid] = o
        return fills

    def cancel(self, order_id: int, member_id: int | None = None) -> RefOrder:
        """Mark a resting order dead (KeyError when it is not resting, or not the member's)."""
        o = self.orders[order_id]
        if member_id is not None and o.member != member_id:
            raise KeyError(order_id)
        del self.orders[order_id]
        o.live = False
        return o

    # ---------------------------------------------------------------- queries (the Book protocol)

    def _levels(self, side: str) -> list[tuple[int, int]]:
        """(price, live volume) of one side's levels that hold a live order, best first."""
        book = self.bids if side == BUY else self.asks
        prices = reversed(book.keys()) if side == BUY else iter(book.keys())
        out = []
        for p in prices:
            v = sum(o.remaining for o in book[p] if o.live)
            if v:
                out.append((p, v))
        return out

    def best_bid(self) -> int | None:
        levels = self._levels(BUY)
        return levels[0][0] if levels else None

    def best_ask(self) -> int | None:
        levels = self._levels("sell")
        return levels[0][0] if levels else None

    def level_volume(self, side: str, price: int) -> int:
        level = (self.bids if side == BUY else self.asks).get(price, ())
        return sum(o.remaining for o in level if o.live)

    def depth(self, limit: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        if limit <= 0:
            return [], []
        return self._levels("sell")[:limit], self._levels(BUY)[:limit]

    def __len__(self) -> int:
        return len(self.orders)
