"""Settlement: what a trade, a fill or a cancel does to balances, as pure arithmetic.

Kept apart from the engine (which knows ticks and lots, not currencies) and from the actor (which
only writes what this returns). Every balance change is a ledger row; per currency the deltas of a
trade sum to zero (the fee goes to the house account), which is what keeps the books balanced.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from node.money import FEE_SCALE


class CurrencySpec(Protocol):
    @property
    def code(self) -> str: ...


class MarketSpec(Protocol):
    """What settlement needs of a market (node.config.Market has it): the engine's package depends
    on money and errors only, so the configuration is described here, not imported."""

    @property
    def base(self) -> CurrencySpec: ...
    @property
    def quote(self) -> CurrencySpec: ...
    @property
    def maker_fee(self) -> int: ...
    @property
    def taker_fee(self) -> int: ...
    def base_units(self, lots: int) -> int: ...
    def quote_units(self, ticklots: int) -> int: ...

# Ledger reason codes, Peatio's names.
ORDER_SUBMIT = "order_submit"
ORDER_CANCEL = "order_cancel"
ORDER_FULFILLED = "order_fullfilled"  # sic: Peatio's spelling, kept for compatibility of reports
STRIKE_ADD = "strike_add"
STRIKE_SUB = "strike_sub"
STRIKE_FEE = "strike_fee"
DEPOSIT = "deposit"
WITHDRAW = "withdraw"
FIX = "fix"

LedgerRow = tuple[int, str, int, int, int, str, str, int, int]
"""(member_id, currency, d_balance, d_locked, fee, reason, ref_type, ref_id, created_at): the ledger
table's columns, in its order, so a batch's rows are written as they are."""


@dataclass
class Effects:
    """Balance deltas of a batch, aggregated per account, plus their ledger rows (stamped `created_at`)."""

    created_at: int = 0
    deltas: dict[tuple[int, str], list[int]] = field(default_factory=dict)
    ledger: list[LedgerRow] = field(default_factory=list)

    def add(
        self,
        member: int,
        currency: str,
        d_balance: int,
        d_locked: int,
        fee: int,
        reason: str,
        ref_type: str,
        ref_id: int,
    ) -> None:
        self.add_all(ref_type, ref_id, ((member, currency, d_balance, d_locked, fee, reason),))

    def add_all(self, ref_type: str, ref_id: int, moves: tuple[tuple[int, str, int, int, int, str], ...]) -> None:
        """`add` for each (member, currency, d_balance, d_locked, fee, reason) of one ref, in one
        call: a trade makes six, and a call each was most of settling it."""
        deltas, rows, at = self.deltas, self.ledger, self.created_at
        for member, currency, d_balance, d_locked, fee, reason in moves:
            if d_balance == 0 and d_locked == 0:
                continue
            d = deltas.get((member, currency))
            if d is None:
                deltas[(member, currency)] = [d_balance, d_locked]
            else:
                d[0] += d_balance
                d[1] += d_locked
            rows.append((member, currency, d_balance, d_locked, fee, reason, ref_type, ref_id, at))

    def sums(self) -> list[tuple[int, int, int, str, int, int]]:
        """The accounts' moves as the ledger writer applies them: (d_balance, d_locked, member,
        currency, d_balance, d_locked) in (member, currency) order, as node.store.ledger.sum_deltas
        makes them from `ledger`."""
        return [(d[0], d[1], k[0], k[1], d[0], d[1]) for k, d in sorted(self.deltas.items())]


def fee_of(amount: int, rate: int) -> int:
    """Fees round down: the member never pays more than the rate; the house never gets a fraction."""
    return amount * rate // FEE_SCALE


class TradeSettlement(NamedTuple):
    """One per trade, made in the market's hot loop: a tuple costs a fraction of a frozen dataclass."""

    funds: int  # quote units changing hands
    amount: int  # base units changing hands
    bid_fee: int  # base units, paid by the buyer
    ask_fee: int  # quote units, paid by the seller


def settle_trade(
    eff: Effects,
    market: MarketSpec,
    fee_member: int,
    trade_id: int,
    price: int,
    volume: int,
    bid_member: int,
    ask_member: int,
    bid_is_maker: bool,
    fees: tuple[int, int] | None = None,
) -> TradeSettlement:
    """The buyer's locked quote pays the seller; the seller's locked base goes to the buyer.

    `fees` (maker, taker) overrides the configured rates (an admin changed them at run time).
    """
    funds = market.quote_units(price * volume)
    amount = market.base_units(volume)
    maker, taker = fees if fees is not None else (market.maker_fee, market.taker_fee)
    bid_rate = maker if bid_is_maker else taker
    ask_rate = taker if bid_is_maker else maker
    bid_fee = fee_of(amount, bid_rate)
    ask_fee = fee_of(funds, ask_rate)
    base, quote = market.base.code, market.quote.code
    eff.add_all("trade", trade_id, (
        (bid_member, quote, 0, -funds, 0, STRIKE_SUB),
        (bid_member, base, amount - bid_fee, 0, bid_fee, STRIKE_ADD),
        (ask_member, base, 0, -amount, 0, STRIKE_SUB),
        (ask_member, quote, funds - ask_fee, 0, ask_fee, STRIKE_ADD),
        (fee_member, base, bid_fee, 0, 0, STRIKE_FEE),
        (fee_member, quote, ask_fee, 0, 0, STRIKE_FEE),
    ))
    return TradeSettlement(funds, amount, bid_fee, ask_fee)


def release(eff: Effects, member: int, currency: str, amount: int, reason: str, order_id: int) -> None:
    """Return what an order still holds locked to the member's available balance."""
    if amount > 0:
        eff.add(member, currency, amount, -amount, 0, reason, "order", order_id)


def order_lock(market: MarketSpec, side: str, price: int, volume: int) -> tuple[str, int]:
    """(currency, amount) a limit order locks at submit: a bid price × volume in quote, an ask its volume."""
    if side == "buy":
        return market.quote.code, market.quote_units(price * volume)
    return market.base.code, market.base_units(volume)
