"""The books must balance: checks run by tests, by `python -m node audit`, by the admin and by fault
injection. `check_books` answers a list of named violations, each naming the row it is about;
everything is read in one snapshot of the store (a WAL read transaction on SQLite, REPEATABLE READ
READ ONLY on PostgreSQL), so a live node's writes between two queries never look like a mismatch.

What is cross-checked, and the name of each violation:

- `totals`: per currency, Σ(balance + locked) over every account (house included), plus the
  settlements still in flight (written by a market, not yet applied by the member's account shard:
  node/actors/shards.py), equals what came in minus what went out: credited deposits (less what a
  re-org took back), minus done withdrawals' amounts (their fee stays inside, with the house), plus
  approved balance corrections.
- `ledger`, `negative`, `ledger_orphan`: every account equals the replay of its ledger rows; nothing
  is negative; no ledger rows for an account that does not exist.
- `locks`: every account's locked (with its settlements in flight) equals what its open orders and
  pending withdrawals hold.

Everywhere below, a settlement in flight counts as the ledger row it will become: the checks hold
at every instant, and after quiescence (nothing in flight) on the ledger alone.
- `order_fill`, `order_funds`, `order_trades`, `order_locked`, `order_release`, `order_submit`: an
  order's filled volume, funds used and trade count equal its trades'; an open order still locks
  what it has not spent, a finished one nothing; exactly a finished order has released the rest of
  its lock, and every order locked its funds once at submission.
- `trade_order`, `trade_ledger`, `trade_fee`: a trade's orders exist, in its market and of its
  members; its ledger rows move exactly its funds, volume and fees; fees are within 10 %.
- `deposit_ledger`, `withdraw_ledger`, `adjustment_ledger`, `ledger_ref`: deposits, withdrawals
  and approved balance corrections each have exactly the ledger rows their state implies, and every
  ledger row refers to a row that exists.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from node.config import FEE_SCALE, Market
from node.market.settlement import DEPOSIT, FIX, ORDER_CANCEL, ORDER_FULFILLED, ORDER_SUBMIT, WITHDRAW
from node.store import Store, Tx
from node.wallet.records import DEPOSIT_REVERT, HOLDING, WITHDRAW_FEE, WITHDRAW_LOCK, WITHDRAW_UNLOCK

OPEN = ("wait", "pending")
RELEASES = (ORDER_CANCEL, ORDER_FULFILLED)
MAX_FEE = FEE_SCALE // 10  # configuration refuses rates of 10 % and more


@dataclass(frozen=True)
class Violation:
    check: str  # the name of the check (see the module doc)
    ref: str  # the row it is about: "order 12", "trade 7", "member 3 btc", "deposit 5", "btc"
    message: str

    def __str__(self) -> str:
        return f"{self.check}: {self.ref}: {self.message}"


@dataclass
class AuditReport:
    totals: dict[str, tuple[int, int]] = field(default_factory=dict)  # currency -> (held, deposits - withdrawals)
    violations: list[Violation] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        return [str(v) for v in self.violations]

    @property
    def ok(self) -> bool:
        return not self.violations

    def lines(self) -> list[str]:
        out = [f"{cur}: held {held} = funded {funded}" + ("" if held == funded else "  MISMATCH")
               for cur, (held, funded) in sorted(self.totals.items())]
        out += [f"problem: {p}" for p in self.problems]
        out.append("books balance" if self.ok else f"{len(self.violations)} problem(s)")
        return out


async def check_books(store: Store, markets: Mapping[str, Market]) -> list[Violation]:
    """Every violation found in one consistent snapshot of the store; empty when the books balance."""
    return (await audit(store, markets)).violations


async def audit(store: Store, markets: Mapping[str, Market]) -> AuditReport:
    r = AuditReport()
    async with store.snapshot() as tx:
        accounts = await _accounts(tx, r)
        flight = await _in_flight(tx)
        for (member, currency), (_b, lk) in flight.items():
            accounts[(member, currency)] = accounts.get((member, currency), 0) + lk
        await _totals(tx, r, flight)
        ledger = await _ledger_by_ref(tx)
        holds = await _orders_and_trades(tx, r, markets, ledger)
        await _funds(tx, r, ledger, holds)
        _locks(r, accounts, holds)
        await _refs(tx, r, ledger)
    return r


def _v(r: AuditReport, check: str, ref: str, message: str) -> None:
    r.violations.append(Violation(check, ref, message))


async def _accounts(tx: Tx, r: AuditReport) -> dict[tuple[int, str], int]:
    """Accounts against the replay of their ledger; answers every account's locked."""
    rows = await tx.fetch(
        "SELECT a.member_id, a.currency, a.balance, a.locked, COALESCE(l.b, 0) AS lb, COALESCE(l.l, 0) AS ll "
        "FROM accounts a LEFT JOIN (SELECT member_id, currency, SUM(d_balance) AS b, SUM(d_locked) AS l FROM ledger "
        "GROUP BY member_id, currency) l ON l.member_id = a.member_id AND l.currency = a.currency")
    locked: dict[tuple[int, str], int] = {}
    for row in rows:
        key, b, lk = (int(row["member_id"]), row["currency"]), int(row["balance"]), int(row["locked"])
        locked[key] = lk
        ref = f"member {key[0]} {key[1]}"
        if (b, lk) != (int(row["lb"]), int(row["ll"])):
            _v(r, "ledger", ref, f"balance {b} / locked {lk} but the ledger replays to {row['lb']} / {row['ll']}")
        if b < 0 or lk < 0:
            _v(r, "negative", ref, f"balance {b} / locked {lk}")
    for row in await tx.fetch(
            "SELECT l.member_id, l.currency, SUM(l.d_balance) AS b, SUM(l.d_locked) AS lk FROM ledger l LEFT JOIN accounts a "
            "ON a.member_id = l.member_id AND a.currency = l.currency WHERE a.member_id IS NULL GROUP BY l.member_id, l.currency"):
        _v(r, "ledger_orphan", f"member {row['member_id']} {row['currency']}",
           f"ledger rows ({row['b']} / {row['lk']}) for an account that does not exist")
    return locked


