"""Interpreter settings for a node process (and its benchmarks), kept in one place.

- GC: a node holds large, long-lived graphs (order books, caches) and makes many short-lived tuples
  per batch; with the default thresholds the cyclic collector keeps rescanning the long-lived part.
  Fewer young collections cut the market actor's batch cost by about a third (bench/bench_actor.py).
  The trades and rows a batch makes hold no reference cycles, so little is left to the collector;
  a book's resting orders do (neighbours link both ways), and a book dropped later is freed by it.
- GIL switch interval: SQLite answers from its connection thread; with Python's default 5 ms
  interval each answer can wait that long behind a busy event loop.
"""

from __future__ import annotations

import gc
import sys


def tune_runtime() -> None:
    gc.set_threshold(50_000, 20, 100)
    sys.setswitchinterval(1e-4)


def freeze_startup_objects() -> None:
    """Move what start-up made (modules, config, the rebuilt books) out of the collector's sight."""
    gc.collect()
    gc.freeze()


def thaw_startup_objects() -> None:
    """Give what `freeze_startup_objects` froze back to the collector: a book dropped later (its
    market moved away, stopped or rebuilt) is a web of reference cycles (resting orders link to
    their neighbours both ways) that only the collector frees, and it never looks at frozen objects.
    Its next full collection rescans them once; dropping a book is rare."""
    if gc.get_freeze_count():
        gc.unfreeze()
