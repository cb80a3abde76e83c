"""Orders, trades and match results of the pure matching engine.

Everything is an integer: prices in price ticks, volumes in volume lots, funds in tick*lot units.
The classes are plain ``__slots__`` classes, not dataclasses: the engine mutates orders in its hot
loop and creates a Trade per fill, so attribute access and construction must be as cheap as Python
allows (and mypyc compiles them to native structs unchanged).
"""

from __future__ import annotations

from typing import Final

from .frozen import NONE

#: Largest price/volume accepted: they are stored as signed 64-bit integers (BIGINT).
MAX_VALUE: Final = (1 << 63) - 1

BUY: Final = "buy"
SELL: Final = "sell"

LIMIT: Final = "limit"
MARKET: Final = "market"
STOP_LIMIT: Final = "stop_limit"

GTC: Final = "gtc"
IOC: Final = "ioc"
FOK: Final = "fok"
POST_ONLY: Final = "post_only"

WAIT: Final = "wait"
DONE: Final = "done"
CANCEL: Final = "cancel"

SIDES: Final = frozenset((BUY, SELL))
ORD_TYPES: Final = frozenset((LIMIT, MARKET, STOP_LIMIT))
TIFS: Final = frozenset((GTC, IOC, FOK, POST_ONLY))


class Kind:
    """What an order is besides its numbers: side, type, time in force, and whether a stop fired.

    Immutable and shared, one object per combination (``kind_of``), so an order spends one slot on
    all four instead of four (24 bytes less per resting order), and the engine's hot paths read
    precomputed answers (``buy``, ``plain``, ``rests``) instead of comparing strings.
    """

    __slots__ = ("side", "ord_type", "tif", "triggered", "buy", "plain", "rests", "stop")

    side: str
    ord_type: str
    tif: str
    triggered: bool
    #: side == BUY
    buy: bool
    #: a valid side, LIMIT and a valid time in force: eligible for submit's fast path
    plain: bool
    #: a remainder rests in the book (GTC or POST_ONLY)
    rests: bool
    #: an untriggered STOP_LIMIT: waits in the stop list, not in the book
    stop: bool

    def __init__(self, side: str, ord_type: str, tif: str, triggered: bool) -> None:
        self.side = side
        self.ord_type = ord_type
        self.tif = tif
        self.triggered = triggered
        self.buy = side == BUY
        self.plain = side in SIDES and ord_type == LIMIT and tif in TIFS and not triggered
        self.rests = tif == GTC or tif == POST_ONLY
        self.stop = ord_type == STOP_LIMIT and not triggered

    def __repr__(self) -> str:
        return f"<Kind {self.side} {self.ord_type}/{self.tif}{' triggered' if self.triggered else ''}>"


_KINDS: Final = {
    (side, ord_type, tif, triggered): Kind(side, ord_type, tif, triggered)
    for side in (BUY, SELL)
    for ord_type in (LIMIT, MARKET, STOP_LIMIT)
    for tif in (GTC, IOC, FOK, POST_ONLY)
    for triggered in (False, True)
}


_BUY_LIMIT_GTC: Final = _KINDS[(BUY, LIMIT, GTC, False)]
_SELL_LIMIT_GTC: Final = _KINDS[(SELL, LIMIT, GTC, False)]


def kind_of(side: str, ord_type: str, tif: str, triggered: bool = False) -> Kind:
    """The shared Kind of these values; a fresh one for an invalid combination (which validation refuses)."""
    k = _KINDS.get((side, ord_type, tif, triggered))
    return Kind(side, ord_type, tif, triggered) if k is None else k


