"""Unlocking the admin area with the second factor (or, where the configuration allows it for
staff without one, the password), and locking it again.
"""

from __future__ import annotations

import asyncio

from aiohttp import web
from argon2.exceptions import InvalidHashError, VerificationError

from node.admin import audit
from node.admin.roles import Actor
from node.clock import now_ms
from node.errors import ExchangeError
from node.web.api import EXCHANGE
from node.web.forms import Form
from node.web.i18n import N_, FormError
from node.web.pages.admin.common import add_error, route, unlocked_now
from node.web.pages.common import MEMBERS, redirect
from node.web.pages.security import UNLOCK_KEY, unlock_admin
from node.web.session import SECOND_FACTOR, render, safe_next, session_of, translator_of


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
