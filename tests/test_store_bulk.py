"""Bulk statements: the same rows land the same way on both backends, whatever the batch size
(SQLite splits them into multi-row VALUES chunks; PostgreSQL runs the per-row statement, one over
column arrays, or a COPY)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from node.store import Bulk, open_store

PAIRS = Bulk.insert("kv", ("k", "v", "note"))
BUMP = Bulk.update("kv", "v = {t}.v + {0}, note = {1}", "{t}.k = {2} AND {t}.v >= {3}")


@pytest.mark.parametrize("n", [1, 5, 13, 1024, 2100])
async def test_bulk_insert_and_update_every_row(database_url: str, n: int) -> None:
    store = await open_store(database_url)
    try:
        async with store.transaction() as tx:
            await tx.execute("CREATE TABLE kv (k BIGINT PRIMARY KEY, v BIGINT NOT NULL, note TEXT)")
        async with store.transaction() as tx:
            await tx.executemany(PAIRS, [(k, k * 10, None) for k in range(n)])
        async with store.transaction() as tx:
            # every odd key is bumped; the guard (v >= 0) holds for all of them
            await tx.executemany(BUMP, [(5, f"odd {k}", k, 0) for k in range(1, n, 2)])
        rows = {int(r["k"]): (int(r["v"]), r["note"]) for r in await store.fetch("SELECT k, v, note FROM kv")}
        assert rows == {k: (k * 10 + 5, f"odd {k}") if k % 2 else (k * 10, None) for k in range(n)}
    finally:
        await store.close()


def test_bulk_statements_read_as_sql() -> None:
    assert BUMP.sql == "UPDATE kv SET v = kv.v + ?, note = ? WHERE kv.k = ? AND kv.v >= ?"
    assert BUMP.chunk(2) == ("UPDATE kv SET v = kv.v + v.column1, note = v.column2 FROM (VALUES (?, ?, ?, ?), "
                             "(?, ?, ?, ?)) AS v WHERE kv.k = v.column3 AND kv.v >= v.column4")
    assert [len(values) // 3 for _, values in PAIRS.chunks([(1, 2, 3)] * 1100)] == [1024, 64, 8, 4]
    with pytest.raises(ValueError):
        Bulk.update("kv", "v = {1}", "{t}.k = {0}")


async def test_a_failed_commit_is_rolled_back_and_the_next_transaction_runs(tmp_path: Path) -> None:
    """SQLite: the COMMIT is queued before the writer lock is released, so a transaction queued right
    behind one whose COMMIT fails must find a clean connection. A deferred foreign key makes the
    COMMIT itself fail."""
    store = await open_store(f"sqlite:///{tmp_path}/c.db")
    try:
        async with store.transaction() as tx:
            await tx.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
            await tx.execute("CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER "
                             "REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED)")

        async def orphan() -> None:
            async with store.transaction() as tx:
                await tx.executemany("INSERT INTO child (id, parent_id) VALUES (?, ?)", [(1, 42)])

        async def good() -> None:
            async with store.transaction() as tx:
                await tx.executemany("INSERT INTO parent (id) VALUES (?)", [(7,)])
                await tx.executemany("INSERT INTO child (id, parent_id) VALUES (?, ?)", [(2, 7)])

        results = await asyncio.gather(orphan(), good(), return_exceptions=True)
        assert isinstance(results[0], sqlite3.IntegrityError) and results[1] is None
        assert [tuple(r) for r in await store.fetch("SELECT id, parent_id FROM child")] == [(2, 7)]
        async with store.transaction() as tx:  # and the connection goes on as usual
            await tx.execute("INSERT INTO parent (id) VALUES (8)")
        assert await store.fetchval("SELECT COUNT(*) FROM parent") == 2
    finally:
        await store.close()


@pytest.mark.parametrize("size", [1, 7, 10_000])
async def test_pages_reads_one_query_as_plain_tuples(database_url: str, size: int) -> None:
    """Store.pages (recovery's read): every row once, in the query's order, as tuples in pages of
    at most `size`, without holding its snapshot for other reads; a caller that stops early leaves
    the store usable."""
    store = await open_store(database_url)
    try:
        async with store.transaction() as tx:
            await tx.execute("CREATE TABLE kv (k BIGINT PRIMARY KEY, v BIGINT NOT NULL, note TEXT)")
            await tx.executemany(PAIRS, [(k, -k, f"n{k}") for k in range(50)])
        pages = [page async for page in store.pages("SELECT k, v, note FROM kv WHERE k >= ? ORDER BY k", 3, size=size)]
        assert all(0 < len(p) <= size for p in pages)
        rows = [r for p in pages for r in p]
        assert rows == [(k, -k, f"n{k}") for k in range(3, 50)]
        assert all(type(r) is tuple for r in rows)
        async for _ in store.pages("SELECT k FROM kv", size=size):
            # the open query is a snapshot of its own: other reads meanwhile see a later commit
            async with store.transaction() as tx:
                await tx.execute("INSERT INTO kv (k, v) VALUES (99, 0)")
            assert await store.fetchval("SELECT count(*) FROM kv") == 51
            break
        assert await store.fetchval("SELECT count(*) FROM kv") == 51
    finally:
        await store.close()
