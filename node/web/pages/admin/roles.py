"""Staff roles: who has which, granting and taking away."""

from __future__ import annotations

from aiohttp import web

from node.admin import roles
from node.admin.roles import Actor
from node.errors import ExchangeError
from node.exchange import Exchange
from node.web.api import EXCHANGE
from node.web.forms import GENERAL, Form
from node.web.i18n import N_, FormError
from node.web.pages.admin.common import _context, _flash_result, _form, _svc, add_error, route
from node.web.pages.common import redirect
from node.web.session import render, translator_of


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
