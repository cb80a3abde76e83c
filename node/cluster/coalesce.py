"""Natural batching for the bus: what is sent to one queue while a send to it is in flight goes in
the next send, all together. No timer: an idle queue sends at once, a busy one sends bigger lists.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Generic, TypeVar

T = TypeVar("T")

log = logging.getLogger(__name__)


class Coalescer(Generic[T]):
    """Items by key (a queue), sent in order by one task per key with items waiting, at most `most`
    per send. `add` waits while `limit` items wait in all (back-pressure)."""

    def __init__(self, send: Callable[[str, list[T]], Awaitable[None]], *, most: int, limit: int) -> None:
        self._send = send
        self.most = most
        self.limit = limit
        self._held: dict[str, list[T]] = {}
        self._count = 0
        self._room = asyncio.Event()
        self._senders: dict[str, asyncio.Task[None]] = {}

    @property
    def waiting(self) -> int:
        return self._count

    async def add(self, key: str, items: Iterable[T]) -> None:
        while self._count >= self.limit:
            self._room.clear()
            await self._room.wait()
        self._take(key, items)

    def offer(self, key: str, items: Iterable[T]) -> bool:
        """As `add`, for a caller that cannot wait (an event bus subscriber): False, nothing taken,
        while `limit` items wait."""
        if self._count >= self.limit:
            return False
        self._take(key, items)
        return True

    def _take(self, key: str, items: Iterable[T]) -> None:
        held = self._held.setdefault(key, [])
        n = len(held)
        held.extend(items)
        self._count += len(held) - n
        if key not in self._senders:
            self._senders[key] = asyncio.create_task(self._drain(key), name=f"send:{key}")

    async def _drain(self, key: str) -> None:
        try:
            while held := self._held.get(key):
                items = held[:self.most]
                del held[:self.most]
                self._count -= len(items)
                if self._count < self.limit:
                    self._room.set()
                try:
                    await self._send(key, items)
                except Exception:  # the sender reports its own failures: this is a bug, not the bus
                    log.exception("sending %d items to %s failed", len(items), key)
        finally:
            self._senders.pop(key, None)
            if not self._held.get(key):
                self._held.pop(key, None)

    def close(self) -> None:
        for task in self._senders.values():
            task.cancel()
