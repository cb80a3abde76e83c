"""Recovery of an engine's book from the store: one order at a time (``restore``) or in bulk (``load``,
or ``Loader`` for rows read in pages).

Both never match: they rebuild exactly the book that was persisted, priority included (``seq``).
"""

from __future__ import annotations

import gc
from bisect import insort
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Final

from . import stops
from .book import Level
from .errors import DuplicateOrder, EngineError, InvalidOrder
from .order import _KINDS, LIMIT, MARKET, MAX_VALUE, SIDES, STOP_LIMIT, TIFS, WAIT, Order

if TYPE_CHECKING:
    from .engine import Engine

#: The columns ``Engine.load`` reads from each row, in this order.
LOAD_COLUMNS: Final = ("id", "member_id", "side", "ord_type", "price", "volume", "remaining", "tif",
                       "stop_price", "funds", "funds_used", "trades_count", "seq", "triggered")  # fmt: skip

_SIDE_CODES: Final = {"buy": 0, "sell": 1}
_TYPE_CODES: Final = {"limit": 0, "market": 2, "stop_limit": 4}
_TIF_CODES: Final = {"gtc": 0, "ioc": 8, "fok": 16, "post_only": 24}
#: A term that makes the whole ``KIND_SQL`` negative (no order may have that), even added to every
#: other term: the sum of all terms stays inside 64 bits, where SQLite keeps it an exact integer.
_BAD: Final = -(1 << 58)
#: Most trades a row's ``trades_count`` may say (far beyond what one order makes): ``KIND_SQL``
#: packs it above the kind's six bits (multiplied as a BIGINT: PostgreSQL's column is an INTEGER),
#: and a larger value would not fit.
MAX_TRADES: Final = (1 << 48) - 1


def _case(column: str, codes: dict[str, int]) -> str:
    return f"CASE {column} " + " ".join(f"WHEN '{k}' THEN {v}" for k, v in codes.items()) + f" ELSE {_BAD} END"


#: An SQL expression (SQLite and PostgreSQL) of a row's side, type, time in force and triggered flag
#: as one small int (the low six bits, a key of ``_BY_CODE`` if an order may rest with it), its
#: ``trades_count`` above them, and its ``funds`` checked: no order that rests has any (only a
#: market buy does, node/market/validate.py), so a row with funds, an unknown text or a trade count
#: out of range gives a negative value. Each column read costs the reader about as much as building
#: its value (CPython's sqlite3 releases and retakes the GIL per column), so six columns read as
#: one; and a database hands out a fresh string object per text column and row, where a small int
#: is shared, and one dict look-up replaces a tuple of three strings to hash.
KIND_SQL: Final = (f"({_case('side', _SIDE_CODES)} + {_case('ord_type', _TYPE_CODES)} + {_case('tif', _TIF_CODES)}"
                   " + CASE triggered WHEN 0 THEN 0 ELSE 32 END"
                   f" + CASE funds WHEN 0 THEN 0 ELSE {_BAD} END"
                   f" + CASE WHEN trades_count BETWEEN 0 AND {MAX_TRADES} THEN trades_count * CAST(64 AS BIGINT) ELSE {_BAD} END)")
#: ``LOAD_COLUMNS`` with side, type, time in force, triggered flag, funds and trades count read as
#: one ``KIND_SQL``: what ``Loader.add_coded`` reads from each row, in this order.
CODED_COLUMNS: Final = ("id", "member_id", KIND_SQL, "price", "volume", "remaining", "stop_price", "funds_used",
                        "seq")  # fmt: skip
_BY_CODE: Final = {_SIDE_CODES[k[0]] + _TYPE_CODES[k[1]] + _TIF_CODES[k[2]] + 32 * k[3]: kind
                   for k, kind in _KINDS.items() if kind.ord_type != MARKET}  # fmt: skip
#: Bits of each of the two lower parts of a row's tail packed as one int (``Loader.add_coded``).
TAIL_BITS: Final = 48
_TAIL_LOW: Final = (1 << TAIL_BITS) - 1
_TAIL_HIGH: Final = 2 * TAIL_BITS
#: The kinds an order may rest with (no MARKET order rests): one look-up both finds and checks a row's.
_RESTING: Final = {k: kind for k, kind in _KINDS.items() if kind.ord_type != MARKET}

_new = object.__new__
#: True when compiled by mypyc (native classes cannot be made with ``object.__new__``).
_NATIVE: Final = not __file__.endswith(".py")


def _is_int(x: object) -> bool:
    return type(x) is int


