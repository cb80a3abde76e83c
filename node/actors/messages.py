"""Messages between the web layer, account actors and market actors (plain, serialisable data).

The three every order makes (`SubmitOrders` of `OrderRequest`s, then a `NewOrder` each) are named
tuples: as immutable as frozen dataclasses, and several times cheaper to make (a frozen dataclass
sets each field through `object.__setattr__`; all three cost ~5 us of an order's CPU). The rest,
rare, stay frozen dataclasses. node/cluster/codec.py sends either kind as the same JSON object.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple


class OrderRequest(NamedTuple):
    """A validated order, in the market's integer units, on its way to the account actor."""

    member_id: int
    market: str
    side: str  # buy | sell
    ord_type: str  # limit | market | stop_limit
    price: int  # ticks (0 for market)
    volume: int  # lots
    tif: str
    stop_price: int
    client_id: str | None
    lock_currency: str
    lock_amount: int  # currency units to move from balance to locked
    funds: int  # market buy budget in tick×lot units (0 otherwise)


class SubmitOrders(NamedTuple):
    """All-or-nothing batch from one member (`/orders/multi`); a single order is a batch of one."""

    orders: tuple[OrderRequest, ...]
    tonce: tuple[str, int] | None = None
    """The signed request's (access key, tonce), burnt in the same transaction that accepts the
    orders: a replay is refused (2006) and a first use costs no commit of its own."""


class NewOrder(NamedTuple):
    """An order accepted (funds locked, stored as `pending`) that the market must now match."""

    id: int
    member_id: int
    side: str
    ord_type: str
    price: int
    volume: int
    tif: str
    stop_price: int
    funds: int
    origin_locked: int
    created_at: int
    # Set only by the account actor that accepted it, on the one in-process hand-over it makes:
    # every earlier order of the member for this market went the same way, so the market needs no
    # store read to order it (node/actors/market.py `_intake_plan`). Never sent between nodes.
    direct: bool = False


@dataclass(frozen=True, slots=True)
class CancelOrder:
    order_id: int
    member_id: int | None  # None: an admin cancel


@dataclass(frozen=True, slots=True)
class CancelAll:
    member_id: int | None  # None: every order of the market (admin)
    side: str | None


@dataclass(frozen=True, slots=True)
class SetHalted:
    halted: bool


@dataclass(frozen=True, slots=True)
class QueryBook:
    """A read of the book where it lives: depth levels, resting orders, a market-buy estimate."""

    what: str  # "depth" | "orders" | "resting" | "estimate" | "status"
    limit: int = 0
    side: str | None = None
    volume: int = 0


@dataclass(frozen=True, slots=True)
class SetFees:
    """New maker/taker rates (units of 1e-8) for trades from now on; stored with the market."""

    maker: int
    taker: int


@dataclass(frozen=True, slots=True)
class ApplySettlements:
    """To an account shard's owner: settlement rows a market wrote for the shard's members (their
    ids), to apply now. Any copy may arrive any number of times: the store applies each row once."""

    shard: int
    ids: tuple[int, ...]
