"""The pure matching engine of one market: price-time priority, integer-only, deterministic.

No I/O, no clock, no float: the market actor feeds orders in and persists what comes out, so the
same sequence of calls must always give the same trades, ids, sequences and state hash.

Book layout (chosen for pure-Python speed and memory, see bench/bench_engine.py):

* per side, ``levels``: dict key -> level, a level being the list ``[queue, total, dead]``:
  ``queue`` a deque of the level's orders in time priority, ``total`` the level's aggregated
  remaining volume of live orders (depth costs nothing per order), ``dead`` how many cancelled
  orders the queue still holds. A list, not a class: creating and indexing it is cheaper, and
  levels come and go all the time.
* per side, ``keys``: a plain list of the side's level keys, sorted ascending with the BEST level at
  the END. Bids use key = price, asks use key = -price, so on both sides "better" is "bigger" and
  a taker crosses a level iff ``key >= lim`` (lim = -limit price for a buy, limit price for a sell).
  Activity concentrates near the top of the book, so inserting or removing a level there is a short
  memmove at the end of the list, and taking the best level is ``keys.pop()``.
* ``_orders``: id -> Order for every resting order and untriggered stop.
* stops: two lists of (stop_price, id) sorted ascending; the triggered ones are a prefix (buy stops)
  or a suffix (sell stops), found with one bisect.

A cancel is O(1): the order leaves ``_orders`` and its level's total at once, is marked
``CANCEL``, and stays in its queue as a dead entry (8 bytes) that matching pops when it reaches it.
A level whose live total falls to zero is dropped whole, dead entries included; a queue whose dead
entries pass a quarter of its length is rebuilt without them, so dead orders never hold more than
a third of the live ones' memory and the rebuild costs a few element copies per cancel. Every book
entry is alive iff its ``state`` is the ``WAIT`` constant itself (orders that enter the book are
given it), an identity test.
"""

from __future__ import annotations

import gc
import hashlib
from bisect import bisect_left, insort
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from heapq import heappop, heappush
from itertools import islice
from typing import Any, ClassVar, Final

from .order import (
    BUY,
    CANCEL,
    DONE,
    FOK,
    GTC,
    IOC,
    LIMIT,
    MARKET,
    ORD_TYPES,
    POST_ONLY,
    SELL,
    SIDES,
    STOP_LIMIT,
    TIFS,
    WAIT,
    MatchResult,
    Order,
    Trade,
)

#: Largest price/volume accepted: they are stored as signed 64-bit integers (BIGINT).
MAX_VALUE: Final = (1 << 63) - 1
#: A key below every possible level key: market orders cross any price.
_NO_LIMIT: Final = -(1 << 64)
_new = object.__new__
#: True when this module runs compiled by mypyc, whose native classes cannot be made with
#: ``object.__new__`` (the pure-Python build uses it to skip ``__init__`` frames in hot paths).
_NATIVE: Final = not __file__.endswith(".py")

#: Stored strings -> the module's constants (one object each, and alive-by-identity for WAIT).
_CONSTANTS = {c: c for c in (BUY, SELL, LIMIT, MARKET, STOP_LIMIT, GTC, IOC, FOK, POST_ONLY)}

#: The columns ``Engine.load`` reads from each row, in this order.
LOAD_COLUMNS = ("id", "member_id", "side", "ord_type", "price", "volume", "remaining", "tif", "stop_price",
                "funds", "funds_used", "trades_count", "seq", "triggered")

#: A price level: [queue: deque[Order] in time priority, live remaining volume: int, dead entries: int].
Level = list[Any]

STP_CANCEL_TAKER: Final = "cancel_taker"
STP_CANCEL_MAKER: Final = "cancel_maker"
STP_NONE: Final = "none"
_STP_CODES = {STP_NONE: 0, STP_CANCEL_TAKER: 1, STP_CANCEL_MAKER: 2}


class EngineError(Exception):
    """Base of the engine's typed errors; ``code`` is stable for the API layer to map."""

    code: ClassVar[str] = "engine_error"


