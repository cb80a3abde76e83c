"""In-process event bus: what actors publish after their commit, for hubs and aggregators.

Publishing never waits: subscribers are plain callbacks that must only enqueue, so a slow
websocket client can never slow matching. A cluster bridge (node/cluster/rabbit.py) subscribes
here like any other consumer.

Topics are envelopes, one per matching batch (docs/architecture.md, events): `market.<id>` (the
batch's trades, book diff and order changes), `member.<id>` (one member's orders, trades and balance
deltas of that batch) and `market.<id>.status` (a halt or a resumption).

What other nodes send is only what this node follows: `follow(key)` counts local followers of a
key (`market.<id>`, `market.*`, `member.<id>`) and the cluster bridge (the `binder`) binds the
node's event queue to it while the count is above zero; `follow_keys` names the keys a topic's
events are followed under. Without a bridge (one node) every event
is here already and following costs nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)

Event = dict[str, Any]
Subscriber = Callable[[str, Event], None]
Binder = Callable[[str, bool], Awaitable[None]]
ALWAYS_FOLLOWED = "market.*.status"  # halts and resumptions: every node refuses orders for a halted market


def follow_keys(topic: str) -> tuple[str, ...]:
    """The keys under which a topic's events are wanted: a market's envelopes by their market or by
    all markets (`market.*`), every market's status by one key, a member's by the member."""
    if topic.startswith("market."):
        if topic.endswith(".status"):
            return (ALWAYS_FOLLOWED,)
        return (topic, "market.*")
    return (topic,)


class EventBus:
    def __init__(self) -> None:
        self._subs: list[Subscriber] = []
        self.followers: dict[str, int] = {}
        self.binder: Binder | None = None
        self._bound: set[str] = set()
        self._locks: dict[str, asyncio.Lock] = {}

    def subscribe(self, fn: Subscriber) -> Callable[[], None]:
        self._subs.append(fn)

        def unsubscribe() -> None:
            if fn in self._subs:
                self._subs.remove(fn)

        return unsubscribe

    def publish(self, topic: str, event: Event) -> None:
        """topic is like `market.btcusd`, `member.42`, `market.btcusd.status`."""
        for fn in list(self._subs):
            try:
                fn(topic, event)
            except Exception:  # a broken subscriber must not break the publisher
                log.exception("event subscriber failed on %s", topic)

    def followed(self, key: str) -> bool:
        return self.followers.get(key, 0) > 0

    def wanted(self, topic: str) -> bool:
        """Something on this node follows the topic's events now (status events always)."""
        return any(k == ALWAYS_FOLLOWED or self.followers.get(k, 0) > 0 for k in follow_keys(topic))

    async def follow(self, key: str) -> None:
        """One more local follower of `key`; returns once other nodes' events for it come here."""
        self.followers[key] = self.followers.get(key, 0) + 1
        await self._settle(key)

    async def unfollow(self, key: str) -> None:
        n = self.followers.get(key, 0) - 1
        if n > 0:
            self.followers[key] = n
        else:
            self.followers.pop(key, None)
        await self._settle(key)

    async def _settle(self, key: str) -> None:
        """Bind or unbind so that the binding matches the count now: calls for one key run one
        at a time, so a quick follow/unfollow/follow always ends with what the count says."""
        if self.binder is None:
            return
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            want = self.followed(key)
            if want != (key in self._bound):
                await self.binder(key, want)
                if want:
                    self._bound.add(key)
                else:
                    self._bound.discard(key)

    def bound(self) -> set[str]:
        """Keys bound on the bridge now (for status pages and tests)."""
        return set(self._bound)
