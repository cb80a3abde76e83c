"""The store side of deposits and withdrawals: every balance change with its ledger row, in the
caller's transaction, each guarded by a conditional state change so that it happens exactly once.

Used by the wallet actor (scanning, sending) and by the funds facade (member and admin requests)
alike: whoever wins the `UPDATE … WHERE state = …` does the money part, the other does nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from node.errors import ExchangeError
from node.market.settlement import DEPOSIT, WITHDRAW
from node.store import Tx, ledger

# Ledger reasons beside settlement's DEPOSIT / WITHDRAW (Peatio's names, plus the house's fee).
WITHDRAW_LOCK = "withdraw_lock"
WITHDRAW_UNLOCK = "withdraw_unlock"
WITHDRAW_FEE = "withdraw_fee"
DEPOSIT_REVERT = "deposit_revert"  # a credited deposit that a re-org took away, taken back

# Peatio's withdraw states. A request is checked and locked in one transaction; it is `submitted` from
# the first moment anyone can see it, or `submitting` (funds locked too) while the security policy
# holds it for the member's e-mail confirmation or a new address's hold (node/security/addresses.py).
# A payment is `processing` from the moment its signed bytes are stored (broadcast or not), `almost_done`
# once the network has it, and `done` at the currency's confirmations: only then is the lock spent.
WITHDRAW_STATES = ("submitting", "submitted", "accepted", "processing", "almost_done", "done", "canceled", "rejected",
                   "suspect", "failed")
HOLDING = ("submitting", "submitted", "accepted", "processing", "almost_done", "suspect")  # `total` is locked
IN_FLIGHT = ("processing", "almost_done")  # a payment exists: never built again while it may go out
# A deposit is `submitted` until credited (`accepted`); `failed` if double-spent first, `skipped` if
# below the currency's minimum (recorded, not credited), `reverted` if a re-org took it after credit.
# `rejected` is the older name of `failed`, kept for rows written by earlier versions.
DEPOSIT_STATES = ("submitted", "accepted", "failed", "skipped", "reverted", "rejected")


class WithdrawFailed(ExchangeError):
    """A withdrawal cannot be made as asked (funds, member, state); nothing was locked or changed."""

    code = 3101
    status = 400


class WithdrawNotFound(ExchangeError):
    code = 3103
    status = 404


def withdraw_sn(withdraw_id: int, created_ms: int) -> str:
    """Peatio's `sn`: YYMMDDHHMM of creation (UTC) and the id padded to four digits."""
    t = dt.datetime.fromtimestamp(created_ms / 1000, dt.UTC)
    return t.strftime("%y%m%d%H%M") + str(withdraw_id).rjust(4, "0")


async def credit_deposit(tx: Tx, d: Mapping[str, Any], ts: int) -> bool:
    """submitted → accepted and the member's balance credited; False if someone else already did."""
    n = await tx.execute("UPDATE deposits SET state = 'accepted', done_at = ?, updated_at = ? WHERE id = ? AND state = 'submitted'",
                         ts, ts, int(d["id"]))
    if n != 1:
        return False
    member, currency, amount = int(d["member_id"]), str(d["currency"]), int(d["amount"])
    await ledger.entry(tx, member, currency, amount, 0, DEPOSIT, "deposit", int(d["id"]), ts)
    return True


async def revert_deposit(tx: Tx, d: Mapping[str, Any], why: str, ts: int) -> tuple[int, int] | None:
    """accepted → reverted: take the credit back from the member's available balance as far as it
    goes; answers (taken back, shortfall), or None if someone else already did. What is locked in
    orders or withdrawals is not touched here: the shortfall freezes withdrawals for an admin."""
    n = await tx.execute("UPDATE deposits SET state = 'reverted', note = ?, updated_at = ? WHERE id = ? AND state = 'accepted'",
                         why[:500], ts, int(d["id"]))
    if n != 1:
        return None
    member, currency, amount = int(d["member_id"]), str(d["currency"]), int(d["amount"])
    take = await ledger.take_back(tx, member, currency, amount, DEPOSIT_REVERT, "deposit", int(d["id"]), ts)
    await tx.execute("UPDATE deposits SET reversed = ? WHERE id = ?", take, int(d["id"]))
    return take, amount - take


