"""The numbered migrations: a store made by the previous release upgrades in place on both backends,
keeping its data and gaining the new columns, and number order builds the schema the previous
release's scrambled order built.

The old store is built from tests/fixtures/store_release_13.sql (that release's migrations 1 to 13,
frozen), exactly as that release did: each migration in its order, its number recorded in
`schema_migrations`.
"""

from __future__ import annotations

import re
import sqlite3
import tomllib
from pathlib import Path
from typing import Any

import pytest

from node.store import Store, open_store, sqlite_path
from node.store.postgres import ID_SQL as PG_ID
from node.store.postgres import to_pg
from node.store.schema import MIGRATIONS, load_migrations, statements
from node.store.sqlite import ID_SQL as SQLITE_ID
from tests.conftest import create_pg_database, drop_pg_database, need_service

ROOT = Path(__file__).resolve().parents[1]
RELEASE_13 = ROOT / "tests" / "fixtures" / "store_release_13.sql"
T0 = 1_700_000_000_000


def release_13() -> list[tuple[int, str]]:
    """The previous release's migrations, in the order it applied them."""
    parts = re.split(r"^-- migration (\d+)$", RELEASE_13.read_text(), flags=re.M)
    return [(int(parts[i]), parts[i + 1]) for i in range(1, len(parts), 2)]


OLD_DATA = [
    ("INSERT INTO members (id, sn, email, name, activated, created_at) VALUES (7, 'SN7', 'a@x.invalid', 'Ann', 1, ?)",
     [T0]),
    ("INSERT INTO accounts (member_id, currency, balance, locked) VALUES (7, 'btc', 150000000, 2500)", []),
    ("INSERT INTO ledger (member_id, currency, d_balance, d_locked, reason, ref_type, ref_id, created_at) "
     "VALUES (7, 'btc', 150000000, 0, 'deposit', 'Deposit', 3, ?)", [T0]),
    ("INSERT INTO markets_state (market, next_seq, last_price, maker_fee) VALUES ('btccny', 42, 300000, 10)", []),
    ("INSERT INTO market_leases (market, node, owner, expires_at) VALUES ('btccny', 'main', 'main:1', ?)", [T0]),
    ("INSERT INTO orders (id, member_id, market, side, ord_type, tif, price, volume, remaining, origin_locked, "
     "locked, state, seq, created_at, updated_at) "
     "VALUES (11, 7, 'btccny', 'ask', 'limit', 'gtc', 300000, 2500, 2500, 2500, 2500, 'wait', 41, ?, ?)", [T0, T0]),
    ("INSERT INTO deposits (id, member_id, currency, amount, txid, channel, state, created_at, txout) "
     "VALUES (3, 7, 'btc', 150000000, 'ab01', 'satoshi', 'accepted', ?, 1)", [T0]),
    ("INSERT INTO withdraws (id, sn, member_id, currency, amount, fee, total, address, state, created_at, "
     "updated_at) VALUES (5, 'W5', 7, 'btc', 1000, 10, 1010, 'bcrt1qxyz', 'done', ?, ?)", [T0, T0]),
]


def build_sqlite(url: str) -> None:
    db = sqlite3.connect(sqlite_path(url), isolation_level=None)
    try:
        db.execute("BEGIN")
        db.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY)")
        for version, sql in release_13():
            for stmt in statements(sql, id_sql=SQLITE_ID, blob_sql="BLOB"):
                db.execute(stmt)
            db.execute("INSERT INTO schema_migrations (version) VALUES (?)", (version,))
        for sql, args in OLD_DATA:
            db.execute(sql, args)
        db.execute("COMMIT")
    finally:
        db.close()


async def build_postgres(url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            await conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY)")
            for version, sql in release_13():
                for stmt in statements(sql, id_sql=PG_ID, blob_sql="BYTEA"):
                    await conn.execute(stmt)
                await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
            for sql, args in OLD_DATA:
                n = 0

                def dollar(_: re.Match[str]) -> str:
                    nonlocal n
                    n += 1
                    return f"${n}"

                await conn.execute(re.sub(r"\?", dollar, sql), *args)
    finally:
        await conn.close()


