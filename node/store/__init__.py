"""Storage: SQLite (embedded default) or PostgreSQL (clusters), chosen by the database URL."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlparse

from node.store.base import ID_BLOCK, Bulk, IdAllocator, Row, Store, Tx

if TYPE_CHECKING:
    from node.config import PoolConf

__all__ = ["ID_BLOCK", "Bulk", "IdAllocator", "Row", "Store", "Tx", "open_store", "sqlite_path"]


def sqlite_path(url: str) -> str:
    """`sqlite:///var/x.db` is relative to the working directory, `sqlite:////abs/x.db` absolute."""
    rest = url[len("sqlite://") :]
    if rest.startswith("/"):
        rest = rest[1:]
    return rest or ":memory:"


async def open_store(url: str, *, synchronous: str = "full", migrate: bool = True, timeout: float = 5.0,
                     application_name: str = "pyexchange", pool: PoolConf | None = None) -> Store:
    """`timeout` bounds every PostgreSQL call (SQLite runs in this process: nothing to wait for);
    `pool` sizes PostgreSQL's connection pool (and says whether PgBouncer is in between)."""
    scheme = urlparse(url).scheme
    store: Store
    if scheme == "sqlite":
        from node.store.sqlite import SqliteStore

        store = await SqliteStore(sqlite_path(url), synchronous).open()
    elif scheme in ("postgresql", "postgres"):
        from node.config import PoolConf
        from node.store.postgres import PostgresStore

        p = pool or PoolConf()
        store = await PostgresStore(url, p.min_size, p.max_size, timeout=timeout, application_name=application_name,
                                    pgbouncer=p.pgbouncer).open()
    else:
        raise ValueError(f"unsupported database URL scheme {scheme!r}")
    if migrate:
        await store.migrate()
    return store
