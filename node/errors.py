"""Typed errors that every edge (API, pages, CLI) turns into the same answer.

Each error carries Peatio's numeric code and an HTTP status so the web layer never has to guess.
Codes below 3000 are Peatio's own; 3000 and above are ours, for cases Peatio had no answer for.
Form errors live here too, not in the web layer, so that services raise them without importing it;
their texts are message ids, translated when a page shows them (node/i18n.py).
"""

from __future__ import annotations

from typing import Any


class ExchangeError(Exception):
    """Base of every error a client may see; the message is safe to show."""

    code = 1000
    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, object]:
        return {"error": {"code": self.code, "message": self.message}}


class InvalidParameter(ExchangeError):
    code = 1001
    status = 400

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def N_(msgid: str) -> str:  # noqa: N802 - gettext's conventional name
    """Mark a text for translation without translating it now (there is no request here)."""
    return msgid


class FormError(InvalidParameter):
    """A form field is wrong: `msgid` with `params` is translated when the page is rendered.

    It is an InvalidParameter, so code outside the pages (the API, the CLI) still gets a clear
    English message and the field name.
    """

    def __init__(self, field: str | None, msgid: str, **params: Any) -> None:
        super().__init__(msgid.format(**params) if params else msgid, field)
        self.msgid = msgid
        self.params = params


class FormErrors(InvalidParameter):
    """Several fields of one form are wrong: every message is shown, next to its own field."""

    def __init__(self, errors: list[FormError]) -> None:
        super().__init__("; ".join(e.message for e in errors), errors[0].field if errors else None)
        self.errors = errors


class AuthorizationFailed(ExchangeError):
    code = 2001
    status = 401


class TonceReused(ExchangeError):
    """A signed request's tonce was used before by the same key: a replay, refused with no effect."""

    code = 2006
    status = 401

    def __init__(self, access_key: str, tonce: int) -> None:
        super().__init__(f"The tonce {tonce} has already been used by access key {access_key}.")


class CreateOrderFailed(ExchangeError):
    code = 2002
    status = 400


class CancelOrderFailed(ExchangeError):
    code = 2003
    status = 400


class OrderNotFound(ExchangeError):
    code = 2004
    status = 404


class DepositNotFound(ExchangeError):
    code = 2012
    status = 404


class MemberNotFound(ExchangeError):
    code = 3004
    status = 404


class MarketHalted(ExchangeError):
    code = 3002
    status = 400


class Busy(ExchangeError):
    """A mailbox is full: the caller should retry later; nothing was accepted."""

    code = 3003
    status = 503


class Timeout(ExchangeError):
    """No answer in time; the request may or may not have been processed (use client_id to retry)."""

    code = 3005
    status = 504


class Unavailable(ExchangeError):
    """A part of the node (store, bus, actor) is down or restarting; nothing was accepted."""

    code = 3006
    status = 503


class SecretUnreadable(ExchangeError):
    """An access key's secret does not open with this node's server key (it was sealed under
    another one): an operator's problem, not the client's, so a 5xx that names it, never a 500."""

    code = 3009
    status = 503

    def __init__(self, access_key: str) -> None:
        super().__init__(f"The access key {access_key} cannot be checked: its secret was sealed with another server "
                         "key than this node's. The operator has been told; nothing was done.")
        self.access_key = access_key


class StoreConflict(Exception):
    """A guarded write found the store not as expected (`Tx.expect`): the whole transaction was
    rolled back. Internal: actors react to it (a fenced market stops, a lost claim rebuilds)."""


class Fenced(StoreConflict):
    """This actor's lease epoch (its market's or account shard's) is no longer the current one:
    another node owns the market or the shard."""


class ShardMoved(StoreConflict):
    """A market batch that settles some members' accounts inline found one of their shards no longer
    held here at the epoch it read: the batch rolled back, and the market rebuilds from the store."""


class ClaimLost(StoreConflict):
    """An order the batch took in was no longer `pending` in the store: another copy was matched first."""


class RateLimited(ExchangeError):
    code = 3001
    status = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after
