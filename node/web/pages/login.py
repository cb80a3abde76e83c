"""Sign up, activation, log in (with the second factor when the member has one), log out, and the
password reset by e-mail.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from node.clock import now_ms
from node.errors import ExchangeError
from node.members import NOT_ACTIVATED, WRONG_CODE
from node.web.forms import GENERAL, Form
from node.web.i18n import FormError
from node.web.pages.account import _remember_lang
from node.web.pages.common import MEMBERS, _attempt, _form, redirect
from node.web.session import SECOND_FACTOR, SESSIONS, render, safe_next, session_of, translator_of

PENDING_LOGIN_MS = 300_000  # a log in waiting for its second factor lapses after five minutes


async def signup(request: web.Request) -> web.Response:
    _ = translator_of(request)
    if session_of(request).authenticated:
        return redirect("/")
    if request.method == "GET":
        return render(request, "signup.html", {"form": Form()})
    form = await _form(request, secret=("password", "password_confirmation"))
    data = await request.post()
    members = request.app[MEMBERS]
    password, confirmation = str(data.get("password", "")), str(data.get("password_confirmation", ""))
    try:
        form.text("email", 254)
        if form.value("terms") != "on":
            form.error("terms", _("Please accept the terms to continue"))
            members.check_sign_up(form.value("email"), password, confirmation)  # the other fields' errors too
        else:
            await _remember_lang(request, await members.sign_up(form.value("email"), password, confirmation, _.lang), _.lang)
    except ExchangeError as e:
        form.add(e, _)
    if not form.ok:
        return render(request, "signup.html", {"form": form}, status=400)
    return render(request, "message.html", {
        "title": _("Check your mail"),
        "message": _("We have sent an activation link to {email}. Open it to activate your account; it is valid "
                     "for 48 hours.", email=form.value("email").strip().lower()),
        "links": [("/activation/resend", _("Didn't get the mail? Send it again"))],
    })


async def activate(request: web.Request) -> web.Response:
    _ = translator_of(request)
    try:
        await request.app[MEMBERS].activate(request.match_info["token"])
    except ExchangeError as e:
        return render(request, "message.html", {
            "title": _("Activation failed"), "message": _.error(e), "kind": "error",
            "links": [("/activation/resend", _("Send a new activation link")), ("/login", _("Log in"))],
        }, status=400)
    session_of(request).flash(_("Your account is active. You can log in now."), "success")
    return redirect("/login")


async def resend_activation(request: web.Request) -> web.Response:
    _ = translator_of(request)
    if request.method == "GET":
        return render(request, "resend.html", {"form": Form()})
    form = await _form(request)
    try:
        await request.app[MEMBERS].resend_activation(form.text("email", 254), _.lang)
    except ExchangeError as e:
        form.add(e, _)
        return render(request, "resend.html", {"form": form}, status=400)
    return render(request, "message.html", {
        "title": _("Check your mail"),
        "message": _("If {email} has an account that is not active yet, a new activation link is on its way.",
                     email=form.value("email").strip().lower()),
    })


async def _open_session(request: web.Request, member: dict[str, Any], next_url: str) -> web.Response:
    """Log the member in: a new session key (fixation), the success in the login history."""
    s = session_of(request)
    request.app[SESSIONS].rotate(s, int(member["id"]), member["email"])
    await request.app[MEMBERS].record_login(int(member["id"]), True, "", _attempt(request))
    _ = translator_of(request)
    await _remember_lang(request, int(member["id"]), _.lang)
    s.flash(_("Welcome back, {email}", email=member["email"]), "success")
    return redirect(safe_next(next_url, "/funds"))


async def login(request: web.Request) -> web.Response:
    _ = translator_of(request)
    if request.method == "GET":
        if session_of(request).authenticated:
            return redirect(safe_next(request.query.get("next"), "/"))
        return render(request, "login.html", {"form": Form({"next": request.query.get("next", ""),
                                                            "email": request.query.get("email", "")})})
    form = await _form(request, secret=("password",))
    password = str((await request.post()).get("password", ""))
    try:
        form.text("next", 500)
        member = await request.app[MEMBERS].authenticate(form.value("email"), password, _attempt(request))
    except ExchangeError as e:
        form.add(e, _)
        not_active = isinstance(e, FormError) and e.msgid == NOT_ACTIVATED
        return render(request, "login.html", {"form": form, "not_active": not_active}, status=400)
    second = request.app.get(SECOND_FACTOR)
    if second is not None and await second.required(int(member["id"]), "login"):
        s = session_of(request)
        request.app[SESSIONS].rotate(s, None)
        s.set("pending_login", {"member": int(member["id"]), "email": member["email"],
                                "next": safe_next(form.value("next"), "/funds"), "until": now_ms() + PENDING_LOGIN_MS})
        return redirect("/login/2fa")
    return await _open_session(request, member, form.value("next"))


async def login_second_factor(request: web.Request) -> web.Response:
    """Step two of a log in, when the security module asks for a code."""
    _ = translator_of(request)
    s = session_of(request)
    pending = s.data.get("pending_login")
    second = request.app.get(SECOND_FACTOR)
    if not isinstance(pending, dict) or second is None or int(pending.get("until", 0)) < now_ms():
        s.pop("pending_login")
        s.flash(_("Please log in again."), "error")
        return redirect("/login")
    if request.method == "GET":
        return render(request, "login_2fa.html", {"form": Form()})
    form = await _form(request)
    member_id = int(pending["member"])
    try:
        code = form.text("otp_code", 16, required=True)
        await second.verify(member_id, "login", code)
    except ExchangeError as e:
        form.add(e, _)
        await request.app[MEMBERS].record_login(member_id, False, WRONG_CODE, _attempt(request))
        return render(request, "login_2fa.html", {"form": form}, status=400)
    s.pop("pending_login")
    return await _open_session(request, {"id": member_id, "email": pending["email"]}, str(pending["next"]))


async def logout(request: web.Request) -> web.Response:
    s = session_of(request)
    request.app[SESSIONS].rotate(s, None)
    _ = translator_of(request)
    s.flash(_("You are logged out."), "info")
    return redirect("/")


async def forgot_password(request: web.Request) -> web.Response:
    _ = translator_of(request)
    if request.method == "GET":
        return render(request, "forgot.html", {"form": Form({"email": request.query.get("email", "")})})
    form = await _form(request)
    try:
        await request.app[MEMBERS].request_reset(form.text("email", 254), _.lang)
    except ExchangeError as e:
        form.add(e, _)
        return render(request, "forgot.html", {"form": form}, status=400)
    return render(request, "message.html", {
        "title": _("Check your mail"),
        "message": _("If {email} has an account, a link to choose a new password is on its way. It is valid for "
                     "30 minutes and works once.", email=form.value("email").strip().lower()),
    })


async def reset_password(request: web.Request) -> web.Response:
    _ = translator_of(request)
    token = request.match_info["token"]
    members = request.app[MEMBERS]
    if request.method == "GET":
        try:
            await members.check_token(token, "reset")
        except ExchangeError as e:
            return render(request, "message.html", {
                "title": _("This link cannot be used"), "message": _.error(e), "kind": "error",
                "links": [("/password/forgot", _("Ask for a new link"))]}, status=400)
        return render(request, "reset.html", {"form": Form(), "token": token})
    form = await _form(request, secret=("password", "password_confirmation"))
    data = await request.post()
    try:
        member_id = await members.reset_password(token, str(data.get("password", "")),
                                                 str(data.get("password_confirmation", "")))
    except ExchangeError as e:
        form.add(e, _)
        if GENERAL in form.errors:  # the link itself is bad: no form can help
            return render(request, "message.html", {
                "title": _("This link cannot be used"), "message": form.errors[GENERAL], "kind": "error",
                "links": [("/password/forgot", _("Ask for a new link"))]}, status=400)
        return render(request, "reset.html", {"form": form, "token": token}, status=400)
    await request.app[SESSIONS].end_member_sessions(member_id)
    session_of(request).flash(_("Your password is changed. Please log in with the new one."), "success")
    return redirect("/login")