async def _in_flight(tx: Tx) -> dict[tuple[int, str], tuple[int, int]]:
    """Settlements not yet applied, summed per account: (d_balance, d_locked)."""
    return {(int(row["member_id"]), row["currency"]): (int(row["b"]), int(row["lk"])) for row in await tx.fetch(
        "SELECT member_id, currency, SUM(d_balance) AS b, SUM(d_locked) AS lk FROM settlements "
        "WHERE applied_at IS NULL GROUP BY member_id, currency")}


async def _totals(tx: Tx, r: AuditReport, flight: Mapping[tuple[int, str], tuple[int, int]]) -> None:
    held: dict[str, int] = defaultdict(int)
    for row in await tx.fetch("SELECT currency, SUM(balance + locked) AS s FROM accounts GROUP BY currency"):
        held[row["currency"]] += int(row["s"])
    for (_member, currency), (b, lk) in flight.items():
        held[currency] += b + lk
    funded: dict[str, int] = defaultdict(int)
    for sql in ("SELECT currency, SUM(amount) AS s FROM deposits WHERE state = 'accepted' GROUP BY currency",
                "SELECT currency, SUM(amount - reversed) AS s FROM deposits WHERE state = 'reverted' GROUP BY currency",
                "SELECT currency, -SUM(amount) AS s FROM withdraws WHERE state = 'done' GROUP BY currency",
                "SELECT currency, SUM(amount) AS s FROM balance_adjustments WHERE state = 'approved' GROUP BY currency"):
        for row in await tx.fetch(sql):
            funded[row["currency"]] += int(row["s"])
    for cur in sorted(set(held) | set(funded)):
        h, f = held.get(cur, 0), funded.get(cur, 0)
        r.totals[cur] = (h, f)
        if h != f:
            _v(r, "totals", cur, f"accounts hold {h} but deposits - withdrawals + corrections = {f}")


Sums = dict[tuple[str, int], dict[str, Any]]


