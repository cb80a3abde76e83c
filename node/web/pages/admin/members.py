"""Members for the staff: search, a member's page and the actions on it (log in, API access,
two-factor reset, a balance correction proposed), and the four-eyes approval of corrections.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from node.admin.roles import Actor
from node.admin.service import Admin
from node.errors import ExchangeError
from node.kyc import DOC_TYPES
from node.web.api import EXCHANGE, KEYS
from node.web.forms import Form
from node.web.i18n import N_
from node.web.pages.admin.common import _context, _flash_result, _form, _svc, add_error, route
from node.web.pages.common import path_id, redirect
from node.web.session import render, translator_of


@route("GET", "/admin/members", "members.read")
async def members_page(request: web.Request, actor: Actor) -> web.StreamResponse:
    q = request.query.get("q", "")[:200]
    found = await _svc(request).search(q)
    return render(request, "admin/members.html", await _context(request, actor, "members", q=q, found=found))


async def _member_page(request: web.Request, actor: Actor, member_id: int, forms: dict[str, Form] | None = None,
                       status: int = 200) -> web.StreamResponse:
    svc = _svc(request)
    currency = request.query.get("currency") or None
    if currency is not None and currency not in request.app[EXCHANGE].config.currencies:
        currency = None
    try:
        page = max(1, min(int(request.query.get("page", "1")), 10_000))
    except ValueError:
        page = 1
    detail = await svc.member_detail(member_id, currency, page)
    await svc.log_view(actor, "members.read", "member.view", f"member:{member_id}")
    forms = forms or {}
    return render(request, "admin/member.html", await _context(
        request, actor, "members", d=detail, currency=currency, page=page, doc_types=DOC_TYPES,
        adjust_form=forms.get("adjust") or Form({"currency": next(iter(request.app[EXCHANGE].config.currencies))}),
        action_form=forms.get("action") or Form(), action_failed=forms.get("action_name")), status=status)


@route("GET", "/admin/members/{id}", "members.read")
async def member_page(request: web.Request, actor: Actor) -> web.StreamResponse:
    member_id = path_id(request)
    try:
        await request.app[EXCHANGE].member(member_id)
    except ExchangeError:
        raise web.HTTPNotFound() from None
    return await _member_page(request, actor, member_id)


def _member_action(path: str, permission: str, name: str) -> Callable[[Callable[[Admin, Actor, int, Form], Awaitable[str]]], None]:
    """A POST on a member's page: do it, flash what happened, back to the member (errors on the form)."""
    def deco(work: Callable[[Admin, Actor, int, Form], Awaitable[str]]) -> None:
        @route("POST", path, permission)
        async def handler(request: web.Request, actor: Actor) -> web.StreamResponse:
            member_id = path_id(request)
            _ = translator_of(request)
            form = await _form(request)
            try:
                message = await work(_svc(request), actor, member_id, form)
                if name in ("login", "api"):
                    request.app[KEYS].forget()  # this node's cached API key lookups; other nodes' expire in 1 s
            except ExchangeError as e:
                add_error(form, e, _, ("reason", "currency", "amount"))
                key = "adjust" if name == "adjust" else "action"
                return await _member_page(request, actor, member_id, {key: form, "action_name": Form({"name": name})},
                                          status=400)
            _flash_result(request, True, _(message))
            return redirect(f"/admin/members/{member_id}")

        handler.__name__ = f"member_{name}"

    return deco


@_member_action("/admin/members/{id}/login", "members.write", "login")
async def _member_login(svc: Admin, actor: Actor, member_id: int, form: Form) -> str:
    disable = form.value("disabled") == "1"
    await svc.set_login_disabled(actor, member_id, disable, form.value("reason"))
    return N_("Log in is disabled for this member") if disable else N_("Log in is enabled again")


@_member_action("/admin/members/{id}/api", "members.write", "api")
async def _member_api(svc: Admin, actor: Actor, member_id: int, form: Form) -> str:
    disable = form.value("disabled") == "1"
    await svc.set_api_disabled(actor, member_id, disable, form.value("reason"))
    return N_("API access is disabled for this member") if disable else N_("API access is enabled again")


@_member_action("/admin/members/{id}/2fa", "members.write", "2fa")
async def _member_2fa(svc: Admin, actor: Actor, member_id: int, form: Form) -> str:
    had = await svc.reset_2fa(actor, member_id, form.value("reason"))
    return N_("Two-factor authentication is reset") if had else N_("This member had no two-factor authentication")


@_member_action("/admin/members/{id}/adjust", "adjust", "adjust")
async def _member_adjust(svc: Admin, actor: Actor, member_id: int, form: Form) -> str:
    await svc.propose_adjustment(actor, member_id, form.value("currency"), form.value("amount"), form.value("reason"))
    return N_("The correction is proposed: a second admin must approve it")


# -- balance corrections -------------------------------------------------------------------------------------------
@route("GET", "/admin/adjustments", "adjust")
async def adjustments_page(request: web.Request, actor: Actor) -> web.StreamResponse:
    svc = _svc(request)
    return render(request, "admin/adjustments.html", await _context(
        request, actor, "adjustments", pending=await svc.adjustments("pending"), decided=[
            a for a in await svc.adjustments(None, limit=100) if a["state"] != "pending"][:50]))


async def _decide(request: web.Request, actor: Actor, approve: bool) -> web.StreamResponse:
    _ = translator_of(request)
    form = await _form(request)
    try:
        await _svc(request).decide_adjustment(actor, path_id(request), approve, form.value("note"))
        _flash_result(request, True, _("The correction is approved and booked") if approve else _("The correction is rejected"))
    except ExchangeError as e:
        _flash_result(request, False, _.error(e))
    return redirect("/admin/adjustments")


@route("POST", "/admin/adjustments/{id}/approve", "adjust")
async def adjustment_approve(request: web.Request, actor: Actor) -> web.StreamResponse:
    return await _decide(request, actor, True)


@route("POST", "/admin/adjustments/{id}/reject", "adjust")
async def adjustment_reject(request: web.Request, actor: Actor) -> web.StreamResponse:
    return await _decide(request, actor, False)
