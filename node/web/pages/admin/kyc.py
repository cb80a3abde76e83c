"""Identity reviews: the queue, a member's submission and files, approve (with a level) or reject."""

from __future__ import annotations

from aiohttp import web

from node.admin import uploads
from node.admin.roles import Actor
from node.errors import ExchangeError
from node.exchange import Exchange
from node.kyc import DOC_TYPES, FILES, STATES, VERIFYING
from node.web.api import EXCHANGE
from node.web.forms import Form
from node.web.pages.admin.common import (
    KYC,
    UPLOADS,
    _context,
    _flash_result,
    _form,
    _svc,
    add_error,
    file_response,
    route,
)
from node.web.pages.common import path_id, redirect
from node.web.session import render, translator_of


@route("GET", "/admin/kyc", "kyc")
async def kyc_queue(request: web.Request, actor: Actor) -> web.StreamResponse:
    state = request.query.get("state", VERIFYING)
    state = state if state in STATES else VERIFYING
    return render(request, "admin/kyc_queue.html", await _context(
        request, actor, "kyc", state=state, states=STATES, rows=await request.app[KYC].queue(state)))


async def _kyc_review(request: web.Request, actor: Actor, member_id: int, form: Form | None = None,
                      status: int = 200) -> web.StreamResponse:
    ex: Exchange = request.app[EXCHANGE]
    kyc = request.app[KYC]
    member = await ex.member(member_id)
    await _svc(request).log_view(actor, "kyc", "kyc.view", f"member:{member_id}")
    return render(request, "admin/kyc_review.html", await _context(
        request, actor, "kyc", member=member, p=await kyc.profile(member_id), files=await kyc.files(member_id),
        doc_types=DOC_TYPES, file_kinds=FILES, form=form or Form({"level": "1"}),
        limits=await kyc.limits(member_id)), status=status)


@route("GET", "/admin/kyc/{id}", "kyc")
async def kyc_review(request: web.Request, actor: Actor) -> web.StreamResponse:
    member_id = path_id(request)
    try:
        return await _kyc_review(request, actor, member_id)
    except ExchangeError:
        raise web.HTTPNotFound() from None


@route("GET", "/admin/kyc/files/{id}", "kyc")
async def kyc_file(request: web.Request, actor: Actor) -> web.StreamResponse:
    upload_id = path_id(request)
    got = await uploads.load(request.app[EXCHANGE].store, request.app[UPLOADS], upload_id)
    if got is None or not str(got[0]["purpose"]).startswith("kyc_"):
        raise web.HTTPNotFound()
    await _svc(request).log_view(actor, "kyc", "kyc.file", f"member:{got[0]['member_id']}")
    return file_response(got[0], got[1])


@route("POST", "/admin/kyc/{id}/approve", "kyc")
async def kyc_approve(request: web.Request, actor: Actor) -> web.StreamResponse:
    _ = translator_of(request)
    member_id = path_id(request)
    form = await _form(request)
    try:
        level = int(form.value("level", "1") or "1")
    except ValueError:
        level = 0
    try:
        await _svc(request).kyc_approve(actor, member_id, level)
    except ExchangeError as e:
        add_error(form, e, _, ("level",))
        return await _kyc_review(request, actor, member_id, form, status=400)
    _flash_result(request, True, _("The identity is verified (level {level})", level=level))
    return redirect("/admin/kyc")


@route("POST", "/admin/kyc/{id}/reject", "kyc")
async def kyc_reject(request: web.Request, actor: Actor) -> web.StreamResponse:
    _ = translator_of(request)
    member_id = path_id(request)
    form = await _form(request)
    try:
        await _svc(request).kyc_reject(actor, member_id, form.value("reason"))
    except ExchangeError as e:
        add_error(form, e, _, ("reason",))
        return await _kyc_review(request, actor, member_id, form, status=400)
    _flash_result(request, True, _("The submission is rejected; the member sees the reason"))
    return redirect("/admin/kyc")
