"""The member's security overview (`/security`: methods, recent events, the forms that change
them) and their own audit log (`/security/audit`).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from node.security import audit
from node.security.errors import CODE_FIELD
from node.security.sms import mask
from node.web.forms import Form, utc
from node.web.forms import iso as iso_time
from node.web.i18n import Translator
from node.web.pages.common import require_member
from node.web.pages.security.common import (
    ACTION_LABELS,
    AUDIT_PAGE,
    DETAIL_KEYS,
    _check_code,
    _form,
    _raw,
    _sec,
)
from node.web.session import render, translator_of


def _event(e: dict[str, Any], _: Translator) -> dict[str, Any]:
    label = ACTION_LABELS.get(e["action"])
    detail = e["detail"] if isinstance(e["detail"], dict) else {}
    parts = [f"{k}: {detail[k]}" for k in DETAIL_KEYS if k in detail and detail[k] not in (None, "")]
    if e["actor_id"] is not None and e["member_id"] is not None and int(e["actor_id"]) != int(e["member_id"]):
        parts.insert(0, _("by {who}", who=e["actor"] or f"#{e['actor_id']}"))
    return {"seq": int(e["seq"]), "time": utc(int(e["created_at"])), "at": iso_time(int(e["created_at"])),
            "action": _(label) if label else e["action"], "ok": bool(e["ok"]), "detail": " · ".join(parts)[:300],
            "ip": e["ip"], "channel": e["channel"]}


async def _overview(request: web.Request, member_id: int, forms: dict[str, Form] | None = None) -> dict[str, Any]:
    sec = _sec(request)
    _ = translator_of(request)
    m = await sec.methods(member_id)
    events = await audit.of_member(sec.store, member_id, limit=10)
    phone = await sec.sms.phone(member_id)
    return {
        "methods": m,
        "phone_pending": mask(phone["phone"]) if phone and not phone["verified"] else None,
        "events": [_event(e, _) for e in events],
        "forms": forms or {},
        "empty": Form(),
        "hold_hours": sec.conf.withdraw_hold_hours,
        "confirmation": sec.conf.withdraw_confirmation,
        "confirm_hours": sec.conf.withdraw_confirm_hours,
        "addresses": len(await sec.addresses.list(member_id)),
        "sms_2fa": m.sms,
    }


async def overview(request: web.Request) -> web.Response:
    member_id = require_member(request)
    return render(request, "security.html", await _overview(request, member_id))


async def _changing(request: web.Request, action: str) -> tuple[int, Form, bool]:
    member_id = require_member(request)
    form = await _form(request)
    if not await _raw(request, CODE_FIELD):
        form.error(CODE_FIELD, translator_of(request)("Please enter the two-factor code"))
        return member_id, form, False
    return member_id, form, await _check_code(request, form, member_id, action)


async def _overview_error(request: web.Request, member_id: int, name: str, form: Form) -> web.Response:
    return render(request, "security.html", await _overview(request, member_id, {name: form}), status=400)


async def audit_page(request: web.Request) -> web.Response:
    member_id = require_member(request)
    _ = translator_of(request)
    try:
        before = int(request.query["before"]) if "before" in request.query else None
    except ValueError:
        before = None
    rows = await audit.of_member(_sec(request).store, member_id, limit=AUDIT_PAGE + 1, before=before)
    events = [_event(e, _) for e in rows[:AUDIT_PAGE]]
    return render(request, "security_audit.html", {
        "events": events, "older": events[-1]["seq"] if len(rows) > AUDIT_PAGE else None, "first": before is None})
