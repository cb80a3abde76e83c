"""The one writer of the `accounts` and `ledger` tables: every money path posts through here.

A posting is a list of ledger rows; the writer moves each account by the sum of its rows, so an
account always equals the replay of its ledger (node/audit.py checks exactly that). Every write's
row count is checked in the same transaction: an account row that is missing, or a guard that did
not hold (a balance or lock that would go below zero), raises and the caller's transaction rolls
back. Nothing here can end as a silent no-op. tests/test_ledger_writer.py greps that no other
module writes these tables.

Accounts are always updated in (member, currency) order, like every writer before: on PostgreSQL
row locks are then taken in one global order and two transactions never deadlock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from node.errors import ExchangeError
from node.store.base import Bulk, Tx

LedgerRow = tuple[int, str, int, int, int, str, str, int, int]
"""(member_id, currency, d_balance, d_locked, fee, reason, ref_type, ref_id, created_at)."""
AccountSums = list[tuple[int, int, int, str, int, int]]
"""(d_balance, d_locked, member_id, currency, d_balance, d_locked) per account: its update's values."""

LEDGER_BULK = Bulk.insert("ledger", ("member_id", "currency", "d_balance", "d_locked", "fee", "reason", "ref_type",
                                     "ref_id", "created_at", "epoch"))
Epoch = int | Callable[[int], int]
"""The account shard epoch a posting was written under (node/actors/shards.py), or a function of
the member id giving it: recorded in every ledger row, so a checker can tell that each shard's rows
were written by one owner at a time (0: a write outside the order path, or a node without leases)."""
# The guard is part of the statement: a row that would go negative is not updated, so the count
# comes up short and the posting raises the caller's error instead of the CHECK's IntegrityError.
# PostgreSQL runs it row by row in (member, currency) order, pipelined in one trip: each update
# locks its row as it goes, in the one global order, and each is the same prepared statement, whose
# plan PostgreSQL keeps. (A lock of every account first and an update over column arrays took two
# statements that PostgreSQL planned anew at every run, as it does any statement over arrays; one
# statement doing the lock, the update and the ledger rows cost PostgreSQL more CPU still.)
ACCOUNTS_BULK = Bulk.update(
    "accounts", "balance = {t}.balance + {0}, locked = {t}.locked + {1}",
    "{t}.member_id = {2} AND {t}.currency = {3} AND {t}.balance + {4} >= 0 AND {t}.locked + {5} >= 0")
OPEN_BULK = Bulk.insert("accounts", ("member_id", "currency"))
BALANCE_SQL = "SELECT balance FROM accounts WHERE member_id = ? AND currency = ?"


class LedgerRefused(ExchangeError):
    """A posting did not apply to every account it names; the transaction rolls back."""

    code = 3008
    status = 409


def sum_deltas(rows: Iterable[LedgerRow]) -> AccountSums:
    """The accounts' update rows (d_balance, d_locked, member, currency, d_balance, d_locked),
    one per account in (member, currency) order, summed over the posting's ledger rows."""
    balance: dict[tuple[int, str], int] = {}
    locked: dict[tuple[int, str], int] = {}
    for member, currency, d_balance, d_locked, _fee, _reason, _ref_type, _ref_id, _at in rows:
        key = (member, currency)
        balance[key] = balance.get(key, 0) + d_balance
        locked[key] = locked.get(key, 0) + d_locked
    return [(balance[k], locked[k], k[0], k[1], balance[k], locked[k]) for k in sorted(balance)]


async def post(tx: Tx, rows: Sequence[LedgerRow], refused: ExchangeError | None = None, epoch: Epoch = 0,
               sums: AccountSums | None = None) -> None:
    """Apply `rows` inside `tx`: the accounts move by their sums, the rows are appended to the ledger.

    `refused` is raised when an account is missing or would go below zero (default: LedgerRefused
    naming the accounts). On PostgreSQL the accounts' updates are one pipelined trip and the ledger
    rows another. On SQLite the statements are held and sent with the transaction's next trip, and
    their counts are checked there; the caller's later statements never run after a miss.
    `sums` is `sum_deltas(rows)` when the caller has added the rows up already (a market batch's
    settlement does, as it makes them): a second pass over thousands of rows is skipped.
    """
    if not rows:
        return
    accounts = sum_deltas(rows) if sums is None else sums
    error = refused or LedgerRefused(
        "an account is missing or its balance is too low for: "
        + ", ".join(f"member {a[2]} {a[3]}" for a in accounts[:5]) + ("…" if len(accounts) > 5 else ""))
    await tx.expect_many(ACCOUNTS_BULK, accounts, len(accounts), error)
    if callable(epoch):
        marked = [r + (epoch(r[0]),) for r in rows]
    else:
        tail = (epoch,)
        marked = [r + tail for r in rows]  # a concatenation: half the cost of unpacking each row
    await tx.expect_many(LEDGER_BULK, marked, len(rows), error)


async def entry(tx: Tx, member_id: int, currency: str, d_balance: int, d_locked: int, reason: str, ref_type: str,
                ref_id: int, created_at: int, refused: ExchangeError | None = None, fee: int = 0) -> None:
    """One ledger row and its account's move (a deposit, a withdrawal's lock, a correction)."""
    await post(tx, [(member_id, currency, d_balance, d_locked, fee, reason, ref_type, ref_id, created_at)], refused)


async def take_back(tx: Tx, member_id: int, currency: str, most: int, reason: str, ref_type: str, ref_id: int,
                    created_at: int) -> int:
    """Take up to `most` out of the available balance (a reverted deposit): answers what was taken.

    The amount is read and then taken under a guard; on PostgreSQL an order may lock funds between
    the two, and then the guard misses and the read is made again (never a silent miss)."""
    while True:
        balance = await tx.fetchval(BALANCE_SQL, member_id, currency)
        if balance is None:
            raise LedgerRefused(f"member {member_id} has no {currency} account")
        take = min(int(balance), most)
        if not take:
            return 0
        row = (-take, 0, member_id, currency, -take, 0)
        if await tx.execute(ACCOUNTS_BULK.sql, *row) == 1:
            await tx.expect_many(LEDGER_BULK, [(member_id, currency, -take, 0, 0, reason, ref_type, ref_id, created_at, 0)],
                                 1, LedgerRefused(f"the ledger row of member {member_id} {currency} was not written"))
            return take


async def open_accounts(tx: Tx, member_id: int, currencies: Iterable[str]) -> None:
    """A new member's empty account rows, one per currency."""
    rows = [(member_id, code) for code in currencies]
    await tx.expect_many(OPEN_BULK, rows, len(rows), LedgerRefused(f"member {member_id} already has accounts"))


async def open_missing_accounts(tx: Tx, currency: str) -> int:
    """Empty `currency` accounts for every member without one (a currency added to the config)."""
    return await tx.execute(
        "INSERT INTO accounts (member_id, currency, balance, locked) SELECT m.id, ?, 0, 0 FROM members m "
        "WHERE NOT EXISTS (SELECT 1 FROM accounts a WHERE a.member_id = m.id AND a.currency = ?)", currency, currency)

