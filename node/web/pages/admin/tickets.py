"""Support tickets for the staff: the list, a ticket, answering, closing, reopening, assigning,
attachments.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from node.admin import uploads
from node.admin.roles import Actor
from node.admin.service import Admin
from node.errors import ExchangeError
from node.tickets import FILTERS
from node.web.edge import takes_files
from node.web.forms import Form
from node.web.i18n import N_
from node.web.pages.admin.common import (
    TICKETS,
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


@route("GET", "/admin/tickets", "tickets")
async def tickets_page(request: web.Request, actor: Actor) -> web.StreamResponse:
    which = request.query.get("filter", "open")
    which = which if which in FILTERS else "open"
    tickets = request.app[TICKETS]
    return render(request, "admin/tickets.html", await _context(
        request, actor, "tickets", which=which, filters=FILTERS, rows=await tickets.staff_list(which, actor.member_id),
        counts=await tickets.counts(actor.member_id)))


async def _ticket_page(request: web.Request, actor: Actor, tid: int, form: Form | None = None,
                       status: int = 200) -> web.StreamResponse:
    tickets = request.app[TICKETS]
    try:
        t = await tickets.ticket(tid, None)
    except ExchangeError:
        raise web.HTTPNotFound() from None
    await tickets.mark_seen(tid, staff=True)
    return render(request, "admin/ticket.html", await _context(
        request, actor, "tickets", t=t, comments=await tickets.comments(tid), form=form or Form()), status=status)


@route("GET", "/admin/tickets/{id}", "tickets")
async def ticket_page(request: web.Request, actor: Actor) -> web.StreamResponse:
    return await _ticket_page(request, actor, path_id(request))


@route("POST", "/admin/tickets/{id}/reply", "tickets")
@takes_files
async def ticket_reply(request: web.Request, actor: Actor) -> web.StreamResponse:
    _ = translator_of(request)
    tid = path_id(request)
    data = await request.post()
    form = Form(data)
    try:
        await _svc(request).ticket_reply(actor, tid, form.value("body"), uploads.from_field(data.get("attachment")))
    except ExchangeError as e:
        add_error(form, e, _, ("body", "attachment"))
        return await _ticket_page(request, actor, tid, form, status=400)
    _flash_result(request, True, _("Your answer is sent; the member is notified by e-mail"))
    return redirect(f"/admin/tickets/{tid}")


async def _ticket_action(request: web.Request, actor: Actor, work: Callable[[Admin, int], Awaitable[str]]) -> web.StreamResponse:
    _ = translator_of(request)
    tid = path_id(request)
    try:
        _flash_result(request, True, await work(_svc(request), tid))
    except ExchangeError as e:
        _flash_result(request, False, _.error(e))
    return redirect(f"/admin/tickets/{tid}")


async def _set_ticket_state(request: web.Request, actor: Actor, state: str, message: str) -> web.StreamResponse:
    """Close and reopen differ only in the state and the message (marked with N_, translated here)."""
    _ = translator_of(request)

    async def work(svc: Admin, tid: int) -> str:
        await svc.ticket_state(actor, tid, state)
        return _(message)

    return await _ticket_action(request, actor, work)


@route("POST", "/admin/tickets/{id}/close", "tickets")
async def ticket_close(request: web.Request, actor: Actor) -> web.StreamResponse:
    return await _set_ticket_state(request, actor, "closed", N_("The ticket is closed"))


@route("POST", "/admin/tickets/{id}/reopen", "tickets")
async def ticket_reopen(request: web.Request, actor: Actor) -> web.StreamResponse:
    return await _set_ticket_state(request, actor, "open", N_("The ticket is open again"))


@route("POST", "/admin/tickets/{id}/assign", "tickets")
async def ticket_assign(request: web.Request, actor: Actor) -> web.StreamResponse:
    _ = translator_of(request)
    to_me = (await _form(request)).value("to") != "nobody"

    async def work(svc: Admin, tid: int) -> str:
        await svc.ticket_assign(actor, tid, to_me)
        return _("The ticket is yours") if to_me else _("The ticket is unassigned")

    return await _ticket_action(request, actor, work)


@route("GET", "/admin/tickets/files/{id}", "tickets")
async def ticket_file(request: web.Request, actor: Actor) -> web.StreamResponse:
    got = await request.app[TICKETS].attachment(path_id(request), None)
    if got is None:
        raise web.HTTPNotFound()
    return file_response(*got)
