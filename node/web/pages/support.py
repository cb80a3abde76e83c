"""The member's support tickets (`/support/tickets`): the list with unread markers, a form to open
one, each ticket's conversation (reading it clears its marker), comments, close and reopen,
attachments. Another member's ticket or file answers 404, exactly like one that does not exist.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from node.admin import uploads
from node.errors import ExchangeError
from node.web.edge import takes_files
from node.web.forms import Form, iso, utc
from node.web.pages.admin import TICKETS, file_response
from node.web.pages.common import path_id, redirect, require_member
from node.web.session import render, session_of, translator_of


async def _tickets_context(request: web.Request, member_id: int, form: Form | None = None) -> dict[str, Any]:
    rows = await request.app[TICKETS].of_member(member_id)
    return {"tickets": [{**t, "time": utc(int(t["updated_at"])), "at": iso(int(t["updated_at"]))} for t in rows],
            "form": form or Form(), "max_mb": uploads.MAX_BYTES // (1024 * 1024)}


async def tickets_page(request: web.Request) -> web.Response:
    member_id = require_member(request)
    return render(request, "tickets.html", await _tickets_context(request, member_id))


@takes_files
async def ticket_open(request: web.Request) -> web.Response:
    member_id = require_member(request)
    _ = translator_of(request)
    data = await request.post()
    form = Form(data)
    try:
        tid = await request.app[TICKETS].open(member_id, form.value("title"), form.value("body"),
                                              uploads.from_field(data.get("attachment")))
    except ExchangeError as e:
        form.add(e, _)
        return render(request, "tickets.html", await _tickets_context(request, member_id, form), status=400)
    session_of(request).flash(_("Your ticket is open; support will answer here and by e-mail"), "success")
    return redirect(f"/support/tickets/{tid}")


async def _ticket_context(request: web.Request, member_id: int, tid: int, form: Form | None = None) -> dict[str, Any]:
    tickets = request.app[TICKETS]
    try:
        t = await tickets.ticket(tid, member_id)
    except ExchangeError:
        raise web.HTTPNotFound() from None
    comments = await tickets.comments(tid)
    await tickets.mark_seen(tid, staff=False)
    return {"t": t, "comments": [{**c, "time": utc(int(c["created_at"])), "at": iso(int(c["created_at"]))}
                                 for c in comments], "form": form or Form(),
            "max_mb": uploads.MAX_BYTES // (1024 * 1024)}


async def ticket_page(request: web.Request) -> web.Response:
    member_id = require_member(request)
    return render(request, "ticket.html", await _ticket_context(request, member_id, path_id(request)))


@takes_files
async def ticket_comment(request: web.Request) -> web.Response:
    member_id = require_member(request)
    _ = translator_of(request)
    tid = path_id(request)
    data = await request.post()
    form = Form(data)
    tickets = request.app[TICKETS]
    try:
        await tickets.ticket(tid, member_id)
    except ExchangeError:
        raise web.HTTPNotFound() from None
    try:
        await tickets.comment(tid, member_id, False, form.value("body"), uploads.from_field(data.get("attachment")))
    except ExchangeError as e:
        form.add(e, _)
        return render(request, "ticket.html", await _ticket_context(request, member_id, tid, form), status=400)
    session_of(request).flash(_("Your message is sent"), "success")
    return redirect(f"/support/tickets/{tid}")


async def _ticket_state(request: web.Request, state: str) -> web.Response:
    member_id = require_member(request)
    _ = translator_of(request)
    tid = path_id(request)
    try:
        await request.app[TICKETS].set_state(tid, state, member_id)
    except ExchangeError:
        raise web.HTTPNotFound() from None
    session_of(request).flash(_("The ticket is closed") if state == "closed" else _("The ticket is open again"), "success")
    return redirect(f"/support/tickets/{tid}")


async def ticket_close(request: web.Request) -> web.Response:
    return await _ticket_state(request, "closed")


async def ticket_reopen(request: web.Request) -> web.Response:
    return await _ticket_state(request, "open")


async def ticket_file(request: web.Request) -> web.Response:
    member_id = require_member(request)
    got = await request.app[TICKETS].attachment(path_id(request), member_id)
    if got is None:
        raise web.HTTPNotFound()
    return file_response(*got)
