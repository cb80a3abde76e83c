"""SQLite backend: the embedded default, one file in WAL mode, no service to run.

One writer connection (SQLite has one writer anyway) serialised by an asyncio lock, so every actor's
batch is one `BEGIN IMMEDIATE … COMMIT`; one reader connection so page and API reads never wait
behind a write.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from node.store.base import ID_BLOCK, Row
from node.store.schema import MIGRATIONS

ID_SQL = "INTEGER PRIMARY KEY"  # rows are never deleted, so ids are never reused; AUTOINCREMENT would cost a write per insert


class SqliteTx:
    """The statements of one transaction, sent to SQLite's thread in as few trips as possible.

    `executemany` returns nothing, so it is held and sent with the next statement that needs an
    answer, or with the COMMIT: an actor's whole batch of writes then costs one trip to the
    connection's thread instead of one per statement (each trip waits for a GIL hand-over). Order is
    kept: held statements always run before anything sent after them.
    """

    def __init__(self, conn: aiosqlite.Connection, begin: str | None = None) -> None:
        self.conn = conn
        self._begin = begin  # "BEGIN IMMEDIATE", sent with the first statement
        self._held: list[tuple[str, list[Sequence[Any]]]] = []
        self.begun = begin is None

    async def _run(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        begin, held = self._begin, self._held
        self._begin, self._held = None, []
        if begin is not None:
            self.begun = True

        def work() -> Any:
            db = self.conn._conn  # the sqlite3 connection, used only inside its own thread
            if begin is not None:
                db.execute(begin)
            for sql, rows in held:
                db.executemany(sql, rows)
            return fn(db)

        return await self.conn._execute(work)

    async def execute(self, sql: str, *args: Any) -> int:
        return int(await self._run(lambda db: db.execute(sql, args).rowcount))

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        batch = list(rows)
        if batch:
            self._held.append((sql, batch))

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return list(await self._run(lambda db: db.execute(sql, args).fetchall()))

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        rows = await self.fetch(sql, *args)
        return rows[0] if rows else None

    async def fetchval(self, sql: str, *args: Any) -> Any:
        row = await self.fetchrow(sql, *args)
        return None if row is None else row[0]

    async def commit(self) -> None:
        if self._begin is not None and not self._held:
            self._begin = None  # nothing was ever sent: there is no transaction to end
            return
        await self._run(lambda db: db.execute("COMMIT"))

    async def rollback(self) -> None:
        self._held = []
        if self._begin is not None:
            self._begin = None
            return
        try:
            await self.conn._execute(lambda: self.conn._conn.execute("ROLLBACK"))
        except sqlite3.OperationalError:
            pass  # no transaction was open (its BEGIN failed)


class SqliteStore:
    backend = "sqlite"
    for_update = ""

    def __init__(self, path: str, synchronous: str = "full") -> None:
        self.path = path
        self.synchronous = synchronous.upper()
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    async def _connect(self) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        conn.row_factory = sqlite3.Row
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute(f"PRAGMA synchronous={self.synchronous}")
        await conn.execute("PRAGMA foreign_keys=ON")
        await conn.execute("PRAGMA busy_timeout=10000")
        await conn.execute("PRAGMA cache_size=-65536")  # 64 MiB of pages: batches update indexes all over the book
        await conn.execute("PRAGMA mmap_size=268435456")
        return conn

    async def open(self) -> SqliteStore:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._writer = await self._connect()
        self._reader = await self._connect()
        return self

    async def close(self) -> None:
        for conn in (self._reader, self._writer):
            if conn is not None:
                await conn.close()
        self._reader = self._writer = None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqliteTx]:
        assert self._writer is not None, "store is closed"
        async with self._lock:
            tx = SqliteTx(self._writer, begin="BEGIN IMMEDIATE")
            try:
                yield tx
                await tx.commit()
            except BaseException:
                await tx.rollback()
                raise

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[SqliteTx]:
        """One WAL read transaction on a connection of its own: every read inside sees the same
        commit, and the writer goes on meanwhile (WAL readers never block it). Its own connection,
        so that the shared reader's short queries are not held inside a long snapshot. An in-memory
        database exists on one connection only: there the snapshot is the writer's lock (writes wait)."""
        if self.path == ":memory:":
            async with self.transaction() as tx:
                yield tx
            return
        conn = await self._connect()
        try:
            await conn.execute("PRAGMA query_only=ON")
            await conn.execute("BEGIN")
            try:
                yield SqliteTx(conn)
            finally:
                await conn.execute("ROLLBACK")  # read-only: nothing to commit, and it ends the snapshot
        finally:
            await conn.close()

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        assert self._reader is not None, "store is closed"
        return list(await self._reader.execute_fetchall(sql, args))

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        rows = await self.fetch(sql, *args)
        return rows[0] if rows else None

    async def fetchval(self, sql: str, *args: Any) -> Any:
        row = await self.fetchrow(sql, *args)
        return None if row is None else row[0]

    async def execute(self, sql: str, *args: Any) -> int:
        async with self.transaction() as tx:
            return await tx.execute(sql, *args)

    async def next_id_block(self, tx: SqliteTx, name: str) -> int:  # type: ignore[override]
        await tx.execute("INSERT INTO id_blocks (name, next_block) VALUES (?, 0) ON CONFLICT (name) DO NOTHING", name)
        block = await tx.fetchval(
            "UPDATE id_blocks SET next_block = next_block + 1 WHERE name = ? RETURNING next_block - 1", name
        )
        return int(block) * ID_BLOCK + 1

    async def migrate(self) -> None:
        async with self.transaction() as tx:
            await tx.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY)")
            done = {r[0] for r in await tx.fetch("SELECT version FROM schema_migrations")}
            for version, sql in MIGRATIONS:
                if version in done:
                    continue
                for stmt in _statements(sql.replace("{id}", ID_SQL)):
                    await tx.execute(stmt)
                await tx.execute("INSERT INTO schema_migrations (version) VALUES (?)", version)


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]
