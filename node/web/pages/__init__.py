"""Server-rendered pages for traders: markets, trading, funds, API keys, and the member's account.

Every page works without JavaScript (forms post and redirect back); with it, the market page stays
live (book, trades, chart, the member's orders and balances) and its forms are sent with `fetch`, so
placing or cancelling an order never reloads the page. Handlers that the scripts call answer JSON
when asked for it (`Accept: application/json`), with the same per-field errors as the page.

Sessions, CSRF and the template context (translator, member, CSRF field) come from
`node.web.session`'s middleware; members' accounts from `node.members`.

One module per feature: `home` (the market list), `market` (a market's page), `trading` (placing
and cancelling orders), `login` (sign up, activation, log in and out, password reset), `account`
(profile, password, language), `funds`, `apikeys`, `notices`, `orders` (order and trade history),
and `common` (what they share). The security pages (`security/`), the admin area (`admin/`), the
member's identity, support tickets and editable pages (`kyc`, `support`, `cms`, with their routes
in `member_extra`) and proof of solvency (`solvency`) are registered by the app on their own. Here:
the set-up and the routes of the member pages.
"""

from __future__ import annotations

import aiohttp_jinja2
from aiohttp import web

from node.members import Members
from node.notices import Notices
from node.web import session as sessions
from node.web.i18n import LANGS, translator
from node.web.pages.account import account, change_password, switch_lang
from node.web.pages.apikeys import api_key_create, api_key_delete, api_keys
from node.web.pages.common import MEMBERS, NOTICES, path_id, redirect, require_member, wants_json
from node.web.pages.funds import funds, funds_balances, withdraw, withdraw_cancel
from node.web.pages.home import index
from node.web.pages.login import (
    activate,
    forgot_password,
    login,
    login_second_factor,
    logout,
    resend_activation,
    reset_password,
    signup,
)
from node.web.pages.market import market, market_me, markets_status
from node.web.pages.notices import notices_json
from node.web.pages.trading import cancel_all, cancel_order, place_order
from node.web.session import Session, error_page


def add_routes(app: web.Application, members: Members, notices: Notices, session_store: sessions.SessionStore) -> None:
    """The member pages, with the services they use (made by node/bootstrap.py); template defaults
    for pages rendered outside the middleware."""
    app[sessions.SESSIONS] = session_store
    app[MEMBERS] = members
    app[NOTICES] = notices
    env = aiohttp_jinja2.get_env(app)
    env.globals.update({"_": translator("en"), "langs": LANGS, "lang": "en", "html_lang": "en",
                        "current_member": None, "csrf_field": lambda: "", "csrf_token": lambda: "",
                        "flashes": list, "js_i18n": translator("en").js, "here": "/", "markets_nav": []})
    r = app.router
    r.add_get("/", index)
    r.add_get("/markets/status.json", markets_status)
    r.add_get("/markets/{market}", market)
    r.add_get("/markets/{market}/me.json", market_me)
    r.add_post("/markets/{market}/orders", place_order)
    r.add_post("/markets/{market}/orders/cancel_all", cancel_all)
    r.add_post("/orders/{id}/cancel", cancel_order)
    for path, handler in (("/signup", signup), ("/activation/resend", resend_activation), ("/login", login),
                          ("/login/2fa", login_second_factor), ("/password/forgot", forgot_password),
                          ("/password/reset/{token}", reset_password)):
        r.add_get(path, handler)
        r.add_post(path, handler)
    r.add_get("/activate/{token}", activate)
    r.add_post("/logout", logout)
    r.add_get("/account", account)
    r.add_post("/account/password", change_password)
    r.add_get("/funds", funds)
    r.add_get("/funds/balances.json", funds_balances)
    r.add_post("/funds/{currency}/withdraw", withdraw)
    r.add_post("/funds/withdraws/{id}/cancel", withdraw_cancel)
    r.add_get("/api_keys", api_keys)
    r.add_post("/api_keys", api_key_create)
    r.add_post("/api_keys/{id}/delete", api_key_delete)
    r.add_get("/lang/{lang}", switch_lang)
    r.add_get("/notices.json", notices_json)


__all__ = ["MEMBERS", "NOTICES", "Session", "add_routes", "error_page", "path_id", "redirect", "require_member",
           "wants_json"]
