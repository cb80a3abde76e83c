"""The matching engine's typed errors; ``code`` is stable for the API layer to map."""

from __future__ import annotations

from typing import ClassVar


class EngineError(Exception):
    """Base of the engine's typed errors."""

    code: ClassVar[str] = "engine_error"


class InvalidOrder(EngineError):
    """The order's fields are inconsistent (bad volume, price, type, tif, stop or funds)."""

    code: ClassVar[str] = "invalid_order"


class DuplicateOrder(EngineError):
    """The id is already resting in the book or waiting in the stop list."""

    code: ClassVar[str] = "duplicate_order"


class OrderNotFound(EngineError):
    """No resting order or untriggered stop has this id (it may be done or cancelled)."""

    code: ClassVar[str] = "order_not_found"


class NotOwner(EngineError):
    """The order belongs to another member."""

    code: ClassVar[str] = "not_owner"


class WouldCross(EngineError):
    """A post-only order would take liquidity: it is rejected and nothing changes."""

    code: ClassVar[str] = "would_cross"
