"""Placing and cancelling orders from the pages (forms, or `fetch` with JSON answers): the same
checks as the API, with per-field errors in the member's language.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from node.config import Market
from node.errors import ExchangeError, MarketHalted
from node.exchange import Exchange, OrderInput
from node.market import FOK, GTC, IOC, LIMIT, MARKET, POST_ONLY, STOP_LIMIT
from node.market.settlement import order_lock
from node.web.api import json_response
from node.web.forms import GENERAL, Form, amount, parse_amount, volume
from node.web.i18n import FormError, Translator
from node.web.pages.common import _exchange, _form, _market, path_id, redirect, require_member, wants_json
from node.web.pages.market import _market_context, _order_view
from node.web.session import render, safe_next, session_of, translator_of


async def _check_order(ex: Exchange, m: Market, member_id: int, form: Form, _: Translator) -> OrderInput | None:
    """Check the order form completely, with errors next to the fields; the core checks again."""
    side = form.value("side")
    ord_type = form.value("ord_type", "limit")
    tif = form.value("time_in_force", GTC) or GTC
    if side not in ("buy", "sell"):
        form.error("side", _("Choose buy or sell"))
    if ord_type not in (LIMIT, MARKET, STOP_LIMIT):
        form.error("ord_type", _("Choose a limit, market or stop-limit order"))
    if tif not in (GTC, POST_ONLY, IOC, FOK):
        form.error("time_in_force", _("Choose one of the offered times in force"))
    elif ord_type == MARKET and tif == POST_ONLY:
        form.error("time_in_force", _("A market order always takes from the book: it cannot be post-only"))
    lots = ticks = 0
    try:
        lots = parse_amount(form.value("volume"), m.volume_precision, "volume")
        if lots < m.min_volume:
            form.error("volume", _("The minimum amount is {n} {cur}", n=volume(m, m.min_volume), cur=m.base.symbol))
        elif m.max_volume and lots > m.max_volume:
            form.error("volume", _("The maximum amount is {n} {cur}", n=volume(m, m.max_volume), cur=m.base.symbol))
    except FormError as e:
        form.add(e, _)
    if ord_type in (LIMIT, STOP_LIMIT):
        try:
            ticks = parse_amount(form.value("price"), m.price_precision, "price")
        except FormError as e:
            form.add(e, _)
    elif form.value("price").strip():
        form.error("price", _("A market order has no price: leave it empty"))
    if ord_type == STOP_LIMIT:
        try:
            parse_amount(form.value("stop_price"), m.price_precision, "stop_price")
        except FormError as e:
            form.add(e, _)
    if not form.ok:
        return None
    o = OrderInput(m.id, side, form.value("volume").strip(),
                   form.value("price").strip() if ord_type != MARKET else None, ord_type, tif,
                   form.value("stop_price").strip() if ord_type == STOP_LIMIT else None)
    try:
        req = await ex.prepare(member_id, o)
    except ExchangeError as e:
        if "not deep enough" in e.message:
            form.error("volume", _("Not enough orders in the book for this amount"))
        elif isinstance(e, MarketHalted):
            form.error(GENERAL, _("Trading on {market} is halted: no new orders until it resumes", market=m.name))
        else:
            form.add(e, _)
        return None
    currency, need = (req.lock_currency, req.lock_amount) if ord_type == MARKET else order_lock(m, side, ticks, lots)
    cur = ex.config.currencies[currency]
    have = next((int(a["balance"]) for a in await ex.accounts_of(member_id) if a["currency"] == currency), 0)
    if need > have:
        form.error("volume", _("Insufficient balance: this order needs {need} {cur}, you have {have} {cur} available",
                               need=amount(need, cur), have=amount(have, cur), cur=cur.symbol))
        return None
    return o


async def place_order(request: web.Request) -> web.StreamResponse:
    m = _market(request)
    member_id = require_member(request)
    ex = _exchange(request)
    _ = translator_of(request)
    form = await _form(request)
    o = await _check_order(ex, m, member_id, form, _)
    order: dict[str, Any] | None = None
    if o is not None:
        try:
            order = await ex.submit_order(member_id, o)
        except ExchangeError as e:
            if "cannot lock funds" in e.message:
                form.error("volume", _("Insufficient balance for this order"))
            else:
                form.add(e, _)
    if wants_json(request):
        if order is None:
            return json_response({"ok": False, "errors": form.errors}, status=400)
        return json_response({"ok": True, "message": _("Order placed"), "order": _order_view(m, order, _)})
    if order is None:
        return render(request, "market.html", await _market_context(request, m, form), status=400)
    session_of(request).flash(_("Order placed"), "success")
    return redirect(f"/markets/{m.id}")


def _order_answer(request: web.Request, ok: bool, message: str, back: str) -> web.Response:
    """How a cancel answers: JSON for market.js (400 when refused), else a flash and back to `back`."""
    if wants_json(request):
        return json_response({"ok": ok, "message": message}, status=200 if ok else 400)
    session_of(request).flash(message, "success" if ok else "error")
    return redirect(back)


async def cancel_order(request: web.Request) -> web.StreamResponse:
    member_id = require_member(request)
    ex = _exchange(request)
    _ = translator_of(request)
    form = await _form(request)
    order_id = path_id(request)
    row = await ex.order_row(order_id)
    back = safe_next(form.value("next"), f"/markets/{row['market']}" if row else "/")
    message, ok = _("Order cancelled"), True
    if row is None or row["member_id"] != member_id:  # another member's order does not exist for you
        message, ok = _("This order does not exist"), False
    else:
        try:
            await ex.cancel_order(member_id, order_id)
        except ExchangeError as e:
            message, ok = _.error(e), False
    return _order_answer(request, ok, message, back)


async def cancel_all(request: web.Request) -> web.StreamResponse:
    m = _market(request)
    member_id = require_member(request)
    _ = translator_of(request)
    try:
        done = await _exchange(request).cancel_all(member_id, market=m.id)
        n = len(done)
        message, ok = (_("No open orders to cancel") if n == 0 else _("1 order cancelled") if n == 1
                       else _("{n} orders cancelled", n=n)), True
    except ExchangeError as e:
        message, ok = _.error(e), False
    return _order_answer(request, ok, message, f"/markets/{m.id}")
