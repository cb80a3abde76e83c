"""The member's API keys: list, create (scopes, IP whitelist, expiry; the secret shown once), revoke."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from node.apikeys import SCOPES, ApiKeys, parse_ip_whitelist
from node.clock import now_ms
from node.errors import ExchangeError, InvalidParameter
from node.security import audit
from node.web.api import KEYS
from node.web.forms import GENERAL, Form, utc
from node.web.i18n import N_, FormError
from node.web.pages.common import _exchange, _form, redirect, require_member
from node.web.session import SECOND_FACTOR, render, session_of, translator_of

MAX_API_KEYS = 20

EXPIRY_CHOICES = {"never": 0, "30": 30, "90": 90, "365": 365}


def _keys(request: web.Request) -> ApiKeys:
    return request.app[KEYS]


async def _keys_context(request: web.Request, member_id: int, form: Form | None = None,
                        created: dict[str, str] | None = None) -> dict[str, Any]:
    _ = translator_of(request)
    now = now_ms()
    rows = await _keys(request).list(member_id)
    second = request.app.get(SECOND_FACTOR)
    return {
        "keys": [{"id": int(k["id"]), "label": k["label"], "access_key": k["access_key"],
                  "scopes": [_(s) for s in str(k["scopes"]).split()], "ips": str(k["ip_whitelist"]).split(),
                  "expires": utc(k["expires_at"])[:10] if k["expires_at"] else _("never"),
                  "expired": k["expires_at"] is not None and int(k["expires_at"]) <= now,
                  "disabled": bool(k["disabled"]), "created": utc(int(k["created_at"])),
                  "last_used": utc(k["last_used_at"]) if k["last_used_at"] else _("never")} for k in rows],
        "form": form or Form({"scopes": "history"}),
        "scopes": SCOPES,
        "expiries": [("never", _("Never")), ("30", _("In 30 days")), ("90", _("In 90 days")), ("365", _("In 1 year"))],
        "created": created,
        "needs_code": second is not None and await second.required(member_id, "api_key.create"),
    }


async def api_keys(request: web.Request) -> web.Response:
    member_id = require_member(request)
    return render(request, "api_keys.html", await _keys_context(request, member_id))


async def api_key_create(request: web.Request) -> web.Response:
    member_id = require_member(request)
    _ = translator_of(request)
    form = await _form(request, secret=("otp_code",))
    keys = _keys(request)
    label = scopes = ips = ""
    expires_at: int | None = None
    try:
        label = form.text("label", 64, required=True)
    except FormError as e:
        form.add(e, _)
    chosen = form.values("scopes")
    if not chosen:
        form.error("scopes", _("Choose at least one permission"))
    elif any(s not in SCOPES for s in chosen):
        form.error("scopes", _("Unknown permission"))
    else:
        scopes = " ".join(sorted(set(chosen)))
    try:
        raw_ips = form.text("ip_whitelist", 1000)
        ips = parse_ip_whitelist(raw_ips)
        if len(ips.split()) > 20:
            raise FormError("ip_whitelist", N_("At most {n} addresses or networks"), n=20)
    except FormError as e:
        form.add(e, _)
    except InvalidParameter as e:
        bad = e.message.split("'")[1] if "'" in e.message else ""
        form.error("ip_whitelist", _("{value} is not an IP address or network (like 203.0.113.7 or 10.0.0.0/24)",
                                     value=bad[:60]))
    days = EXPIRY_CHOICES.get(form.value("expiry", "never"))
    if days is None:
        form.error("expiry", _("Choose one of the offered expiry dates"))
    elif days:
        expires_at = now_ms() + days * 86_400_000
    if len(await keys.list(member_id)) >= MAX_API_KEYS:
        form.error(GENERAL, _("You have {n} API keys, the most allowed: revoke one first", n=MAX_API_KEYS))
    second = request.app.get(SECOND_FACTOR)
    if form.ok and second is not None and await second.required(member_id, "api_key.create"):
        code = str((await request.post()).get("otp_code", "")).strip()
        try:
            if not code or len(code) > 16:
                raise FormError("otp_code", N_("Please enter the code"))
            await second.verify(member_id, "api_key.create", code)
        except ExchangeError as e:
            form.add(e, _)
    if not form.ok:
        return render(request, "api_keys.html", await _keys_context(request, member_id, form), status=400)
    access, secret = await keys.create(member_id, label, scopes, ips, expires_at, now=now_ms())
    await audit.record(_exchange(request).store, audit.API_KEY_CREATE, member_id,
                       {"label": label, "access_key": access, "scopes": scopes, "ips": ips, "expires_at": expires_at})
    created = {"label": label, "access_key": access, "secret_key": secret}
    return render(request, "api_keys.html", await _keys_context(request, member_id, None, created))


async def api_key_delete(request: web.Request) -> web.Response:
    member_id = require_member(request)
    _ = translator_of(request)
    try:
        key_id = int(request.match_info["id"])
    except ValueError:
        raise web.HTTPNotFound() from None
    ok = 0 < key_id < 2**62 and await _keys(request).delete(member_id, key_id, now_ms())
    if ok:
        await audit.record(_exchange(request).store, audit.API_KEY_DELETE, member_id, {"id": key_id})
    session_of(request).flash(_("The API key is revoked.") if ok else _("This API key does not exist"),
                              "success" if ok else "error")
    return redirect("/api_keys")
