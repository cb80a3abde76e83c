"""The authenticator app (TOTP): set-up with a QR code, switching it on with a first code, off, and
new recovery codes (shown once, in the answer itself).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from node.security import audit
from node.security.service import CHANGE_2FA
from node.security.totp import Check, provisioning_uri
from node.web.api import EXCHANGE
from node.web.forms import GENERAL, Form, qr_data_uri
from node.web.pages.common import redirect, require_member
from node.web.pages.security.common import _check_code, _form, _raw, _sec
from node.web.pages.security.overview import _changing, _overview_error
from node.web.session import render, session_of, translator_of


async def _totp_context(request: web.Request, member_id: int, form: Form | None = None) -> dict[str, Any]:
    sec = _sec(request)
    secret = await sec.totp.pending_secret(member_id)
    email = session_of(request).email
    uri = provisioning_uri(secret, email, request.app[EXCHANGE].config.name)
    m = await sec.methods(member_id)
    return {"qr": qr_data_uri(uri), "secret": " ".join(secret[i:i + 4] for i in range(0, len(secret), 4)),
            "uri": uri, "form": form or Form(), "needs_code": m.any, "sms_2fa": m.sms}


async def totp_page(request: web.Request) -> web.Response:
    member_id = require_member(request)
    if await _sec(request).totp.enabled(member_id):
        return redirect("/security")
    return render(request, "security_totp.html", await _totp_context(request, member_id))


async def totp_restart(request: web.Request) -> web.Response:
    member_id = require_member(request)
    sec = _sec(request)
    if not await sec.totp.enabled(member_id):
        await sec.totp.pending_secret(member_id, restart=True)
    return redirect("/security/totp")


async def totp_activate(request: web.Request) -> web.Response:
    """Switch the authenticator on with its first code (and, if SMS is on, an SMS code: a change)."""
    member_id = require_member(request)
    sec = _sec(request)
    _ = translator_of(request)
    form = await _form(request)
    if await sec.totp.enabled(member_id):
        return redirect("/security")
    code = await _raw(request, "code")
    if not code:
        form.error("code", _("Please enter the code your app shows"))
    elif (await sec.methods(member_id)).any:
        await _check_code(request, form, member_id, CHANGE_2FA)
    if form.ok:
        result = await sec.totp.check(member_id, code, pending=True)
        if result is not Check.OK:
            form.error("code", _("This code is not right. Check that the time of your phone is set automatically, "
                                 "and enter the code your app shows now."))
    if not form.ok:
        return render(request, "security_totp.html", await _totp_context(request, member_id, form), status=400)
    codes = await sec.totp.activate(member_id)
    await audit.record(sec.store, audit.TOTP_ENABLE, member_id)
    return _recovery_page(request, codes, first=True)


def _recovery_page(request: web.Request, codes: list[str], first: bool) -> web.Response:
    """The only time recovery codes are shown: in the answer itself, never stored, never cached."""
    return render(request, "security_recovery.html", {"codes": codes, "first": first})


async def totp_disable(request: web.Request) -> web.Response:
    member_id, form, ok = await _changing(request, CHANGE_2FA)
    if not ok:
        return await _overview_error(request, member_id, "totp_off", form)
    sec = _sec(request)
    await sec.totp.disable(member_id)
    await audit.record(sec.store, audit.TOTP_DISABLE, member_id)
    session_of(request).flash(translator_of(request)("The authenticator app is switched off."), "success")
    return redirect("/security")


async def recovery_new(request: web.Request) -> web.Response:
    member_id, form, ok = await _changing(request, CHANGE_2FA)
    sec = _sec(request)
    if ok and not await sec.totp.enabled(member_id):
        form.error(GENERAL, translator_of(request)("Recovery codes come with the authenticator app: switch it on first."))
        ok = False
    if not ok:
        return await _overview_error(request, member_id, "recovery", form)
    codes = await sec.totp.new_recovery_codes(member_id)
    await audit.record(sec.store, audit.RECOVERY_CODES, member_id)
    return _recovery_page(request, codes, first=False)