async def columns(store: Store, url: str) -> dict[str, list[tuple[str, bool, Any]]]:
    """Every table's columns as (name, not null, default), the same way on both backends."""
    out: dict[str, list[tuple[str, bool, Any]]] = {}
    if url.startswith("sqlite"):
        tables = [r[0] for r in await store.fetch(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
        for table in tables:
            rows = await store.fetch(f"SELECT name, \"notnull\", dflt_value FROM pragma_table_info('{table}')")
            out[table] = sorted((r[0], bool(r[1]), r[2]) for r in rows)
        return out
    rows = await store.fetch("SELECT table_name, column_name, is_nullable, column_default "
                             "FROM information_schema.columns WHERE table_schema = 'public'")
    for r in rows:
        out.setdefault(r[0], []).append((r[1], r[2] == "NO", r[3]))
    return {t: sorted(c) for t, c in out.items()}


async def indexes(store: Store, url: str) -> set[str]:
    if url.startswith("sqlite"):
        rows = await store.fetch("SELECT name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_%'")
    else:
        rows = await store.fetch("SELECT indexname FROM pg_indexes WHERE schemaname = 'public' "
                                 "AND indexname NOT LIKE '%_pkey' AND indexname NOT LIKE '%_key'")
    return {r[0] for r in rows}


@pytest.fixture
async def fresh_url(database_url: str, tmp_path: Path) -> Any:
    """A second empty database on the same backend, for the schema a fresh store gets."""
    if database_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path}/fresh.db"
        return
    need_service("PostgreSQL", "127.0.0.1", 5432)
    url = await create_pg_database()
    try:
        yield url
    finally:
        await drop_pg_database(url)


def test_the_files_are_numbered_one_to_n_and_ship_with_the_package() -> None:
    versions = [v for v, _ in MIGRATIONS]
    assert versions == list(range(1, len(versions) + 1))
    assert versions[:13] == sorted(v for v, _ in release_13())
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "migrations/*.sql" in package_data["node.store"]  # else `pip install .` starts with no schema


def test_a_badly_named_or_doubled_file_refuses_to_load(tmp_path: Path) -> None:
    (tmp_path / "0001_a.sql").write_text("CREATE TABLE a (x INTEGER);")
    (tmp_path / "0001_b.sql").write_text("CREATE TABLE b (x INTEGER);")
    with pytest.raises(RuntimeError, match="two migration files"):
        load_migrations(tmp_path)
    (tmp_path / "0001_b.sql").rename(tmp_path / "2_b.sql")
    with pytest.raises(RuntimeError, match="NNNN_name"):
        load_migrations(tmp_path)
    with pytest.raises(RuntimeError, match="no migration files"):
        load_migrations(tmp_path / "absent")


def test_a_semicolon_in_a_comment_does_not_split_a_statement() -> None:
    script = "-- one; two\nCREATE TABLE t (id {id}, b {blob});\n  -- trailing; note\nCREATE INDEX t_b ON t (b);\n"
    assert statements(script, id_sql="INTEGER PRIMARY KEY", blob_sql="BLOB") == [
        "CREATE TABLE t (id INTEGER PRIMARY KEY, b BLOB)", "CREATE INDEX t_b ON t (b)"]


async def test_a_store_of_the_previous_release_upgrades_in_place(database_url: str, fresh_url: str) -> None:
    if database_url.startswith("sqlite"):
        build_sqlite(database_url)
    else:
        await build_postgres(database_url)

    store = await open_store(database_url)
    try:
        assert [r[0] for r in await store.fetch("SELECT version FROM schema_migrations ORDER BY version")] == \
            [v for v, _ in MIGRATIONS]
        # the old data is untouched
        m = await store.fetchrow("SELECT sn, email, name, activated FROM members WHERE id = 7")
        assert tuple(m) == ("SN7", "a@x.invalid", "Ann", 1)
        a = await store.fetchrow("SELECT balance, locked FROM accounts WHERE member_id = 7 AND currency = 'btc'")
        assert tuple(a) == (150000000, 2500)
        assert await store.fetchval("SELECT SUM(d_balance) FROM ledger WHERE member_id = 7") == 150000000
        o = await store.fetchrow("SELECT remaining, locked, state, seq FROM orders WHERE id = 11")
        assert tuple(o) == (2500, 2500, "wait", 41)
        # and the new columns carry their defaults
        assert await store.fetchval("SELECT lang FROM members WHERE id = 7") == "en"
        s = await store.fetchrow("SELECT next_seq, last_price, maker_fee, epoch, next_intake FROM markets_state "
                                 "WHERE market = 'btccny'")
        assert tuple(s) == (42, 300000, 10, 0, 1)
        lease = await store.fetchrow("SELECT node, epoch, acquired_at, renewed_at FROM market_leases")
        assert tuple(lease) == ("main", 0, 0, 0)
        assert await store.fetchval("SELECT intake FROM orders WHERE id = 11") == 0
        d = await store.fetchrow("SELECT amount, txout, reversed, note, coinbase FROM deposits WHERE id = 3")
        assert tuple(d) == (150000000, 1, 0, "", 0)
        w = await store.fetchrow("SELECT total, state, raw_tx, confirmations, admin_note, broadcast_at "
                                 "FROM withdraws WHERE id = 5")
        assert tuple(w) == (1010, "done", None, 0, "", None)
        for table in ("notices", "nodes_seen", "withdraw_freezes", "wallet_receipts", "cluster_nodes", "market_placement"):
            assert await store.fetchval(f"SELECT COUNT(*) FROM {table}") == 0
        # the new tables take rows (their ids and defaults work on the upgraded store)
        await store.execute("INSERT INTO withdraw_freezes (member_id, currency, ref, reason, created_at) "
                            "VALUES (7, 'btc', 'ab01:1', 'reorg', ?)", T0)
        assert await store.fetchval("SELECT shortfall FROM withdraw_freezes WHERE ref = 'ab01:1'") == 0
        await store.execute("INSERT INTO market_placement (market, primary_node, placed_at) VALUES ('btccny', 'main', ?)",
                            T0)
        assert tuple(await store.fetchrow("SELECT standbys, version FROM market_placement")) == ("*", 1)
        upgraded_columns, upgraded_indexes = await columns(store, database_url), await indexes(store, database_url)
    finally:
        await store.close()

    # a second start runs nothing again (a re-run ALTER TABLE ADD COLUMN would fail)
    store = await open_store(database_url)
    try:
        assert await store.fetchval("SELECT COUNT(*) FROM schema_migrations") == len(MIGRATIONS)
        assert await store.fetchval("SELECT COUNT(*) FROM withdraw_freezes") == 1
    finally:
        await store.close()

    # the previous release's order plus the new files builds what number order builds on a fresh store
    fresh = await open_store(fresh_url)
    try:
        assert upgraded_columns == await columns(fresh, fresh_url)
        assert upgraded_indexes == await indexes(fresh, fresh_url)
    finally:
        await fresh.close()



async def test_the_book_is_read_in_seq_order_from_the_index_without_a_sort(tmp_path: Path) -> None:
    """Recovery's query is served by `orders_market_state` in book order: SQLite plans no temporary
    B-tree (a sort of every resting order on every start)."""
    from node.actors.market_rows import RECOVER_SQL

    url = f"sqlite:///{tmp_path}/plan.db"
    store = await open_store(url)
    await store.close()
    db = sqlite3.connect(sqlite_path(url))
    try:
        plan = " | ".join(str(r[-1]) for r in db.execute("EXPLAIN QUERY PLAN " + RECOVER_SQL, ("btcusd",)))
    finally:
        db.close()
    assert "orders_market_state" in plan and "TEMP B-TREE" not in plan, plan


ROWID_TABLES = {
    "orders": ("INSERT INTO orders (id, member_id, market, side, ord_type, tif, price, volume, remaining, origin_locked, "
               "locked, state, seq, client_id, created_at, updated_at, intake) VALUES "
               "(?, 7, 'btccny', 'sell', 'limit', 'gtc', 300000, 2500, 2500, 2500, 2500, 'wait', ?, ?, ?, ?, ?)"),
    "trades": ("INSERT INTO trades (id, market, price, volume, funds, ask_id, bid_id, ask_member_id, bid_member_id, "
               "taker_side, ask_fee, bid_fee, created_at) VALUES (?, 'btccny', 300000, 5, 1500000, 11, 12, 7, 8, "
               "'buy', 3, ?, ?)"),
    "settlements": ("INSERT INTO settlements (id, shard, member_id, currency, d_balance, d_locked, fee, reason, "
                    "ref_type, ref_id, created_at, applied_at) VALUES (?, 3, 7, 'btc', 5, 0, 0, 'strike_add', 'trade', "
                    "?, ?, ?)"),
}

KEY_INDEXES = ("SELECT COUNT(*) FROM sqlite_master WHERE name IN "
               "('sqlite_autoindex_orders_1', 'sqlite_autoindex_trades_1', 'sqlite_autoindex_settlements_1')")


def rowid_rows(table: str, i: int) -> list[Any]:
    if table == "orders":
        return [1000 + i, i, f"c{i}" if i % 2 else None, T0 + i, T0 + i, i]
    if table == "trades":
        return [2000 + i, i, T0 + i]
    return [3000 + i, i, T0 + i, None if i % 2 else T0]


async def test_orders_trades_and_settlements_ids_become_sqlite_rowids_keeping_their_rows(
        database_url: str, fresh_url: str) -> None:
    """Migration 20 on a store with rows: on SQLite the three tables are rebuilt with the id as their
    rowid (no index of its own beside the table), every row and index kept; on PostgreSQL it runs
    nothing. Either way the upgraded schema is the one a fresh store gets."""
    before = [(v, sql) for v, sql in MIGRATIONS if v < 20]
    backend = "sqlite" if database_url.startswith("sqlite") else "postgresql"
    if backend == "sqlite":
        db = sqlite3.connect(sqlite_path(database_url), isolation_level=None)
        db.execute("BEGIN")
        db.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY)")
        for version, sql in before:
            for stmt in statements(sql, id_sql=SQLITE_ID, blob_sql="BLOB", backend=backend):
                db.execute(stmt)
            db.execute("INSERT INTO schema_migrations (version) VALUES (?)", (version,))
        for table, sql in ROWID_TABLES.items():
            db.executemany(sql, [rowid_rows(table, i) for i in range(50)])
        db.execute("COMMIT")
        assert db.execute(KEY_INDEXES).fetchone()[0] == 3
        db.close()
    else:
        import asyncpg

        conn = await asyncpg.connect(database_url)
        try:
            async with conn.transaction():
                await conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY)")
                for version, sql in before:
                    for stmt in statements(sql, id_sql=PG_ID, blob_sql="BYTEA", backend=backend):
                        await conn.execute(stmt)
                    await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
                for table, sql in ROWID_TABLES.items():
                    await conn.executemany(to_pg(sql), [rowid_rows(table, i) for i in range(50)])
        finally:
            await conn.close()

    store = await open_store(database_url)
    try:
        assert await store.fetchval("SELECT MAX(version) FROM schema_migrations") == len(MIGRATIONS)
        for table in ROWID_TABLES:
            rows = [tuple(r) for r in await store.fetch(f"SELECT * FROM {table} ORDER BY id")]
            assert len(rows) == 50
            assert rows[7][0] == {"orders": 1007, "trades": 2007, "settlements": 3007}[table]
        o = await store.fetchrow("SELECT client_id, seq, intake, remaining FROM orders WHERE id = 1007")
        assert tuple(o) == ("c7", 7, 7, 2500)
        assert await store.fetchval("SELECT COUNT(*) FROM settlements WHERE applied_at IS NULL") == 25
        if backend == "sqlite":
            assert await store.fetchval(KEY_INDEXES) == 0
            for table in ROWID_TABLES:  # the id is the rowid: no separate key to keep
                assert await store.fetchval(f"SELECT COUNT(*) FROM {table} WHERE rowid = id") == 50
            with pytest.raises(sqlite3.IntegrityError):  # the constraints came along
                await store.execute("UPDATE orders SET remaining = -1 WHERE id = 1007")
            with pytest.raises(sqlite3.IntegrityError):
                await store.execute("UPDATE orders SET client_id = 'c9' WHERE id = 1007")  # member 7 has c9 already
        upgraded_columns, upgraded_indexes = await columns(store, database_url), await indexes(store, database_url)
    finally:
        await store.close()
    fresh = await open_store(fresh_url)
    try:
        assert upgraded_columns == await columns(fresh, fresh_url)
        assert upgraded_indexes == await indexes(fresh, fresh_url)
    finally:
        await fresh.close()


