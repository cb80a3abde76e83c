"""The store's small interface, shared by the SQLite and PostgreSQL backends.

SQL is written once with `?` placeholders; the PostgreSQL backend rewrites them to `$n`. Writers
always go through `transaction()`, so a batch of an actor's effects commits as one unit.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

Row = Any  # sqlite3.Row or asyncpg.Record: both index by column name


class Tx(Protocol):
    async def execute(self, sql: str, *args: Any) -> int: ...
    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...
    async def fetch(self, sql: str, *args: Any) -> list[Row]: ...
    async def fetchrow(self, sql: str, *args: Any) -> Row | None: ...
    async def fetchval(self, sql: str, *args: Any) -> Any: ...


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
            async with self.store.transaction() as tx:
                first = await self.store.next_id_block(tx, self.name)
            self._next, self._end = first, first + ID_BLOCK
        value = self._next
        self._next += 1
        return value

    def available(self) -> int:
        return self._end - self._next
