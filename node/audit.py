"""The books must balance: checks run by tests, by `python -m node audit` and by the admin.

1. Per currency, Σ(balance + locked) over every account (the house fee account included) equals
   Σ accepted deposits − Σ done withdrawals + Σ approved balance corrections, where a withdrawal counts
   what left the exchange (its amount); its fee stays inside, in the house fee account.
2. Every account equals the sum of its ledger rows, in balance and in locked.
3. Every account's locked equals what its open orders and pending withdrawals hold.
4. Nothing is negative.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from node.config import Market
from node.store import Store
from node.wallet.records import HOLDING


@dataclass
class AuditReport:
    totals: dict[str, tuple[int, int]] = field(default_factory=dict)  # currency -> (held, deposits - withdrawals)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        out = [f"{cur}: held {held} = funded {funded}" + ("" if held == funded else "  MISMATCH")
               for cur, (held, funded) in sorted(self.totals.items())]
        out += [f"problem: {p}" for p in self.problems]
        out.append("books balance" if self.ok else f"{len(self.problems)} problem(s)")
        return out


async def audit(store: Store, markets: Mapping[str, Market]) -> AuditReport:
    r = AuditReport()
    held = {row["currency"]: int(row["s"]) for row in await store.fetch(
        "SELECT currency, SUM(balance + locked) AS s FROM accounts GROUP BY currency")}
    funded: dict[str, int] = {row["currency"]: int(row["s"]) for row in await store.fetch(
        "SELECT currency, SUM(amount) AS s FROM deposits WHERE state = 'accepted' GROUP BY currency")}
    for row in await store.fetch("SELECT currency, SUM(amount) AS s FROM withdraws WHERE state = 'done' GROUP BY currency"):
        funded[row["currency"]] = funded.get(row["currency"], 0) - int(row["s"])
    # Approved balance corrections (ledger reason `fix`, two admins) move money in or out by decision.
    for row in await store.fetch("SELECT currency, SUM(amount) AS s FROM balance_adjustments WHERE state = 'approved' "
                                 "GROUP BY currency"):
        funded[row["currency"]] = funded.get(row["currency"], 0) + int(row["s"])
    for cur in sorted(set(held) | set(funded)):
        h, f = held.get(cur, 0), funded.get(cur, 0)
        r.totals[cur] = (h, f)
        if h != f:
            r.problems.append(f"{cur}: accounts hold {h} but deposits - withdrawals = {f}")
    rows = await store.fetch(
        "SELECT a.member_id, a.currency, a.balance, a.locked, COALESCE(l.b, 0) AS lb, COALESCE(l.l, 0) AS ll "
        "FROM accounts a LEFT JOIN (SELECT member_id, currency, SUM(d_balance) AS b, SUM(d_locked) AS l FROM ledger "
        "GROUP BY member_id, currency) l ON l.member_id = a.member_id AND l.currency = a.currency "
        "WHERE a.balance != COALESCE(l.b, 0) OR a.locked != COALESCE(l.l, 0) OR a.balance < 0 OR a.locked < 0")
    for row in rows:
        r.problems.append(
            f"member {row['member_id']} {row['currency']}: balance {row['balance']}/locked {row['locked']} "
            f"but ledger says {row['lb']}/{row['ll']}")
    locks = await store.fetch(
        "SELECT member_id, market, side, SUM(locked) AS s FROM orders WHERE state IN ('wait', 'pending') "
        "GROUP BY member_id, market, side")
    by_account: dict[tuple[int, str], int] = {}
    for row in locks:
        m = markets[row["market"]]
        cur = m.quote.code if row["side"] == "buy" else m.base.code
        key = (int(row["member_id"]), cur)
        by_account[key] = by_account.get(key, 0) + int(row["s"])
    for row in await store.fetch(
            f"SELECT member_id, currency, SUM(total) AS s FROM withdraws WHERE state IN ({','.join('?' * len(HOLDING))}) "
            "GROUP BY member_id, currency", *HOLDING):
        key = (int(row["member_id"]), row["currency"])
        by_account[key] = by_account.get(key, 0) + int(row["s"])
    for row in await store.fetch("SELECT member_id, currency, locked FROM accounts WHERE locked != 0"):
        key = (int(row["member_id"]), row["currency"])
        holds = by_account.pop(key, 0)
        if holds != int(row["locked"]):
            r.problems.append(f"member {key[0]} {key[1]}: locked {row['locked']} but open orders and withdrawals hold {holds}")
    for key, amount in by_account.items():
        if amount:
            r.problems.append(f"member {key[0]} {key[1]}: open orders and withdrawals hold {amount} but nothing is locked")
    return r
