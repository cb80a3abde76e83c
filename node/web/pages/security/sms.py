"""SMS codes: a number to verify, the code that switches them on, switching them off, and the
"send me a code by SMS" button of any code field (log in included).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from node.clock import now_ms
from node.errors import ExchangeError
from node.security import audit
from node.security.service import CHANGE_2FA
from node.security.sms import mask, normalise_phone
from node.web.api import EXCHANGE
from node.web.forms import Form
from node.web.i18n import N_, FormError
from node.web.pages.common import redirect, require_member
from node.web.pages.security.common import _check_code, _form, _raw, _sec
from node.web.pages.security.overview import _changing, _overview_error
from node.web.session import render, safe_next, session_of, translator_of


async def _sms_context(request: web.Request, member_id: int, form: Form | None = None,
                       verify_form: Form | None = None) -> dict[str, Any]:
    sec = _sec(request)
    m = await sec.methods(member_id)
    phone = await sec.sms.phone(member_id)
    pending = await sec.sms.pending_phone(member_id)
    waiting = pending is not None and (phone is None or not phone["verified"] or phone["phone"] != pending)
    return {"methods": m, "form": form or Form(), "verify_form": verify_form or Form(),
            "pending": mask(pending) if waiting and pending else None, "needs_code": m.any, "sms_2fa": m.sms}


async def sms_page(request: web.Request) -> web.Response:
    member_id = require_member(request)
    return render(request, "security_sms.html", await _sms_context(request, member_id))


async def sms_start(request: web.Request) -> web.Response:
    """A number to verify: checked first (a typo burns no code), then a code of a method already on."""
    member_id = require_member(request)
    sec = _sec(request)
    _ = translator_of(request)
    form = await _form(request)
    phone = ""
    try:
        phone = normalise_phone(form.value("phone"))
    except FormError as e:
        form.add(e, _)
    if form.ok and (await sec.methods(member_id)).any:
        await _check_code(request, form, member_id, CHANGE_2FA)
    if form.ok:
        try:
            await sec.sms.start(member_id, phone, _.lang)
        except ExchangeError as e:
            form.add(e, _)
    if not form.ok:
        return render(request, "security_sms.html", await _sms_context(request, member_id, form), status=400)
    session_of(request).flash(_("We sent a code to {phone}. Enter it below to switch SMS codes on.", phone=mask(phone)),
                              "success")
    return redirect("/security/sms#verify")


async def sms_resend(request: web.Request) -> web.Response:
    member_id = require_member(request)
    sec = _sec(request)
    _ = translator_of(request)
    pending = await sec.sms.pending_phone(member_id)
    s = session_of(request)
    if pending is None:
        return redirect("/security/sms")
    try:
        await sec.sms.start(member_id, pending, _.lang)
        s.flash(_("We sent a new code to {phone}.", phone=mask(pending)), "success")
    except ExchangeError as e:
        s.flash(_.error(e), "error")
    return redirect("/security/sms#verify")


async def sms_confirm(request: web.Request) -> web.Response:
    member_id = require_member(request)
    sec = _sec(request)
    _ = translator_of(request)
    form = await _form(request)
    try:
        code = await _raw(request, "code")
        if not code:
            raise FormError("code", N_("Please enter the code from the text message"))
        phone = await sec.sms.confirm(member_id, code)
    except ExchangeError as e:
        form.add(e, _)
        return render(request, "security_sms.html", await _sms_context(request, member_id, verify_form=form), status=400)
    await audit.record(sec.store, audit.SMS_ENABLE, member_id, {"phone": mask(phone)})
    session_of(request).flash(_("SMS codes are switched on for {phone}.", phone=mask(phone)), "success")
    return redirect("/security")


async def sms_disable(request: web.Request) -> web.Response:
    member_id, form, ok = await _changing(request, CHANGE_2FA)
    if not ok:
        return await _overview_error(request, member_id, "sms_off", form)
    sec = _sec(request)
    await sec.sms.disable(member_id)
    await audit.record(sec.store, audit.SMS_DISABLE, member_id)
    session_of(request).flash(translator_of(request)("SMS codes are switched off."), "success")
    return redirect("/security")


async def _send_code(request: web.Request, member_id: int, back: str) -> web.Response:
    _ = translator_of(request)
    s = session_of(request)
    try:
        shown = await _sec(request).sms.send_auth_code(member_id, _.lang)
        s.flash(_("We sent a code to {phone}. It is valid for {n} minutes.", phone=shown,
                  n=request.app[EXCHANGE].config.sms.code_ttl_s // 60), "success")
    except ExchangeError as e:
        s.flash(_.error(e), "error")
    return redirect(back)


async def sms_send(request: web.Request) -> web.Response:
    """"Send me a code by SMS" next to any code field (a second submit button of that form)."""
    member_id = require_member(request)
    return await _send_code(request, member_id, safe_next(request.query.get("next"), "/security"))


async def login_sms(request: web.Request) -> web.Response:
    """The same for the second step of a log in (no session yet: the pending log in names the member)."""
    pending = session_of(request).data.get("pending_login")
    if not isinstance(pending, dict) or int(pending.get("until", 0)) < now_ms():
        return redirect("/login")
    return await _send_code(request, int(pending["member"]), "/login/2fa")