def restore(e: Engine, o: Order) -> None:
    """Put one resting order (or an untriggered stop) back with its stored ``seq``; see Engine.restore."""
    if not (_is_int(o.id) and _is_int(o.seq) and _is_int(o.price) and _is_int(o.remaining)):
        raise InvalidOrder("restored order fields must be integers")
    if o.side not in SIDES or o.state != WAIT or not 0 < o.remaining <= o.volume:
        raise InvalidOrder(f"order {o.id} cannot rest (side/state/remaining)")
    if o.id in e._orders:
        raise DuplicateOrder(f"order {o.id} is already in the book")
    if not 0 < o.price <= MAX_VALUE:
        raise InvalidOrder(f"order {o.id} has no valid price")
    if o.kind.stop:
        if not _is_int(o.stop_price) or not 0 < o.stop_price <= MAX_VALUE:
            raise InvalidOrder(f"stop order {o.id} has no valid stop price")
        stops.add_stop(e, o)
        return
    if o.ord_type not in (LIMIT, STOP_LIMIT):
        raise InvalidOrder(f"order {o.id} of type {o.ord_type!r} cannot rest")
    if o.seq <= 0:
        raise InvalidOrder(f"order {o.id} has no priority sequence")
    if o.kind.buy:
        key = o.price
        levels, keys, okeys = e._bid_levels, e._bid_keys, e._ask_keys
        crossed = bool(okeys) and -okeys[-1] <= o.price
    else:
        key = -o.price
        levels, keys, okeys = e._ask_levels, e._ask_keys, e._bid_keys
        crossed = bool(okeys) and okeys[-1] >= o.price
    if crossed:
        raise InvalidOrder(f"order {o.id} would cross the restored book")
    lv = levels.get(key)
    after: Order | None = None
    if lv is not None:
        # Find the order to queue behind: from the tail back (restored in seq order: no step).
        after = lv.tail
        while after is not None and after.seq > o.seq:
            after = after.prev
        if after is not None and after.seq == o.seq:
            raise InvalidOrder(f"order {o.id}: seq {o.seq} already used at this price")
    o.state = WAIT
    if lv is None:
        levels[key] = Level(o, o.remaining)
        insort(keys, key)
    else:
        if after is None:  # new head
            head = lv.head
            o.prev = None
            o.next = head
            head.prev = o
            lv.head = o
        else:
            nxt = after.next
            o.prev = after
            o.next = nxt
            after.next = o
            if nxt is None:
                lv.tail = o
            else:
                nxt.prev = o
        lv.total += o.remaining
    e._orders[o.id] = o
    if o.seq >= e.next_seq:
        e.next_seq = o.seq + 1


def load(e: Engine, rows: Iterable[Sequence[Any]]) -> list[Order]:
    """Build the whole book of an empty engine from stored rows at once; see Engine.load and ``Loader``."""
    loader = Loader(e)
    loader.add(rows)
    return loader.install()


