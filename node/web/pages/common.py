"""What the member pages share: the members and notices services (app keys), redirects, the
logged-in member, ids and markets from the path, posted forms; and the words the pages show from
data, marked for the catalog.
"""

from __future__ import annotations

from aiohttp import web
from yarl import URL

from node.config import Market
from node.exchange import Exchange
from node.members import LoginAttempt, Members
from node.notices import Notices
from node.web.api import EXCHANGE
from node.web.forms import Form
from node.web.i18n import N_
from node.web.session import safe_next, session_of

MEMBERS = web.AppKey("members", Members)
NOTICES = web.AppKey("notices", Notices)

# Words the pages show from data (translated with `_(value)`), marked here for the catalog.
DATA_WORDS = (
    N_("buy"), N_("sell"), N_("limit"), N_("market"), N_("wait"), N_("done"), N_("cancel"),
    N_("submitted"), N_("accepted"), N_("rejected"), N_("processing"), N_("canceled"), N_("suspect"), N_("failed"),
    N_("almost_done"), N_("skipped"), N_("reverted"),
    N_("checked"), N_("warning"), N_("cancelled"), N_("profile"), N_("history"), N_("trade"), N_("all"),
    N_("stop_limit"), N_("gtc"), N_("ioc"), N_("fok"), N_("post_only"),
)

WS_PATH = "/ws"  # the websocket API (node/web/ws/, docs/websocket.md), when the app serves it


def _has_route(app: web.Application, path: str) -> bool:
    return any(getattr(r.resource, "canonical", None) == path for r in app.router.routes())


def wants_json(request: web.Request) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def redirect(location: str) -> web.Response:
    """303 See Other: after a POST the browser GETs the next page (a reload does not post again)."""
    return web.Response(status=303, headers={"Location": location})


def require_member(request: web.Request) -> int:
    """The logged-in member's id; otherwise off to the log in page (or 401 for scripts)."""
    s = session_of(request)
    if s.member_id is None:
        if wants_json(request) or request.path.endswith(".json"):
            raise web.HTTPUnauthorized(text='{"error":"log in first"}', content_type="application/json")
        target = request.path_qs if request.method == "GET" else _local(request.headers.get("Referer", "/"))
        raise web.HTTPSeeOther(str(URL("/login").with_query(next=safe_next(target))))
    return s.member_id


def path_id(request: web.Request, name: str = "id") -> int:
    """The row id in the path, or 404: a malformed or out-of-range id names nothing, like a missing row."""
    try:
        value = int(request.match_info[name])
    except ValueError:
        raise web.HTTPNotFound() from None
    if not 0 < value < 2**62:
        raise web.HTTPNotFound()
    return value


def _local(url: str) -> str:
    """The path and query of a same-site URL (a Referer), else "/"."""
    u = URL(url)
    return u.path_qs if not u.is_absolute() or u.host is not None else "/"


def _exchange(request: web.Request) -> Exchange:
    return request.app[EXCHANGE]


def _market(request: web.Request) -> Market:
    m = _exchange(request).config.markets.get(request.match_info["market"])
    if m is None:
        raise web.HTTPNotFound()
    return m


async def _form(request: web.Request, secret: tuple[str, ...] = ()) -> Form:
    return Form(await request.post(), secret=secret)


def _attempt(request: web.Request) -> LoginAttempt:
    return LoginAttempt(ip=request.remote or "", user_agent=request.headers.get("User-Agent", ""))
