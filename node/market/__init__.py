"""Pure, synchronous, deterministic matching engine (no asyncio, no I/O, no float)."""

from .engine import STP_CANCEL_MAKER, STP_CANCEL_TAKER, STP_NONE, Engine
from .errors import DuplicateOrder, EngineError, InvalidOrder, NotOwner, OrderNotFound, WouldCross
from .order import (
    BUY,
    CANCEL,
    DONE,
    FOK,
    GTC,
    IOC,
    LIMIT,
    MARKET,
    MAX_VALUE,
    POST_ONLY,
    SELL,
    STOP_LIMIT,
    WAIT,
    MatchResult,
    Order,
    Trade,
)
from .protocol import Book
from .recovery import CODED_COLUMNS, LOAD_COLUMNS, TAIL_BITS, Loader

__all__ = [
    "BUY",
    "CANCEL",
    "DONE",
    "FOK",
    "GTC",
    "IOC",
    "LIMIT",
    "CODED_COLUMNS",
    "LOAD_COLUMNS",
    "MARKET",
    "MAX_VALUE",
    "POST_ONLY",
    "SELL",
    "STOP_LIMIT",
    "STP_CANCEL_MAKER",
    "STP_CANCEL_TAKER",
    "STP_NONE",
    "TAIL_BITS",
    "WAIT",
    "Book",
    "DuplicateOrder",
    "Engine",
    "EngineError",
    "InvalidOrder",
    "Loader",
    "MatchResult",
    "NotOwner",
    "Order",
    "OrderNotFound",
    "Trade",
    "WouldCross",
]
