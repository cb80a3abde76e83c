"""Security pages and the security gate of every request (node/security does the work).

Pages (members only, except the withdrawal confirmation link):

| path | what |
|---|---|
| `/security` | two-factor status, recovery codes, withdrawal protection, recent security events |
| `/security/totp` | authenticator app set-up: QR code (otpauth URI with the issuer), first code switches it on |
| `/security/sms` | SMS set-up: number in E.164, a code sent to it switches it on |
| `/security/audit` | the member's own audit log |
| `/security/addresses` | the withdrawal address book (adding asks for the second factor; a new address waits its hold) |
| `/withdraws/confirm/{token}` | the mailed link: confirm or cancel one withdrawal |

Changing two-factor settings (switching a method on when another is on, off, new recovery codes, a
new phone) asks for a code of a method already on. Recovery codes are shown once, in the answer to
the form that made them, and never stored in clear.

`gate` is a middleware (after the sessions' one, so the CSRF check has run): it records who is
asking and from where for the audit log (`node.security.audit.Origin`), limits how often each public
form may be sent per IP, makes clients that failed too often wait before the log-in form checks a
password (per account and client, never a lock a stranger could put on a member), counts failed log ins, and writes log ins, log outs and password changes
to the audit log by looking at what the pages' handlers did, so the other pages need no changes
for any of it.

`require_admin_unlock` is the admin area's check (sliding expiry) and `unlock_admin` its unlock.

Modules: `gate`, `unlock` (the admin area's), `overview` (with the member's audit log), `totp`,
`sms`, `addresses` (with the withdrawal link), and `common`; here, the set-up and its routes.
"""

from __future__ import annotations

from aiohttp import web

from node.security.errors import SecondFactorFailed
from node.security.service import Methods, Security
from node.web.pages.security.addresses import address_add, address_delete, addresses_page, withdraw_confirm
from node.web.pages.security.common import PUBLIC_FORMS, PUBLIC_PREFIXES, SECURITY, UNLOCK_KEY, security_of
from node.web.pages.security.gate import gate
from node.web.pages.security.overview import audit_page, overview
from node.web.pages.security.sms import (
    login_sms,
    sms_confirm,
    sms_disable,
    sms_page,
    sms_resend,
    sms_send,
    sms_start,
)
from node.web.pages.security.totp import recovery_new, totp_activate, totp_disable, totp_page, totp_restart
from node.web.pages.security.unlock import require_admin_unlock, unlock_admin
from node.web.session import SECOND_FACTOR


# -- set-up --------------------------------------------------------------------------------------------------
def add_routes(app: web.Application, sec: Security) -> None:
    """The security pages of the node's `Security`, which is also the pages' second-factor hook."""
    app[SECURITY] = sec
    app[SECOND_FACTOR] = sec
    r = app.router
    r.add_get("/security", overview)
    r.add_get("/security/totp", totp_page)
    r.add_post("/security/totp", totp_activate)
    r.add_post("/security/totp/restart", totp_restart)
    r.add_post("/security/totp/disable", totp_disable)
    r.add_post("/security/recovery", recovery_new)
    r.add_get("/security/sms", sms_page)
    r.add_post("/security/sms", sms_start)
    r.add_post("/security/sms/resend", sms_resend)
    r.add_post("/security/sms/verify", sms_confirm)
    r.add_post("/security/sms/disable", sms_disable)
    r.add_post("/security/sms/send", sms_send)
    r.add_post("/login/2fa/sms", login_sms)
    r.add_get("/security/audit", audit_page)
    r.add_get("/security/addresses", addresses_page)
    r.add_post("/security/addresses", address_add)
    r.add_post("/security/addresses/{id}/delete", address_delete)
    r.add_get("/withdraws/confirm/{token}", withdraw_confirm)
    r.add_post("/withdraws/confirm/{token}", withdraw_confirm)


__all__ = ["PUBLIC_FORMS", "PUBLIC_PREFIXES", "SECURITY", "UNLOCK_KEY", "Methods", "SecondFactorFailed", "add_routes",
           "gate", "require_admin_unlock", "security_of", "unlock_admin"]
