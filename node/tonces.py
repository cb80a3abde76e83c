"""The replay memory of signed API requests: each (access key, tonce) is accepted once.

It lives in the store (so it survives restarts and is shared by every node) and is written inside
whichever transaction is already open: the API's tonce actor for most requests, and the account
actor's own batch for order submissions, so that a signed order costs one commit and not two.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from node.clock import now_ms
from node.store.base import Row, Tx

TONCE_WINDOW_MS = 30_000
"""Peatio accepted a tonce at most 30 s away from the server clock, either way."""

LAST_USED_EVERY = 60.0  # seconds between two writes of a key's last_used_at
PURGE_EVERY = 1.0  # seconds between two purges of expired tonces: small ones (at 5,000 orders/s a 10 s
# purge deleted 50,000 rows and held a batch for ~60 ms)

Tonce = tuple[str, int]  # (access key, tonce in ms)
TONCES_PG = ("INSERT INTO tonces (access_key, tonce, expires_at) SELECT k, t, $3 FROM unnest($1::text[], $2::bigint[]) "
             "AS v(k, t) ON CONFLICT (access_key, tonce) DO NOTHING RETURNING access_key, tonce")


class TonceBook:
    """Burns tonces in a caller's transaction; one instance per node, shared by its writers."""

    def __init__(self) -> None:
        self._last_purge = 0.0
        self._touched: dict[str, float] = {}  # access key -> when its last_used_at was last written

    async def burn(self, tx: Tx, items: Sequence[Tonce]) -> list[bool]:
        """For each item, whether it was fresh (now burnt); a second copy in `items` is a replay."""
        if not items:
            return []
        sql, args = self.insert(items, getattr(tx, "backend", "sqlite"))
        return await self.settle(tx, items, await tx.fetch(sql, *args))

    def insert(self, items: Sequence[Tonce], backend: str = "sqlite") -> tuple[str, list[Any]]:
        """One INSERT … ON CONFLICT DO NOTHING RETURNING for all of `items` (not empty): what it
        returns are the fresh ones. For callers that send it along with other queries. On
        PostgreSQL the items travel as two arrays: one statement text whatever their number, which
        each connection parses once (a text per count filled the connections' statement caches)."""
        expires = now_ms() + 2 * TONCE_WINDOW_MS
        unique = list(dict.fromkeys(items))
        if backend == "postgresql":
            return (TONCES_PG, [[ak for ak, _ in unique], [tonce for _, tonce in unique], expires])
        args: list[Any] = []
        for ak, tonce in unique:
            args += [ak, tonce, expires]
        sql = ("INSERT INTO tonces (access_key, tonce, expires_at) VALUES " + ",".join("(?, ?, ?)" for _ in unique)
               + " ON CONFLICT (access_key, tonce) DO NOTHING RETURNING access_key, tonce")
        return sql, args

    async def settle(self, tx: Tx, items: Sequence[Tonce], inserted: Sequence[Row]) -> list[bool]:
        """Which of `items` were fresh, given the rows the INSERT returned; the keys' last use is
        recorded in the same transaction, at most once a minute per key (it is informative only),
        and expired tonces are purged now and then."""
        now = now_ms()
        mono = time.monotonic()
        keys = sorted({ak for ak, _ in items if mono - self._touched.get(ak, -LAST_USED_EVERY) >= LAST_USED_EVERY})
        if keys:
            await tx.executemany("UPDATE api_tokens SET last_used_at = ? WHERE access_key = ?", [(now, k) for k in keys])
            if len(self._touched) > 100_000:
                self._touched.clear()
            self._touched.update(dict.fromkeys(keys, mono))
        if mono - self._last_purge > PURGE_EVERY:
            self._last_purge = mono
            await tx.executemany("DELETE FROM tonces WHERE expires_at < ?", [(now,)])
        fresh = {(r["access_key"], int(r["tonce"])) for r in inserted}
        out: list[bool] = []
        for item in items:
            out.append(item in fresh)
            fresh.discard(item)  # a second copy of the same tonce is a replay
        return out
