"""The one wall clock of the exchange: epoch milliseconds, the unit of every stored time.

From integer nanoseconds, not `time.time() * 1000`: a float product can be a millisecond off, and
these values are compared with stored times and with each other across modules. Services that tests
drive through time take a `clock` argument instead (seconds, as `time.time`).
"""

from __future__ import annotations

import time


def now_ms() -> int:
    return time.time_ns() // 1_000_000
