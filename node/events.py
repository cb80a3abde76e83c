"""In-process event bus: what actors publish after their commit, for hubs and aggregators.

Publishing never waits: subscribers are plain callbacks that must only enqueue, so a slow
websocket client can never slow matching. A cluster bridge (RabbitMQ topic exchange) subscribes
here like any other consumer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

Event = dict[str, Any]
Subscriber = Callable[[str, Event], None]


class EventBus:
    def __init__(self) -> None:
        self._subs: list[Subscriber] = []

    def subscribe(self, fn: Subscriber) -> Callable[[], None]:
        self._subs.append(fn)

        def unsubscribe() -> None:
            if fn in self._subs:
                self._subs.remove(fn)

        return unsubscribe

    def publish(self, topic: str, event: Event) -> None:
        """topic is like `market.btcusd.trade`, `member.42.order`, `member.42.account`."""
        for fn in list(self._subs):
            try:
                fn(topic, event)
            except Exception:  # a broken subscriber must not break the publisher
                log.exception("event subscriber failed on %s", topic)
