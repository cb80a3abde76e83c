"""Markets for the staff: halt and resume trading, cancel every order, change the fees."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from node.admin import audit, dashboard
from node.admin.roles import Actor
from node.admin.service import Admin
from node.errors import ExchangeError
from node.exchange import Exchange
from node.money import format_units
from node.web.api import EXCHANGE
from node.web.forms import Form, fee_percent, price, volume
from node.web.pages.admin.common import _context, _flash_result, _form, _svc, add_error, route
from node.web.pages.common import redirect
from node.web.session import render, translator_of


async def _markets_page(request: web.Request, actor: Actor, fee_forms: dict[str, Form] | None = None,
                        status: int = 200) -> web.StreamResponse:
    ex: Exchange = request.app[EXCHANGE]
    rows = await dashboard.markets(ex)
    forms = fee_forms or {}
    for r in rows:
        mid = r["market"].id
        r["form"] = forms.get(mid) or Form({"maker_fee": format_units(r["maker_fee"], 8),
                                           "taker_fee": format_units(r["taker_fee"], 8)})
    return render(request, "admin/markets.html", await _context(
        request, actor, "markets", markets=rows, price=price, volume=volume, fee_percent=fee_percent,
        history=await audit.entries(ex.store, action="admin.market.", limit=30)), status=status)


@route("GET", "/admin/markets", "markets")
async def markets_page(request: web.Request, actor: Actor) -> web.StreamResponse:
    return await _markets_page(request, actor)


def _market_id(request: web.Request) -> str:
    mid = request.match_info["market"]
    if mid not in request.app[EXCHANGE].config.markets:
        raise web.HTTPNotFound()
    return mid


async def _market_action(request: web.Request, actor: Actor, work: Callable[[Admin, str, Form], Awaitable[str]]) -> web.StreamResponse:
    _ = translator_of(request)
    mid = _market_id(request)
    form = await _form(request)
    try:
        _flash_result(request, True, await work(_svc(request), mid, form))
    except ExchangeError as e:
        _flash_result(request, False, _.error(e))
    return redirect("/admin/markets")


async def _set_halted(request: web.Request, actor: Actor, halted: bool) -> web.StreamResponse:
    """Halt and resume are one switch; only the message differs."""
    _ = translator_of(request)

    async def work(svc: Admin, mid: str, form: Form) -> str:
        await svc.set_halted(actor, mid, halted, form.value("reason"))
        if halted:
            return _("Trading on {market} is halted", market=mid)
        return _("Trading on {market} is resumed", market=mid)

    return await _market_action(request, actor, work)


@route("POST", "/admin/markets/{market}/halt", "markets")
async def market_halt(request: web.Request, actor: Actor) -> web.StreamResponse:
    return await _set_halted(request, actor, True)


@route("POST", "/admin/markets/{market}/resume", "markets")
async def market_resume(request: web.Request, actor: Actor) -> web.StreamResponse:
    return await _set_halted(request, actor, False)


@route("POST", "/admin/markets/{market}/cancel_all", "markets")
async def market_cancel_all(request: web.Request, actor: Actor) -> web.StreamResponse:
    _ = translator_of(request)

    async def work(svc: Admin, mid: str, form: Form) -> str:
        n = await svc.cancel_all(actor, mid, form.value("reason"))
        return _("{n} orders of {market} are cancelled", n=n, market=mid)

    return await _market_action(request, actor, work)


@route("POST", "/admin/markets/{market}/fees", "markets")
async def market_fees(request: web.Request, actor: Actor) -> web.StreamResponse:
    _ = translator_of(request)
    mid = _market_id(request)
    form = await _form(request)
    try:
        await _svc(request).set_fees(actor, mid, form.value("maker_fee"), form.value("taker_fee"))
    except ExchangeError as e:
        add_error(form, e, _, ("maker_fee", "taker_fee"))
        return await _markets_page(request, actor, {mid: form}, status=400)
    _flash_result(request, True, _("The fees of {market} are changed for new trades", market=mid))
    return redirect("/admin/markets")