class Order:
    """One order as the engine sees it; the engine updates it in place as it trades.

    ``price`` is 0 for MARKET orders. ``funds`` is the budget of a MARKET BUY (0 otherwise);
    ``funds_used`` is the sum of price*volume of the order's fills, kept for both sides so the
    caller can settle and release locks without recomputing. ``seq`` is the book priority the
    engine assigns when the order rests; it is persisted so a restored book is identical.
    ``side``, ``ord_type``, ``tif`` and ``triggered`` are read through the shared ``kind``.

    ``prev`` and ``next`` link a resting order to its neighbours in its price level (an intrusive
    doubly linked list, node/market/book.py): a cancel unlinks in O(1) and leaves nothing behind,
    and no per-level queue object is needed. They are set only when the order enters the book,
    so building an Order costs no more than before; outside the book they mean nothing.
    """

    __slots__ = (
        "id",
        "member_id",
        "kind",
        "price",
        "volume",
        "remaining",
        "stop_price",
        "funds",
        "funds_used",
        "trades_count",
        "seq",
        "state",
        "prev",
        "next",
    )

    id: int
    member_id: int
    kind: Kind
    price: int
    volume: int
    remaining: int
    stop_price: int
    funds: int
    funds_used: int
    trades_count: int
    seq: int
    state: str
    prev: Order | None
    next: Order | None

    def __init__(
        self,
        id: int,
        member_id: int,
        side: str,
        ord_type: str,
        price: int,
        volume: int,
        tif: str = GTC,
        stop_price: int = 0,
        funds: int = 0,
    ) -> None:
        self.id = id
        self.member_id = member_id
        if ord_type == LIMIT and tif == GTC and (side == BUY or side == SELL):  # most orders: no lookup
            self.kind = _BUY_LIMIT_GTC if side == BUY else _SELL_LIMIT_GTC
        else:
            self.kind = kind_of(side, ord_type, tif)
        self.price = price
        self.volume = volume
        self.remaining = volume
        self.stop_price = stop_price
        self.funds = funds
        self.funds_used = 0
        self.trades_count = 0
        self.seq = 0
        self.state = WAIT

    @property
    def side(self) -> str:
        return self.kind.side

    @property
    def ord_type(self) -> str:
        return self.kind.ord_type

    @property
    def tif(self) -> str:
        return self.kind.tif

    @property
    def triggered(self) -> bool:
        """A stop order that has fired (it then matches and rests as a limit order)."""
        return self.kind.triggered

    @triggered.setter
    def triggered(self, value: bool) -> None:
        k = self.kind
        self.kind = kind_of(k.side, k.ord_type, k.tif, bool(value))

    def __repr__(self) -> str:
        extra = ""
        if self.ord_type == STOP_LIMIT:
            extra = f" stop={self.stop_price}{' triggered' if self.triggered else ''}"
        if self.funds:
            extra += f" funds={self.funds}"
        return (
            f"<Order #{self.id} m{self.member_id} {self.side} {self.ord_type}/{self.tif}"
            f" {self.remaining}/{self.volume}@{self.price}{extra} seq={self.seq} {self.state}>"
        )


class Trade:
    """One fill between a resting maker and an incoming taker, at the maker's price."""

    __slots__ = ("id", "price", "volume", "maker", "taker")

    id: int
    price: int
    volume: int
    maker: Order
    taker: Order

    def __init__(self, id: int, price: int, volume: int, maker: Order, taker: Order) -> None:
        self.id = id
        self.price = price
        self.volume = volume
        self.maker = maker
        self.taker = taker

    @property
    def funds(self) -> int:
        """Quote amount that changes hands (tick*lot units)."""
        return self.price * self.volume

    @property
    def bid(self) -> Order:
        """The buying order of the two, whichever was maker."""
        return self.taker if self.taker.side == BUY else self.maker

    @property
    def ask(self) -> Order:
        """The selling order of the two, whichever was maker."""
        return self.taker if self.taker.side == SELL else self.maker

    def __repr__(self) -> str:
        return f"<Trade #{self.id} {self.volume}@{self.price} maker=#{self.maker.id} taker=#{self.taker.id}>"


class MatchResult:
    """Everything one engine operation changed, so the caller can persist and publish it.

    ``trades`` are in execution order (including those of stop orders the operation triggered);
    ``cancelled`` holds orders cancelled as a side effect (IOC/FOK/MARKET remainders, STP victims,
    triggered stops that could not rest); ``done`` the orders filled completely; ``rested`` the
    orders added to the book or to the stop list. An order can appear in ``triggered`` and then
    in one of the others.

    The lists are the caller's to read, not to change: ``MatchResult(rested)``, the result of an
    order that only rested, shares one frozen empty list (node/market/frozen.py) for the others.
    """

    __slots__ = ("trades", "cancelled", "triggered", "done", "rested")

    trades: list[Trade]
    cancelled: list[Order]
    triggered: list[Order]
    done: list[Order]
    rested: list[Order]

    def __init__(self, rested: list[Order] | None = None) -> None:
        if rested is None:
            self.trades = []
            self.cancelled = []
            self.triggered = []
            self.done = []
            self.rested = []
        else:
            self.trades = NONE
            self.cancelled = NONE
            self.triggered = NONE
            self.done = NONE
            self.rested = rested

    def __repr__(self) -> str:
        return (
            f"<MatchResult trades={self.trades} cancelled={[o.id for o in self.cancelled]}"
            f" triggered={[o.id for o in self.triggered]} done={[o.id for o in self.done]}"
            f" rested={[o.id for o in self.rested]}>"
        )
