"""The protocol every order book here satisfies: the engine's and the naive reference book.

``Book`` is the read-and-cancel surface shared by the engine (node/market/engine.py) and the naive
reference book (node/market/reference.py), so tests and bench/bench_engine.py can compare the two
through one interface. Submitting is not part of it: each book takes orders in its own form (the
engine an ``Order``, the reference plain arguments), as its own callers build them. This module is
not compiled (a mypyc-compiled Protocol is no longer one at run time).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class Book(Protocol):
    """What any order book of one market answers: best prices, depth, size, and cancels."""

    def best_bid(self) -> int | None:
        """Highest resting buy price, None when no bid rests."""
        ...

    def best_ask(self) -> int | None:
        """Lowest resting sell price, None when no ask rests."""
        ...

    def level_volume(self, side: str, price: int) -> int:
        """Aggregated remaining volume resting at one price of one side (0 when empty)."""
        ...

    def depth(self, limit: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """(asks, bids), each best-first, as aggregated (price, volume), at most ``limit`` levels."""
        ...

    def cancel(self, order_id: int, member_id: int | None = None) -> object:
        """Remove a resting order (raises the book's own error when it is not resting)."""
        ...

    def __len__(self) -> int:
        """Number of orders the book holds (resting, plus waiting stops where there are any)."""
        ...
