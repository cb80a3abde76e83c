"""Bulk statements: the same rows land the same way on both backends, whatever the batch size
(SQLite splits them into multi-row VALUES chunks; PostgreSQL runs the per-row statement, one over
column arrays, or a COPY)."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from pathlib import Path

import pytest

from node.store import Bulk, open_store
from tests.conftest import create_pg_database, drop_pg_database, need_service

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



AWKWARD = ['"', "\\", ",", "{", "}", " ", "a", "NULL", "é", "\t", "\n", "'", "$"]


async def test_array_parameters_reach_postgresql_as_they_were_given() -> None:
    """Array parameters travel as literals (node/store/postgres.py `_bound`): quotes, backslashes,
    commas, braces, spaces, the word NULL, empty strings and NULLs all come back unchanged."""
    need_service("PostgreSQL", "127.0.0.1", 5432)
    url = await create_pg_database()
    store = await open_store(url)
    rng = random.Random(7)
    try:
        cases: list[tuple[list[str | None], list[int | None]]] = [
            (AWKWARD + ["", '\\"', "NULL "], [0, -(2**63), 2**63 - 1]), ([None], [None]), ([], [])]
        for _ in range(150):
            texts = [None if rng.random() < 0.1 else "".join(rng.choices(AWKWARD, k=rng.randint(0, 6)))
                     for _ in range(rng.randint(0, 8))]
            ints = [None if rng.random() < 0.1 else rng.randint(-(2**63), 2**63 - 1) for _ in range(rng.randint(0, 8))]
            cases.append((texts, ints))
        for texts, ints in cases:
            row = await store.fetchrow("SELECT ?::text[] AS t, ?::bigint[] AS i", texts, ints)
            assert row is not None and list(row["t"]) == texts and list(row["i"]) == ints
            async with store.transaction() as tx:
                got = await tx.fetch("SELECT x FROM unnest(?::text[]) WITH ORDINALITY AS u(x, n) ORDER BY n", texts)
            assert [r["x"] for r in got] == texts
    finally:
        await store.close()
        await drop_pg_database(url)
