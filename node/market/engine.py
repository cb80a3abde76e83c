"""The pure matching engine of one market: price-time priority, integer-only, deterministic.

No I/O, no clock, no float: the market actor feeds orders in and persists what comes out, so the
same sequence of calls must always give the same trades, ids, sequences and state hash.

Book layout (chosen for speed and memory in pure Python and under mypyc, see bench/bench_engine.py):

* per side, ``levels``: dict key -> ``Level`` (node/market/book.py): the level's orders linked
  through themselves in time priority, and their total remaining volume.
* per side, ``keys``: a plain list of the side's level keys, sorted ascending with the BEST level at
  the END. Bids use key = price, asks use key = -price, so on both sides "better" is "bigger" and
  a taker crosses a level iff ``key >= lim`` (lim = -limit price for a buy, limit price for a sell).
  Activity concentrates near the top of the book, so inserting or removing a level there is a short
  memmove at the end of the list, and taking the best level is ``keys.pop()``.
* ``_orders``: id -> Order for every resting order and untriggered stop.
* stops: two sorted lists of (stop_price, id), node/market/stops.py.

A cancel unlinks the order from its level in O(1) (its neighbours are linked to each other), and
a level left empty is dropped with its key: nothing dead stays in the book, so matching never skips
anything and memory is exactly that of the live orders. Queries and the consistency check live in
node/market/views.py, recovery in recovery.py and validation in validate.py: this file keeps the
hot paths.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable, Iterator, Sequence
from heapq import heappop, heappush
from itertools import islice
from typing import Any, Final

from . import recovery, stops, views
from .book import Level
from .errors import DuplicateOrder, InvalidOrder, NotOwner, OrderNotFound, WouldCross
from .frozen import NONE
from .order import (
    CANCEL,
    DONE,
    FOK,
    GTC,
    IOC,
    LIMIT,
    MARKET,
    MAX_VALUE,
    POST_ONLY,
    SIDES,
    WAIT,
    MatchResult,
    Order,
    Trade,
)
from .validate import validate

#: A key below every possible level key: market orders cross any price.
_NO_LIMIT: Final = -(1 << 64)
_new = object.__new__
#: True when this module runs compiled by mypyc, whose native classes cannot be made with
#: ``object.__new__`` (the pure-Python build uses it to skip ``__init__`` frames in hot paths).
_NATIVE: Final = not __file__.endswith(".py")

STP_CANCEL_TAKER: Final = "cancel_taker"
STP_CANCEL_MAKER: Final = "cancel_maker"
STP_NONE: Final = "none"
_STP_CODES: Final = {STP_NONE: 0, STP_CANCEL_TAKER: 1, STP_CANCEL_MAKER: 2}

class Engine:
    """Order book and matcher of one market; see the module docstring for the layout.

    Semantics beyond plain price-time priority (each pinned by tests/test_engine.py):

    * Trade price is the maker's; volume the smaller remaining. A market buy also caps each fill
      at what its unspent funds pay for, and stops as soon as one more lot is unaffordable.
    * Self-trade prevention meets the taker's own resting order: ``cancel_taker`` cancels the
      taker's remainder (earlier fills stand, a GTC remainder does not rest), ``cancel_maker``
      cancels that resting order and goes on, ``none`` lets them trade.
    * FOK checks beforehand that the whole volume fills within its limit, counting only what it
      could really take under STP; otherwise nothing trades and it is cancelled.
    * A stop fires when any trade price reaches it (buy: price >= stop, sell: price <= stop),
      including a price passed in the middle of a sweep, or at submit if ``last_price`` already
      has. Fired stops are matched as limit orders lowest id first, each after the operation
      that fired it has finished; their trades may fire more. A fired post-only stop that would
      cross cannot be rejected any more, so it is cancelled.
    * ``seq`` is given when an order enters the book (a waiting stop has none until it fires).
    """

    __slots__ = (
        "market",
        "stp",
        "_stp",
        "next_trade_id",
        "next_seq",
        "last_price",
        "_orders",
        "_bid_keys",
        "_bid_levels",
        "_ask_keys",
        "_ask_levels",
        "_buy_stops",
        "_sell_stops",
    )

    def __init__(
        self, market: str, stp: str = STP_CANCEL_TAKER, next_trade_id: int = 1, next_seq: int = 1
    ) -> None:
        if stp not in _STP_CODES:
            raise ValueError(f"unknown self-trade prevention mode {stp!r}")
        self.market = market
        self.stp = stp
        self._stp = _STP_CODES[stp]
        self.next_trade_id = next_trade_id
        self.next_seq = next_seq
        self.last_price: int | None = None
        self._orders: dict[int, Order] = {}
        self._bid_keys: list[int] = []
        self._bid_levels: dict[int, Level] = {}
        self._ask_keys: list[int] = []
        self._ask_levels: dict[int, Level] = {}
        self._buy_stops: list[tuple[int, int]] = []
        self._sell_stops: list[tuple[int, int]] = []

    # ------------------------------------------------------------------ submit

    def submit(self, order: Order) -> MatchResult:
        """Match a new order, rest or cancel its remainder, and run any stops it triggers.

        Validation happens before anything changes, so an EngineError leaves the engine untouched.
        Plain limit orders take an inlined path (most traffic); the rest goes to _submit_other.
        """
        kind = order.kind
        vol = order.volume
        price = order.price
        if (
            not kind.plain
            or type(vol) is not int
            or type(price) is not int
            or not 0 < vol <= MAX_VALUE
            or not 0 < price <= MAX_VALUE
            or order.remaining != vol
            or order.stop_price
            or order.funds
            or order.state is not WAIT
            or type(order.id) is not int
        ):
            return self._submit_other(order)
        tif = kind.tif
        buy = kind.buy
        if buy:
            okeys = self._ask_keys
            lim = -price
        else:
            okeys = self._bid_keys
            lim = price
        oid = order.id
        orders = self._orders
        if oid in orders:
            raise DuplicateOrder(f"order {oid} is already in the book")
        if okeys and okeys[-1] >= lim:
            if tif == POST_ONLY:
                raise WouldCross(f"post-only order {oid} would cross the book")
            res = MatchResult()
            self._execute(order, lim, tif, res)
            if res.trades and (self._buy_stops or self._sell_stops):
                self._cascade(res, 0, [])
            return res
        # Nothing to match: rest (inlined _rest) or cancel.
        if kind.rests:
            seq = self.next_seq
            self.next_seq = seq + 1
            order.seq = seq
            if buy:
                key = price
                levels = self._bid_levels
            else:
                key = -price
                levels = self._ask_levels
            lv = levels.get(key)
            if lv is None:
                levels[key] = Level(order, vol)
                keys = self._bid_keys if buy else self._ask_keys
                if not keys or keys[-1] < key:
                    keys.append(key)
                else:
                    insort(keys, key)
            else:
                tail = lv.tail
                tail.next = order
                order.prev = tail
                order.next = None
                lv.tail = order
                lv.total += vol
            orders[oid] = order
            if _NATIVE:
                return MatchResult([order])
            # MatchResult([order]) inlined: saves the __init__ frame on most orders
            res = _new(MatchResult)
            res.trades = res.cancelled = res.triggered = res.done = NONE
            res.rested = [order]
            return res
        order.state = CANCEL
        res = MatchResult()
        res.cancelled.append(order)
        return res

    def _submit_other(self, order: Order) -> MatchResult:
        """Validate thoroughly and handle market and stop orders (and report bad limit orders)."""
        validate(order)
        if order.id in self._orders:
            raise DuplicateOrder(f"order {order.id} is already in the book")
        res = MatchResult()
        kind = order.kind
        if kind.ord_type == MARKET:
            self._execute(order, _NO_LIMIT, IOC, res)
        elif kind.ord_type == LIMIT:
            # Defensive: valid limit orders normally take the fast path in submit().
            lim = -order.price if kind.buy else order.price
            okeys = self._ask_keys if kind.buy else self._bid_keys
            if kind.tif == POST_ONLY and okeys and okeys[-1] >= lim:
                raise WouldCross(f"post-only order {order.id} would cross the book")
            self._execute(order, lim, kind.tif, res)
        else:  # STOP_LIMIT
            lp = self.last_price
            if lp is not None and (lp >= order.stop_price if kind.buy else lp <= order.stop_price):
                order.triggered = True
                res.triggered.append(order)
                self._cascade(res, 0, [(order.id, order)])
            else:
                stops.add_stop(self, order)
                res.rested.append(order)
            return res
        if res.trades and (self._buy_stops or self._sell_stops):
            self._cascade(res, 0, [])
        return res

    def _execute(self, taker: Order, lim: int, tif: str, res: MatchResult) -> None:
        """Match a taker (limit, market or triggered stop), then rest, finish or cancel it.

        The hot loop takes liquidity from the opposite side while its best key is >= ``lim``,
        walking each level from its head. Makers that are filled or removed by self-trade
        prevention are always the level's first orders, so the level's new head is simply where
        the walk stopped; a level used up is dropped whole. Post-only was already checked for
        submitted limit orders; here it only concerns triggered stops, which cannot be rejected
        any more and are therefore cancelled.
        """
        if taker.kind.buy:
            keys = self._ask_keys
            levels = self._ask_levels
            sgn = -1
        else:
            keys = self._bid_keys
            levels = self._bid_levels
            sgn = 1
        stp_cut = False
        if keys and keys[-1] >= lim:
            if tif == POST_ONLY or (tif == FOK and not views.fok_fillable(self, taker, lim)):
                taker.state = CANCEL
                res.cancelled.append(taker)
                return
            orders = self._orders
            trades = res.trades
            done = res.done
            new = _new
            rem = taker.remaining
            budget = taker.funds  # > 0 only for a market buy
            used = taker.funds_used
            tmember = taker.member_id
            stp = self._stp
            tid0 = tid = self.next_trade_id
            price = 0
            while rem and keys:
                k = keys[-1]
                if k < lim:
                    break
                lv = levels[k]
                maker = lv.head
                price = k * sgn
                total = lv.total
                emptied = False
                while True:
                    if budget and budget - used < price:
                        break  # a market buy stops when it cannot pay for one more lot
                    mrem = maker.remaining
                    if stp and maker.member_id == tmember:
                        if stp == 1:  # cancel_taker
                            stp_cut = True
                            break
                        maker.state = CANCEL  # cancel_maker
                        res.cancelled.append(maker)
                        del orders[maker.id]
                        total -= mrem
                    else:
                        v = rem if rem < mrem else mrem
                        if budget:
                            afford = (budget - used) // price  # >= 1, checked above
                            if afford < v:
                                v = afford
                        fund = price * v
                        if _NATIVE:
                            t = Trade(tid, price, v, maker, taker)
                        else:
                            t = new(Trade)
                            t.id = tid
                            t.price = price
                            t.volume = v
                            t.maker = maker
                            t.taker = taker
                        trades.append(t)
                        tid += 1
                        used += fund
                        maker.funds_used += fund
                        maker.trades_count += 1
                        rem -= v
                        total -= v
                        if v != mrem:
                            maker.remaining = mrem - v
                            break
                        maker.remaining = 0
                        maker.state = DONE
                        done.append(maker)
                        del orders[maker.id]
                    nxt = maker.next
                    if nxt is None:
                        emptied = True
                        break
                    maker = nxt
                    if not rem:
                        break
                if emptied:
                    del levels[k]
                    keys.pop()
                else:
                    lv.head = maker
                    maker.prev = None
                    lv.total = total
                    break
            taker.remaining = rem
            if tid != tid0:
                taker.funds_used = used
                taker.trades_count += tid - tid0
                self.next_trade_id = tid
                self.last_price = trades[-1].price
        if not taker.remaining:
            taker.state = DONE
            res.done.append(taker)
        elif not stp_cut and (tif == GTC or tif == POST_ONLY):
            self._rest(taker)
            res.rested.append(taker)
        else:
            taker.state = CANCEL
            res.cancelled.append(taker)

    # ------------------------------------------------------------------ stops

    def _cascade(self, res: MatchResult, start: int, pending: list[tuple[int, Order]]) -> None:
        """Trigger the stops reached by the trades since ``start`` and match them, until stable.

        Triggered stops wait in a heap and are matched as limit orders lowest id first; stops
        reached by their own trades join the heap. The outcome only depends on ids and prices.
        """
        trades = res.trades
        while True:
            if len(trades) > start and (self._buy_stops or self._sell_stops):
                lo = hi = trades[start].price
                for t in islice(trades, start + 1, None):
                    p = t.price
                    if p < lo:
                        lo = p
                    elif p > hi:
                        hi = p
                for o in stops.pop_triggered(self, lo, hi):
                    o.triggered = True
                    res.triggered.append(o)
                    heappush(pending, (o.id, o))
            start = len(trades)
            if not pending:
                return
            _, o = heappop(pending)
            self._execute(o, -o.price if o.kind.buy else o.price, o.kind.tif, res)

    # ------------------------------------------------------------------ book edits

    def _rest(self, o: Order) -> None:
        """Add ``o`` at the back of its price level with the next priority sequence."""
        seq = self.next_seq
        self.next_seq = seq + 1
        o.seq = seq
        o.state = WAIT
        if o.kind.buy:
            key = o.price
            levels, keys = self._bid_levels, self._bid_keys
        else:
            key = -o.price
            levels, keys = self._ask_levels, self._ask_keys
        lv = levels.get(key)
        if lv is None:
            levels[key] = Level(o, o.remaining)
            if not keys or keys[-1] < key:
                keys.append(key)
            else:
                insort(keys, key)
        else:
            tail = lv.tail
            tail.next = o
            o.prev = tail
            o.next = None
            lv.tail = o
            lv.total += o.remaining
        self._orders[o.id] = o

    def _unlink(self, o: Order) -> None:
        """Take a resting order or untriggered stop out of every index and mark it cancelled."""
        if o.kind.stop:
            del self._orders[o.id]
            stops.remove_stop(self, o)
            o.state = CANCEL
        else:
            self.cancel(o.id)

    def cancel(self, order_id: int, member_id: int | None = None) -> Order:
        """Remove a resting order or untriggered stop; its ``remaining`` tells what to unlock."""
        orders = self._orders
        o = orders.get(order_id)
        if o is None:
            raise OrderNotFound(f"order {order_id} is not in the book")
        if member_id is not None and o.member_id != member_id:
            raise NotOwner(f"order {order_id} belongs to another member")
        kind = o.kind
        if kind.stop:
            self._unlink(o)
            return o
        del orders[order_id]
        o.state = CANCEL
        if kind.buy:
            key = o.price
            levels = self._bid_levels
        else:
            key = -o.price
            levels = self._ask_levels
        lv = levels[key]
        prev = o.prev
        nxt = o.next
        if prev is None:
            if nxt is None:  # the level's only order: the level goes
                del levels[key]
                keys = self._bid_keys if kind.buy else self._ask_keys
                if keys[-1] == key:
                    keys.pop()
                else:
                    del keys[bisect_left(keys, key)]
                return o
            lv.head = nxt
            nxt.prev = None
        else:
            prev.next = nxt
            if nxt is None:
                lv.tail = prev
            else:
                nxt.prev = prev
        lv.total -= o.remaining
        return o

    def cancel_all(self, member_id: int, side: str | None = None) -> list[Order]:
        """Cancel every resting order and untriggered stop of a member (optionally one side), by id.

        A linear scan: rare operation, and keeping a per-member index would tax every order.
        """
        if side is not None and side not in SIDES:
            raise InvalidOrder(f"bad side {side!r}")
        victims = [
            o for o in self._orders.values() if o.member_id == member_id and (side is None or o.side == side)
        ]
        victims.sort(key=_by_id)
        for o in victims:
            self._unlink(o)
        return victims

    # ------------------------------------------------------------------ recovery (node/market/recovery.py)

    def restore(self, order: Order) -> None:
        """Recovery: put a resting order (or an untriggered stop) back with its stored ``seq``.

        Never matches. Orders may come in any order: a level is kept sorted by seq. ``next_seq``
        is raised past the restored seq so new orders always queue behind restored ones.
        """
        recovery.restore(self, order)

    def load(self, rows: Iterable[Sequence[Any]]) -> list[Order]:
        """Recovery in bulk: build the whole book of an empty engine from stored rows at once.

        Each row is ``LOAD_COLUMNS``, as the store holds them, resting orders ascending by
        ``seq`` (a row out of order costs one sort) and waiting stops anywhere; see
        node/market/recovery.py. An error leaves the engine empty. Returns the orders in the
        rows' order.
        """
        return recovery.load(self, rows)

    # ------------------------------------------------------------------ queries (node/market/views.py)

    def get(self, order_id: int) -> Order | None:
        """The resting order or untriggered stop with this id, if any."""
        return self._orders.get(order_id)

    def best_bid(self) -> int | None:
        keys = self._bid_keys
        return keys[-1] if keys else None

    def best_ask(self) -> int | None:
        keys = self._ask_keys
        return -keys[-1] if keys else None

    def level_volume(self, side: str, price: int) -> int:
        """Aggregated remaining volume at one price (0 when the level is empty)."""
        return views.level_volume(self, side, price)

    def depth(self, limit: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """(asks, bids), each best-first, as aggregated (price, volume), at most ``limit`` levels."""
        return views.depth(self, limit)

    def orders(self, side: str) -> Iterator[Order]:
        """Resting orders of one side in priority order (best price, then time)."""
        return views.orders(self, side)

    def stop_orders(self) -> list[Order]:
        """Untriggered stop orders, by id (not part of the book, not in depth)."""
        return views.stop_orders(self)

    def __len__(self) -> int:
        """Number of resting orders plus untriggered stops."""
        return len(self._orders)

    def estimate_market_buy(self, volume: int) -> int | None:
        """Funds a market buy of ``volume`` lots would spend now; None if the asks are too thin."""
        return views.estimate_market_buy(self, volume)

    def state_hash(self) -> str:
        """Hex sha256 of the book and stops: equal for equal books (a rebuilt book is checked with it)."""
        return views.state_hash(self)

    def check_consistency(self) -> None:
        """Raise AssertionError if the indexes disagree (not ``assert``: must survive ``-O``)."""
        views.check_consistency(self)


def _by_id(o: Order) -> int:
    return o.id
