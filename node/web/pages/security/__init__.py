"""Security pages and the security gate of every request (node/security does the work).

Pages (members only, except the withdrawal confirmation link):

| path | what |
|---|---|
| `/security` | two-factor status, recovery codes, withdrawal protection, recent security events |
| `/security/totp` | authenticator app set-up: QR code (otpauth URI with the issuer), first code switches it on |
| `/security/sms` | SMS set-up: number in E.164, a code sent to it switches it on |
| `/security/audit` | the member's own audit log |
| `/security/addresses` | the withdrawal address book (adding asks for the second factor; a new address waits its hold) |
| `/withdraws/confirm/{token}` | the mailed link: confirm or cancel one withdrawal |

Changing two-factor settings (switching a method on when another is on, off, new recovery codes, a
new phone) asks for a code of a method already on. Recovery codes are shown once, in the answer to
the form that made them, and never stored in clear.

`gate` is a middleware (after the sessions' one, so the CSRF check has run): it records who is
asking and from where for the audit log (`node.security.audit.Origin`), limits how often each public
form may be sent per IP, makes clients that failed too often wait before the log-in form checks a
password (per account and client, never a lock a stranger could put on a member), counts failed log ins, and writes log ins, log outs and password changes
to the audit log by looking at what the pages' handlers did, so node/web/pages.py needs no changes
for any of it.

`require_admin_unlock` is the admin area's check (sliding expiry) and `unlock_admin` its unlock.
"""

from __future__ import annotations

import datetime as dt
import secrets
from pathlib import Path
from typing import Any

import aiohttp_jinja2
from aiohttp import web
from yarl import URL

from node.clock import now_ms
from node.errors import ExchangeError
from node.money import format_units
from node.secrets_box import load_server_key
from node.security import audit
from node.security.errors import CODE_FIELD, SecondFactorFailed
from node.security.service import ADDRESS_ADD, ADMIN_UNLOCK, CHANGE_2FA, Methods, Security
from node.security.sms import mask, normalise_phone
from node.security.throttle import (
    FORM,
    LOGIN_ACCOUNT,
    LOGIN_IP,
    LOGIN_PAIR,
    account_subject,
    device_of,
    device_token,
)
from node.security.totp import Check, provisioning_uri
from node.web.api import EXCHANGE
from node.web.forms import GENERAL, Form, qr_data_uri, utc
from node.web.forms import iso as iso_time
from node.web.i18n import N_, FormError, Translator
from node.web.pages import MEMBERS, path_id, redirect, require_member, wants_json
from node.web.session import (
    SECOND_FACTOR,
    SESSION_KEY,
    Handler,
    Session,
    error_page,
    render,
    safe_next,
    session_of,
    set_cookie,
    translator_of,
)

SECURITY = web.AppKey("security", Security)
DEVICE_COOKIE = "device"  # which accounts logged in from this browser before: see node/security/throttle.py
DEVICE_DAYS = 365
AUDIT_PAGE = 50
UNLOCK_KEY = "admin_unlocked_until"  # the session key node/web/pages_admin.py uses too
UNLOCK_REFRESH_MS = 60_000  # a sliding expiry is written at most once a minute
PUBLIC_FORMS = {"/signup": "signup", "/login": "login", "/login/2fa": "login_2fa", "/login/2fa/sms": "login_sms",
                "/password/forgot": "forgot", "/activation/resend": "resend"}
PUBLIC_PREFIXES = {"/password/reset/": "reset", "/withdraws/confirm/": "withdraw_confirm"}
ACTION_LABELS = {
    audit.LOGIN: N_("Logged in"), audit.LOGIN_FAILED: N_("Failed log in"), audit.LOGIN_LOCKED: N_("Log in locked"),
    audit.LOGOUT: N_("Logged out"), audit.PASSWORD_CHANGE: N_("Password changed"),
    audit.PASSWORD_RESET: N_("Password reset by e-mail"), audit.TOTP_ENABLE: N_("Authenticator app switched on"),
    audit.TOTP_DISABLE: N_("Authenticator app switched off"), audit.SMS_ENABLE: N_("SMS codes switched on"),
    audit.SMS_DISABLE: N_("SMS codes switched off"), audit.RECOVERY_CODES: N_("New recovery codes"),
    audit.RECOVERY_USED: N_("Recovery code used"), audit.OTP_FAILED: N_("Wrong two-factor code"),
    audit.OTP_LOCKED: N_("Two-factor checks locked"), audit.TWO_FA_RESET: N_("Two-factor reset by support"),
    audit.API_KEY_CREATE: N_("API key created"), audit.API_KEY_DELETE: N_("API key revoked"),
    audit.WITHDRAW_REQUEST: N_("Withdrawal requested"), audit.WITHDRAW_CONFIRM: N_("Withdrawal confirmed"),
    audit.WITHDRAW_CANCEL: N_("Withdrawal cancelled"), audit.WITHDRAW_EXPIRED: N_("Withdrawal not confirmed in time"),
    audit.ADDRESS_ADD: N_("Withdrawal address added"), audit.ADDRESS_DELETE: N_("Withdrawal address removed"),
    audit.ADMIN_UNLOCK: N_("Admin area unlocked"),
}
DETAIL_KEYS = ("currency", "amount", "address", "label", "sn", "access_key", "scopes", "action", "phone", "reason",
               "left", "via")


