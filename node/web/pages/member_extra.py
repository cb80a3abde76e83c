"""The member's side of identity verification, support tickets and the editable pages.

- `/kyc`: the verification state (with the reason of a rejection), the withdrawal limits it sets
  now and after verification, and the form (identity data and two documents, multipart) while one
  may be sent.
- `/support/tickets`: the member's tickets with unread markers, a form to open one, each ticket's
  conversation (reading it clears its marker), comments, close and reopen, attachments.
- `/pages/fees|terms|api`: the editable pages in the visitor's language (the fees page adds the live
  fee table of every market).

Everything is the member's own: another member's ticket or file answers 404, exactly like one that
does not exist. Texts from members are shown through autoescaping only.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from node import cms
from node.admin import uploads
from node.errors import ExchangeError
from node.exchange import Exchange
from node.fees import rates_in_force
from node.kyc import COUNTRIES, DOC_TYPES, FILES, REJECTED, UNVERIFIED
from node.money import format_units
from node.web.api import EXCHANGE
from node.web.edge import takes_files
from node.web.forms import Form, amount, fee_percent, iso, utc
from node.web.pages.admin import KYC, TICKETS, ensure_services, file_response
from node.web.pages.common import path_id, redirect, require_member
from node.web.session import render, session_of, translator_of


# -- identity verification ------------------------------------------------------------------------------
async def _kyc_context(request: web.Request, member_id: int, form: Form | None = None) -> dict[str, Any]:
    kyc = request.app[KYC]
    ex: Exchange = request.app[EXCHANGE]
    p = await kyc.profile(member_id)
    limits = []
    for x in await kyc.limits(member_id):
        cur = ex.config.currencies[x["currency"]]
        limits.append({"symbol": x["symbol"], "code": x["currency"],
                       "limit": None if x["limit"] is None else amount(x["limit"], cur),
                       "left": None if x["left"] is None else amount(x["left"], cur),
                       "next": None if x["next"] is None else amount(x["next"], cur)})
    if form is None:
        form = Form({k: str(p.get(k) or "") for k in ("full_name", "birth_date", "address", "country", "phone",
                                                       "doc_type", "doc_number")} if p["state"] == REJECTED else {})
    return {"p": p, "level": await kyc.level(member_id), "limits": limits, "form": form, "doc_types": DOC_TYPES, "countries": sorted(COUNTRIES),
            "file_kinds": FILES, "can_submit": p["state"] in (UNVERIFIED, REJECTED),
            "submitted": utc(p["submitted_at"]) if p["submitted_at"] else "",
            "max_mb": uploads.MAX_BYTES // (1024 * 1024)}


async def kyc_page(request: web.Request) -> web.Response:
    member_id = require_member(request)
    return render(request, "kyc.html", await _kyc_context(request, member_id))


@takes_files
async def kyc_submit(request: web.Request) -> web.Response:
    member_id = require_member(request)
    _ = translator_of(request)
    data = await request.post()
    form = Form(data)
    files = {name: uploads.from_field(data.get(name)) for name in FILES}
    try:
        await request.app[KYC].submit(member_id, {k: v for k, v in form.data.items()}, files)
    except ExchangeError as e:
        form.add(e, _)
        return render(request, "kyc.html", await _kyc_context(request, member_id, form), status=400)
    session_of(request).flash(_("Thank you: your documents are sent and will be reviewed soon"), "success")
    return redirect("/kyc")


# -- tickets ----------------------------------------------------------------------------------------------
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


# -- editable pages ---------------------------------------------------------------------------------------------
async def cms_page(request: web.Request) -> web.Response:
    slug = request.match_info["slug"]
    if slug not in cms.SLUGS:
        raise web.HTTPNotFound()
    _ = translator_of(request)
    ex: Exchange = request.app[EXCHANGE]
    page = await cms.get(ex.store, slug, _.lang)
    fees: list[dict[str, str]] = []
    withdraw_fees: list[dict[str, str]] = []
    if slug == "fees":
        rates = await rates_in_force(ex.store, ex.config.markets)
        for mid, m in ex.config.markets.items():
            maker, taker = rates[mid]
            fees.append({"market": m.name, "id": mid, "maker": fee_percent(maker), "taker": fee_percent(taker)})
        for cur in ex.config.currencies.values():
            if cur.wallet is not None:
                withdraw_fees.append({"symbol": cur.symbol, "fee": format_units(cur.wallet.withdraw_fee, cur.precision),
                                      "min": format_units(cur.wallet.min_withdraw, cur.precision)})
    return render(request, "cms_page.html", {"page": page, "html": cms.render(page["body"]), "fees": fees,
                                             "withdraw_fees": withdraw_fees, "slugs": cms.SLUGS})


def add_routes(app: web.Application) -> None:
    ensure_services(app)
    r = app.router
    r.add_get("/kyc", kyc_page)
    r.add_post("/kyc", kyc_submit)
    r.add_get("/support/tickets", tickets_page)
    r.add_post("/support/tickets", ticket_open)
    r.add_get("/support/tickets/{id}", ticket_page)
    r.add_post("/support/tickets/{id}/comments", ticket_comment)
    r.add_post("/support/tickets/{id}/close", ticket_close)
    r.add_post("/support/tickets/{id}/reopen", ticket_reopen)
    r.add_get("/support/files/{id}", ticket_file)
    r.add_get("/pages/{slug}", cms_page)


__all__ = ["add_routes"]
