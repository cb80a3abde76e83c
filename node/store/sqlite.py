"""SQLite backend: the embedded default, one file in WAL mode, no service to run.

Writes go through one connection owned by one thread (SQLite has one writer anyway): each actor's
batch is one `BEGIN IMMEDIATE … COMMIT`, and an asyncio lock keeps two transactions' statements
apart. Reads go through a second connection (aiosqlite), so page and API reads never wait behind a
write.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from queue import SimpleQueue
from typing import Any

import aiosqlite

from node.store.base import ID_BLOCK, PAGE_ROWS, Bulk, Row, Tx
from node.store.schema import MIGRATIONS, statements

ID_SQL = "INTEGER PRIMARY KEY"  # rows are never deleted, so ids are never reused; AUTOINCREMENT would cost a write per insert

Work = Callable[[sqlite3.Connection], Any]


def _resolve(fut: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if not fut.done():  # cancelled by its waiter meanwhile
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(value)


class ConnectionThread:
    """A sqlite3 connection that lives in a thread of its own; work runs there in submission order.

    Unlike aiosqlite's `execute`, `submit` queues the work *at once* (not when a coroutine first
    runs): a transaction's COMMIT is in the queue before the writer lock is released, so the next
    transaction's statements run right after it without waiting for the event loop in between.
    """

    def __init__(self, connect: Callable[[], sqlite3.Connection], name: str) -> None:
        self._connect = connect
        self._queue: SimpleQueue[tuple[asyncio.Future[Any], Work] | None] = SimpleQueue()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None

    async def open(self) -> ConnectionThread:
        self._loop = asyncio.get_running_loop()
        self._thread.start()
        await self.submit(lambda _db: None)  # the connection is made (and checked) in the thread
        return self

    def submit(self, work: Work) -> asyncio.Future[Any]:
        assert self._loop is not None, "connection is not open"
        fut = self._loop.create_future()
        self._queue.put((fut, work))
        return fut

    async def close(self) -> None:
        if self._loop is None or not self._thread.is_alive():
            return
        await self.submit(lambda db: db.close())
        self._queue.put(None)
        await asyncio.to_thread(self._thread.join)

    def _main(self) -> None:
        loop = self._loop
        assert loop is not None
        db: sqlite3.Connection | None = None
        while (item := self._queue.get()) is not None:
            fut, work = item
            value: Any = None
            error: BaseException | None = None
            try:
                if db is None:
                    db = self._connect()
                value = work(db)
            except BaseException as e:  # handed to the waiting coroutine, never lost in this thread
                error = e
            try:
                loop.call_soon_threadsafe(_resolve, fut, value, error)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                pass


class Expect:
    """A held statement whose row count is checked in the writer thread (see `Tx.expect`)."""

    __slots__ = ("sql", "rows", "error")

    def __init__(self, sql: str, rows: int, error: Exception) -> None:
        self.sql, self.rows, self.error = sql, rows, error

    def check(self, changed: int) -> None:
        if changed != self.rows:
            raise self.error


class ExpectMany:
    """A held Bulk statement whose chunks' row counts must add up to `rows` (see `Tx.expect_many`)."""

    __slots__ = ("bulk", "rows", "error")

    def __init__(self, bulk: Bulk, rows: int, error: Exception) -> None:
        self.bulk, self.rows, self.error = bulk, rows, error

    def run(self, db: sqlite3.Connection, rows: Sequence[Sequence[Any]]) -> None:
        changed = 0
        for sql, values in self.bulk.chunks(rows):
            changed += db.execute(sql, values).rowcount
        if changed != self.rows:
            raise self.error


