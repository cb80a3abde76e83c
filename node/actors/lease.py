"""Exactly one live market actor per market in the whole cluster: a lease row in the shared store.

A node takes the lease of each market it runs before starting its actor, and renews it while it
runs. Another node finds it held and refuses to start that market, with a clear message. The same
node restarting (after a crash) takes its own lease over at once, so its markets come back without
waiting for expiry. A node that loses its lease (it was stalled past the expiry and someone took
over) stops its market actors at the next renewal: it never matches next to the new owner.

On SQLite, where only one process may run actors at all, a file lock beside the database makes
that absolute (see `ProcessLock`).
"""

from __future__ import annotations

import fcntl
import os
import secrets
import time
from pathlib import Path
from typing import IO

from node.errors import ExchangeError
from node.store import Store

LEASE_TTL_MS = 15_000


class LeaseHeld(ExchangeError):
    code = 3007
    status = 503


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Leases:
    def __init__(self, store: Store, node: str) -> None:
        self.store = store
        self.node = node
        self.owner = f"{node}:{os.getpid()}:{secrets.token_hex(4)}"

    async def acquire(self, market: str, ttl_ms: int = LEASE_TTL_MS) -> None:
        now = now_ms()
        async with self.store.transaction() as tx:
            row = await tx.fetchrow(f"SELECT node, owner, expires_at FROM market_leases WHERE market = ?{self.store.for_update}", market)
            if row is None:
                await tx.execute("INSERT INTO market_leases (market, node, owner, expires_at) VALUES (?, ?, ?, ?)",
                                 market, self.node, self.owner, now + ttl_ms)
                return
            if row["node"] != self.node and int(row["expires_at"]) > now:
                raise LeaseHeld(
                    f"market {market} is run by node {row['node']!r} (lease valid for another "
                    f"{(int(row['expires_at']) - now) / 1000:.1f} s); refusing to start it here"
                )
            await tx.execute("UPDATE market_leases SET node = ?, owner = ?, expires_at = ? WHERE market = ?",
                             self.node, self.owner, now + ttl_ms, market)

    async def renew(self, market: str, ttl_ms: int = LEASE_TTL_MS) -> bool:
        """False if the lease is no longer ours: the caller must stop its market actor."""
        n = await self.store.execute(
            "UPDATE market_leases SET expires_at = ? WHERE market = ? AND owner = ?", now_ms() + ttl_ms, market, self.owner
        )
        return n > 0

    async def release(self, market: str, handed_to: str | None = None) -> None:
        """Give the lease up; with `handed_to`, the row names the next owner, so that node (and only
        it, or the old owner after expiry) takes it at once."""
        if handed_to is None:
            await self.store.execute("DELETE FROM market_leases WHERE market = ? AND owner = ?", market, self.owner)
        else:
            await self.store.execute(
                "UPDATE market_leases SET node = ?, owner = ?, expires_at = ? WHERE market = ? AND owner = ?",
                handed_to, "handed-over", now_ms() + LEASE_TTL_MS, market, self.owner)

    async def held_by_node(self) -> list[str]:
        """Markets whose lease names this node (handed over to it, or held before a restart)."""
        rows = await self.store.fetch("SELECT market FROM market_leases WHERE node = ? ORDER BY market", self.node)
        return [r["market"] for r in rows]

    async def all(self) -> list[dict[str, object]]:
        return [dict(r) for r in await self.store.fetch("SELECT * FROM market_leases ORDER BY market")]


class ProcessLock:
    """An exclusive file lock beside the SQLite database: one serving process per database file."""

    def __init__(self, db_path: str) -> None:
        self.path = Path(db_path + ".lock")
        self._f: IO[str] | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = open(self.path, "a+")  # noqa: SIM115 - held open for the life of the process
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            raise LeaseHeld(
                f"another exchange process is already running on this database ({self.path} is locked)"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        self._f = f

    def release(self) -> None:
        if self._f is not None:
            fcntl.flock(self._f, fcntl.LOCK_UN)
            self._f.close()
            self._f = None
