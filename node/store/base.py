"""The store's small interface, shared by the SQLite and PostgreSQL backends.

SQL is written once with `?` placeholders; the PostgreSQL backend rewrites them to `$n`. Writers
always go through `transaction()`, so a batch of an actor's effects commits as one unit.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from functools import lru_cache
from itertools import chain
from typing import Any, Protocol

Row = Any  # sqlite3.Row or asyncpg.Record: both index by column name


@dataclass(frozen=True)
class Bulk:
    """One statement applied to many rows, in the form each backend runs fastest.

    PostgreSQL runs an insert of several rows as one statement over one array per column (up to
    10 rows: one trip, prepared once per connection) or as one binary COPY of the rows into the
    table's columns (more rows), and any other statement as `arrays` (below) where it has them,
    else `sql`, the per-row statement, with executemany (asyncpg pipelines it, but the server runs it once per row). SQLite
    runs the same statement over multi-row `VALUES` lists (`chunk(k)`, k rows at once, in chunks of
    1024, 512, … 1): a few statement steps for a whole batch instead of one per row. Each step gives
    up the GIL, and getting it back means waiting behind a busy event loop, so per-row steps made a
    batch's write take several times its SQL cost. An UPDATE's rows must not repeat a key (SQLite
    applies one of them).
    """

    sql: str
    _head: str  # SQLite: what comes before the VALUES rows
    _tail: str  # SQLite: what comes after them
    width: int  # values per row
    # PostgreSQL: the statement as one step over one array per column, `$n` being the row values'
    # column `arrays_cols[n - 1]`; `lock` first locks the rows in key order (`lock_cols`), since an
    # UPDATE … FROM unnest(…) takes its row locks in whatever order its join runs.
    arrays: str | None = None
    arrays_cols: tuple[int, ...] = ()
    lock: str | None = None
    lock_cols: tuple[int, ...] = ()
    # PostgreSQL: an insert's table and columns, for COPY. Its status counts the rows, and asyncpg
    # encodes each value once with the column's binary codec: per row several times less client
    # and server time than column arrays (whose every element asyncpg type-checks in Python) or
    # executemany (a statement execution per row on the server). But a COPY is two trips and a
    # statement parsed anew: a few rows (the usual batch) go as column arrays, one prepared trip.
    copy: str | None = None
    columns: tuple[str, ...] = ()

    @classmethod
    def insert(cls, table: str, columns: Sequence[str]) -> Bulk:
        cols = ", ".join(columns)
        return cls(f"INSERT INTO {table} ({cols}) VALUES ({', '.join('?' * len(columns))})",
                   f"INSERT INTO {table} ({cols}) VALUES ", "", len(columns), copy=table, columns=tuple(columns))

    @classmethod
    def update(cls, table: str, sets: str, where: str) -> Bulk:
        """`sets` and `where` name the row's values {0}, {1}… (each once, in order) and the updated
        table's columns {t}.column: `Bulk.update("orders", "remaining = {t}.remaining - {0}", "{t}.id = {1}")`."""
        slots = [int(n) for n in _SLOT.findall(sets + " " + where)]
        if slots != list(range(len(slots))):
            raise ValueError("a Bulk update must use {0}, {1}, … once each, in order")
        sets, where = sets.replace("{t}", table), where.replace("{t}", table)

        def column(m: re.Match[str]) -> str:  # SQLite names a VALUES list's columns column1, column2, …
            return f"v.column{int(m.group(1)) + 1}"

        return cls(f"UPDATE {table} SET {_SLOT.sub('?', sets)} WHERE {_SLOT.sub('?', where)}",
                   f"UPDATE {table} SET {_SLOT.sub(column, sets)} FROM (VALUES ",
                   f") AS v WHERE {_SLOT.sub(column, where)}", len(slots))

    def chunk(self, rows: int) -> str:
        """The SQLite statement for `rows` rows at once."""
        return _chunk_sql(self, rows)

    def chunks(self, rows: Sequence[Sequence[Any]]) -> list[tuple[str, list[Any]]]:
        """`rows` as a few (statement, flat values) pairs: chunks of 1024 rows, then 512, 256, … 1,
        so that only eleven shapes of each statement exist (SQLite's statement cache keeps them).
        At most 1024 × 21 values: well under SQLite's 32,766 variables per statement."""
        out: list[tuple[str, list[Any]]] = []
        i, n = 0, len(rows)
        for size in CHUNK_SIZES:
            while n - i >= size:
                out.append((self.chunk(size), list(chain.from_iterable(rows[i:i + size]))))
                i += size
                if size != CHUNK_SIZES[0]:
                    break
        return out


CHUNK_SIZES = (1024, 512, 256, 128, 64, 32, 16, 8, 4, 2, 1)
_SLOT = re.compile(r"\{(\d+)\}")