def security_of(app: web.Application) -> Security:
    return app[SECURITY]


def _sec(request: web.Request) -> Security:
    return request.app[SECURITY]


async def _form(request: web.Request) -> Form:
    """What the member typed, codes excepted: a page with errors never shows a code again."""
    return Form(await request.post(), secret=(CODE_FIELD, "code", "password"))


async def _raw(request: web.Request, name: str, max_len: int = 32) -> str:
    """A code field as sent (codes are kept out of `Form`); over-long input reads as empty."""
    value = (await request.post()).get(name, "")
    return value.strip() if isinstance(value, str) and len(value) <= max_len else ""


def _hhmm(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%H:%M")


# -- the gate ---------------------------------------------------------------------------------------------
@web.middleware
async def gate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Origin of the request for the audit log; form limits, log-in lockouts and log-in auditing."""
    s: Session | None = request.get(SESSION_KEY)
    api = request.path.startswith("/api/")
    lang = translator_of(request).lang if s is not None else "en"
    token = audit.set_origin(audit.Origin(
        ip=request.remote or "", user_agent=request.headers.get("User-Agent", "")[:256], channel="api" if api else "web",
        actor_id=s.member_id if s is not None else None, actor=s.email if s is not None else "", lang=lang))
    try:
        if api or s is None or SECURITY not in request.app:
            return await handler(request)
        return await _page(request, handler, request.app[SECURITY], s)
    finally:
        audit.reset_origin(token)


def _public_form(path: str) -> str | None:
    if path in PUBLIC_FORMS:
        return PUBLIC_FORMS[path]
    return next((name for prefix, name in PUBLIC_PREFIXES.items() if path.startswith(prefix)), None)


async def _page(request: web.Request, handler: Handler, sec: Security, s: Session) -> web.StreamResponse:
    ctx = request.get(aiohttp_jinja2.REQUEST_CONTEXT_KEY)
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


# -- admin unlock ---------------------------------------------------------------------------------------
def admin_unlock_ms(app: web.Application) -> int:
    return int(app[EXCHANGE].config.security.admin_unlock_minutes) * 60_000


def require_admin_unlock(request: web.Request) -> int:
    """The member's id when this session unlocked the admin area recently; each call slides the expiry.

    Otherwise a GET is sent to `/admin/unlock?next=…` and anything else refused (403): a form posted
    from a locked session changes nothing. Roles are the admin area's to check."""
    member_id = require_member(request)
    s = session_of(request)
    until, now = s.data.get(UNLOCK_KEY), now_ms()
    if isinstance(until, int) and until > now:
        ttl = admin_unlock_ms(request.app)
        if now + ttl - until >= UNLOCK_REFRESH_MS:
            s.set(UNLOCK_KEY, now + ttl)
        return member_id
    if request.method == "GET" and not wants_json(request):
        raise web.HTTPSeeOther(str(URL("/admin/unlock").with_query(next=safe_next(request.path_qs, "/admin"))))
    raise web.HTTPForbidden(text="Unlock the admin area with your second factor first; nothing was changed.")


async def unlock_admin(request: web.Request, code: str) -> None:
    """Check the member's second factor for the admin area and unlock it for this session (audited);
    a SecondFactorFailed (for the code field) otherwise."""
    member_id = require_member(request)
    sec = _sec(request)
    await sec.verify(member_id, ADMIN_UNLOCK, code)
    session_of(request).set(UNLOCK_KEY, now_ms() + admin_unlock_ms(request.app))
    await audit.record(sec.store, audit.ADMIN_UNLOCK, member_id)


# -- overview ------------------------------------------------------------------------------------------
def _event(e: dict[str, Any], _: Translator) -> dict[str, Any]:
    label = ACTION_LABELS.get(e["action"])
    detail = e["detail"] if isinstance(e["detail"], dict) else {}
    parts = [f"{k}: {detail[k]}" for k in DETAIL_KEYS if k in detail and detail[k] not in (None, "")]
    if e["actor_id"] is not None and e["member_id"] is not None and int(e["actor_id"]) != int(e["member_id"]):
        parts.insert(0, _("by {who}", who=e["actor"] or f"#{e['actor_id']}"))
    return {"seq": int(e["seq"]), "time": utc(int(e["created_at"])), "at": iso_time(int(e["created_at"])),
            "action": _(label) if label else e["action"], "ok": bool(e["ok"]), "detail": " · ".join(parts)[:300],
            "ip": e["ip"], "channel": e["channel"]}


async def _overview(request: web.Request, member_id: int, forms: dict[str, Form] | None = None) -> dict[str, Any]:
    sec = _sec(request)
    _ = translator_of(request)
    m = await sec.methods(member_id)
    events = await audit.of_member(sec.store, member_id, limit=10)
    phone = await sec.sms.phone(member_id)
    return {
        "methods": m,
        "phone_pending": mask(phone["phone"]) if phone and not phone["verified"] else None,
        "events": [_event(e, _) for e in events],
        "forms": forms or {},
        "empty": Form(),
        "hold_hours": sec.conf.withdraw_hold_hours,
        "confirmation": sec.conf.withdraw_confirmation,
        "confirm_hours": sec.conf.withdraw_confirm_hours,
        "addresses": len(await sec.addresses.list(member_id)),
        "sms_2fa": m.sms,
    }


async def overview(request: web.Request) -> web.Response:
    member_id = require_member(request)
    return render(request, "security.html", await _overview(request, member_id))


async def _check_code(request: web.Request, form: Form, member_id: int, action: str) -> bool:
    """The second factor of a form, when the member has one; the error goes next to the field."""
    sec = _sec(request)
    if not await sec.required(member_id, action):
        return True
    try:
        await sec.verify(member_id, action, await _raw(request, CODE_FIELD))
        return True
    except ExchangeError as e:
        form.add(e, translator_of(request))
        return False


# -- TOTP ---------------------------------------------------------------------------------------------------
async def _totp_context(request: web.Request, member_id: int, form: Form | None = None) -> dict[str, Any]:
    sec = _sec(request)
    secret = await sec.totp.pending_secret(member_id)
    email = session_of(request).email
    uri = provisioning_uri(secret, email, request.app[EXCHANGE].config.name)
    m = await sec.methods(member_id)
    return {"qr": qr_data_uri(uri), "secret": " ".join(secret[i:i + 4] for i in range(0, len(secret), 4)),
            "uri": uri, "form": form or Form(), "needs_code": m.any, "sms_2fa": m.sms}


async def totp_page(request: web.Request) -> web.Response:
    member_id = require_member(request)
    if await _sec(request).totp.enabled(member_id):
        return redirect("/security")
    return render(request, "security_totp.html", await _totp_context(request, member_id))


async def totp_restart(request: web.Request) -> web.Response:
    member_id = require_member(request)
    sec = _sec(request)
    if not await sec.totp.enabled(member_id):
        await sec.totp.pending_secret(member_id, restart=True)
    return redirect("/security/totp")


async def totp_activate(request: web.Request) -> web.Response:
    """Switch the authenticator on with its first code (and, if SMS is on, an SMS code: a change)."""
    member_id = require_member(request)
    sec = _sec(request)
    _ = translator_of(request)
    form = await _form(request)
    if await sec.totp.enabled(member_id):
        return redirect("/security")
    code = await _raw(request, "code")
    if not code:
        form.error("code", _("Please enter the code your app shows"))
    elif (await sec.methods(member_id)).any:
        await _check_code(request, form, member_id, CHANGE_2FA)
    if form.ok:
        result = await sec.totp.check(member_id, code, pending=True)
        if result is not Check.OK:
            form.error("code", _("This code is not right. Check that the time of your phone is set automatically, "
                                 "and enter the code your app shows now."))
    if not form.ok:
        return render(request, "security_totp.html", await _totp_context(request, member_id, form), status=400)
    codes = await sec.totp.activate(member_id)
    await audit.record(sec.store, audit.TOTP_ENABLE, member_id)
    return _recovery_page(request, codes, first=True)


def _recovery_page(request: web.Request, codes: list[str], first: bool) -> web.Response:
    """The only time recovery codes are shown: in the answer itself, never stored, never cached."""
    return render(request, "security_recovery.html", {"codes": codes, "first": first})


async def _changing(request: web.Request, action: str) -> tuple[int, Form, bool]:
    member_id = require_member(request)
    form = await _form(request)
    if not await _raw(request, CODE_FIELD):
        form.error(CODE_FIELD, translator_of(request)("Please enter the two-factor code"))
        return member_id, form, False
    return member_id, form, await _check_code(request, form, member_id, action)


async def _overview_error(request: web.Request, member_id: int, name: str, form: Form) -> web.Response:
    return render(request, "security.html", await _overview(request, member_id, {name: form}), status=400)


async def totp_disable(request: web.Request) -> web.Response:
    member_id, form, ok = await _changing(request, CHANGE_2FA)
    if not ok:
        return await _overview_error(request, member_id, "totp_off", form)
    sec = _sec(request)
    await sec.totp.disable(member_id)
    await audit.record(sec.store, audit.TOTP_DISABLE, member_id)
    session_of(request).flash(translator_of(request)("The authenticator app is switched off."), "success")
    return redirect("/security")


async def recovery_new(request: web.Request) -> web.Response:
    member_id, form, ok = await _changing(request, CHANGE_2FA)
    sec = _sec(request)
    if ok and not await sec.totp.enabled(member_id):
        form.error(GENERAL, translator_of(request)("Recovery codes come with the authenticator app: switch it on first."))
        ok = False
    if not ok:
        return await _overview_error(request, member_id, "recovery", form)
    codes = await sec.totp.new_recovery_codes(member_id)
    await audit.record(sec.store, audit.RECOVERY_CODES, member_id)
    return _recovery_page(request, codes, first=False)


# -- SMS ---------------------------------------------------------------------------------------------------
async def _sms_context(request: web.Request, member_id: int, form: Form | None = None,
                       verify_form: Form | None = None) -> dict[str, Any]:
    sec = _sec(request)
    m = await sec.methods(member_id)
    phone = await sec.sms.phone(member_id)
    pending = await sec.sms.pending_phone(member_id)
    waiting = pending is not None and (phone is None or not phone["verified"] or phone["phone"] != pending)
    return {"methods": m, "form": form or Form(), "verify_form": verify_form or Form(),
            "pending": mask(pending) if waiting and pending else None, "needs_code": m.any, "sms_2fa": m.sms}


async def sms_page(request: web.Request) -> web.Response:
    member_id = require_member(request)
    return render(request, "security_sms.html", await _sms_context(request, member_id))


async def sms_start(request: web.Request) -> web.Response:
    """A number to verify: checked first (a typo burns no code), then a code of a method already on."""
    member_id = require_member(request)
    sec = _sec(request)
    _ = translator_of(request)
    form = await _form(request)
    phone = ""
    try:
        phone = normalise_phone(form.value("phone"))
    except FormError as e:
        form.add(e, _)
    if form.ok and (await sec.methods(member_id)).any:
        await _check_code(request, form, member_id, CHANGE_2FA)
    if form.ok:
        try:
            await sec.sms.start(member_id, phone, _.lang)
        except ExchangeError as e:
            form.add(e, _)
    if not form.ok:
        return render(request, "security_sms.html", await _sms_context(request, member_id, form), status=400)
    session_of(request).flash(_("We sent a code to {phone}. Enter it below to switch SMS codes on.", phone=mask(phone)),
                              "success")
    return redirect("/security/sms#verify")


async def sms_resend(request: web.Request) -> web.Response:
    member_id = require_member(request)
    sec = _sec(request)
    _ = translator_of(request)
    pending = await sec.sms.pending_phone(member_id)
    s = session_of(request)
    if pending is None:
        return redirect("/security/sms")
    try:
        await sec.sms.start(member_id, pending, _.lang)
        s.flash(_("We sent a new code to {phone}.", phone=mask(pending)), "success")
    except ExchangeError as e:
        s.flash(_.error(e), "error")
    return redirect("/security/sms#verify")


async def sms_confirm(request: web.Request) -> web.Response:
    member_id = require_member(request)
    sec = _sec(request)
    _ = translator_of(request)
    form = await _form(request)
    try:
        code = await _raw(request, "code")
        if not code:
            raise FormError("code", N_("Please enter the code from the text message"))
        phone = await sec.sms.confirm(member_id, code)
    except ExchangeError as e:
        form.add(e, _)
        return render(request, "security_sms.html", await _sms_context(request, member_id, verify_form=form), status=400)
    await audit.record(sec.store, audit.SMS_ENABLE, member_id, {"phone": mask(phone)})
    session_of(request).flash(_("SMS codes are switched on for {phone}.", phone=mask(phone)), "success")
    return redirect("/security")


async def sms_disable(request: web.Request) -> web.Response:
    member_id, form, ok = await _changing(request, CHANGE_2FA)
    if not ok:
        return await _overview_error(request, member_id, "sms_off", form)
    sec = _sec(request)
    await sec.sms.disable(member_id)
    await audit.record(sec.store, audit.SMS_DISABLE, member_id)
    session_of(request).flash(translator_of(request)("SMS codes are switched off."), "success")
    return redirect("/security")


async def _send_code(request: web.Request, member_id: int, back: str) -> web.Response:
    _ = translator_of(request)
    s = session_of(request)
    try:
        shown = await _sec(request).sms.send_auth_code(member_id, _.lang)
        s.flash(_("We sent a code to {phone}. It is valid for {n} minutes.", phone=shown,
                  n=request.app[EXCHANGE].config.sms.code_ttl_s // 60), "success")
    except ExchangeError as e:
        s.flash(_.error(e), "error")
    return redirect(back)


async def sms_send(request: web.Request) -> web.Response:
    """"Send me a code by SMS" next to any code field (a second submit button of that form)."""
    member_id = require_member(request)
    return await _send_code(request, member_id, safe_next(request.query.get("next"), "/security"))


async def login_sms(request: web.Request) -> web.Response:
    """The same for the second step of a log in (no session yet: the pending log in names the member)."""
    pending = session_of(request).data.get("pending_login")
    if not isinstance(pending, dict) or int(pending.get("until", 0)) < now_ms():
        return redirect("/login")
    return await _send_code(request, int(pending["member"]), "/login/2fa")


# -- audit log -----------------------------------------------------------------------------------------
async def audit_page(request: web.Request) -> web.Response:
    member_id = require_member(request)
    _ = translator_of(request)
    try:
        before = int(request.query["before"]) if "before" in request.query else None
    except ValueError:
        before = None
    rows = await audit.of_member(_sec(request).store, member_id, limit=AUDIT_PAGE + 1, before=before)
    events = [_event(e, _) for e in rows[:AUDIT_PAGE]]
    return render(request, "security_audit.html", {
        "events": events, "older": events[-1]["seq"] if len(rows) > AUDIT_PAGE else None, "first": before is None})


# -- address book --------------------------------------------------------------------------------------
async def _addresses_context(request: web.Request, member_id: int, form: Form | None = None) -> dict[str, Any]:
    sec = _sec(request)
    ex = request.app[EXCHANGE]
    rows = await sec.addresses.list(member_id)
    return {
        "addresses": [{"id": int(a["id"]), "currency": a["currency"].upper(), "address": a["address"],
                       "label": a["label"], "added": utc(int(a["created_at"])), "usable": a["usable"],
                       "usable_at": utc(int(a["usable_at"]))} for a in rows],
        "currencies": [(c.code, c.symbol) for c in ex.config.currencies.values() if c.wallet is not None],
        "form": form or Form(),
        "needs_code": await sec.required(member_id, ADDRESS_ADD),
        "hold_hours": sec.conf.withdraw_hold_hours,
        "sms_2fa": (await sec.methods(member_id)).sms,
    }


async def addresses_page(request: web.Request) -> web.Response:
    member_id = require_member(request)
    return render(request, "security_addresses.html", await _addresses_context(request, member_id))


async def address_add(request: web.Request) -> web.Response:
    member_id = require_member(request)
    sec = _sec(request)
    _ = translator_of(request)
    form = await _form(request)
    try:
        await sec.addresses.check_new(member_id, form.value("currency"), form.value("address"), form.value("label"))
    except ExchangeError as e:
        form.add(e, _)
    if form.ok:
        await _check_code(request, form, member_id, ADDRESS_ADD)
    if form.ok:
        try:
            row = await sec.addresses.add(member_id, form.value("currency"), form.value("address"), form.value("label"))
            session_of(request).flash(_("Address added. It can be used for withdrawals from {time} UTC.",
                                        time=utc(int(row["usable_at"]))), "success")
        except ExchangeError as e:
            form.add(e, _)
    if not form.ok:
        return render(request, "security_addresses.html", await _addresses_context(request, member_id, form), status=400)
    return redirect("/security/addresses")


async def address_delete(request: web.Request) -> web.Response:
    member_id = require_member(request)
    _ = translator_of(request)
    aid = path_id(request)
    ok = await _sec(request).addresses.delete(member_id, aid)
    session_of(request).flash(_("The address is removed from your address book.") if ok else
                              _("This address does not exist"), "success" if ok else "error")
    return redirect("/security/addresses")


# -- the mailed withdrawal link ----------------------------------------------------------------------------
async def withdraw_confirm(request: web.Request) -> web.Response:
    """GET shows the withdrawal; only a POST (this page's button, with its CSRF token) confirms or
    cancels it, so a mail scanner that opens links does neither."""
    sec = _sec(request)
    _ = translator_of(request)
    token = request.match_info["token"]
    try:
        if request.method == "POST":
            form = await _form(request)
            if form.value("action") == "cancel":
                w = await sec.addresses.cancel(token)
                session_of(request).flash(_("The withdrawal is cancelled and the funds are available again."), "success")
            else:
                w = await sec.addresses.confirm(token)
                session_of(request).flash(_("Thank you: the withdrawal is confirmed."), "success")
            return redirect(f"/withdraws/confirm/{token}")
        w = await sec.addresses.held(token)
    except ExchangeError as e:
        return render(request, "message.html", {"title": _("This link cannot be used"), "message": _.error(e),
                                                "kind": "error"}, status=400)
    cur = request.app[EXCHANGE].config.currencies.get(w["currency"])
    precision = cur.precision if cur else 8
    return render(request, "security_withdraw_confirm.html", {"w": {
        "sn": w["sn"], "amount": format_units(int(w["amount"]), precision), "fee": format_units(int(w["fee"]), precision),
        "currency": w["currency"].upper(), "address": w["address"], "state": w["state"], "state_label": _(w["state"]),
        "created": utc(int(w["created_at"])), "confirmed": w["confirmed_at"] is not None,
        "release": utc(int(w["release_at"])), "held": w["state"] == "submitting",
        "on_hold": int(w["release_at"]) > now_ms()}, "token": token})


# -- set-up --------------------------------------------------------------------------------------------------
def add_routes(app: web.Application, master_key: bytes | None = None, key_file: str | Path = "var/secret.key") -> None:
    """Make the node's `Security` (after `pages.add_routes`: it mails through the members service),
    plug it into the pages' second-factor hook and the funds facade, and serve the pages."""
    ex = app[EXCHANGE]
    sec = Security(ex, app[MEMBERS], master_key if master_key is not None else load_server_key(key_file))
    app[SECURITY] = sec
    app[SECOND_FACTOR] = sec
    sec.attach()

    async def lifecycle(app: web.Application):  # type: ignore[no-untyped-def]
        await sec.start()
        yield
        await sec.stop()

    app.cleanup_ctx.append(lifecycle)
    r = app.router
    r.add_get("/security", overview)
    r.add_get("/security/totp", totp_page)
    r.add_post("/security/totp", totp_activate)
    r.add_post("/security/totp/restart", totp_restart)
    r.add_post("/security/totp/disable", totp_disable)
    r.add_post("/security/recovery", recovery_new)
    r.add_get("/security/sms", sms_page)
    r.add_post("/security/sms", sms_start)
    r.add_post("/security/sms/resend", sms_resend)
    r.add_post("/security/sms/verify", sms_confirm)
    r.add_post("/security/sms/disable", sms_disable)
    r.add_post("/security/sms/send", sms_send)
    r.add_post("/login/2fa/sms", login_sms)
    r.add_get("/security/audit", audit_page)
    r.add_get("/security/addresses", addresses_page)
    r.add_post("/security/addresses", address_add)
    r.add_post("/security/addresses/{id}/delete", address_delete)
    r.add_get("/withdraws/confirm/{token}", withdraw_confirm)
    r.add_post("/withdraws/confirm/{token}", withdraw_confirm)


__all__ = ["SECURITY", "Methods", "SecondFactorFailed", "add_routes", "gate", "require_admin_unlock", "security_of",
           "unlock_admin"]