class SqliteTx:
    """The statements of one transaction, sent to SQLite's thread in as few trips as possible.

    `executemany` returns nothing, so it is held and sent with the next statement that needs an
    answer, or with the COMMIT: an actor's whole batch of writes then costs one trip to the
    connection's thread instead of one per statement (each trip waits for the event loop to come
    back to it). Order is kept: held statements always run before anything sent after them.
    """

    def __init__(self, conn: ConnectionThread, begin: str | None = None) -> None:
        self.conn = conn
        self._begin = begin  # "BEGIN IMMEDIATE", sent with the first statement
        self._held: list[tuple[str | Bulk | Expect | ExpectMany, list[Sequence[Any]]]] = []
        self.begun = begin is None

    def _submit(self, fn: Work, commit: bool = False) -> asyncio.Future[Any]:
        begin, held = self._begin, self._held
        self._begin, self._held = None, []
        if begin is not None:
            self.begun = True

        def work(db: sqlite3.Connection) -> Any:
            if begin is not None:
                db.execute(begin)
            try:
                for stmt, rows in held:
                    if isinstance(stmt, Bulk):
                        for sql, values in stmt.chunks(rows):
                            db.execute(sql, values)
                    elif isinstance(stmt, Expect):
                        stmt.check(db.execute(stmt.sql, rows[0]).rowcount)
                    elif isinstance(stmt, ExpectMany):
                        stmt.run(db, rows)
                    else:
                        db.executemany(stmt, rows)
            except BaseException:
                if commit and db.in_transaction:
                    db.execute("ROLLBACK")  # nobody is left to roll back: the lock is released
                raise
            return fn(db)

        return self.conn.submit(work)

    async def _run(self, fn: Work) -> Any:
        return await self._submit(fn)

    async def execute(self, sql: str, *args: Any) -> int:
        return int(await self._run(lambda db: db.execute(sql, args).rowcount))

    async def executemany(self, sql: str | Bulk, rows: Iterable[Sequence[Any]]) -> None:
        batch = list(rows)
        if batch:
            self._held.append((sql, batch))

    async def expect(self, sql: str, args: Sequence[Any], rows: int, error: Exception) -> None:
        self._held.append((Expect(sql, rows, error), [tuple(args)]))

    async def expect_many(self, sql: Bulk, rows: Sequence[Sequence[Any]], count: int, error: Exception) -> None:
        batch = list(rows)
        if batch or count:
            self._held.append((ExpectMany(sql, count, error), batch))

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return list(await self._run(lambda db: db.execute(sql, args).fetchall()))

    async def fetch_many(self, queries: Sequence[tuple[str, Sequence[Any]]]) -> list[list[Row]]:
        return list(await self._run(lambda db: [db.execute(sql, args).fetchall() for sql, args in queries]))

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        rows = await self.fetch(sql, *args)
        return rows[0] if rows else None

    async def fetchval(self, sql: str, *args: Any) -> Any:
        row = await self.fetchrow(sql, *args)
        return None if row is None else row[0]

    def commit_soon(self) -> asyncio.Future[Any] | None:
        """Queue what is held and the COMMIT now; the future says whether it committed. A failed
        COMMIT is rolled back in the same trip, so the connection is clean for what is queued next."""
        if self._begin is not None and not self._held:
            self._begin = None  # nothing was ever sent: there is no transaction to end
            return None

        def commit(db: sqlite3.Connection) -> None:
            try:
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

        return self._submit(commit, commit=True)

    async def rollback(self) -> None:
        self._held = []
        if self._begin is not None:
            self._begin = None
            return

        def rollback(db: sqlite3.Connection) -> None:
            if db.in_transaction:
                db.execute("ROLLBACK")

        await self.conn.submit(rollback)