async def _ledger_by_ref(tx: Tx) -> Sums:
    """Ledger rows, and settlements in flight, summed per (ref_type, ref_id): per reason, and per
    (member, currency, reason)."""
    out: Sums = {}
    cols = "ref_type, ref_id, member_id, currency, reason, d_balance, d_locked, fee"
    for row in await tx.fetch(
            "SELECT ref_type, ref_id, member_id, currency, reason, SUM(d_balance) AS b, SUM(d_locked) AS lk, SUM(fee) AS f, "
            f"COUNT(*) AS n FROM (SELECT {cols} FROM ledger UNION ALL SELECT {cols} FROM settlements "
            "WHERE applied_at IS NULL) l GROUP BY ref_type, ref_id, member_id, currency, reason"):
        s = out.setdefault((row["ref_type"], int(row["ref_id"])), {"rows": {}, "n": 0})
        s["rows"][(int(row["member_id"]), row["currency"], row["reason"])] = (int(row["b"]), int(row["lk"]), int(row["f"]),
                                                                            int(row["n"]))
        s["n"] += int(row["n"])
    return out


def _reason(s: dict[str, Any] | None, reason: str) -> list[tuple[int, str, int, int, int, int]]:
    """(member, currency, d_balance, d_locked, fee, rows) of one reason in a ref's ledger rows."""
    if s is None:
        return []
    return [(m, c, b, lk, f, n) for (m, c, why), (b, lk, f, n) in s["rows"].items() if why == reason]


