"""Errors of the security module: shown next to the code field on the pages, with codes of their own
(32xx) in the API's Peatio envelope. They are FormErrors, so the pages translate them by message id
and put them next to the field they name, and InvalidParameters, so the API and CLI read them too."""

from __future__ import annotations

from typing import Any

from node.errors import FormError

CODE_FIELD = "otp_code"


class SecondFactorFailed(FormError):
    """The two-factor code is missing, wrong or already used; nothing was done."""

    code = 3201
    status = 400

    def __init__(self, msgid: str, field: str | None = CODE_FIELD, **params: Any) -> None:
        super().__init__(field, msgid, **params)


class SecondFactorLocked(SecondFactorFailed):
    """Too many wrong codes: two-factor checks are locked for a while; nothing was done."""

    code = 3202
    status = 429

    def __init__(self, msgid: str, retry_after: int, **params: Any) -> None:
        super().__init__(msgid, **params)
        self.retry_after = retry_after


class SmsFailed(FormError):
    """An SMS could not be sent (resend too soon, provider down); nothing was changed."""

    code = 3203
    status = 400