class InvalidOrder(EngineError):
    """The order's fields are inconsistent (bad volume, price, type, tif, stop or funds)."""

    code: ClassVar[str] = "invalid_order"


class DuplicateOrder(EngineError):
    """The id is already resting in the book or waiting in the stop list."""

    code: ClassVar[str] = "duplicate_order"


class OrderNotFound(EngineError):
    """No resting order or untriggered stop has this id (it may be done or cancelled)."""

    code: ClassVar[str] = "order_not_found"


class NotOwner(EngineError):
    """The order belongs to another member."""

    code: ClassVar[str] = "not_owner"


class WouldCross(EngineError):
    """A post-only order would take liquidity: it is rejected and nothing changes."""

    code: ClassVar[str] = "would_cross"


def _is_int(x: object) -> bool:
    """True for a real int (bool and float are refused: no float may reach the book)."""
    return type(x) is int


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
        An Order object is submitted once: a cancelled one may still sit in a queue as a dead entry.
        """
        vol = order.volume
        price = order.price
        tif = order.tif
        if (
            type(vol) is not int
            or type(price) is not int
            or not 0 < vol <= MAX_VALUE
            or not 0 < price <= MAX_VALUE
            or order.remaining != vol
            or order.ord_type != LIMIT
            or order.stop_price
            or order.funds
            or order.state is not WAIT
            or tif not in TIFS
            or type(order.id) is not int
        ):
            return self._submit_other(order)
        side = order.side
        if side == BUY:
            okeys = self._ask_keys
            lim = -price
        elif side == SELL:
            okeys = self._bid_keys
            lim = price
        else:
            return self._submit_other(order)  # raises InvalidOrder
        oid = order.id
        orders = self._orders
        if oid in orders:
            raise DuplicateOrder(f"order {oid} is already in the book")
        if _NATIVE:
            res = MatchResult()
        else:  # MatchResult() inlined: saves the __init__ frame on every order
            res = _new(MatchResult)
            res.trades = []
            res.cancelled = []
            res.triggered = []
            res.done = []
            res.rested = []
        if okeys and okeys[-1] >= lim:
            if tif == POST_ONLY:
                raise WouldCross(f"post-only order {oid} would cross the book")
            self._execute(order, lim, tif, res)
            if res.trades and (self._buy_stops or self._sell_stops):
                self._cascade(res, 0, [])
            return res
        # Nothing to match: rest (inlined _rest) or cancel.
        if tif == GTC or tif == POST_ONLY:
            seq = self.next_seq
            self.next_seq = seq + 1
            order.seq = seq
            if side == BUY:
                key = price
                levels = self._bid_levels
            else:
                key = -price
                levels = self._ask_levels
            lv = levels.get(key)
            if lv is None:
                levels[key] = [deque((order,)), vol, 0]
                keys = self._bid_keys if side == BUY else self._ask_keys
                if not keys or keys[-1] < key:
                    keys.append(key)
                else:
                    insort(keys, key)
            else:
                lv[0].append(order)
                lv[1] += vol
            orders[oid] = order
            res.rested.append(order)
        else:
            order.state = CANCEL
            res.cancelled.append(order)
        return res

    def _submit_other(self, order: Order) -> MatchResult:
        """Validate thoroughly and handle market and stop orders (and report bad limit orders)."""
        self._validate(order)
        if order.id in self._orders:
            raise DuplicateOrder(f"order {order.id} is already in the book")
        res = MatchResult()
        if order.ord_type == MARKET:
            self._execute(order, _NO_LIMIT, IOC, res)
        elif order.ord_type == LIMIT:
            # Defensive: valid limit orders normally take the fast path in submit().
            lim = -order.price if order.side == BUY else order.price
            okeys = self._ask_keys if order.side == BUY else self._bid_keys
            if order.tif == POST_ONLY and okeys and okeys[-1] >= lim:
                raise WouldCross(f"post-only order {order.id} would cross the book")
            self._execute(order, lim, order.tif, res)
        else:  # STOP_LIMIT
            lp = self.last_price
            if lp is not None and (lp >= order.stop_price if order.side == BUY else lp <= order.stop_price):
                order.triggered = True
                res.triggered.append(order)
                self._cascade(res, 0, [(order.id, order)])
            else:
                self._add_stop(order)
                res.rested.append(order)
            return res
        if res.trades and (self._buy_stops or self._sell_stops):
            self._cascade(res, 0, [])
        return res

    def _validate(self, o: Order) -> None:
        """Raise InvalidOrder unless ``o`` is a self-consistent new order."""
        if not (_is_int(o.id) and _is_int(o.member_id)):
            raise InvalidOrder("id and member_id must be integers")
        if o.side not in SIDES:
            raise InvalidOrder(f"bad side {o.side!r}")
        if o.ord_type not in ORD_TYPES:
            raise InvalidOrder(f"bad order type {o.ord_type!r}")
        if o.tif not in TIFS:
            raise InvalidOrder(f"bad time in force {o.tif!r}")
        if not (
            type(o.price) is int
            and type(o.volume) is int
            and type(o.stop_price) is int
            and type(o.funds) is int
            and type(o.remaining) is int
        ):
            raise InvalidOrder("price, volume, stop_price, funds and remaining must be integers")
        if not 0 < o.volume <= MAX_VALUE:
            raise InvalidOrder("volume must be positive")
        if o.remaining != o.volume:
            raise InvalidOrder("remaining must equal volume for a new order")
        if o.state != WAIT:
            raise InvalidOrder(f"a new order's state must be {WAIT!r}")
        o.state = WAIT  # the constant itself: book entries are told alive by identity
        if o.ord_type == MARKET:
            if o.price:
                raise InvalidOrder("market order must not have a price")
            if o.stop_price:
                raise InvalidOrder("market order must not have a stop price")
            if o.side == BUY:
                if o.funds <= 0:
                    raise InvalidOrder("market buy needs funds > 0")
            elif o.funds:
                raise InvalidOrder("only a market buy has funds")
            return
        if not 0 < o.price <= MAX_VALUE:
            raise InvalidOrder("limit price must be positive")
        if o.funds:
            raise InvalidOrder("only a market buy has funds")
        if o.ord_type == STOP_LIMIT:
            if not 0 < o.stop_price <= MAX_VALUE:
                raise InvalidOrder("stop order needs a positive stop price")
        elif o.stop_price:
            raise InvalidOrder("only a stop order has a stop price")

    def _execute(self, taker: Order, lim: int, tif: str, res: MatchResult) -> None:
        """Match a taker (limit, market or triggered stop), then rest, finish or cancel it.

        The hot loop takes liquidity from the opposite side while its best key is >= ``lim``.
        Makers that are filled, cancelled earlier (dead entries) or removed by self-trade
        prevention are always at the front of a queue, so they are popped as they are met; a
        level whose live total is used up is dropped whole. Post-only was already checked for
        submitted limit orders; here it only concerns triggered stops, which cannot be rejected
        any more and are therefore cancelled.
        """
        if taker.side == BUY:
            keys = self._ask_keys
            levels = self._ask_levels
            sgn = -1
        else:
            keys = self._bid_keys
            levels = self._bid_levels
            sgn = 1
        stp_cut = False
        if keys and keys[-1] >= lim:
            if tif == POST_ONLY or (tif == FOK and not self._fok_fillable(taker, lim)):
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
            t = None
            while rem and keys:
                k = keys[-1]
                if k < lim:
                    break
                lv = levels[k]
                queue = lv[0]
                total = lv[1]
                price = k * sgn
                taken = 0
                while taken < total:  # live volume left in this level
                    maker = queue[0]
                    if maker.state is not WAIT:  # cancelled earlier: a dead entry
                        queue.popleft()
                        lv[2] -= 1
                        continue
                    if budget and budget - used < price:
                        break  # a market buy stops when it cannot pay for one more lot
                    mrem = maker.remaining
                    if maker.member_id == tmember and stp:
                        if stp == 1:  # cancel_taker
                            stp_cut = True
                            break
                        maker.state = CANCEL  # cancel_maker
                        res.cancelled.append(maker)
                        del orders[maker.id]
                        queue.popleft()
                        taken += mrem
                        continue
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
                    taken += v
                    if v == mrem:
                        maker.remaining = 0
                        maker.state = DONE
                        done.append(maker)
                        del orders[maker.id]
                        queue.popleft()
                        if not rem:
                            break
                    else:
                        maker.remaining = mrem - v
                        break
                if taken == total:
                    del levels[k]
                    keys.pop()
                else:
                    lv[1] = total - taken
                    break
            taker.remaining = rem
            if t is not None:
                taker.funds_used = used
                taker.trades_count += tid - tid0
                self.next_trade_id = tid
                self.last_price = t.price
        if not taker.remaining:
            taker.state = DONE
            res.done.append(taker)
        elif (tif == GTC or tif == POST_ONLY) and not stp_cut:
            self._rest(taker)
            res.rested.append(taker)
        else:
            taker.state = CANCEL
            res.cancelled.append(taker)

    def _fok_fillable(self, o: Order, lim: int) -> bool:
        """Could ``o`` fill completely right now, honouring its limit and self-trade prevention?"""
        if o.side == BUY:
            keys, levels = self._ask_keys, self._ask_levels
        else:
            keys, levels = self._bid_keys, self._bid_levels
        need = o.remaining
        stp = self._stp
        member = o.member_id
        for i in range(len(keys) - 1, -1, -1):
            k = keys[i]
            if k < lim:
                return False
            lv = levels[k]
            if not stp:
                need -= lv[1]
                if need <= 0:
                    return True
                continue
            for maker in lv[0]:
                if maker.state is not WAIT:
                    continue
                if maker.member_id == member:
                    if stp == 1:
                        return False
                    continue  # cancel_maker: it would be removed, not traded
                need -= maker.remaining
                if need <= 0:
                    return True
        return False

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
                for o in self._pop_triggered(lo, hi):
                    o.triggered = True
                    res.triggered.append(o)
                    heappush(pending, (o.id, o))
            start = len(trades)
            if not pending:
                return
            _, o = heappop(pending)
            self._execute(o, -o.price if o.side == BUY else o.price, o.tif, res)

    def _pop_triggered(self, lo: int, hi: int) -> list[Order]:
        """Remove and return (by id) the stops reached by a trade price in [lo, hi].

        A buy stop fires when a trade price >= its stop price, a sell stop when one is <= it.
        """
        fired: list[Order] = []
        orders = self._orders
        bs = self._buy_stops
        if bs and bs[0][0] <= hi:
            n = bisect_left(bs, (hi + 1,))
            fired.extend(orders.pop(oid) for _, oid in bs[:n])
            del bs[:n]
        ss = self._sell_stops
        if ss and ss[-1][0] >= lo:
            n = bisect_left(ss, (lo,))
            fired.extend(orders.pop(oid) for _, oid in ss[n:])
            del ss[n:]
        fired.sort(key=_by_id)
        return fired

    def _add_stop(self, o: Order) -> None:
        """Park an untriggered stop: not in the book, not in depth, never matched."""
        insort(self._buy_stops if o.side == BUY else self._sell_stops, (o.stop_price, o.id))
        self._orders[o.id] = o

    def _remove_stop(self, o: Order) -> None:
        stops = self._buy_stops if o.side == BUY else self._sell_stops
        i = bisect_left(stops, (o.stop_price, o.id))
        del stops[i]

    # ------------------------------------------------------------------ book edits

    def _rest(self, o: Order) -> None:
        """Add ``o`` at the back of its price level with the next priority sequence."""
        seq = self.next_seq
        self.next_seq = seq + 1
        o.seq = seq
        o.state = WAIT
        if o.side == BUY:
            key = o.price
            levels, keys = self._bid_levels, self._bid_keys
        else:
            key = -o.price
            levels, keys = self._ask_levels, self._ask_keys
        lv = levels.get(key)
        if lv is None:
            levels[key] = [deque((o,)), o.remaining, 0]
            if not keys or keys[-1] < key:
                keys.append(key)
            else:
                insort(keys, key)
        else:
            lv[0].append(o)
            lv[1] += o.remaining
        self._orders[o.id] = o

    def _unlink(self, o: Order) -> None:
        """Take a resting order or untriggered stop out of every index (its queue entry dies)."""
        del self._orders[o.id]
        if o.ord_type == STOP_LIMIT and not o.triggered:
            self._remove_stop(o)
            return
        o.state = CANCEL
        if o.side == BUY:
            key = o.price
            levels, keys = self._bid_levels, self._bid_keys
        else:
            key = -o.price
            levels, keys = self._ask_levels, self._ask_keys
        lv = levels[key]
        total = lv[1] - o.remaining
        if total:
            lv[1] = total
            _dead(lv)
        else:
            del levels[key]
            if keys[-1] == key:
                keys.pop()
            else:
                del keys[bisect_left(keys, key)]

    def cancel(self, order_id: int, member_id: int | None = None) -> Order:
        """Remove a resting order or untriggered stop; its ``remaining`` tells what to unlock."""
        orders = self._orders
        o = orders.get(order_id)
        if o is None:
            raise OrderNotFound(f"order {order_id} is not in the book")
        if member_id is not None and o.member_id != member_id:
            raise NotOwner(f"order {order_id} belongs to another member")
        if o.ord_type == STOP_LIMIT and not o.triggered:
            self._unlink(o)
        else:
            # Inlined _unlink: cancels are a quarter of the traffic.
            del orders[order_id]
            o.state = CANCEL
            if o.side == BUY:
                key = o.price
                levels = self._bid_levels
            else:
                key = -o.price
                levels = self._ask_levels
            lv = levels[key]
            total = lv[1] - o.remaining
            if total:
                lv[1] = total
                n = lv[2] + 1
                if n > 16 and 4 * n > len(lv[0]):
                    _compact(lv)
                else:
                    lv[2] = n
            else:
                del levels[key]
                keys = self._bid_keys if o.side == BUY else self._ask_keys
                if keys[-1] == key:
                    keys.pop()
                else:
                    del keys[bisect_left(keys, key)]
        o.state = CANCEL
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
            o.state = CANCEL
        return victims

    def restore(self, order: Order) -> None:
        """Recovery: put a resting order (or an untriggered stop) back with its stored ``seq``.

        Never matches. Orders may come in any order: a level is kept sorted by seq. ``next_seq``
        is raised past the restored seq so new orders always queue behind restored ones.
        """
        o = order
        if not (_is_int(o.id) and _is_int(o.seq) and _is_int(o.price) and _is_int(o.remaining)):
            raise InvalidOrder("restored order fields must be integers")
        if o.side not in SIDES or o.state != WAIT or not 0 < o.remaining <= o.volume:
            raise InvalidOrder(f"order {o.id} cannot rest (side/state/remaining)")
        if o.id in self._orders:
            raise DuplicateOrder(f"order {o.id} is already in the book")
        if not 0 < o.price <= MAX_VALUE:
            raise InvalidOrder(f"order {o.id} has no valid price")
        if o.ord_type == STOP_LIMIT and not o.triggered:
            if not _is_int(o.stop_price) or not 0 < o.stop_price <= MAX_VALUE:
                raise InvalidOrder(f"stop order {o.id} has no valid stop price")
            self._add_stop(o)
            return
        if o.ord_type not in (LIMIT, STOP_LIMIT):
            raise InvalidOrder(f"order {o.id} of type {o.ord_type!r} cannot rest")
        if o.seq <= 0:
            raise InvalidOrder(f"order {o.id} has no priority sequence")
        if o.side == BUY:
            key = o.price
            levels, keys, okeys = self._bid_levels, self._bid_keys, self._ask_keys
            crossed = bool(okeys) and -okeys[-1] <= o.price
        else:
            key = -o.price
            levels, keys, okeys = self._ask_levels, self._ask_keys, self._bid_keys
            crossed = bool(okeys) and okeys[-1] >= o.price
        if crossed:
            raise InvalidOrder(f"order {o.id} would cross the restored book")
        o.state = WAIT
        lv = levels.get(key)
        if lv is None:
            levels[key] = [deque((o,)), o.remaining, 0]
            insort(keys, key)
        else:
            queue = lv[0]
            if queue[-1].seq >= o.seq:  # the last entry may be dead, but its seq still orders it
                # Out of order: keep the level sorted by seq (rare, so a plain rebuild).
                live = [x for x in queue if x.state is WAIT]
                if any(x.seq == o.seq for x in live):
                    raise InvalidOrder(f"order {o.id}: seq {o.seq} already used at this price")
                live.append(o)
                live.sort(key=_by_seq)
                lv[0] = deque(live)
                lv[2] = 0
            else:
                queue.append(o)
            lv[1] += o.remaining
        self._orders[o.id] = o
        if o.seq >= self.next_seq:
            self.next_seq = o.seq + 1

    def load(self, rows: Iterable[Sequence[Any]]) -> list[Order]:
        """Recovery in bulk: build the whole book of an empty engine from stored rows at once.

        Each row is ``LOAD_COLUMNS``, as the store holds them, resting orders ascending by
        ``seq`` (a row out of order costs one sort) and waiting stops anywhere. The book is built
        beside the engine and only installed when every row passed the checks of ``restore``,
        so an error leaves the engine empty. Sides, types and times in force become the module's
        constants and equal prices and members share one int object: rows read from a database
        carry a fresh object for each, which would otherwise cost ~150 bytes per resting order.
        Returns the orders in the rows' order.
        """
        if self._orders:
            raise EngineError("load() rebuilds an empty engine; use restore() to add to a book")
        # The cyclic collector would traverse the growing book again and again while a million
        # orders are made; they hold no cycles, so it is paused for the load.
        paused = gc.isenabled()
        gc.disable()
        try:
            return self._load(rows)
        finally:
            if paused:
                gc.enable()

    def _load(self, rows: Iterable[Sequence[Any]]) -> list[Order]:
        new = _new
        tifs = _CONSTANTS
        ints: dict[int, int] = {}
        share = ints.setdefault
        orders: dict[int, Order] = {}
        bid_levels: dict[int, Level] = {}
        ask_levels: dict[int, Level] = {}
        stops: list[Order] = []
        n = 0
        last_seq = 0
        in_order = True
        for row in rows:
            (oid, member, side, ord_type, price, volume, remaining, tif, stop_price, funds, used, ntrades, seq,
             triggered) = row  # fmt: skip
            if (
                type(oid) is not int
                or type(member) is not int
                or type(price) is not int
                or type(volume) is not int
                or type(remaining) is not int
                or type(stop_price) is not int
                or type(funds) is not int
                or type(used) is not int
                or type(ntrades) is not int
                or type(seq) is not int
                or not 0 < remaining <= volume
                or not 0 < price <= MAX_VALUE
            ):
                raise InvalidOrder(f"order {oid!r} cannot rest: bad integer fields")
            if side == BUY:
                side = BUY
                key = price
                levels = bid_levels
            elif side == SELL:
                side = SELL
                key = -price
                levels = ask_levels
            else:
                raise InvalidOrder(f"order {oid} has a bad side {side!r}")
            if ord_type == LIMIT:
                ord_type = LIMIT
            elif ord_type == STOP_LIMIT:
                ord_type = STOP_LIMIT
            else:
                raise InvalidOrder(f"order {oid} of type {ord_type!r} cannot rest")
            tif = tifs.get(tif)
            if tif not in TIFS:
                raise InvalidOrder(f"order {oid} has a bad time in force")
            if _NATIVE:
                o = Order(oid, member, side, ord_type, price, volume, tif, stop_price, funds)
            else:
                o = new(Order)
                o.id = oid
                o.side = side
                o.ord_type = ord_type
                o.volume = volume
                o.tif = tif
                o.stop_price = stop_price
                o.funds = funds
                o.state = WAIT
            o.member_id = share(member, member)
            o.price = price = share(price, price)
            o.remaining = remaining
            o.funds_used = used
            o.trades_count = ntrades
            o.seq = seq
            o.triggered = bool(triggered)
            orders[oid] = o
            n += 1
            if ord_type is STOP_LIMIT and not triggered:
                if not 0 < stop_price <= MAX_VALUE:
                    raise InvalidOrder(f"stop order {oid} has no valid stop price")
                stops.append(o)
                continue
            if seq <= last_seq:
                if seq <= 0:
                    raise InvalidOrder(f"order {oid} has no priority sequence")
                in_order = False
            last_seq = seq
            lv = levels.get(key)
            if lv is None:
                levels[key] = [deque((o,)), remaining, 0]
            else:
                lv[0].append(o)
                lv[1] += remaining
        if len(orders) != n:
            raise DuplicateOrder("the rows hold the same order id twice")
        if not in_order:  # rare: rebuild the levels from the orders sorted by seq
            waiting = {id(o) for o in stops}
            book = sorted((o for o in orders.values() if id(o) not in waiting), key=_by_seq)
            for x, y in zip(book, islice(book, 1, None), strict=False):
                if x.seq == y.seq:
                    raise InvalidOrder(f"orders {x.id} and {y.id} have the same seq {x.seq}")
            for levels in (bid_levels, ask_levels):
                for lv in levels.values():
                    lv[0].clear()
            for o in book:
                lv = bid_levels[o.price] if o.side is BUY else ask_levels[-o.price]
                lv[0].append(o)
            last_seq = book[-1].seq
        bid_keys = sorted(bid_levels)
        ask_keys = sorted(ask_levels)
        if bid_keys and ask_keys and bid_keys[-1] >= -ask_keys[-1]:
            raise InvalidOrder(f"the loaded book is crossed (bid {bid_keys[-1]}, ask {-ask_keys[-1]})")
        self._orders = orders
        self._bid_levels, self._bid_keys = bid_levels, bid_keys
        self._ask_levels, self._ask_keys = ask_levels, ask_keys
        buy_stops = [(o.stop_price, o.id) for o in stops if o.side == BUY]
        sell_stops = [(o.stop_price, o.id) for o in stops if o.side == SELL]
        buy_stops.sort()
        sell_stops.sort()
        self._buy_stops, self._sell_stops = buy_stops, sell_stops
        if last_seq >= self.next_seq:
            self.next_seq = last_seq + 1
        return list(orders.values())

    # ------------------------------------------------------------------ queries

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
        if side == BUY:
            lv = self._bid_levels.get(price)
        elif side == SELL:
            lv = self._ask_levels.get(-price)
        else:
            raise InvalidOrder(f"bad side {side!r}")
        return 0 if lv is None else lv[1]

    def depth(self, limit: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """(asks, bids), each best-first, as aggregated (price, volume), at most ``limit`` levels."""
        if limit <= 0:
            return [], []
        al = self._ask_levels
        bl = self._bid_levels
        asks = [(-k, al[k][1]) for k in reversed(self._ask_keys[-limit:])]
        bids = [(k, bl[k][1]) for k in reversed(self._bid_keys[-limit:])]
        return asks, bids

    def orders(self, side: str) -> Iterator[Order]:
        """Resting orders of one side in priority order (best price, then time)."""
        if side == BUY:
            keys, levels = self._bid_keys, self._bid_levels
        elif side == SELL:
            keys, levels = self._ask_keys, self._ask_levels
        else:
            raise InvalidOrder(f"bad side {side!r}")
        for k in reversed(keys):
            for o in levels[k][0]:
                if o.state is WAIT:
                    yield o

    def stop_orders(self) -> list[Order]:
        """Untriggered stop orders, by id (not part of the book, not in depth)."""
        orders = self._orders
        stops = [orders[oid] for _, oid in self._buy_stops]
        stops.extend(orders[oid] for _, oid in self._sell_stops)
        stops.sort(key=_by_id)
        return stops

    def __len__(self) -> int:
        """Number of resting orders plus untriggered stops."""
        return len(self._orders)

    def estimate_market_buy(self, volume: int) -> int | None:
        """Funds a market buy of ``volume`` lots would spend now; None if the asks are too thin."""
        if volume <= 0:
            return 0
        need = volume
        total = 0
        al = self._ask_levels
        for k in reversed(self._ask_keys):
            v = al[k][1]
            if v >= need:
                return total - k * need
            total -= k * v
            need -= v
        return None

    def state_hash(self) -> str:
        """Hex sha256 of the resting orders (bids then asks, priority order) and untriggered stops.

        Two engines with the same book give the same hash: used to check a rebuilt book after a
        crash against the live one.
        """
        h = hashlib.sha256()
        parts: list[str] = []
        for side in (BUY, SELL):
            for o in self.orders(side):
                parts.append(f"{o.id},{o.side},{o.price},{o.remaining},{o.seq}\n")
        for o in self.stop_orders():
            parts.append(f"stop,{o.id},{o.side},{o.price},{o.stop_price},{o.remaining},{o.tif}\n")
        h.update("".join(parts).encode())
        return h.hexdigest()

    def check_consistency(self) -> None:
        """Raise AssertionError if the indexes disagree (not ``assert``: must survive ``-O``)."""

        def fail(msg: str) -> None:
            raise AssertionError(f"{self.market}: {msg}")

        seen: set[int] = set()
        for side, keys, levels, sgn in (
            (BUY, self._bid_keys, self._bid_levels, 1),
            (SELL, self._ask_keys, self._ask_levels, -1),
        ):
            if keys != sorted(set(keys)):
                fail(f"{side} keys not strictly sorted")
            if set(keys) != set(levels):
                fail(f"{side} keys and levels disagree")
            for k in keys:
                lv = levels[k]
                total = 0
                dead = 0
                prev_seq = 0
                for o in lv[0]:
                    oid = o.id
                    if o.side != side or o.price != k * sgn:
                        fail(f"order {oid} in the wrong level")
                    if not prev_seq < o.seq < self.next_seq:
                        fail(f"order {oid} seq {o.seq} out of order")
                    prev_seq = o.seq
                    if o.state is not WAIT:
                        if o.state != CANCEL or self._orders.get(oid) is o:
                            fail(f"dead entry {oid} is not a cancelled order: {o!r}")
                        dead += 1
                        continue
                    if self._orders.get(oid) is not o:
                        fail(f"order {oid} not indexed")
                    if not 0 < o.remaining <= o.volume:
                        fail(f"order {oid} cannot rest: {o!r}")
                    if o.ord_type == STOP_LIMIT and not o.triggered:
                        fail(f"untriggered stop {oid} in the book")
                    total += o.remaining
                    seen.add(oid)
                if not total:
                    fail(f"{side} empty level {k * sgn}")
                if lv[1] != total:
                    fail(f"{side} level {k * sgn} total {lv[1]} != {total}")
                if lv[2] != dead:
                    fail(f"{side} level {k * sgn} counts {lv[2]} dead entries, holds {dead}")
        if self._bid_keys and self._ask_keys and self._bid_keys[-1] >= -self._ask_keys[-1]:
            fail("book is crossed")
        for side, stops in ((BUY, self._buy_stops), (SELL, self._sell_stops)):
            if stops != sorted(set(stops)):
                fail(f"{side} stops not sorted")
            for sp, oid in stops:
                o = self._orders.get(oid)
                if o is None or o.side != side or o.stop_price != sp or o.triggered or o.state != WAIT:
                    fail(f"stop {oid} badly indexed")
                if oid in seen:
                    fail(f"order {oid} both in book and stops")
                seen.add(oid)
        if seen != set(self._orders):
            fail("id map holds orders that are neither resting nor stops")


def _by_id(o: Order) -> int:
    return o.id


def _by_seq(o: Order) -> int:
    return o.seq


def _dead(lv: Level) -> None:
    """Count one more dead entry in a level's queue; rebuild the queue once they pass a quarter.

    The rebuild copies the queue (about four entries per cancel since the last one), which keeps
    the dead orders, still referenced by the queue, below a third of the live ones.
    """
    n = lv[2] + 1
    if n > 16 and 4 * n > len(lv[0]):
        _compact(lv)
    else:
        lv[2] = n


def _compact(lv: Level) -> None:
    """Rebuild a level's queue without its dead entries."""
    lv[0] = deque([o for o in lv[0] if o.state is WAIT])
    lv[2] = 0
