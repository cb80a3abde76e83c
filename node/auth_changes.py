"""Changes to who may use the API or trade, announced through the store to every node's caches.

A node keeps API tokens and members' "may trade" flags in memory: reading them from the store on
every signed request was, with a few hundred active keys, more queries than orders. What ends a
right (a token deleted or disabled, a member's API or log-in switched off) writes a row here in the
same transaction, and every node reads the new rows once a second and drops what they name. So a
revocation reaches every node within about a second, whatever the cache lifetime.

Rows are read by time, not by id: on PostgreSQL ids can commit out of order, so a poll reads the
last `WINDOW_MS` and skips the ids it has seen (so nodes' clocks must agree within a few seconds,
as the API's ±30 s tonces already ask). Rows older than an hour are deleted now and then.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from node.clock import now_ms
from node.store import Store, Tx

log = logging.getLogger(__name__)

WINDOW_MS = 10_000  # a change is looked for this long after it was made (a commit is never that late)
KEEP_MS = 3_600_000
Listener = Callable[[int, str | None], None]  # (member id, access key or None for all of the member's)


async def record(db: Store | Tx, member_id: int, access_key: str | None = None) -> None:
    """Announce a change of a member's rights (or of one of its keys); inside the change's own
    transaction where there is one."""
    await db.execute("INSERT INTO auth_changes (member_id, access_key, created_at) VALUES (?, ?, ?)",
                     member_id, access_key, now_ms())


class ChangeFeed:
    """Polls `auth_changes` and tells its listeners what changed (on the event loop, in order)."""

    def __init__(self, store: Store, every: float = 1.0) -> None:
        self.store = store
        self.every = every
        self.listeners: list[Listener] = []
        self._seen: dict[int, int] = {}  # id -> created_at, for the ids inside the window
        self._task: asyncio.Task[None] | None = None
        self._last_purge = 0.0

    async def start(self) -> None:
        await self.poll(announce=False)  # what changed before this node started is not cached yet
        self._task = asyncio.create_task(self._run(), name="auth-changes")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            try:
                await self.poll()
            except Exception as e:  # the store is down: try again next time, caches expire meanwhile
                log.warning("could not read the rights changes: %r", e)

    async def poll(self, announce: bool = True) -> int:
        """Read the recent changes and announce the new ones; returns how many were new."""
        now = now_ms()
        rows = await self.store.fetch(
            "SELECT id, member_id, access_key, created_at FROM auth_changes WHERE created_at >= ? ORDER BY id",
            now - WINDOW_MS)
        new = 0
        for r in rows:
            rid = int(r["id"])
            if rid in self._seen:
                continue
            self._seen[rid] = int(r["created_at"])
            new += 1
            if announce:
                for listener in list(self.listeners):
                    try:
                        listener(int(r["member_id"]), r["access_key"])
                    except Exception:
                        log.exception("a rights-change listener failed")
        horizon = now - 2 * WINDOW_MS
        self._seen = {k: v for k, v in self._seen.items() if v >= horizon}
        if time.monotonic() - self._last_purge > 600:
            self._last_purge = time.monotonic()
            await self.store.execute("DELETE FROM auth_changes WHERE created_at < ?", now - KEEP_MS)
        return new
