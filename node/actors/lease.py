"""Who runs what: leases with fencing epochs, one owner per market (or wallet) in the whole cluster.

A lease is a row in the shared store: the owner (node name plus boot id), when it expires, and an
`epoch` that grows by one at every grant. A market's epoch is copied into its state row in the same
transaction, and the market actor writes every batch `WHERE epoch = <its own>`: an owner that was
paused, cut off or simply slow past its lease can no longer change anything once another node has
taken over, whatever its memory says (Kleppmann's fencing tokens). The lease itself only decides
*who may try*; the epoch in the store decides whose writes count.

A valid lease is never taken from a living holder, not even by a second process with the same node
name. It passes on when it expires, when its holder gives it up (a clean stop, a hand-over), or when
the holder is provably gone: on SQLite, the file lock beside the database (`ProcessLock`) says no
other process of ours is alive; on PostgreSQL, each process holds a session advisory lock named
after its boot id (`Liveness`), which the server frees the moment the process's socket closes, so
a standby takes over from a killed owner at once instead of waiting out the lease.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from node.clock import now_ms
from node.errors import ExchangeError
from node.store import Store

log = logging.getLogger(__name__)

LEASE_TTL_MS = 10_000  # the default; a node's markets use `[actors] lease_ms`
HANDED_OVER = "handed-over"  # owner of a lease waiting for the node it was handed to
SHARD_PREFIX = "accounts/"  # an account shard's lease (node/actors/shards.py)


class LeaseHeld(ExchangeError):
    code = 3007
    status = 503


def liveness_key(owner: str) -> int:
    """The advisory lock key of a process (signed 64 bits, as PostgreSQL wants it)."""
    return int.from_bytes(hashlib.sha256(owner.encode()).digest()[:8], "big", signed=True)


def session_name(owner: str) -> str:
    """The PostgreSQL `application_name` of every session of a process (at most 63 bytes)."""
    return f"pyexchange {owner}"[:63]


def is_market(name: str) -> bool:
    # wallets' leases are named "wallet:<currency>", account shards' "accounts/<shard>"
    return ":" not in name and not name.startswith(SHARD_PREFIX)


def is_shard(name: str) -> bool:
    return name.startswith(SHARD_PREFIX)


class Liveness:
    """PostgreSQL only: a connection of this process's own holding an advisory lock named after its
    boot id. The server frees it when the process dies (its socket closes), which tells the other
    nodes that its leases can be taken now. A pause (SIGSTOP) keeps the socket, and so the lock:
    then the lease must expire first, and fencing covers the rest."""

    def __init__(self, url: str, owner: str, timeout: float) -> None:
        self.url = url
        self.owner = owner
        self.timeout = timeout
        self._conn: Any = None

    async def hold(self) -> None:
        """(Re)take our own lock; a lost connection is made again."""
        import asyncpg

        if self._conn is not None and not self._conn.is_closed():
            return
        self._conn = await asyncpg.connect(self.url, timeout=self.timeout, command_timeout=self.timeout,
                                           server_settings={"application_name": session_name(self.owner)})
        await self._conn.execute("SELECT pg_advisory_lock($1)", liveness_key(self.owner))

    async def gone(self, owner: str) -> bool:
        """True if the process that holds `owner`'s lock has no session any more."""
        if self._conn is None or self._conn.is_closed():
            await self.hold()
        key = liveness_key(owner)
        got = bool(await self._conn.fetchval("SELECT pg_try_advisory_lock($1)", key))
        if got:
            await self._conn.execute("SELECT pg_advisory_unlock($1)", key)
        return got

    async def close(self) -> None:
        if self._conn is not None:
            try:
                await self._conn.close(timeout=self.timeout)
            except Exception:  # closing a dead connection: nothing left to release
                self._conn.terminate()
            self._conn = None


