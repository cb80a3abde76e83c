"""What the security pages share: the app key of the node's `Security`, the settings of the gate
and the pages, the posted form (codes kept out of it) and the check of a form's second factor.
"""

from __future__ import annotations

from aiohttp import web

from node.errors import ExchangeError
from node.security import audit
from node.security.errors import CODE_FIELD
from node.security.service import Security
from node.web.forms import Form
from node.web.i18n import N_
from node.web.session import translator_of

SECURITY = web.AppKey("security", Security)
DEVICE_COOKIE = "device"  # which accounts logged in from this browser before: see node/security/throttle.py
DEVICE_DAYS = 365
AUDIT_PAGE = 50
UNLOCK_KEY = "admin_unlocked_until"  # the session key the admin pages (node/web/pages/admin) use too
UNLOCK_REFRESH_MS = 60_000  # a sliding expiry is written at most once a minute
PUBLIC_FORMS = {"/signup": "signup", "/login": "login", "/login/2fa": "login_2fa", "/login/2fa/sms": "login_sms",
                "/password/forgot": "forgot", "/activation/resend": "resend"}
PUBLIC_PREFIXES = {"/password/reset/": "reset", "/withdraws/confirm/": "withdraw_confirm"}
ACTION_LABELS = {
    audit.LOGIN: N_("Logged in"), audit.LOGIN_FAILED: N_("Failed log in"), audit.LOGIN_LOCKED: N_("Log in locked"),
    audit.LOGOUT: N_("Logged out"), audit.PASSWORD_CHANGE: N_("Password changed"),
    audit.PASSWORD_RESET: N_("Password reset by e-mail"), audit.TOTP_ENABLE: N_("Authenticator app switched on"),
    audit.TOTP_DISABLE: N_("Authenticator app switched off"), audit.SMS_ENABLE: N_("SMS codes switched on"),
    audit.SMS_DISABLE: N_("SMS codes switched off"), audit.RECOVERY_CODES: N_("New recovery codes"),
    audit.RECOVERY_USED: N_("Recovery code used"), audit.OTP_FAILED: N_("Wrong two-factor code"),
    audit.OTP_LOCKED: N_("Two-factor checks locked"), audit.TWO_FA_RESET: N_("Two-factor reset by support"),
    audit.API_KEY_CREATE: N_("API key created"), audit.API_KEY_DELETE: N_("API key revoked"),
    audit.WITHDRAW_REQUEST: N_("Withdrawal requested"), audit.WITHDRAW_CONFIRM: N_("Withdrawal confirmed"),
    audit.WITHDRAW_CANCEL: N_("Withdrawal cancelled"), audit.WITHDRAW_EXPIRED: N_("Withdrawal not confirmed in time"),
    audit.ADDRESS_ADD: N_("Withdrawal address added"), audit.ADDRESS_DELETE: N_("Withdrawal address removed"),
    audit.ADMIN_UNLOCK: N_("Admin area unlocked"),
}
DETAIL_KEYS = ("currency", "amount", "address", "label", "sn", "access_key", "scopes", "action", "phone", "reason",
               "left", "via")


def security_of(app: web.Application) -> Security:
    return app[SECURITY]


def _sec(request: web.Request) -> Security:
    return request.app[SECURITY]


async def _form(request: web.Request) -> Form:
    """What the member typed, codes excepted: a page with errors never shows a code again."""
    return Form(await request.post(), secret=(CODE_FIELD, "code", "password"))


async def _raw(request: web.Request, name: str, max_len: int = 32) -> str:
    """A code field as sent (codes are kept out of `Form`); over-long input reads as empty."""
    value = (await request.post()).get(name, "")
    return value.strip() if isinstance(value, str) and len(value) <= max_len else ""


async def _check_code(request: web.Request, form: Form, member_id: int, action: str) -> bool:
    """The second factor of a form, when the member has one; the error goes next to the field."""
    sec = _sec(request)
    if not await sec.required(member_id, action):
        return True
    try:
        await sec.verify(member_id, action, await _raw(request, CODE_FIELD))
        return True
    except ExchangeError as e:
        form.add(e, translator_of(request))
        return False
