"""What every admin page shares: the services' keys (node/bootstrap.py makes them), the guard that runs before each
handler and the `route` decorator that declares a route with its permission (`ROUTES`), form
errors and flash messages, the context of every admin page (menu badges), and how uploaded files
are served.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from yarl import URL

from node.admin import audit, roles, uploads
from node.admin.roles import Actor
from node.admin.service import Admin
from node.clock import now_ms
from node.errors import ExchangeError, InvalidParameter
from node.exchange import Exchange
from node.kyc import VERIFYING, Kyc
from node.tickets import Tickets
from node.web.api import EXCHANGE
from node.web.forms import GENERAL, Form, amount, iso, utc
from node.web.i18n import N_, FormErrors, Translator
from node.web.pages.common import redirect
from node.web.pages.security import UNLOCK_KEY, require_admin_unlock
from node.web.session import error_page, safe_next, session_of, translator_of

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


def _svc(request: web.Request) -> Admin:
    return request.app[ADMIN]


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