class Leases:
    def __init__(self, store: Store, node: str, ttl_ms: int = LEASE_TTL_MS, *, boot: str | None = None,
                 sole_process: bool = False, liveness: Liveness | None = None) -> None:
        self.store = store
        self.node = node
        self.ttl_ms = ttl_ms
        self.boot = boot or secrets.token_hex(6)
        self.owner = f"{node}:{self.boot}"
        self.sole_process = sole_process  # SQLite with the file lock: no other process of ours lives
        self.liveness = liveness
        self.epochs: dict[str, int] = {}

    async def acquire(self, name: str) -> int:
        """Take the lease of a market (or wallet, or account shard) and return its new epoch;
        LeaseHeld if a living holder has it. For a market the epoch is written into its state row,
        for an account shard into its `account_shards` row, in the same transaction, which waits
        for (or fences) any batch the previous owner still has in flight."""
        now = now_ms()
        async with self.store.transaction() as tx:
            row = await tx.fetchrow(
                f"SELECT node, owner, expires_at, epoch FROM market_leases WHERE market = ?{self.store.for_update}", name)
            if row is not None:
                await self._check_free(name, row, now)
                if self.store.backend == "postgresql" and row["owner"] not in ("", HANDED_OVER, self.owner):
                    # Its sessions may still hold the market's rows, even with no statement running
                    # (a process paused mid-pipeline is not "idle in transaction" to the server):
                    # end them, so that their locks go now and nothing of theirs can commit later.
                    await tx.execute(
                        "SELECT pg_terminate_backend(pid, 1000) FROM pg_stat_activity "
                        "WHERE application_name = ? AND pid <> pg_backend_pid()", session_name(str(row["owner"])))
            epoch = int(row["epoch"]) + 1 if row is not None else 1
            if is_market(name):
                await tx.execute("INSERT INTO markets_state (market, next_seq, updated_at) VALUES (?, 1, ?) "
                                 "ON CONFLICT (market) DO NOTHING", name, now)
                old = int(await tx.fetchval("SELECT epoch FROM markets_state WHERE market = ?", name) or 0)
                epoch = max(epoch, old + 1)
                await tx.execute("UPDATE markets_state SET epoch = ? WHERE market = ?", epoch, name)
            elif is_shard(name):
                shard = int(name[len(SHARD_PREFIX):])
                await tx.execute("INSERT INTO account_shards (shard, epoch, updated_at) VALUES (?, 0, ?) "
                                 "ON CONFLICT (shard) DO NOTHING", shard, now)
                old = int(await tx.fetchval("SELECT epoch FROM account_shards WHERE shard = ?", shard) or 0)
                epoch = max(epoch, old + 1)
                await tx.execute("UPDATE account_shards SET epoch = ?, updated_at = ? WHERE shard = ?", epoch, now, shard)
            if row is None:
                # Two nodes may take a lease that never existed at the same instant (at a cluster's
                # first start): the second finds the first's row and refuses, as for a held lease.
                await tx.expect(
                    "INSERT INTO market_leases (market, node, owner, expires_at, epoch, acquired_at, renewed_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (market) DO NOTHING",
                    (name, self.node, self.owner, now + self.ttl_ms, epoch, now, now), 1,
                    LeaseHeld(f"{name} was just taken by another node; refusing to take it here"))
            else:
                await tx.execute(
                    "UPDATE market_leases SET node = ?, owner = ?, expires_at = ?, epoch = ?, acquired_at = ?, "
                    "renewed_at = ? WHERE market = ?", self.node, self.owner, now + self.ttl_ms, epoch, now, now, name)
        self.epochs[name] = epoch
        return epoch

    async def _check_free(self, name: str, row: Any, now: int) -> None:
        owner, node, expires = row["owner"], row["node"], int(row["expires_at"])
        if owner == self.owner or not owner or expires <= now:
            return
        if owner == HANDED_OVER:
            if node == self.node:
                return
            raise LeaseHeld(f"{name} is being handed over to node {node!r}; refusing to take it here")
        if self.sole_process and node == self.node:
            return  # an earlier process of ours on this SQLite file: the file lock says it is gone
        if self.liveness is not None and await self.liveness.gone(owner):
            log.warning("%s: its owner %s has died; taking the lease over before it expires", name, owner)
            return
        raise LeaseHeld(
            f"{name} is run by node {node!r} (boot {owner.rsplit(':', 1)[-1]}, lease valid for another "
            f"{(expires - now) / 1000:.1f} s); refusing to take it here")

    async def renew(self, name: str) -> bool:
        """False if the lease is no longer ours (the caller must stop the actor at once)."""
        now = now_ms()
        epoch = self.epochs.get(name)
        if epoch is None:
            return False
        n = await self.store.execute(
            "UPDATE market_leases SET expires_at = ?, renewed_at = ? WHERE market = ? AND owner = ? AND epoch = ?",
            now + self.ttl_ms, now, name, self.owner, epoch)
        return n > 0

    async def renew_many(self, names: Sequence[str]) -> set[str]:
        """Renew several leases of this process in one statement; the names still ours (the others
        are lost: the caller must stop their actors at once). A node renews every lease it holds
        every tick, so one statement instead of one per lease is most of an idle node's writes.
        Each lease is still renewed only under its own epoch; when fewer rows than leases changed,
        one read tells which were lost."""
        held = [(name, self.epochs[name]) for name in names if name in self.epochs]
        if len(held) <= 1:
            return {name for name, _ in held if await self.renew(name)}
        now = now_ms()
        args: list[Any] = [now + self.ttl_ms, now, self.owner]
        for name, epoch in held:
            args += [name, epoch]
        n = await self.store.execute(
            "UPDATE market_leases SET expires_at = ?, renewed_at = ? WHERE owner = ? AND ("
            + " OR ".join("(market = ? AND epoch = ?)" for _ in held) + ")", *args)
        if n == len(held):
            return {name for name, _ in held}
        ours = {(str(r["market"]), int(r["epoch"])) for r in await self.store.fetch(
            "SELECT market, epoch FROM market_leases WHERE owner = ?", self.owner)}
        return {name for name, epoch in held if (name, epoch) in ours}

    async def release(self, name: str, handed_to: str | None = None) -> None:
        """Give the lease up at once (a clean stop: the next owner need not wait for expiry). With
        `handed_to`, only that node may take it until the lease would have expired; if it does not,
        the market falls to its standbys as after a crash."""
        epoch = self.epochs.pop(name, None)
        if epoch is None:
            return
        if handed_to is None:
            await self.store.execute(
                "UPDATE market_leases SET owner = '', expires_at = 0 WHERE market = ? AND owner = ? AND epoch = ?",
                name, self.owner, epoch)
        else:
            await self.store.execute(
                "UPDATE market_leases SET node = ?, owner = ?, expires_at = ? WHERE market = ? AND owner = ? AND epoch = ?",
                handed_to, HANDED_OVER, now_ms() + self.ttl_ms, name, self.owner, epoch)

    def forget(self, name: str) -> None:
        """The lease is lost (fenced): nothing of ours to renew or release any more."""
        self.epochs.pop(name, None)

    async def all(self) -> list[dict[str, Any]]:
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
