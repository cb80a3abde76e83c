"""The security gate of every request (a middleware after the sessions' one, so the CSRF check
has run): who asks and from where for the audit log, limits on public forms, waits before the
log-in form checks a password for clients that failed too often, and the audit of log ins, log outs
and password changes, read from what the pages' handlers did.
"""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

from aiohttp import web

from node.clock import now_ms
from node.errors import ExchangeError
from node.security import audit
from node.security.service import Security
from node.security.throttle import (
    FORM,
    LOGIN_ACCOUNT,
    LOGIN_IP,
    LOGIN_PAIR,
    account_subject,
    device_of,
    device_token,
)
from node.web.api import EXCHANGE
from node.web.forms import GENERAL, Form
from node.web.pages.common import MEMBERS
from node.web.pages.security.common import DEVICE_COOKIE, DEVICE_DAYS, PUBLIC_FORMS, PUBLIC_PREFIXES, SECURITY
from node.web.session import (
    PAGE_CONTEXT,
    SESSION_KEY,
    Handler,
    Session,
    error_page,
    render,
    set_cookie,
    translator_of,
)


def _hhmm(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%H:%M")


@web.middleware
async def gate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Origin of the request for the audit log; form limits, log-in lockouts and log-in auditing."""
    s: Session | None = request.get(SESSION_KEY)
    api = request.path.startswith("/api/")
    if api or s is None:
        origin = api_origin(request, "api" if api else "web")
    else:
        origin = audit.Origin(ip=request.remote or "", user_agent=request.headers.get("User-Agent", "")[:256],
                              channel="web", actor_id=s.member_id, actor=s.email, lang=translator_of(request).lang)
    token = audit.set_origin(origin)
    try:
        if api or s is None or SECURITY not in request.app:
            return await handler(request)
        return await _page(request, handler, request.app[SECURITY], s)
    finally:
        audit.reset_origin(token)


_ORIGINS: dict[tuple[str, str, str], audit.Origin] = {}
_ORIGINS_MAX = 4096


def api_origin(request: web.Request, channel: str = "api") -> audit.Origin:
    """The audit origin of a request without a session (every API request): address and user agent.

    Origins are immutable, and a client sends the same address and user agent request after
    request: each is made once (a frozen dataclass costs microseconds to build, a dict look-up
    does not)."""
    key = (request.remote or "", request.headers.get("User-Agent", "")[:256], channel)
    o = _ORIGINS.get(key)
    if o is None:
        if len(_ORIGINS) >= _ORIGINS_MAX:
            _ORIGINS.clear()
        o = _ORIGINS[key] = audit.Origin(ip=key[0], user_agent=key[1], channel=channel)
    return o


def _public_form(path: str) -> str | None:
    if path in PUBLIC_FORMS:
        return PUBLIC_FORMS[path]
    return next((name for prefix, name in PUBLIC_PREFIXES.items() if path.startswith(prefix)), None)


async def _page(request: web.Request, handler: Handler, sec: Security, s: Session) -> web.StreamResponse:
    ctx = request.get(PAGE_CONTEXT)
    pending = s.data.get("pending_login")
    who = s.member_id if s.member_id is not None else (
        int(pending["member"]) if isinstance(pending, dict) and str(pending.get("member", "")).isdigit() else None)
    if isinstance(ctx, dict) and who is not None:
        ctx["sms_2fa"] = (await sec.methods(who)).sms  # the "send me a code by SMS" buttons of every code field
    if request.method != "POST":
        return await handler(request)
    ip = request.remote or ""
    name = _public_form(request.path)
    if name is not None:
        c = sec.conf
        wait = await sec.throttle.hit(FORM + name, ip, c.form_limit, c.form_window_s * 1000)
        if wait is not None:
            _ = translator_of(request)
            resp: web.StreamResponse = error_page(request, 429, _("Too many attempts"), _(
                "This form was sent too often from your network, so nothing was done. Please try again in {n} "
                "minutes.", n=max(1, (wait + 59) // 60)))
            resp.headers["Retry-After"] = str(wait)
            return resp
    if request.path == "/login":
        return await _login(request, handler, sec, s)
    before = s.member_id
    reset_member: dict[str, Any] | None = None
    if request.path.startswith("/password/reset/"):
        try:
            mid = await request.app[MEMBERS].check_token(request.match_info.get("token", ""), "reset")
            reset_member = await request.app[EXCHANGE].member(mid)
        except ExchangeError:
            reset_member = None
    resp = await handler(request)
    store = sec.store
    if request.path == "/login/2fa" and before is None and s.member_id is not None:
        remember_device(request, resp, sec, account_subject(s.email),
                        device_of(sec.device_key, account_subject(s.email), request.cookies.get(DEVICE_COOKIE)))
        audit.with_actor(s.member_id, s.email)
        await audit.record(store, audit.LOGIN, s.member_id, {"second_factor": True})
    elif request.path == "/logout" and before is not None and s.member_id is None:
        await audit.record(store, audit.LOGOUT, before)
    elif request.path == "/account/password" and before is not None and resp.status == 303:
        await audit.record(store, audit.PASSWORD_CHANGE, before)
    elif reset_member is not None and resp.status == 303:
        await audit.record(store, audit.PASSWORD_RESET, int(reset_member["id"]), actor_id=int(reset_member["id"]))
        await sec.throttle.clear_account(account_subject(reset_member["email"]))  # the mail proved the owner
    return resp


async def _login(request: web.Request, handler: Handler, sec: Security, s: Session) -> web.StreamResponse:
    """Clients that failed too often wait before their password is even checked; failures counted
    per account and client (the account's device cookie, else the IP address), and per account and
    per IP address for clients without the cookie (node/security/throttle.py)."""
    data = await request.post()
    email = str(data.get("email", "")).strip().lower()[:254]
    password = str(data.get("password", ""))
    ip = request.remote or ""
    subject = account_subject(email)
    device = device_of(sec.device_key, subject, request.cookies.get(DEVICE_COOKIE))
    pair = f"{subject}|{'device:' + device if device else 'ip:' + ip}"
    checks = [(LOGIN_PAIR, pair, sec.login_rule)]
    if device is None:  # the member's own browser is never held back by what strangers do
        checks += [(LOGIN_ACCOUNT, subject, sec.login_account_rule), (LOGIN_IP, ip, sec.login_ip_rule)]
    if email:
        for scope, who, rule in checks:
            until = await sec.throttle.wait_until(scope, who, rule)
            if until is not None:
                return _locked(request, data, scope, until)
    resp = await handler(request)
    store = sec.store
    if s.member_id is not None or resp.status == 303:  # logged in, or the password was right (2FA next)
        await sec.throttle.clear(LOGIN_PAIR, pair)
        await sec.throttle.clear(LOGIN_ACCOUNT, subject)
        remember_device(request, resp, sec, subject, device)
        if s.member_id is not None:
            audit.with_actor(s.member_id, s.email)
            await audit.record(store, audit.LOGIN, s.member_id, {"second_factor": False})
    elif resp.status == 400 and email and password:
        row = await store.fetchrow("SELECT id FROM members WHERE email = ?", email)
        member_id = int(row["id"]) if row is not None else None
        for scope, who, _rule in checks:
            await sec.throttle.record(scope, who)
        await audit.record(store, audit.LOGIN_FAILED, member_id, {} if member_id else {"account": "unknown"},
                           actor_id=member_id, ok=False)
        for scope, who, rule in checks:
            until = await sec.throttle.wait_until(scope, who, rule)
            if until is not None:
                await audit.record(store, audit.LOGIN_LOCKED, member_id, {"scope": scope, "until": until},
                                   actor_id=member_id, ok=False)
                return _locked(request, data, scope, until)
    return resp


def remember_device(request: web.Request, resp: web.StreamResponse, sec: Security, subject: str,
                    device: str | None) -> None:
    """The device cookie of this browser for this account (a new one unless it has a valid one)."""
    token = device_token(sec.device_key, subject, device or secrets.token_urlsafe(12))
    if not resp.prepared:
        set_cookie(request, resp, DEVICE_COOKIE, token, DEVICE_DAYS * 86_400)


def _locked(request: web.Request, data: Any, scope: str, until: int) -> web.Response:
    _ = translator_of(request)
    form = Form(data, secret=("password",))
    minutes = max(1, (until - now_ms() + 59_999) // 60_000)
    if scope == LOGIN_IP:
        form.error(GENERAL, _("Too many failed log-in attempts from your network. Please try again after {time} UTC "
                              "(in about {n} minutes).", time=_hhmm(until), n=minutes))
    else:
        form.error(GENERAL, _("Too many failed log-in attempts for this account. For your safety, logging in to it is "
                              "locked until {time} UTC (in about {n} minutes). You can reset your password by e-mail "
                              "meanwhile.", time=_hhmm(until), n=minutes))
    resp = render(request, "login.html", {"form": form}, status=429)
    resp.headers["Retry-After"] = str(max(1, (until - now_ms()) // 1000))
    return resp
