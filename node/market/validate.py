"""Validation of a new order before it reaches the book: every field, with a typed error.

Plain limit orders are checked inline on submit's fast path (node/market/engine.py); everything
else, and every order that fails there, comes here for the full check and the precise message.
"""

from __future__ import annotations

from .errors import InvalidOrder
from .order import BUY, MARKET, MAX_VALUE, ORD_TYPES, SIDES, STOP_LIMIT, TIFS, WAIT, Order


def _is_int(x: object) -> bool:
    """True for a real int (bool and float are refused: no float may reach the book)."""
    return type(x) is int


def validate(o: Order) -> None:
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
    o.state = WAIT  # the constant itself: submit's fast path tests it by identity
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
