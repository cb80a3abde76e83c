"""A list that refuses to change: the empty list engine results share for what did not happen.

Most operations rest an order and nothing else; giving each of their results four fresh empty
lists cost about as much as building the order itself. Results are read, not extended, so one
shared empty list serves them all, and this class makes a caller's accidental ``append`` fail
loudly instead of corrupting every later result. Not compiled by mypyc (a native class cannot
subclass ``list``); the engine only ever reads it.
"""

from __future__ import annotations

from typing import Any, NoReturn


class FrozenList(list[Any]):
    """An immutable list: every mutating method raises TypeError."""

    __slots__ = ()

    def _refuse(self) -> NoReturn:
        raise TypeError("the lists of an engine result are read-only")

    def append(self, *args: object) -> NoReturn:
        self._refuse()

    def extend(self, *args: object) -> NoReturn:
        self._refuse()

    def insert(self, *args: object) -> NoReturn:
        self._refuse()

    def remove(self, *args: object) -> NoReturn:
        self._refuse()

    def pop(self, *args: object) -> NoReturn:
        self._refuse()

    def clear(self) -> NoReturn:
        self._refuse()

    def sort(self, *args: object, **kwargs: object) -> NoReturn:
        self._refuse()

    def reverse(self) -> NoReturn:
        self._refuse()

    def __setitem__(self, *args: object) -> NoReturn:
        self._refuse()

    def __delitem__(self, *args: object) -> NoReturn:
        self._refuse()

    def __iadd__(self, *args: object) -> NoReturn:  # type: ignore[misc]  # refusing is the point
        self._refuse()

    def __imul__(self, *args: object) -> NoReturn:
        self._refuse()


#: The one shared empty result list.
NONE: list[Any] = FrozenList()
