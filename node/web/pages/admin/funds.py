"""Deposits and withdrawals for the staff: the withdrawal queue (approve, reject, process), bank
deposits confirmed by hand, wallet alerts, withdrawal holds, and the reconciliation of the coin
wallets against the books.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from node.admin.roles import Actor
from node.admin.service import Admin
from node.errors import ExchangeError
from node.exchange import Exchange
from node.web.api import EXCHANGE
from node.web.forms import Form, amount
from node.web.i18n import N_, FormError
from node.web.pages.admin.common import _back, _context, _flash_result, _form, _svc, add_error, route
from node.web.pages.common import path_id, redirect
from node.web.session import render, translator_of


async def _funds_page(request: web.Request, actor: Actor, bank_form: Form | None = None, status: int = 200) -> web.StreamResponse:
    ex: Exchange = request.app[EXCHANGE]
    svc = _svc(request)
    banks = [c for c in ex.config.currencies.values() if c.wallet is not None and c.wallet.channel == "bank"]
    return render(request, "admin/funds.html", await _context(
        request, actor, "funds", queue=await svc.withdraw_queue(), pending=await svc.pending_deposits(),
        alerts=await ex.funds.alerts(), hot=await ex.funds.hot_wallets(), banks=banks, holds=await svc.freezes(),
        recent_deposits=await svc.recent_deposits(20), recent_withdraws=await svc.recent_withdraws(20),
        bank_form=bank_form or Form({"currency": banks[0].code if banks else ""})), status=status)


@route("GET", "/admin/funds", "funds")
async def funds_page(request: web.Request, actor: Actor) -> web.StreamResponse:
    return await _funds_page(request, actor)


async def _withdraw_action(request: web.Request, work: Callable[[Admin, int, Form], Awaitable[str]]) -> web.StreamResponse:
    _ = translator_of(request)
    wid = path_id(request)
    form = await _form(request)
    try:
        _flash_result(request, True, await work(_svc(request), wid, form))
    except ExchangeError as e:
        _flash_result(request, False, _.error(e))
    return redirect(_back(form, "/admin/funds"))


@route("POST", "/admin/withdraws/{id}/approve", "funds")
async def withdraw_approve(request: web.Request, actor: Actor) -> web.StreamResponse:
    _ = translator_of(request)

    async def work(svc: Admin, wid: int, form: Form) -> str:
        w = await svc.approve_withdraw(actor, wid)
        return _("Withdrawal {sn} is approved", sn=w["sn"])

    return await _withdraw_action(request, work)


@route("POST", "/admin/withdraws/{id}/reject", "funds")
async def withdraw_reject(request: web.Request, actor: Actor) -> web.StreamResponse:
    _ = translator_of(request)

    async def work(svc: Admin, wid: int, form: Form) -> str:
        w = await svc.reject_withdraw(actor, wid, form.value("reason"))
        return _("Withdrawal {sn} is rejected; the funds are back with the member", sn=w["sn"])

    return await _withdraw_action(request, work)


@route("POST", "/admin/withdraws/{id}/process", "funds")
async def withdraw_process(request: web.Request, actor: Actor) -> web.StreamResponse:
    _ = translator_of(request)

    async def work(svc: Admin, wid: int, form: Form) -> str:
        w = await svc.process_withdraw(actor, wid, form.value("bank_ref"))
        return _("Withdrawal {sn} is {state}", sn=w["sn"], state=_(str(w["state"])))

    return await _withdraw_action(request, work)


@route("POST", "/admin/deposits/bank", "funds")
async def bank_deposit(request: web.Request, actor: Actor) -> web.StreamResponse:
    _ = translator_of(request)
    form = await _form(request)
    ex: Exchange = request.app[EXCHANGE]
    try:
        currency = form.value("currency")
        cur = ex.config.currencies.get(currency)
        if cur is None:
            raise FormError("currency", N_("Choose a currency"))
        for name in ("reference", "amount", "bank_ref"):
            form.text(name, 100, required=True)
        d = await _svc(request).confirm_bank_deposit(actor, currency, form.value("reference"), form.value("amount"),
                                                     form.value("bank_ref"))
    except ExchangeError as e:
        add_error(form, e, _, ("currency", "reference", "amount", "bank_ref"))
        return await _funds_page(request, actor, form, status=400)
    _flash_result(request, True, _("Deposit #{id} of {amount} {cur} is credited", id=d["id"],
                                   amount=amount(int(d["amount"]), cur), cur=cur.symbol))
    return redirect("/admin/funds")


@route("POST", "/admin/alerts/{id}/resolve", "funds")
async def alert_resolve(request: web.Request, actor: Actor) -> web.StreamResponse:
    _ = translator_of(request)

    async def work(svc: Admin, aid: int, form: Form) -> str:
        await svc.resolve_alert(actor, aid, form.value("resolution"))
        return _("The alert is resolved")

    return await _withdraw_action(request, work)


@route("POST", "/admin/holds/{id}/release", "funds")
async def hold_release(request: web.Request, actor: Actor) -> web.StreamResponse:
    _ = translator_of(request)

    async def work(svc: Admin, hid: int, form: Form) -> str:
        await svc.release_freeze(actor, hid, form.value("resolution"))
        return _("The member may withdraw again")

    return await _withdraw_action(request, work)


@route("GET", "/admin/reconcile", "funds")
async def reconcile_page(request: web.Request, actor: Actor) -> web.StreamResponse:
    """Per coin currency: the daemon's balance and the cold wallets against the books, line by line."""
    ex: Exchange = request.app[EXCHANGE]
    reports, failures = [], []
    for code, cur in ex.config.currencies.items():
        if cur.wallet is None or cur.wallet.channel == "bank":
            continue
        try:
            reports.append(await ex.funds.reconciliation(code))
        except ExchangeError as e:
            failures.append((cur.symbol, e.message))
    return render(request, "admin/reconcile.html", await _context(request, actor, "funds", reports=reports,
                                                                  failures=failures))