async def _orders_and_trades(tx: Tx, r: AuditReport, markets: Mapping[str, Market], ledger: Sums) -> dict[tuple[int, str], int]:
    """Orders against their trades and ledger rows; answers what open orders hold per account."""
    fills: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0])  # order id -> volume, funds, count
    trades = await tx.fetch("SELECT * FROM trades ORDER BY id")
    orders = {int(o["id"]): o for o in await tx.fetch("SELECT * FROM orders")}
    for t in trades:
        tid, m = int(t["id"]), markets.get(t["market"])
        ref = f"trade {tid}"
        if m is None:
            _v(r, "trade_order", ref, f"market {t['market']!r} is not configured")
            continue
        for side, oid, member in (("ask", int(t["ask_id"]), int(t["ask_member_id"])),
                                  ("bid", int(t["bid_id"]), int(t["bid_member_id"]))):
            f = fills[oid]
            f[0] += int(t["volume"])
            f[1] += int(t["funds"])
            f[2] += 1
            o = orders.get(oid)
            if o is None:
                _v(r, "trade_order", ref, f"its {side} order {oid} does not exist")
            elif (o["market"], int(o["member_id"]), o["side"]) != (m.id, member, "sell" if side == "ask" else "buy"):
                _v(r, "trade_order", ref, f"its {side} order {oid} is ({o['market']}, member {o['member_id']}, {o['side']})")
        funds, amount = int(t["funds"]), m.base_units(int(t["volume"]))
        ask_fee, bid_fee = int(t["ask_fee"]), int(t["bid_fee"])
        if funds != m.quote_units(int(t["price"]) * int(t["volume"])):
            _v(r, "trade_fee", ref, f"funds {funds} is not price × volume")
        if not (0 <= ask_fee <= funds * MAX_FEE // FEE_SCALE and 0 <= bid_fee <= amount * MAX_FEE // FEE_SCALE):
            _v(r, "trade_fee", ref, f"fees {ask_fee} (ask) / {bid_fee} (bid) are outside 0-10 %")
        s = ledger.get(("trade", tid))
        if s is None:
            _v(r, "trade_ledger", ref, "has no ledger rows (a trade that moved no money)")
            continue
        got: dict[tuple[int, str], tuple[int, int]] = defaultdict(lambda: (0, 0))
        fees = 0
        per_currency: dict[str, int] = defaultdict(int)
        for (mem, cur, _why), (b, lk, fee, _n) in s["rows"].items():
            ob, ol = got[(mem, cur)]
            got[(mem, cur)] = (ob + b, ol + lk)
            fees += fee
            per_currency[cur] += b + lk
        bid, ask = int(t["bid_member_id"]), int(t["ask_member_id"])
        base, quote = m.base.code, m.quote.code
        expect = {(bid, quote): (0, -funds), (bid, base): (amount - bid_fee, 0),
                  (ask, base): (0, -amount), (ask, quote): (funds - ask_fee, 0)}
        if bid == ask:  # a self-trade, where allowed: one account per currency
            expect = {(bid, quote): (funds - ask_fee, -funds), (bid, base): (amount - bid_fee, -amount)}
        for key, want in expect.items():
            have = got.get(key, (0, 0))
            if key[0] not in (bid, ask) or (have != want and not _house_share(got, key, want, ask_fee, bid_fee, m)):
                _v(r, "trade_ledger", ref, f"member {key[0]} {key[1]}: ledger moves {have}, the trade {want}")
        if fees != ask_fee + bid_fee:
            _v(r, "trade_ledger", ref, f"ledger fees {fees}, the trade's {ask_fee + bid_fee}")
        for cur, total in per_currency.items():
            if total:
                _v(r, "trade_ledger", ref, f"its ledger rows create {total} {cur} from nothing")
    holds: dict[tuple[int, str], int] = defaultdict(int)
    for oid, o in orders.items():
        m = markets.get(o["market"])
        ref = f"order {oid}"
        if m is None:
            _v(r, "order_fill", ref, f"market {o['market']!r} is not configured")
            continue
        vol, rem, used = int(o["volume"]), int(o["remaining"]), int(o["funds_used"])
        origin, locked, state = int(o["origin_locked"]), int(o["locked"]), o["state"]
        fv, ff, fc = fills.get(oid, (0, 0, 0))
        if vol - rem != fv:
            _v(r, "order_fill", ref, f"filled {vol - rem} but its trades fill {fv}")
        if m.quote_units(used) != ff:
            _v(r, "order_funds", ref, f"funds used {m.quote_units(used)} but its trades' funds are {ff}")
        if int(o["trades_count"]) != fc:
            _v(r, "order_trades", ref, f"trades_count {o['trades_count']} but {fc} trade(s) name it")
        buy = o["side"] == "buy"
        currency = m.quote.code if buy else m.base.code
        left = origin - m.quote_units(used) if buy else m.base_units(rem)
        s = ledger.get(("order", oid))
        submit = _reason(s, ORDER_SUBMIT)
        if [(mem, cur, b, lk) for mem, cur, b, lk, _f, _n in submit] != [(int(o["member_id"]), currency, -origin, origin)]:
            _v(r, "order_submit", ref, f"locked {origin} {currency} at submission, but its order_submit rows are {submit}")
        released = sum(b for reason in RELEASES for _m, _c, b, _lk, _f, _n in _reason(s, reason))
        if state in OPEN:
            holds[(int(o["member_id"]), currency)] += locked
            if locked != left:
                _v(r, "order_locked", ref, f"{state} with locked {locked}, but it has {left} left to spend")
            if released:
                _v(r, "order_release", ref, f"{state}, but the ledger has released {released} of it (a finished order)")
        else:
            if locked != 0:
                _v(r, "order_locked", ref, f"{state} but still locks {locked}")
            if released != left:
                _v(r, "order_release", ref, f"{state} with {left} left of its lock, but the ledger released {released}")
    return holds


def _house_share(got: Mapping[tuple[int, str], tuple[int, int]], key: tuple[int, str], want: tuple[int, int],
                 ask_fee: int, bid_fee: int, m: Market) -> bool:
    """A member who is also the house (fees credited to the same account) receives the fee too."""
    have = got.get(key, (0, 0))
    fee = bid_fee if key[1] == m.base.code else ask_fee
    return have == (want[0] + fee, want[1])


async def _funds(tx: Tx, r: AuditReport, ledger: Sums, holds: dict[tuple[int, str], int]) -> None:
    """Deposits, withdrawals and balance corrections against their ledger rows."""
    for d in await tx.fetch("SELECT id, member_id, currency, amount, state, reversed FROM deposits"):
        did, s = int(d["id"]), ledger.get(("deposit", int(d["id"])))
        member, cur, amount = int(d["member_id"]), d["currency"], int(d["amount"])
        want: dict[str, list[tuple[int, str, int, int, int, int]]] = {DEPOSIT: [], DEPOSIT_REVERT: []}
        if d["state"] in ("accepted", "reverted"):
            want[DEPOSIT] = [(member, cur, amount, 0, 0, 1)]
        if d["state"] == "reverted" and int(d["reversed"]):
            want[DEPOSIT_REVERT] = [(member, cur, -int(d["reversed"]), 0, 0, 1)]
        have = {reason: _reason(s, reason) for reason in want}
        extra = (s["n"] if s else 0) - sum(n for rows in have.values() for *_x, n in rows)
        if have != want or extra:
            _v(r, "deposit_ledger", f"deposit {did}", f"{d['state']} deposit of {amount} {cur}: ledger rows {have}, "
               f"expected {want}" + (f" and {extra} other row(s)" if extra else ""))
    for w in await tx.fetch("SELECT id, member_id, currency, amount, fee, total, state FROM withdraws"):
        wid, s = int(w["id"]), ledger.get(("withdraw", int(w["id"])))
        member, cur, total, fee, state = int(w["member_id"]), w["currency"], int(w["total"]), int(w["fee"]), w["state"]
        lock = _reason(s, WITHDRAW_LOCK)
        unlock = _reason(s, WITHDRAW_UNLOCK)
        paid = _reason(s, WITHDRAW)
        house = _reason(s, WITHDRAW_FEE)
        problems = []
        if lock != [(member, cur, -total, total, 0, 1)]:
            problems.append(f"withdraw_lock rows {lock}")
        if state in HOLDING:
            holds[(member, cur)] += total
            if unlock or paid or house:
                problems.append(f"{state} (still locked) but the ledger has unlocked or paid it")
        elif state == "done":
            if unlock or paid != [(member, cur, 0, -total, fee, 1)] or (fee and sum(b for *_x, b, _l, _f, _n in house) != fee):
                problems.append(f"done: withdraw rows {paid}, fee rows {house}, unlock rows {unlock}")
        elif unlock != [(member, cur, total, -total, 0, 1)] or paid or house:
            problems.append(f"{state}: unlock rows {unlock}, withdraw rows {paid}")
        for p in problems:
            _v(r, "withdraw_ledger", f"withdraw {wid}", p)
    for a in await tx.fetch("SELECT id, member_id, currency, amount, state FROM balance_adjustments"):
        s = ledger.get(("adjustment", int(a["id"])))
        want_rows = [(int(a["member_id"]), a["currency"], int(a["amount"]), 0, 0, 1)] if a["state"] == "approved" else []
        if _reason(s, FIX) != want_rows or (s and s["n"] != len(want_rows)):
            _v(r, "adjustment_ledger", f"adjustment {a['id']}", f"{a['state']}: ledger rows {_reason(s, FIX)}, expected {want_rows}")


def _locks(r: AuditReport, locked: dict[tuple[int, str], int], holds: dict[tuple[int, str], int]) -> None:
    for key in sorted(set(locked) | {k for k, v in holds.items() if v}):
        have, want = locked.get(key, 0), holds.get(key, 0)
        if have != want:
            _v(r, "locks", f"member {key[0]} {key[1]}", f"locked {have} but open orders and withdrawals hold {want}")


async def _refs(tx: Tx, r: AuditReport, ledger: Sums) -> None:
    """Every ledger row refers to a row that exists."""
    tables = {"order": "orders", "trade": "trades", "deposit": "deposits", "withdraw": "withdraws",
              "adjustment": "balance_adjustments"}
    for ref_type, table in tables.items():
        ids = sorted(i for t, i in ledger if t == ref_type)
        existing: set[int] = set()
        for k in range(0, len(ids), 500):
            chunk = ids[k:k + 500]
            rows = await tx.fetch(f"SELECT id FROM {table} WHERE id IN ({','.join('?' * len(chunk))})", *chunk)
            existing.update(int(x["id"]) for x in rows)
        for i in ids:
            if i not in existing:
                _v(r, "ledger_ref", f"{ref_type} {i}", f"ledger rows refer to {ref_type} {i}, which does not exist")
    for ref_type, _i in {(t, 0) for t, _ in ledger}:
        if ref_type not in tables:
            _v(r, "ledger_ref", ref_type, f"ledger rows of an unknown kind {ref_type!r}")
