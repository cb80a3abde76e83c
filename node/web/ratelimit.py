"""Rate limits of API v2: per access key for signed requests, per client IP for the others.

A sliding-window counter (the weighted sum of the current and the previous fixed window), so a
client cannot double its allowance by bursting at a window boundary, yet each check is O(1): one
dict lookup and a few arithmetic operations, no per-request timestamps kept.

The counters live in memory, per node: they reset when the node restarts, and a cluster of N nodes
behind a load balancer lets a client through up to N times the configured numbers. That is the
trade-off chosen on purpose: a limit is a guard against runaway bots and floods, not an accounting
record, and a shared counter in the store would cost a write on every public request.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from node.errors import RateLimited

__all__ = ["RateLimiter", "SlidingWindow"]


@dataclass(slots=True)
class _Bucket:
    window: int  # index of the current fixed window (time // length)
    current: int  # requests counted in it
    previous: int  # requests counted in the window before it


class SlidingWindow:
    """At most `limit` hits per `window` seconds per key (approximated by two fixed windows).

    `limit = 0` disables the check. Buckets of keys unseen for two windows are swept out once per
    window, which is amortised O(1) per hit (every swept bucket was created by a hit).
    """

    def __init__(self, limit: int, window: float, what: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = float(window)
        self.what = what
        self.clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._swept = 0

    def __len__(self) -> int:
        return len(self._buckets)

    def hit(self, key: str) -> None:
        """Count one request of `key`, or raise RateLimited (nothing counted) when over the limit."""
        if self.limit <= 0:
            return
        now = self.clock()
        idx = int(now // self.window)
        if idx > self._swept + 1:
            self._sweep(idx)
        b = self._buckets.get(key)
        if b is None:
            b = self._buckets[key] = _Bucket(idx, 0, 0)
        elif b.window != idx:
            b.previous = b.current if b.window == idx - 1 else 0
            b.current = 0
            b.window = idx
        elapsed = now / self.window - idx  # fraction of the current window gone by, in [0, 1)
        estimate = b.previous * (1.0 - elapsed) + b.current
        if estimate + 1 > self.limit:
            raise RateLimited(
                f"Too many requests: at most {self.limit} {self.what} per {self.window:g} s; retry later.",
                self._retry_after(b, elapsed),
            )
        b.current += 1

    def _retry_after(self, b: _Bucket, elapsed: float) -> int:
        """Whole seconds until one more request fits (at least 1), for the Retry-After header.

        The estimate at a fraction t of the current window is previous × (1 − t) + current; solve
        for the first t where it leaves room for one more, in this window or else in the next one
        (where today's count becomes the fading "previous").
        """
        room = self.limit - 1 - b.current
        if room >= 0:  # this window still has room once enough of the previous one has faded
            wait = max(0.0, 1.0 - room / b.previous - elapsed) if b.previous else 0.0
        else:
            wait = (1.0 - elapsed) + max(0.0, 1.0 - (self.limit - 1) / b.current)
        return max(1, math.ceil(wait * self.window))

    def _sweep(self, idx: int) -> None:
        self._swept = idx
        stale = [k for k, b in self._buckets.items() if b.window < idx - 1]
        for k in stale:
            del self._buckets[k]


class RateLimiter:
    """The two limits of the API, built from the `[api]` table of cluster.toml."""

    def __init__(self, signed_limit: int, signed_window: float, public_limit: int, public_window: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.signed = SlidingWindow(signed_limit, signed_window, "signed requests per access key", clock)
        self.public = SlidingWindow(public_limit, public_window, "requests per IP address", clock)

    def hit_key(self, access_key: str) -> None:
        self.signed.hit(access_key)

    def hit_ip(self, ip: str | None) -> None:
        self.public.hit(ip or "?")
