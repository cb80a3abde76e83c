"""The money writer (node/store/ledger.py): the only code that writes `accounts` or `ledger`, and
every one of its writes is counted, so a posting applies to every account it names or to none."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from node.errors import InvalidParameter
from node.market.settlement import Effects
from node.store import Store, ledger, open_store

ROOT = Path(__file__).resolve().parents[1]
WRITER = ROOT / "node" / "store" / "ledger.py"
# A write to either table in SQL (whatever the spacing or case), or a Bulk statement built for it.
WRITES = re.compile(
    r"\b(?:INSERT\s+(?:OR\s+\w+\s+)?INTO|UPDATE|DELETE\s+FROM|REPLACE\s+INTO)\s+[\"']?(?:accounts|ledger)\b"
    r"|Bulk\.(?:insert|update)\(\s*[\"'](?:accounts|ledger)[\"']",
    re.IGNORECASE)


def test_no_module_but_the_writer_writes_accounts_or_ledger() -> None:
    offenders = []
    for path in sorted((ROOT / "node").rglob("*.py")):
        if path == WRITER:
            continue
        text = path.read_text(encoding="utf-8")
        # Statements are often built from adjacent string literals: join them before looking.
        joined = re.sub(r"[\"']\s*\n\s*[\"']", "", text)
        offenders += [f"{path.relative_to(ROOT)}: {m.group(0)!r}" for m in WRITES.finditer(joined)]
    assert offenders == [], "accounts and ledger are written by node/store/ledger.py only:\n" + "\n".join(offenders)


def test_the_pattern_sees_the_writes_it_must() -> None:
    for sql in ["UPDATE accounts SET balance = 1", "insert into ledger (a) values (1)", 'Bulk.update("accounts", "x", "y")',
                "DELETE FROM ledger", "UPDATE\n    accounts SET"]:
        assert WRITES.search(sql), sql
    for sql in ["SELECT * FROM accounts", "UPDATE accounts_view", "FROM ledger l", "INSERT INTO ledger_marks"]:
        assert not WRITES.search(sql), sql
    assert WRITES.search(WRITER.read_text(encoding="utf-8"))  # the writer itself is found


async def _members(store: Store, n: int) -> list[int]:
    ids = []
    async with store.transaction() as tx:
        for i in range(n):
            mid = int(await tx.fetchval(
                "INSERT INTO members (sn, email, name, activated, created_at) VALUES (?, ?, '', 1, 0) RETURNING id",
                f"LEDGERTEST{i}", f"m{i}@example.com"))
            await ledger.open_accounts(tx, mid, ["usd", "btc"])
            ids.append(mid)
    return ids


async def _state(store: Store) -> tuple[list[tuple[int, str, int, int]], int]:
    rows = await store.fetch("SELECT member_id, currency, balance, locked FROM accounts ORDER BY member_id, currency")
    return [(int(r[0]), str(r[1]), int(r[2]), int(r[3])) for r in rows], int(await store.fetchval("SELECT COUNT(*) FROM ledger"))


def _row(member: int, currency: str, d_balance: int, d_locked: int = 0) -> ledger.LedgerRow:
    return (member, currency, d_balance, d_locked, 0, "fix", "test", 1, 0)


@pytest.mark.parametrize("n", [1, 40, 1100])
async def test_a_posting_moves_every_account_by_the_sum_of_its_rows(database_url: str, n: int) -> None:
    store = await open_store(database_url)
    try:
        ids = await _members(store, min(n, 40))
        rows = [_row(ids[i % len(ids)], "usd", 10) for i in range(n)] + [_row(ids[0], "usd", -5, 5)]
        async with store.transaction() as tx:
            await ledger.post(tx, rows)
        accounts, entries = await _state(store)
        assert entries == n + 1
        usd = {m: (b, lk) for m, c, b, lk in accounts if c == "usd"}
        assert sum(b for b, _ in usd.values()) == 10 * n - 5 and usd[ids[0]][1] == 5
    finally:
        await store.close()


@pytest.mark.parametrize("n", [1, 3, 1100])
async def test_a_posting_that_misses_one_account_changes_nothing(database_url: str, n: int) -> None:
    """A missing account row or a guard that does not hold raises, and the whole transaction
    (the caller's other writes too) rolls back: never a silent no-op."""
    store = await open_store(database_url)
    try:
        ids = await _members(store, 3)
        async with store.transaction() as tx:
            await ledger.post(tx, [_row(m, "usd", 100) for m in ids])
        before = await _state(store)
        good = [_row(ids[i % 3], "usd", 1) for i in range(n)]
        for bad, why in [(_row(ids[1], "eur", 1), "no eur account"), (_row(ids[2], "usd", -10**6), "balance below zero"),
                         (_row(ids[0], "usd", 0, -10**6), "locked below zero")]:
            with pytest.raises(ledger.LedgerRefused):
                async with store.transaction() as tx:
                    await tx.execute("UPDATE members SET name = 'changed' WHERE id = ?", ids[0])
                    await ledger.post(tx, [*good, bad])
                    await tx.fetchval("SELECT 1")  # the caller goes on: the miss stops it here
            assert await _state(store) == before, why
            assert await store.fetchval("SELECT name FROM members WHERE id = ?", ids[0]) == ""
        with pytest.raises(InvalidParameter):  # the caller's own error, when it names one
            async with store.transaction() as tx:
                await ledger.entry(tx, ids[0], "usd", -1000, 0, "fix", "test", 1, 0, InvalidParameter("too low", "amount"))
        assert await _state(store) == before
    finally:
        await store.close()


async def test_take_back_takes_what_is_there(database_url: str) -> None:
    store = await open_store(database_url)
    try:
        (m,) = await _members(store, 1)
        async with store.transaction() as tx:
            await ledger.post(tx, [_row(m, "btc", 30)])
            assert await ledger.take_back(tx, m, "btc", 50, "deposit_revert", "deposit", 7, 0) == 30
            assert await ledger.take_back(tx, m, "btc", 50, "deposit_revert", "deposit", 7, 0) == 0
        accounts, entries = await _state(store)
        assert (m, "btc", 0, 0) in accounts and entries == 2
        with pytest.raises(ledger.LedgerRefused):
            async with store.transaction() as tx:
                await ledger.take_back(tx, m, "eur", 1, "deposit_revert", "deposit", 7, 0)
    finally:
        await store.close()


def test_a_batchs_own_sums_are_what_the_writer_would_sum() -> None:
    """A market batch hands the writer the sums its settlement kept (`Effects.sums`): they must be
    `sum_deltas` of its ledger rows, netted-out accounts and skipped zero moves included."""
    eff = Effects(created_at=5)
    eff.add(2, "usd", 0, -300, 0, "strike_sub", "trade", 1)
    eff.add_all("trade", 2, ((1, "btc", 7, 0, 0, "strike_add"), (2, "usd", 300, 0, 0, "strike_add"),
                             (3, "btc", 0, 0, 0, "strike_fee"), (1, "btc", 0, -7, 0, "strike_sub")))
    eff.add(1, "usd", 0, 0, 0, "order_cancel", "order", 9)
    assert len(eff.ledger) == 4  # moves of nothing leave no row
    assert eff.sums() == ledger.sum_deltas(eff.ledger)
