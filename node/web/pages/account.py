"""The member's account: profile, password change, log-in history; and the language switch
(remembered for the mails sent later).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from node.errors import ExchangeError
from node.web.forms import Form, iso, utc
from node.web.i18n import LANGS
from node.web.pages.common import MEMBERS, _exchange, _form, redirect, require_member
from node.web.session import SESSIONS, render, safe_next, session_of, set_lang_cookie, translator_of


async def _account_context(request: web.Request, member_id: int, form: Form | None = None) -> dict[str, Any]:
    ex = _exchange(request)
    member = await ex.member(member_id)
    history = await request.app[MEMBERS].login_history(member_id)
    live = await request.app[SESSIONS].of_member(member_id)
    return {
        "member": {"email": member["email"], "sn": member["sn"], "since": utc(int(member["created_at"]))[:10]},
        "history": [{"time": utc(int(h["created_at"])), "at": iso(int(h["created_at"])), "ok": bool(h["ok"]),
                     "reason": h["reason"], "ip": h["ip"], "agent": _short_agent(h["user_agent"])} for h in history],
        "sessions": [{"ip": x["ip"], "agent": _short_agent(x["user_agent"]), "seen": utc(int(x["seen_at"])),
                      "at": iso(int(x["seen_at"]))} for x in live],
        "form": form or Form(),
    }


def _short_agent(ua: str) -> str:
    """A readable browser name from a User-Agent (the full string is noise on a page)."""
    for name in ("Edg/", "OPR/", "Firefox/", "Chrome/", "HeadlessChrome/", "Safari/", "curl/", "python"):
        if name in ua:
            browser = name.rstrip("/")
            break
    else:
        browser = ua[:40] or "—"
    system = next((s for s in ("Windows", "Android", "iPhone", "iPad", "Mac OS X", "Linux") if s in ua), "")
    return f"{browser} · {system}" if system else browser


async def account(request: web.Request) -> web.Response:
    member_id = require_member(request)
    return render(request, "account.html", await _account_context(request, member_id))


async def change_password(request: web.Request) -> web.Response:
    member_id = require_member(request)
    _ = translator_of(request)
    form = await _form(request, secret=("current_password", "password", "password_confirmation"))
    data = await request.post()
    try:
        await request.app[MEMBERS].change_password(
            member_id, str(data.get("current_password", "")), str(data.get("password", "")),
            str(data.get("password_confirmation", "")), _.lang)
    except ExchangeError as e:
        form.add(e, _)
        return render(request, "account.html", await _account_context(request, member_id, form), status=400)
    s = session_of(request)
    await request.app[SESSIONS].end_member_sessions(member_id, keep=s)
    s.flash(_("Your password is changed. Your other sessions are logged out."), "success")
    return redirect("/account")


async def _remember_lang(request: web.Request, member_id: int | None, lang: str) -> None:
    """Mails sent later, outside any request (notices), go out in the language the member last used."""
    if member_id is not None and lang in LANGS:
        await _exchange(request).store.execute("UPDATE members SET lang = ? WHERE id = ? AND lang != ?", lang, member_id, lang)


async def switch_lang(request: web.Request) -> web.Response:
    lang = request.match_info["lang"]
    if lang not in LANGS:
        raise web.HTTPNotFound()
    resp = redirect(safe_next(request.query.get("next"), "/"))
    set_lang_cookie(request, resp, lang)
    await _remember_lang(request, session_of(request).member_id, lang)
    return resp