async def freeze_withdrawals(tx: Tx, member_id: int, currency: str, ref: str, shortfall: int, reason: str,
                             ts: int) -> bool:
    """Hold every withdrawal of the member until an admin resolves `ref` (once per currency and ref)."""
    n = await tx.execute(
        "INSERT INTO withdraw_freezes (member_id, currency, ref, shortfall, reason, created_at) VALUES (?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (currency, ref) DO NOTHING", member_id, currency, ref, shortfall, reason[:500], ts)
    return n > 0


async def freeze_of(db: Tx | Any, member_id: int) -> str | None:
    """Why the member's withdrawals are on hold, or None."""
    row = await db.fetchrow("SELECT reason FROM withdraw_freezes WHERE member_id = ? AND resolved_at IS NULL "
                            "ORDER BY id LIMIT 1", member_id)
    return None if row is None else str(row["reason"])


async def unlock_withdraw(tx: Tx, w: Mapping[str, Any], from_states: tuple[str, ...], state: str, note: str,
                          ts: int) -> bool:
    """A withdrawal that will not be paid (canceled, rejected, failed): its lock goes back."""
    marks = ",".join("?" * len(from_states))
    n = await tx.execute(
        f"UPDATE withdraws SET state = ?, note = ?, updated_at = ?, done_at = ? WHERE id = ? AND state IN ({marks})",
        state, note[:500], ts, ts, int(w["id"]), *from_states)
    if n != 1:
        return False
    member, currency, total = int(w["member_id"]), str(w["currency"]), int(w["total"])
    await ledger.entry(tx, member, currency, total, -total, WITHDRAW_UNLOCK, "withdraw", int(w["id"]), ts)
    return True


async def finish_withdraw(tx: Tx, w: Mapping[str, Any], from_states: tuple[str, ...], txid: str,
                          network_fee: int | None, fee_member: int, ts: int) -> bool:
    """Paid (a coin payment at its confirmations): the member's lock is spent (amount leaves the
    exchange, the fee goes to the house)."""
    marks = ",".join("?" * len(from_states))
    n = await tx.execute(
        f"UPDATE withdraws SET state = 'done', txid = ?, network_fee = COALESCE(?, network_fee), note = '', admin_note = '', "
        f"updated_at = ?, done_at = ? WHERE id = ? AND state IN ({marks})",
        txid, network_fee, ts, ts, int(w["id"]), *from_states)
    if n != 1:
        return False
    wid, member, currency = int(w["id"]), int(w["member_id"]), str(w["currency"])
    total, fee = int(w["total"]), int(w["fee"])
    rows: list[ledger.LedgerRow] = [(member, currency, 0, -total, fee, WITHDRAW, "withdraw", wid, ts)]
    if fee:
        rows.append((fee_member, currency, fee, 0, 0, WITHDRAW_FEE, "withdraw", wid, ts))
    await ledger.post(tx, rows)  # the writer updates the accounts in (member, currency) order
    return True


async def raise_alert(tx: Tx, currency: str, kind: str, ref: str, message: str, ts: int) -> bool:
    """Record an alert for the admin once per (currency, kind, ref); True if it is new."""
    n = await tx.execute(
        "INSERT INTO wallet_alerts (currency, kind, ref, message, created_at) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (currency, kind, ref) DO NOTHING", currency, kind, ref, message[:1000], ts)
    return n > 0


async def ledger_mismatch(tx: Tx, member_id: int, currency: str) -> str | None:
    """Why the member's account does not equal the sum of its ledger rows, or None if it does.

    One statement, so one snapshot: on PostgreSQL (read committed) two separate reads could straddle
    another transaction's commit and see a mismatch that never existed.
    """
    row = await tx.fetchrow(
        "SELECT a.balance, a.locked, "
        "(SELECT COALESCE(SUM(d_balance), 0) FROM ledger l WHERE l.member_id = a.member_id AND l.currency = a.currency) AS lb, "
        "(SELECT COALESCE(SUM(d_locked), 0) FROM ledger l WHERE l.member_id = a.member_id AND l.currency = a.currency) AS ll "
        "FROM accounts a WHERE a.member_id = ? AND a.currency = ?", member_id, currency)
    if row is None:
        return f"member {member_id} has no {currency} account"
    b, lk, lb, ll = int(row["balance"]), int(row["locked"]), int(row["lb"]), int(row["ll"])
    if (b, lk) != (lb, ll):
        return f"account says balance {b} / locked {lk}, ledger says {lb} / {ll}"
    return None