def test_a_migration_for_one_backend_runs_nothing_on_the_other() -> None:
    script = "-- only on sqlite\n-- why\nCREATE TABLE t (id INTEGER PRIMARY KEY);\n"
    assert statements(script, id_sql="x", blob_sql="y", backend="postgresql") == []
    assert statements(script, id_sql="x", blob_sql="y", backend="sqlite") == ["CREATE TABLE t (id INTEGER PRIMARY KEY)"]


async def test_a_client_id_is_unique_per_member_and_orders_without_one_are_not_indexed(database_url: str) -> None:
    """PostgreSQL keeps only orders with a client id in `orders_client_id` (migration 0021): the
    uniqueness it guards is the same, and the lookup by client id still finds its orders."""
    store = await open_store(database_url)
    try:
        cols = ("id, member_id, market, side, ord_type, tif, price, volume, remaining, origin_locked, locked, state, "
                "client_id, created_at, updated_at")
        sql = f"INSERT INTO orders ({cols}) VALUES (?, 7, 'btcusd', 'buy', 'limit', 'gtc', 1, 1, 1, 1, 1, 'wait', ?, 0, 0)"
        for oid, client_id in ((1, None), (2, None), (3, "a"), (4, "b")):
            await store.execute(sql, oid, client_id)
        with pytest.raises(Exception, match="(?i)unique|duplicate"):
            await store.execute(sql, 5, "a")
        if database_url.startswith("postgresql"):
            definition = await store.fetchval("SELECT indexdef FROM pg_indexes WHERE indexname = 'orders_client_id'")
            assert "WHERE (client_id IS NOT NULL)" in definition
            found = await store.fetch("SELECT id FROM orders WHERE member_id = ANY(?::bigint[]) AND client_id = ANY(?::text[])",
                                      [7], ["a", "z"])
        else:
            found = await store.fetch("SELECT id FROM orders WHERE member_id IN (7) AND client_id IN ('a', 'z')")
        assert [int(r[0]) for r in found] == [3]
    finally:
        await store.close()
