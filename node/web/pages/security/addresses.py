"""The withdrawal address book (adding asks for the second factor; a new address waits its hold)
and the mailed link that confirms or cancels one withdrawal.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from node.clock import now_ms
from node.errors import ExchangeError
from node.money import format_units
from node.security.service import ADDRESS_ADD
from node.web.api import EXCHANGE
from node.web.forms import Form, utc
from node.web.pages.common import path_id, redirect, require_member
from node.web.pages.security.common import _check_code, _form, _sec
from node.web.session import render, session_of, translator_of


async def _addresses_context(request: web.Request, member_id: int, form: Form | None = None) -> dict[str, Any]:
    sec = _sec(request)
    ex = request.app[EXCHANGE]
    rows = await sec.addresses.list(member_id)
    return {
        "addresses": [{"id": int(a["id"]), "currency": a["currency"].upper(), "address": a["address"],
                       "label": a["label"], "added": utc(int(a["created_at"])), "usable": a["usable"],
                       "usable_at": utc(int(a["usable_at"]))} for a in rows],
        "currencies": [(c.code, c.symbol) for c in ex.config.currencies.values() if c.wallet is not None],
        "form": form or Form(),
        "needs_code": await sec.required(member_id, ADDRESS_ADD),
        "hold_hours": sec.conf.withdraw_hold_hours,
        "sms_2fa": (await sec.methods(member_id)).sms,
    }


async def addresses_page(request: web.Request) -> web.Response:
    member_id = require_member(request)
    return render(request, "security_addresses.html", await _addresses_context(request, member_id))


async def address_add(request: web.Request) -> web.Response:
    member_id = require_member(request)
    sec = _sec(request)
    _ = translator_of(request)
    form = await _form(request)
    try:
        await sec.addresses.check_new(member_id, form.value("currency"), form.value("address"), form.value("label"))
    except ExchangeError as e:
        form.add(e, _)
    if form.ok:
        await _check_code(request, form, member_id, ADDRESS_ADD)
    if form.ok:
        try:
            row = await sec.addresses.add(member_id, form.value("currency"), form.value("address"), form.value("label"))
            session_of(request).flash(_("Address added. It can be used for withdrawals from {time} UTC.",
                                        time=utc(int(row["usable_at"]))), "success")
        except ExchangeError as e:
            form.add(e, _)
    if not form.ok:
        return render(request, "security_addresses.html", await _addresses_context(request, member_id, form), status=400)
    return redirect("/security/addresses")


async def address_delete(request: web.Request) -> web.Response:
    member_id = require_member(request)
    _ = translator_of(request)
    aid = path_id(request)
    ok = await _sec(request).addresses.delete(member_id, aid)
    session_of(request).flash(_("The address is removed from your address book.") if ok else
                              _("This address does not exist"), "success" if ok else "error")
    return redirect("/security/addresses")


async def withdraw_confirm(request: web.Request) -> web.Response:
    """GET shows the withdrawal; only a POST (this page's button, with its CSRF token) confirms or
    cancels it, so a mail scanner that opens links does neither."""
    sec = _sec(request)
    _ = translator_of(request)
    token = request.match_info["token"]
    try:
        if request.method == "POST":
            form = await _form(request)
            if form.value("action") == "cancel":
                w = await sec.addresses.cancel(token)
                session_of(request).flash(_("The withdrawal is cancelled and the funds are available again."), "success")
            else:
                w = await sec.addresses.confirm(token)
                session_of(request).flash(_("Thank you: the withdrawal is confirmed."), "success")
            return redirect(f"/withdraws/confirm/{token}")
        w = await sec.addresses.held(token)
    except ExchangeError as e:
        return render(request, "message.html", {"title": _("This link cannot be used"), "message": _.error(e),
                                                "kind": "error"}, status=400)
    cur = request.app[EXCHANGE].config.currencies.get(w["currency"])
    precision = cur.precision if cur else 8
    return render(request, "security_withdraw_confirm.html", {"w": {
        "sn": w["sn"], "amount": format_units(int(w["amount"]), precision), "fee": format_units(int(w["fee"]), precision),
        "currency": w["currency"].upper(), "address": w["address"], "state": w["state"], "state_label": _(w["state"]),
        "created": utc(int(w["created_at"])), "confirmed": w["confirmed_at"] is not None,
        "release": utc(int(w["release_at"])), "held": w["state"] == "submitting",
        "on_hold": int(w["release_at"]) > now_ms()}, "token": token})
