"""The admin area: dashboard, members, balance corrections, markets, deposit and withdrawal queues,
identity reviews, support tickets, editable pages, roles and the audit log, under `/admin`.

Every route is declared with the permission it needs (`route(...)`, listed in `ROUTES`), and one
guard runs before each handler:

1. a visitor who is not logged in is sent to the log in page (a form post is refused with 403);
2. a member without a role gets 403, and the attempt is in the audit log;
3. a staff member whose admin session is not unlocked is sent to `/admin/unlock` (a form post is
   refused with 403): the unlock asks for the second factor and lasts `[security] admin_unlock_minutes`
   after the last admin request (a sliding expiry), so an unattended browser locks itself;
4. a role without the route's permission gets 403 (audited).

The unlock is the security module's: `require_admin_unlock` (the check, with its sliding expiry) and
`unlock_admin` (the second factor, counted and audited) from node/web/pages_security.py. Staff must
have a second factor; only where `[security] admin_requires_2fa = false` does a member without one
unlock with the password, asked again.

Handlers are thin: every change goes through `node.admin.service.Admin`, which checks the permission
again and writes the audit log. Pages work without JavaScript; admin.js only draws the charts (SVG,
no outside service) and asks before dangerous buttons.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from argon2.exceptions import InvalidHashError, VerificationError
from yarl import URL

from node.admin import audit, dashboard, roles, uploads
from node.admin.roles import Actor
from node.admin.service import Admin
from node.clock import now_ms
from node.errors import ExchangeError, InvalidParameter
from node.exchange import Exchange
from node.kyc import DOC_TYPES, FILES, STATES, VERIFYING, Kyc
from node.money import format_units
from node.tickets import FILTERS, Tickets
from node.web.api import EXCHANGE, json_response
from node.web.edge import takes_files
from node.web.forms import GENERAL, Form, amount, fee_percent, iso, price, utc, volume
from node.web.i18n import N_, FormError, FormErrors, Translator
from node.web.pages import MEMBERS, path_id, redirect
from node.web.pages.security import SECURITY, UNLOCK_KEY, require_admin_unlock, unlock_admin
from node.web.session import SECOND_FACTOR, error_page, render, safe_next, session_of, translator_of

ADMIN = web.AppKey("admin", Admin)
KYC = web.AppKey("kyc", Kyc)
TICKETS = web.AppKey("tickets", Tickets)
UPLOADS = web.AppKey("uploads_root", Path)
Handler = Callable[[web.Request, Actor], Awaitable[web.StreamResponse]]
ROUTES: list[tuple[str, str, str | None]] = []
"""(method, path, permission) of every admin route; None: any staff role (the unlock itself)."""
_HANDLERS: list[tuple[str, str, Callable[[web.Request], Awaitable[web.StreamResponse]]]] = []
STATE_WORDS = (N_("unverified"), N_("verifying"), N_("verified"), N_("open"), N_("closed"), N_("pending"),
               N_("approved"), N_("admin"), N_("support"), N_("finance"))


# -- services ---------------------------------------------------------------------------------------
def ensure_services(app: web.Application) -> None:
    """KYC, tickets and the admin service, made once per app (both page modules call this)."""
    if ADMIN in app:
        return
    ex: Exchange = app[EXCHANGE]
    root = uploads.uploads_root(ex.config)
    members = app[MEMBERS]
    app[UPLOADS] = root
    app[KYC] = kyc = Kyc(ex.store, ex.config, root)
    app[TICKETS] = tickets = Tickets(ex.store, root, lambda: members.mailer, members.base_url, ex.config.name)
    app[ADMIN] = admin = Admin(ex, kyc, tickets)
    if SECURITY in app:  # the security module's two-factor reset, audited there with the admin and the reason
        sec = app[SECURITY]

        async def reset(member_id: int, actor: Actor, reason: str) -> bool:
            return await sec.reset_2fa(member_id, actor.member_id, actor.label, reason)

        admin.second_factor_reset = reset
    if ex.config.admin.withdraw_limits and ex.funds.withdraw_limit is None:
        ex.funds.withdraw_limit = kyc.check_withdraw


def _svc(request: web.Request) -> Admin:
    return request.app[ADMIN]


# -- the guard ----------------------------------------------------------------------------------------
def unlocked_now(request: web.Request) -> bool:
    """Is the admin area unlocked in this session (without sliding the expiry)?"""
    until = session_of(request).data.get(UNLOCK_KEY)
    return isinstance(until, int) and until > now_ms()


async def actor_of(request: web.Request) -> Actor | None:
    s = session_of(request)
    if s.member_id is None:
        return None
    ex: Exchange = request.app[EXCHANGE]
    granted = await roles.roles_of(ex.store, ex.config, s.member_id, s.email)
    return Actor(s.member_id, s.email, granted, request.remote or "")


def _refuse(request: web.Request, title: str, message: str) -> web.Response:
    return error_page(request, 403, title, message)


async def _guard(request: web.Request, permission: str | None, unlock: bool = True) -> Actor | web.Response:
    _ = translator_of(request)
    actor = await actor_of(request)
    if actor is None:
        if request.method == "GET":
            return redirect(str(URL("/login").with_query(next=safe_next(request.path_qs))))
        return _refuse(request, _("Not allowed"), _("Please log in first."))
    store = request.app[EXCHANGE].store
    if not actor.roles:
        await audit.record(store, actor, "denied", request.path, f"{request.method}: not staff", ok=False)
        return _refuse(request, _("Not allowed"), _("This area is for the exchange's staff only."))
    if unlock:
        try:
            require_admin_unlock(request)  # the security module's check: a GET goes to /admin/unlock (raised), a POST is refused
        except web.HTTPForbidden:
            return _refuse(request, _("The admin area is locked"), _(
                "Unlock the admin area with your second factor first; nothing was changed."))
    if permission is not None and not actor.can(permission):
        await audit.record(store, actor, "denied", request.path, f"{request.method}: needs {permission}", ok=False)
        return _refuse(request, _("Not allowed"), _("Your role does not allow this."))
    return actor


def route(method: str, path: str, permission: str | None, unlock: bool = True) -> Callable[[Handler], Handler]:
    def deco(fn: Handler) -> Handler:
        @functools.wraps(fn)
        async def handler(request: web.Request) -> web.StreamResponse:
            got = await _guard(request, permission, unlock)
            if isinstance(got, web.StreamResponse):
                return got
            return await fn(request, got)

        ROUTES.append((method, path, permission))
        _HANDLERS.append((method, path, handler))
        return fn

    return deco


async def _form(request: web.Request) -> Form:
    return Form(await request.post())


def _back(form: Form, default: str) -> str:
    return safe_next(form.value("next"), default) if form.value("next").startswith("/admin") else default


def add_error(form: Form, e: ExchangeError, _: Translator, fields: tuple[str, ...]) -> None:
    """An error of a field the page shows goes next to it; any other (about a state, a member, an id)
    at the top of the form, so no message is ever lost."""
    if isinstance(e, FormErrors):
        for one in e.errors:
            add_error(form, one, _, fields)
        return
    if isinstance(e, InvalidParameter) and e.field in fields:
        form.add(e, _)
    else:
        form.error(GENERAL, _.error(e))


def _flash_result(request: web.Request, ok: bool, message: str) -> None:
    session_of(request).flash(message, "success" if ok else "error")


async def _context(request: web.Request, actor: Actor, section: str, **extra: Any) -> dict[str, Any]:
    """What every admin page has: who is acting, what they may see, the badge counts of the menu."""
    ex: Exchange = request.app[EXCHANGE]
    tickets = request.app[TICKETS]
    counts = await tickets.counts(actor.member_id)
    waiting = {
        "kyc": int(await ex.store.fetchval("SELECT COUNT(*) FROM kyc_profiles WHERE state = ?", VERIFYING) or 0),
        "tickets": counts["unanswered"],
        "withdraws": len(await ex.funds.withdraws_waiting()) if actor.can("funds") else 0,
        "adjustments": int(await ex.store.fetchval("SELECT COUNT(*) FROM balance_adjustments WHERE state = 'pending'") or 0),
    }
    return {"actor": actor, "section": section, "can": actor.can, "waiting": waiting, "currencies": ex.config.currencies,
            "markets_conf": ex.config.markets, "amt": _amt(ex), "utc": utc, "iso": iso, "Form": Form, **extra}


def _amt(ex: Exchange) -> Callable[[Any, str], str]:
    def fmt(units: Any, code: str) -> str:
        cur = ex.config.currencies.get(code)
        if units is None:
            return "—"
        return amount(int(units), cur) if cur is not None else str(units)

    return fmt


# -- unlock --------------------------------------------------------------------------------------------
async def _code_needed(request: web.Request, member_id: int) -> bool:
    """Staff unlock with their second factor; only where `[security] admin_requires_2fa = false` may a
    member without one use the password instead."""
    second = request.app.get(SECOND_FACTOR)
    return second is None or await second.required(member_id, "admin")


@route("GET", "/admin/unlock", None, unlock=False)
async def unlock_page(request: web.Request, actor: Actor) -> web.StreamResponse:
    if unlocked_now(request):
        return redirect(safe_next(request.query.get("next"), "/admin"))
    assert actor.member_id is not None
    return render(request, "admin/unlock.html", {"form": Form({"next": request.query.get("next", "/admin")}),
                                                  "uses_code": await _code_needed(request, actor.member_id)})


@route("POST", "/admin/unlock", None, unlock=False)
async def unlock(request: web.Request, actor: Actor) -> web.StreamResponse:
    """Unlock with the second factor (the security module's `unlock_admin`: checked, counted, audited), or the
    password where the configuration allows it for staff without a second factor."""
    _ = translator_of(request)
    form = Form(await request.post(), secret=("otp_code", "password"))
    data = await request.post()
    assert actor.member_id is not None
    uses_code = await _code_needed(request, actor.member_id)
    store = request.app[EXCHANGE].store
    try:
        if uses_code:
            code = str(data.get("otp_code", "")).strip()
            if not code or len(code) > 32:
                raise FormError("otp_code", N_("Please enter the two-factor code"))
            await unlock_admin(request, code)
        else:
            password = str(data.get("password", ""))
            if not password or len(password) > 128:
                raise FormError("password", N_("Please enter your password"))
            stored = await store.fetchval("SELECT password_hash FROM members WHERE id = ?", actor.member_id)
            try:
                ok = bool(stored) and await asyncio.to_thread(request.app[MEMBERS].hasher.verify, stored, password)
            except (VerificationError, InvalidHashError):
                ok = False
            if not ok:
                await audit.record(store, actor, "unlock.password", "", "wrong password", ok=False, member_id=actor.member_id)
                raise FormError("password", N_("The password is wrong"))
            session_of(request).set(UNLOCK_KEY, now_ms() + unlock_ms(request))
            await audit.record(store, actor, "unlock.password", "", "", member_id=actor.member_id)
    except ExchangeError as e:
        add_error(form, e, _, ("otp_code", "password"))
        return render(request, "admin/unlock.html", {"form": form, "uses_code": uses_code}, status=400)
    return redirect(safe_next(form.value("next"), "/admin") if form.value("next").startswith("/admin") else "/admin")


def unlock_ms(request: web.Request) -> int:
    return int(request.app[EXCHANGE].config.security.admin_unlock_minutes) * 60_000


@route("POST", "/admin/lock", None, unlock=False)
async def lock(request: web.Request, actor: Actor) -> web.StreamResponse:
    session_of(request).pop(UNLOCK_KEY)
    return redirect("/")


# -- dashboard ---------------------------------------------------------------------------------------------
@route("GET", "/admin", "dashboard")
async def home(request: web.Request, actor: Actor) -> web.StreamResponse:
    ex: Exchange = request.app[EXCHANGE]
    return render(request, "admin/dashboard.html", await _context(
        request, actor, "dashboard", money=await dashboard.currencies(ex), members=await dashboard.members(ex),
        markets=await dashboard.markets(ex), nodes=await dashboard.nodes(ex), series=await dashboard.series(ex),
        price=price, volume=volume, fee_percent=fee_percent, now=now_ms()))


@route("GET", "/admin/stats.json", "dashboard")
async def stats(request: web.Request, actor: Actor) -> web.StreamResponse:
    return json_response(await dashboard.series(request.app[EXCHANGE]), headers={"Cache-Control": "no-store"})


# -- members ---------------------------------------------------------------------------------------------------
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
                    from node.web.app import KEYS  # app.py imports this module: looked up when serving

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


# -- markets -----------------------------------------------------------------------------------------------------
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


# -- deposits and withdrawals ------------------------------------------------------------------------------------------
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


# -- KYC ------------------------------------------------------------------------------------------------------------
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


def file_response(row: dict[str, Any], data: bytes) -> web.Response:
    """An uploaded file, never interpreted by the browser as a page: images may show inline (the
    review page displays them), everything else downloads; a sandbox CSP in case a browser disagrees."""
    inline = str(row["mime"]).startswith("image/")
    name = uploads.clean_name(str(row["name"]))
    ascii_name = name.encode("ascii", "replace").decode().replace("?", "_")
    return web.Response(body=data, content_type=str(row["mime"]), headers={
        "Content-Disposition": f'{"inline" if inline else "attachment"}; filename="{ascii_name}"',
        "Content-Security-Policy": "default-src 'none'; img-src 'self'; sandbox",
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-store, private",
    })


# -- tickets -----------------------------------------------------------------------------------------------------------
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


# -- editable pages -----------------------------------------------------------------------------------------------------
@route("GET", "/admin/pages", "cms")
async def cms_list(request: web.Request, actor: Actor) -> web.StreamResponse:
    from node import cms
    from node.web.i18n import LANGS

    store = request.app[EXCHANGE].store
    pages = [{"slug": slug, "name": name, "langs": [await cms.get(store, slug, lang) for lang in LANGS]}
             for slug, name in cms.SLUGS.items()]
    return render(request, "admin/pages.html", await _context(request, actor, "pages", pages=pages, langs=LANGS))


def _cms_key(request: web.Request) -> tuple[str, str]:
    from node import cms
    from node.web.i18n import LANGS

    slug, lang = request.match_info["slug"], request.match_info["lang"]
    if slug not in cms.SLUGS or lang not in LANGS:
        raise web.HTTPNotFound()
    return slug, lang


@route("GET", "/admin/pages/{slug}/{lang}", "cms")
async def cms_edit(request: web.Request, actor: Actor) -> web.StreamResponse:
    from node import cms

    slug, lang = _cms_key(request)
    page = await cms.get(request.app[EXCHANGE].store, slug, lang)
    return render(request, "admin/page_edit.html", await _context(
        request, actor, "pages", page=page, form=Form({"title": page["title"], "body": page["body"]}),
        preview=cms.render(page["body"])))


@route("POST", "/admin/pages/{slug}/{lang}", "cms")
async def cms_save(request: web.Request, actor: Actor) -> web.StreamResponse:
    from node import cms

    _ = translator_of(request)
    slug, lang = _cms_key(request)
    form = await _form(request)
    try:
        await _svc(request).cms_save(actor, slug, lang, form.value("title"), form.value("body"))
    except ExchangeError as e:
        add_error(form, e, _, ("title", "body"))
        page = await cms.get(request.app[EXCHANGE].store, slug, lang)
        return render(request, "admin/page_edit.html", await _context(
            request, actor, "pages", page=page, form=form, preview=cms.render(form.value("body"))), status=400)
    _flash_result(request, True, _("The page is saved"))
    return redirect(f"/admin/pages/{slug}/{lang}")


# -- roles and the audit log -------------------------------------------------------------------------------------------
async def _roles_page(request: web.Request, actor: Actor, form: Form | None = None, status: int = 200) -> web.StreamResponse:
    ex: Exchange = request.app[EXCHANGE]
    return render(request, "admin/roles.html", await _context(
        request, actor, "roles", staff=await roles.staff(ex.store, ex.config), roles_list=roles.ROLES,
        form=form or Form({"role": "support"})), status=status)


@route("GET", "/admin/roles", "roles")
async def roles_page(request: web.Request, actor: Actor) -> web.StreamResponse:
    return await _roles_page(request, actor)


@route("POST", "/admin/roles/grant", "roles")
async def role_grant(request: web.Request, actor: Actor) -> web.StreamResponse:
    _ = translator_of(request)
    form = await _form(request)
    try:
        email = form.text("email", 254, required=True)
        if not await _svc(request).grant(actor, email, form.value("role")):
            raise FormError(GENERAL, N_("This member already has this role"))
    except ExchangeError as e:
        add_error(form, e, _, ("email", "role"))
        return await _roles_page(request, actor, form, status=400)
    _flash_result(request, True, _("The role is granted"))
    return redirect("/admin/roles")


@route("POST", "/admin/roles/revoke", "roles")
async def role_revoke(request: web.Request, actor: Actor) -> web.StreamResponse:
    _ = translator_of(request)
    form = await _form(request)
    try:
        changed = await _svc(request).revoke(actor, form.value("email"), form.value("role"))
        _flash_result(request, True, _("The role is taken away") if changed else _("This member did not have this role"))
    except ExchangeError as e:
        _flash_result(request, False, _.error(e))
    return redirect("/admin/roles")


@route("GET", "/admin/audit", "audit")
async def audit_page(request: web.Request, actor: Actor) -> web.StreamResponse:
    """The exchange's whole audit log (admin actions, log ins, two-factor changes, withdrawals), newest
    first, filtered by action (a prefix when it ends in ".") and member, paged by sequence number."""
    action = request.query.get("action", "")[:64].strip()
    member = request.query.get("member", "").strip()
    member_id = int(member) if member.isdigit() and len(member) < 19 else None
    try:
        before = int(request.query.get("before", "")) or None
    except ValueError:
        before = None
    rows = await audit.entries(request.app[EXCHANGE].store, action=action or None, member_id=member_id, before=before,
                               limit=audit.PAGE + 1)
    return render(request, "admin/audit.html", await _context(
        request, actor, "audit", rows=rows[:audit.PAGE], more=len(rows) > audit.PAGE, action=action,
        member=member if member_id is not None else "", first=before is None,
        next_before=rows[audit.PAGE - 1]["seq"] if len(rows) > audit.PAGE else None))


def add_routes(app: web.Application) -> None:
    ensure_services(app)
    for method, path, handler in _HANDLERS:
        app.router.add_route(method, path, handler)


__all__ = ["ADMIN", "KYC", "ROUTES", "TICKETS", "UPLOADS", "add_routes", "ensure_services",
           "file_response"]
