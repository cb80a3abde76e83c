"""Reconciliation: do the coins the exchange holds match what its books owe, item by item?

For one coin currency, the *assets* are the hot wallet's balance (as the daemon reports it), the
cold wallet's watched addresses and any declared cold holdings. The *expected* assets start from
what the books owe (members' balances and locks, the house's fees) and are corrected by every known
reason why coins and books differ, each one a named line:

    expected = members' balances + members' locks + house
             - payments sent but not yet done   (their coins, and network fees, have left)
             - network fees of done payments    (paid from the wallet; the member's fee stayed inside)
             - admin credits                    (admin deposits: no coins came in)
             - balance corrections              (approved `fix` entries: no coins moved)
             - re-org shortfalls                (deposits taken back by a re-org that members kept)
             + deposits received, not credited  (confirmed, waiting for their confirmations)
             + deposits below the minimum       (recorded, never credited)
             + receipts nobody owns             (top-ups and stray payments to wallet addresses)

and `difference = assets - expected`. Zero means every coin is accounted for; anything else is
shown as it is, never netted against a known item, so a windfall cannot hide a loss.
Store figures are read in one snapshot; the daemon's a moment apart (a payment broadcast between
the two reads shows as a transient difference of its amount).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from node.store import Store, Tx
from node.store.schema import HOUSE_EMAIL

HOUSE_LIKE = HOUSE_EMAIL.replace("house@", "house%@")


@dataclass(frozen=True)
class Line:
    key: str
    label: str
    amount: int
    sign: int  # +1 / -1 in the expected-assets sum; 0: shown for information, not part of it


@dataclass
class Reconciliation:
    currency: str
    precision: int
    assets: list[Line] = field(default_factory=list)
    books: list[Line] = field(default_factory=list)
    info: list[Line] = field(default_factory=list)

    @property
    def total_assets(self) -> int:
        return sum(x.amount for x in self.assets)

    @property
    def expected(self) -> int:
        return sum(x.sign * x.amount for x in self.books)

    @property
    def difference(self) -> int:
        return self.total_assets - self.expected

    @property
    def ok(self) -> bool:
        return self.difference == 0

    def amount(self, key: str) -> int:
        return next(x.amount for x in (*self.assets, *self.books, *self.info) if x.key == key)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"currency": self.currency, "ok": self.ok, "difference": self.difference,
                               "assets": self.total_assets, "expected": self.expected}
        for x in (*self.assets, *self.books, *self.info):
            out[x.key] = x.amount
        out["lines"] = [{"key": x.key, "label": x.label, "amount": x.amount, "sign": x.sign}
                        for x in (*self.assets, *self.books, *self.info)]
        return out

    def lines(self) -> list[str]:
        from node.money import format_units

        def f(v: int) -> str:
            return format_units(v, self.precision)

        code = self.currency.upper()
        out = [f"{code} assets"]
        out += [f"  {x.label:<52} {f(x.amount):>20}" for x in self.assets]
        out.append(f"  {'total':<52} {f(self.total_assets):>20}")
        out.append(f"{code} books")
        out += [f"  {'+' if x.sign > 0 else '-'} {x.label:<50} {f(x.amount):>20}" for x in self.books]
        out.append(f"  {'expected assets':<52} {f(self.expected):>20}")
        if self.info:
            out.append(f"{code} for information")
            out += [f"  {x.label:<52} {f(x.amount):>20}" for x in self.info]
        out.append(f"{code} difference (assets - expected): {f(self.difference)}"
                   + ("  every coin accounted for" if self.ok else "  UNEXPLAINED"))
        return out


async def _sum(tx: Tx, sql: str, *args: Any) -> int:
    return int(await tx.fetchval(sql, *args) or 0)


async def reconcile(store: Store, currency: str, precision: int, channel_name: str, hot: int, cold_watched: int,
                    cold_declared: int) -> Reconciliation:
    """Itemise one currency (see the module doc); `hot`, `cold_*` are the asset figures already asked."""
    r = Reconciliation(currency, precision)
    r.assets = [Line("hot_wallet", "hot wallet (daemon balance)", hot, 1),
                Line("cold_watched", "cold wallet (watched addresses)", cold_watched, 1),
                Line("cold_declared", "cold wallet (declared)", cold_declared, 1)]
    c = currency
    async with store.snapshot() as tx:
        house = ("SELECT COALESCE(SUM(a.{col}), 0) FROM accounts a JOIN members m ON m.id = a.member_id "
                 "WHERE a.currency = ? AND m.email {op} LIKE ?")
        members_balance = await _sum(tx, house.format(col="balance", op="NOT"), c, HOUSE_LIKE)
        members_locked = await _sum(tx, house.format(col="locked", op="NOT"), c, HOUSE_LIKE)
        house_total = await _sum(tx, house.format(col="balance + a.locked", op=""), c, HOUSE_LIKE)
        in_flight = await _sum(tx, "SELECT COALESCE(SUM(amount + COALESCE(network_fee, 0)), 0) FROM withdraws "
                                   "WHERE currency = ? AND state = 'almost_done'", c)
        processing = await _sum(tx, "SELECT COALESCE(SUM(amount), 0) FROM withdraws WHERE currency = ? AND state = 'processing'", c)
        fees_done = await _sum(tx, "SELECT COALESCE(SUM(network_fee), 0) FROM withdraws WHERE currency = ? AND state = 'done'", c)
        fee_unknown = await _sum(tx, "SELECT COUNT(*) FROM withdraws WHERE currency = ? AND state = 'done' AND network_fee IS NULL", c)
        admin = await _sum(tx, "SELECT COALESCE(SUM(amount), 0) FROM deposits WHERE currency = ? AND state = 'accepted' "
                               "AND channel != ?", c, channel_name)
        fixes = await _sum(tx, "SELECT COALESCE(SUM(amount), 0) FROM balance_adjustments WHERE currency = ? AND state = 'approved'", c)
        shortfall = await _sum(tx, "SELECT COALESCE(SUM(amount - reversed), 0) FROM deposits WHERE currency = ? "
                                   "AND state = 'reverted'", c)
        waiting = await _sum(tx, "SELECT COALESCE(SUM(amount), 0) FROM deposits WHERE currency = ? AND state = 'submitted' "
                                 "AND confirmations > 0 AND coinbase = 0", c)
        immature = await _sum(tx, "SELECT COALESCE(SUM(amount), 0) FROM deposits WHERE currency = ? AND state = 'submitted' "
                                  "AND coinbase = 1", c)
        unconfirmed = await _sum(tx, "SELECT COALESCE(SUM(amount), 0) FROM deposits WHERE currency = ? AND state = 'submitted' "
                                     "AND confirmations = 0 AND coinbase = 0", c)
        skipped = await _sum(tx, "SELECT COALESCE(SUM(amount), 0) FROM deposits WHERE currency = ? AND state = 'skipped' "
                                 "AND confirmations > 0", c)
        unowned = await _sum(tx, "SELECT COALESCE(SUM(amount), 0) FROM wallet_receipts WHERE currency = ?", c)
        open_short = await _sum(tx, "SELECT COALESCE(SUM(shortfall), 0) FROM withdraw_freezes WHERE currency = ? "
                                    "AND resolved_at IS NULL", c)
    r.books = [
        Line("members_balance", "members' balances", members_balance, 1),
        Line("members_locked", "members' locks (orders, withdrawals)", members_locked, 1),
        Line("house", "house (fees earned)", house_total, 1),
        Line("in_flight", "payments sent, not yet done (with network fees)", in_flight, -1),
        Line("network_fees", "network fees of done payments", fees_done, -1),
        Line("admin_credits", "admin deposits (no coins behind them)", admin, -1),
        Line("corrections", "approved balance corrections", fixes, -1),
        Line("reorg_shortfall", "re-org shortfalls kept by members", shortfall, -1),
        Line("uncredited", "deposits received, not yet credited", waiting, 1),
        Line("below_minimum", "deposits below the minimum (not credited)", skipped, 1),
        Line("unowned", "receipts nobody owns (top-ups, stray payments)", unowned, 1),
    ]
    r.info = [
        Line("processing", "payments being sent (may have left already)", processing, 0),
        Line("unconfirmed_deposits", "deposits not yet in a block (not in the balance)", unconfirmed, 0),
        Line("immature_rewards", "block rewards to members, not yet mature", immature, 0),
        Line("open_shortfalls", "shortfalls of open withdrawal holds", open_short, 0),
        Line("unknown_fee_count", "done payments whose network fee is unknown (count)", fee_unknown, 0),
    ]
    return r