@lru_cache(maxsize=512)
def _chunk_sql(bulk: Bulk, rows: int) -> str:
    one = "(" + ", ".join("?" * bulk.width) + ")"
    return bulk._head + ", ".join([one] * rows) + bulk._tail


PAGE_ROWS = 10_000  # Store.pages: rows per page


class Tx(Protocol):
    async def execute(self, sql: str, *args: Any) -> int: ...
    async def executemany(self, sql: str | Bulk, rows: Iterable[Sequence[Any]]) -> None: ...
    async def fetch(self, sql: str, *args: Any) -> list[Row]: ...
    async def fetch_many(self, queries: Sequence[tuple[str, Sequence[Any]]]) -> list[list[Row]]:
        """Several queries in order, with their rows: on SQLite in one trip to the writer thread."""
        ...
    async def fetchrow(self, sql: str, *args: Any) -> Row | None: ...
    async def fetchval(self, sql: str, *args: Any) -> Any: ...
    async def expect(self, sql: str, args: Sequence[Any], rows: int, error: Exception) -> None:
        """Run a write that must change exactly `rows` rows; otherwise raise `error` and the whole
        transaction rolls back. This is how the store, not a process's memory, decides: a fencing
        epoch or a conditional claim checked in the same transaction as the writes it guards. On
        SQLite it travels with the held statements, so a guarded batch still costs one trip."""
        ...
    async def expect_many(self, sql: Bulk, rows: Sequence[Sequence[Any]], count: int, error: Exception) -> None:
        """`executemany` whose rows must change `count` rows in all, else `error` (as `expect`).
        Only the money writer (node/store/ledger.py) needs it: its every write is counted."""
        ...


class Store(Protocol):
    backend: str  # "sqlite" | "postgresql"
    for_update: str  # " FOR UPDATE" where row locks exist, "" on SQLite (whose write tx is exclusive)

    async def migrate(self) -> None: ...
    async def close(self) -> None: ...
    def transaction(self) -> AbstractAsyncContextManager[Tx]: ...
    def snapshot(self) -> AbstractAsyncContextManager[Tx]:
        """A read-only transaction that sees one instant of the whole database while writers go on
        (SQLite WAL read transaction, PostgreSQL REPEATABLE READ READ ONLY): for reports that must
        add up across tables, such as the proof-of-solvency liability snapshot."""
        ...
    async def fetch(self, sql: str, *args: Any) -> list[Row]: ...
    def pages(self, sql: str, *args: Any, size: int = PAGE_ROWS) -> AsyncIterator[list[tuple[Any, ...]]]:
        """The rows of one query (one snapshot), as plain tuples in lists of up to `size`, read as
        the caller asks for them: a million rows never exist at once (recovery of a book), and
        tuples cost less than rows that also index by name."""
        ...
    async def fetchrow(self, sql: str, *args: Any) -> Row | None: ...
    async def fetchval(self, sql: str, *args: Any) -> Any: ...
    async def execute(self, sql: str, *args: Any) -> int: ...
    async def next_id_block(self, tx: Tx, name: str) -> int:
        """First id of a fresh block of ID_BLOCK ids, unique across every node."""
        ...


ID_BLOCK = 1000


class IdAllocator:
    """Hands out ids from blocks reserved in the store (hi/lo), so a batch needs no round trip per id.

    Ids are unique across nodes and increasing per allocator, with gaps after a restart.
    """

    def __init__(self, store: Store, name: str) -> None:
        self.store = store
        self.name = name
        self._next = 0
        self._end = 0

    def reset(self) -> None:
        """Forget the current block (after a rolled-back transaction that may have reserved it)."""
        self._next = self._end = 0

    async def take(self, tx: Tx) -> int:
        if self._next >= self._end:
            first = await self.store.next_id_block(tx, self.name)
            self._next, self._end = first, first + ID_BLOCK
        value = self._next
        self._next += 1
        return value

    async def take_own(self) -> int:
        """Like take, reserving a new block in a transaction of its own when needed (an unused
        block is a harmless gap), so ids can be given before the batch's write starts."""
        if self._next >= self._end:
            await self._reserve_own()
        value = self._next
        self._next += 1
        return value

    async def _reserve_own(self) -> None:
        async with self.store.transaction() as tx:
            first = await self.store.next_id_block(tx, self.name)
        self._next, self._end = first, first + ID_BLOCK

    async def take_own_many(self, n: int) -> list[int]:
        """`n` ids, the same as `n` calls of take_own would give, without an await per id (a
        market batch numbers its every trade)."""
        out: list[int] = []
        while len(out) < n:
            if self._next >= self._end:
                await self._reserve_own()
            k = min(n - len(out), self._end - self._next)
            out.extend(range(self._next, self._next + k))
            self._next += k
        return out

    def available(self) -> int:
        return self._end - self._next