class SqliteStore:
    backend = "sqlite"
    for_update = ""

    def __init__(self, path: str, synchronous: str = "full") -> None:
        self.path = path
        self.synchronous = synchronous.upper()
        self._writer: ConnectionThread | None = None
        self._reader: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    _PRAGMAS = (
        "PRAGMA journal_mode=WAL",
        "PRAGMA foreign_keys=ON",
        "PRAGMA busy_timeout=5000",  # shorter than a market lease, like every store call
        "PRAGMA cache_size=-65536",  # 64 MiB of pages: batches update indexes all over the book
        "PRAGMA mmap_size=268435456",
    )

    def _pragmas(self) -> list[str]:
        return [*self._PRAGMAS, f"PRAGMA synchronous={self.synchronous}"]

    def _connect_sync(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.row_factory = sqlite3.Row
        for pragma in self._pragmas():
            db.execute(pragma)
        return db

    async def _thread(self, name: str) -> ConnectionThread:
        return await ConnectionThread(self._connect_sync, name).open()

    async def open(self) -> SqliteStore:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._writer = await self._thread("sqlite-writer")
        self._reader = await aiosqlite.connect(self.path, isolation_level=None)
        self._reader.row_factory = sqlite3.Row
        for pragma in self._pragmas():
            await self._reader.execute(pragma)
        return self

    async def close(self) -> None:
        if self._reader is not None:
            await self._reader.close()
        if self._writer is not None:
            await self._writer.close()
        self._reader = self._writer = None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqliteTx]:
        """The lock is held until the COMMIT is *queued*, not until it is done: the writer thread
        runs it before anything queued later, so the next transaction can start at once, and the
        caller still waits for its own COMMIT before going on."""
        assert self._writer is not None, "store is closed"
        async with self._lock:
            tx = SqliteTx(self._writer, begin="BEGIN IMMEDIATE")
            try:
                yield tx
                done = tx.commit_soon()
            except BaseException:
                await tx.rollback()
                raise
        if done is not None:
            await done

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
        conn = await self._thread("sqlite-snapshot")
        try:
            await conn.submit(lambda db: db.execute("PRAGMA query_only=ON"))
            await conn.submit(lambda db: db.execute("BEGIN"))
            try:
                yield SqliteTx(conn)
            finally:
                await conn.submit(lambda db: db.execute("ROLLBACK"))  # read-only: nothing to commit
        finally:
            await conn.close()

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        assert self._reader is not None, "store is closed"
        return list(await self._reader.execute_fetchall(sql, args))

    async def pages(self, sql: str, *args: Any, size: int = PAGE_ROWS) -> AsyncIterator[list[tuple[Any, ...]]]:
        """On a connection of its own, whose open statement is one read snapshot until it is done
        (WAL): on the shared reader it would hold that snapshot for every other read meanwhile.
        A page is read when the caller asks for it, not ahead while it handles the last one: the
        sqlite3 module releases and retakes the GIL for every column of every row, so a read ahead
        overlaps almost nothing with a caller that holds the GIL, and their hand-offs cost CPU."""
        if self.path == ":memory:":  # one connection only: read at once, hand out in pages
            rows = [tuple(r) for r in await self.fetch(sql, *args)]
            for i in range(0, len(rows), size):
                yield rows[i:i + size]
            return
        conn = await self._thread("sqlite-pages")
        try:
            def start(db: sqlite3.Connection) -> sqlite3.Cursor:
                cursor = db.execute(sql, args)
                cursor.row_factory = None
                return cursor

            cursor = await conn.submit(start)
            while rows := await conn.submit(lambda _db: cursor.fetchmany(size)):
                yield rows
        finally:
            await conn.close()

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        rows = await self.fetch(sql, *args)
        return rows[0] if rows else None

    async def fetchval(self, sql: str, *args: Any) -> Any:
        row = await self.fetchrow(sql, *args)
        return None if row is None else row[0]

    async def execute(self, sql: str, *args: Any) -> int:
        async with self.transaction() as tx:
            return await tx.execute(sql, *args)

    async def next_id_block(self, tx: Tx, name: str) -> int:
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
                for stmt in statements(sql, id_sql=ID_SQL, blob_sql="BLOB", backend=self.backend):
                    await tx.execute(stmt)
                await tx.execute("INSERT INTO schema_migrations (version) VALUES (?)", version)