class Loader:
    """Builds the whole book of an empty engine from stored rows given in parts (``add``), then
    installs it (``install``): a caller can read the rows in pages and let each page go before the
    next, so the rows of the whole book never exist at once beside it.

    The book is built beside the engine and only installed when every row passed the checks of
    ``restore``, so an error leaves the engine empty. Sides, types and times in force become the
    shared ``Kind`` of each combination (node/market/order.py); equal prices, volumes and members
    share one int object, and so do an unfilled order's volume and remaining: rows read from a
    database carry a fresh object for each, which would otherwise cost ~200 bytes per order
    (members in a dict of their own and prices through their level: look-ups in small dicts are
    cheaper than in one large one; compiled, an Order holds its ints unboxed and shares nothing).
    """

    __slots__ = ("e", "ints", "members", "orders", "bid_levels", "ask_levels", "stops", "n", "last_seq", "in_order")

    def __init__(self, e: Engine) -> None:
        if e._orders:
            raise EngineError("load() rebuilds an empty engine; use restore() to add to a book")
        self.e = e
        self.ints: dict[int, int] = {}
        self.members: dict[int, int] = {}
        self.orders: dict[int, Order] = {}
        self.bid_levels: dict[int, Level] = {}
        self.ask_levels: dict[int, Level] = {}
        self.stops: list[Order] = []
        self.n = 0
        self.last_seq = 0
        self.in_order = True

    def add(self, rows: Iterable[Sequence[Any]]) -> None:
        """Rows of ``LOAD_COLUMNS``, resting orders ascending by ``seq`` across every call (a row out
        of order costs one sort at ``install``), waiting stops anywhere."""
        self._paused(rows, False, None)

    def add_coded(self, rows: Iterable[Sequence[Any]], tails: dict[int, int] | None = None) -> None:
        """As ``add``, for rows that start with ``CODED_COLUMNS`` (the cheaper read of a large book).

        A row may go on with columns of the caller's; with ``tails``, its next three (``a``, ``b``,
        ``c``: ints, ``a`` >= 0, ``b`` and ``c`` in ``TAIL_BITS``) are kept as one int,
        ``tails[id] = a << 2 * TAIL_BITS | b << TAIL_BITS | c``: what the caller keeps beside each
        order (the market actor's lock, birth and intake) made here, compiled, in the loop that
        reads the row anyway, where a loop of its own over every row was ~15% of a recovery's
        instructions."""
        self._paused(rows, True, tails)

    def _paused(self, rows: Iterable[Sequence[Any]], coded: bool, tails: dict[int, int] | None) -> None:
        # The cyclic collector would traverse the growing book again and again while a million
        # orders are made; the pause is only for the load.
        paused = gc.isenabled()
        gc.disable()
        try:
            self._add(rows, coded, tails)
        finally:
            if paused:
                gc.enable()

    def _add(self, rows: Iterable[Sequence[Any]], coded: bool, tails: dict[int, int] | None) -> None:
        new = _new
        native = _NATIVE
        kinds = _RESTING
        by_code = _BY_CODE
        share = self.ints.setdefault
        member_of = self.members.setdefault
        orders = self.orders
        bid_levels = self.bid_levels
        ask_levels = self.ask_levels
        stops = self.stops
        n = self.n
        last_seq = self.last_seq
        in_order = self.in_order
        funds: Any
        ntrades: Any
        for row in rows:
            if coded:
                # A row may be wider: the caller's columns after ours. Compiled, read by index as a
                # tuple (its items are read directly, any sequence's through a call each); pure,
                # unpacked (the interpreter's fastest read, a third of nine look-ups).
                if native:
                    t = row if type(row) is tuple else tuple(row)
                    oid = t[0]
                    member = t[1]
                    code = t[2]
                    price = t[3]
                    volume = t[4]
                    remaining = t[5]
                    stop_price = t[6]
                    used = t[7]
                    seq = t[8]
                    if tails is not None:
                        a = t[9]
                        b = t[10]
                        c = t[11]
                elif tails is None:
                    oid, member, code, price, volume, remaining, stop_price, used, seq = row if len(row) == 9 else row[:9]
                else:
                    (oid, member, code, price, volume, remaining, stop_price, used, seq, a, b,
                     c) = row if len(row) == 12 else row[:12]  # fmt: skip
                if type(code) is not int or code < 0:
                    raise InvalidOrder(f"order {oid!r} cannot rest: bad side, type, time in force, funds or trades "
                                       f"count (kind code {code!r})")  # fmt: skip
                funds = 0
                ntrades = 0
                kind = by_code.get(code)
                if kind is None:  # traded (the count above the kind's six bits), or of no kind at all
                    kind = by_code.get(code & 63)
                    if kind is None:
                        raise InvalidOrder(f"order {oid} cannot rest: bad side, type or time in force (kind code {code})")
                    ntrades = code >> 6
            else:
                (oid, member, side, ord_type, price, volume, remaining, tif, stop_price, funds, used, ntrades, seq,
                 triggered) = row  # fmt: skip
                if type(funds) is not int or type(ntrades) is not int:
                    raise InvalidOrder(f"order {oid!r} cannot rest: bad integer fields")
                kind = kinds.get((side, ord_type, tif, bool(triggered)))
                if kind is None:
                    if side not in SIDES:
                        raise InvalidOrder(f"order {oid} has a bad side {side!r}")
                    if tif not in TIFS:
                        raise InvalidOrder(f"order {oid} has a bad time in force")
                    raise InvalidOrder(f"order {oid} of type {ord_type!r} cannot rest")
            if (
                type(oid) is not int
                or type(member) is not int
                or type(price) is not int
                or type(volume) is not int
                or type(remaining) is not int
                or type(stop_price) is not int
                or type(used) is not int
                or type(seq) is not int
                or not 0 < remaining <= volume
                or not 0 < price <= MAX_VALUE
            ):
                raise InvalidOrder(f"order {oid!r} cannot rest: bad integer fields")
            if tails is not None:
                if type(a) is not int or type(b) is not int or type(c) is not int or a < 0 or not 0 <= b <= _TAIL_LOW \
                        or not 0 <= c <= _TAIL_LOW:
                    raise InvalidOrder(f"order {oid}: its caller's fields are out of range ({a!r}, {b!r}, {c!r})")
                if native:  # shifted as the objects they are: mypyc's own shift of an int this wide takes twice as long
                    tails[oid] = (t[9] << _TAIL_HIGH) | (t[10] << TAIL_BITS) | t[11]
                else:
                    tails[oid] = (a << _TAIL_HIGH) | (b << TAIL_BITS) | c
            if kind.buy:
                key = price
                levels = bid_levels
            else:
                key = -price
                levels = ask_levels
            lv = levels.get(key)
            if native:  # a compiled Order holds its ints unboxed: nothing to share
                o = Order(oid, member, kind.side, kind.ord_type, price, volume, kind.tif, stop_price, funds)
            else:
                # An order joining a level shares the price int of the level's orders: the level is
                # looked up anyway, where sharing through ``ints`` would be one more large dict.
                if lv is not None:
                    price = lv.tail.price
                volume = share(volume, volume)
                if remaining == volume:
                    remaining = volume
                o = new(Order)
                o.id = oid
                o.member_id = member_of(member, member)
                o.price = price
                o.volume = volume
                o.stop_price = stop_price
                o.funds = funds
                o.state = WAIT
            o.kind = kind
            o.remaining = remaining
            o.funds_used = used
            o.trades_count = ntrades
            o.seq = seq
            orders[oid] = o
            n += 1
            if kind.stop:
                if not 0 < stop_price <= MAX_VALUE:
                    raise InvalidOrder(f"stop order {oid} has no valid stop price")
                stops.append(o)
                continue
            if seq <= last_seq:
                if seq <= 0:
                    raise InvalidOrder(f"order {oid} has no priority sequence")
                in_order = False
            last_seq = seq
            if lv is None:
                levels[key] = Level(o, remaining)
            else:
                tail = lv.tail
                tail.next = o
                o.prev = tail
                o.next = None
                lv.tail = o
                lv.total += remaining
        self.n = n
        self.last_seq = last_seq
        self.in_order = in_order

    def install(self) -> list[Order]:
        """Check the whole book and make it the engine's; returns the orders in the rows' order."""
        e = self.e
        if e._orders:
            raise EngineError("load() rebuilds an empty engine; use restore() to add to a book")
        orders, stops = self.orders, self.stops
        bid_levels, ask_levels, last_seq = self.bid_levels, self.ask_levels, self.last_seq
        self.ints = {}
        self.members = {}
        if len(orders) != self.n:
            raise DuplicateOrder("the rows hold the same order id twice")
        if not self.in_order:  # rare: relink the levels from the orders sorted by seq
            waiting = {id(o) for o in stops}
            book = sorted((o for o in orders.values() if id(o) not in waiting), key=_by_seq)
            for i in range(1, len(book)):
                if book[i - 1].seq == book[i].seq:
                    raise InvalidOrder(f"orders {book[i - 1].id} and {book[i].id} have the same seq {book[i].seq}")
            bid_levels = {}
            ask_levels = {}
            for o in book:
                levels, key = (bid_levels, o.price) if o.kind.buy else (ask_levels, -o.price)
                lv = levels.get(key)
                if lv is None:
                    levels[key] = Level(o, o.remaining)
                else:
                    tail = lv.tail
                    tail.next = o
                    o.prev = tail
                    o.next = None
                    lv.tail = o
                    lv.total += o.remaining
            last_seq = book[-1].seq
        bid_keys = sorted(bid_levels)
        ask_keys = sorted(ask_levels)
        if bid_keys and ask_keys and bid_keys[-1] >= -ask_keys[-1]:
            raise InvalidOrder(f"the loaded book is crossed (bid {bid_keys[-1]}, ask {-ask_keys[-1]})")
        e._orders = orders
        e._bid_levels, e._bid_keys = bid_levels, bid_keys
        e._ask_levels, e._ask_keys = ask_levels, ask_keys
        buy_stops = [(o.stop_price, o.id) for o in stops if o.kind.buy]
        sell_stops = [(o.stop_price, o.id) for o in stops if not o.kind.buy]
        buy_stops.sort()
        sell_stops.sort()
        e._buy_stops, e._sell_stops = buy_stops, sell_stops
        if last_seq >= e.next_seq:
            e.next_seq = last_seq + 1
        return list(orders.values())


def _by_seq(o: Order) -> int:
    return o.seq
