"""Messages between the web layer, account actors and market actors (plain, serialisable data)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class OrderRequest:
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


@dataclass(frozen=True, slots=True)
class SubmitOrders:
    """All-or-nothing batch from one member (`/orders/multi`); a single order is a batch of one."""

    orders: tuple[OrderRequest, ...]
    tonce: tuple[str, int] | None = None
    """The signed request's (access key, tonce), burnt in the same transaction that accepts the
    orders: a replay is refused (2006) and a first use costs no commit of its own."""


@dataclass(frozen=True, slots=True)
class NewOrder:
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
