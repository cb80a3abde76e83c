"""Price levels of the engine's book.

A level is a ``Level``: the head and tail of an intrusive doubly linked list threaded through the
resting orders themselves (``Order.prev`` / ``Order.next``, oldest first), and the level's total
remaining volume, so depth costs nothing per order. Compared with a ``deque`` per level this saves
the queue object (760 bytes, however few orders the level holds), makes a cancel an O(1) unlink
that leaves no dead entry to skip or compact, and lets mypyc compile every step of matching to
plain struct field accesses.
"""

from __future__ import annotations

from .order import Order


class Level:
    """One price level: resting orders in time priority (linked through them) and their total.

    A level exists only while it holds an order, so ``head`` and ``tail`` are never None.
    """

    __slots__ = ("head", "tail", "total")

    head: Order
    tail: Order
    total: int

    def __init__(self, order: Order, total: int) -> None:
        order.prev = None
        order.next = None
        self.head = order
        self.tail = order
        self.total = total

    def __iter__(self) -> LevelIter:
        return LevelIter(self.head)


class LevelIter:
    """Iterator over a level's orders, oldest first (a class: mypyc compiles no generators fast)."""

    __slots__ = ("_next",)

    _next: Order | None

    def __init__(self, head: Order | None) -> None:
        self._next = head

    def __iter__(self) -> LevelIter:
        return self

    def __next__(self) -> Order:
        o = self._next
        if o is None:
            raise StopIteration
        self._next = o.next
        return o
