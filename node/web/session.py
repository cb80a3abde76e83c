"""Sessions of the pages, kept in the database, and the CSRF check of every form.

The cookie holds only a random 256-bit key; the row is found by the key's SHA-256, so a copy of the
database hands out no live session. Every node of a cluster reads the same table, so a member's next
request may land on any node. The cookie is HttpOnly (scripts never see it), SameSite=Lax (other
sites' forms and scripts do not carry it) and, when the request came over TLS, Secure with the
`__Host-` prefix (only ever set by this exact origin).

A session ends after `IDLE_MS` without a request or `ABSOLUTE_MS` after it began, whichever comes
first; it gets a new key and a new CSRF token whenever the member behind it changes (log in, log
out), so a key planted before log in is worthless after it (session fixation).

Anonymous visitors get a session row only once a page shows them a form (its CSRF token must be
remembered somewhere): reading market pages writes nothing.

CSRF: every request with a method other than GET/HEAD/OPTIONS to a page (everything outside
`/api/` and `/static/`) must carry the session's token, as the `csrf_token` form field or the
`X-CSRF-Token` header (scripts); otherwise it is refused with 403 before its handler runs, so a
forged request changes nothing. Templates put the token into forms with `{{ csrf_field() }}`.

The security module (two-factor) plugs in through `SECOND_FACTOR`: an object with `required(member_id, action)`
and `verify(member_id, action, code)`. The pages ask it at log in and when an API key is created;
with none registered, no code is asked.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp_jinja2
from aiohttp import web
from markupsafe import Markup, escape

from node.clock import now_ms
from node.errors import ExchangeError
from node.exchange import Exchange
from node.store import Store
from node.web.api import EXCHANGE
from node.web.edge import Quiet, read_form, too_large
from node.web.i18n import LANG_COOKIE, LANGS, Translator, pick_lang, translator
from node.web.inputs import check_request, shown

log = logging.getLogger(__name__)
_csrf_quiet = Quiet()  # a flood of forged forms is a few lines a second, not one line each

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

COOKIE = "sid"
SECURE_COOKIE = "__Host-sid"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
IDLE_MS = 2 * 3_600_000
ABSOLUTE_MS = 24 * 3_600_000
TOUCH_MS = 60_000  # seen_at is written at most once a minute per session
PURGE_MS = 600_000  # expired rows are deleted at most every ten minutes
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
FORM_TYPES = ("", "application/x-www-form-urlencoded", "multipart/form-data")
BYPASS = ("/api/", "/static/")


class SecondFactor(Protocol):
    """What the two-factor module (node/security) provides; `verify` raises a FormError on the `otp_code` field."""

    async def required(self, member_id: int, action: str) -> bool: ...
    async def verify(self, member_id: int, action: str, code: str) -> None: ...


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass
class Session:
    key: str
    csrf: str
    created_at: int
    seen_at: int
    expires_at: int
    ip: str = ""
    user_agent: str = ""
    member_id: int | None = None
    email: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    stored: bool = False  # a row exists
    dirty: bool = False  # the row must be written at the end of the request
    old_key: str | None = None  # the key before a rotation, whose row must go
    wanted: bool = False  # something (a form's token, a message) needs this session to be kept
    new_cookie: bool = False  # the key changed in this request: the browser must get it

    @property
    def authenticated(self) -> bool:
        return self.member_id is not None

    def csrf_token(self) -> str:
        """The token for a form; an anonymous session becomes persistent once it has handed one out."""
        self.wanted = True
        return self.csrf

    def csrf_field(self) -> Markup:
        return Markup('<input type="hidden" name="{}" value="{}">').format(CSRF_FIELD, escape(self.csrf_token()))

    def flash(self, message: str, kind: str = "info") -> None:
        """A message for the next page this session sees (after a redirect)."""
        self.data.setdefault("flash", []).append([kind, message])
        self.dirty = self.wanted = True

    def pop_flashes(self) -> list[tuple[str, str]]:
        items = self.data.pop("flash", [])
        if items:
            self.dirty = True
        return [(k, m) for k, m in items]

    def set(self, key: str, value: Any) -> None:
        self.data[key] = value
        self.dirty = self.wanted = True

    def pop(self, key: str) -> Any:
        if key in self.data:
            self.dirty = True
        return self.data.pop(key, None)


SESSION_KEY = web.RequestKey("session", Session)  # the page's session; other modules (proof of solvency) read it
TRANSLATOR_KEY = web.RequestKey("translator", Translator)
PAGE_CONTEXT = web.RequestKey("page_context", dict)  # what every template of the request gets (`render`)


class SessionStore:
    def __init__(self, store: Store, clock: Callable[[], int] = now_ms) -> None:
        self.store = store
        self.clock = clock
        self._last_purge = 0

    def new(self, ip: str = "", user_agent: str = "") -> Session:
        now = self.clock()
        return Session(key=secrets.token_urlsafe(32), csrf=secrets.token_urlsafe(32), created_at=now, seen_at=now,
                       expires_at=min(now + IDLE_MS, now + ABSOLUTE_MS), ip=ip[:64], user_agent=user_agent[:256])

    async def load(self, key: str) -> Session | None:
        if not key or len(key) > 100:
            return None
        row = await self.store.fetchrow(
            "SELECT s.*, m.email AS member_email, m.disabled AS member_disabled FROM web_sessions s "
            "LEFT JOIN members m ON m.id = s.member_id WHERE s.id = ?", key_hash(key))
        if row is None:
            return None
        now = self.clock()
        if int(row["expires_at"]) <= now or (row["member_id"] is not None and (row["member_email"] is None or row["member_disabled"])):
            await self.store.execute("DELETE FROM web_sessions WHERE id = ?", key_hash(key))
            return None
        try:
            data = json.loads(row["data"] or "{}")
        except ValueError:
            data = {}
        s = Session(key=key, csrf=row["csrf"], created_at=int(row["created_at"]), seen_at=int(row["seen_at"]),
                    expires_at=int(row["expires_at"]), ip=row["ip"], user_agent=row["user_agent"],
                    member_id=int(row["member_id"]) if row["member_id"] is not None else None,
                    email=row["member_email"] or "", data=data if isinstance(data, dict) else {}, stored=True, wanted=True)
        if now - s.seen_at >= TOUCH_MS:
            s.seen_at = now
            s.expires_at = min(now + IDLE_MS, s.created_at + ABSOLUTE_MS)
            s.dirty = True
        return s

    async def save(self, s: Session) -> None:
        if s.old_key is not None:
            await self.store.execute("DELETE FROM web_sessions WHERE id = ?", key_hash(s.old_key))
            s.old_key = None
        data = json.dumps(s.data, separators=(",", ":"))
        if s.stored:
            await self.store.execute(
                "UPDATE web_sessions SET member_id = ?, csrf = ?, data = ?, seen_at = ?, expires_at = ? WHERE id = ?",
                s.member_id, s.csrf, data, s.seen_at, s.expires_at, key_hash(s.key))
        else:
            await self.store.execute(
                "INSERT INTO web_sessions (id, member_id, csrf, data, ip, user_agent, created_at, seen_at, expires_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                key_hash(s.key), s.member_id, s.csrf, data, s.ip, s.user_agent, s.created_at, s.seen_at, s.expires_at)
            s.stored = s.new_cookie = True
            await self._purge()
        s.dirty = False

    async def _purge(self) -> None:
        now = self.clock()
        if now - self._last_purge >= PURGE_MS:
            self._last_purge = now
            await self.store.execute("DELETE FROM web_sessions WHERE expires_at <= ?", now)

    def rotate(self, s: Session, member_id: int | None, email: str = "") -> None:
        """A new key and CSRF token for a new member (or none: log out), and no data carried over."""
        if s.stored:
            s.old_key = s.key
        now = self.clock()
        s.key = secrets.token_urlsafe(32)
        s.csrf = secrets.token_urlsafe(32)
        s.member_id, s.email = member_id, email
        s.created_at = s.seen_at = now
        s.expires_at = min(now + IDLE_MS, now + ABSOLUTE_MS)
        s.data = {}
        s.stored = False
        s.dirty = s.wanted = True

    async def end_member_sessions(self, member_id: int, keep: Session | None = None) -> int:
        """Log a member out everywhere (after a password change or reset), but for `keep`."""
        if keep is not None and keep.stored:
            return await self.store.execute(
                "DELETE FROM web_sessions WHERE member_id = ? AND id <> ?", member_id, key_hash(keep.key))
        return await self.store.execute("DELETE FROM web_sessions WHERE member_id = ?", member_id)

    async def of_member(self, member_id: int) -> list[dict[str, Any]]:
        rows = await self.store.fetch(
            "SELECT ip, user_agent, created_at, seen_at FROM web_sessions WHERE member_id = ? ORDER BY seen_at DESC",
            member_id)
        return [dict(r) for r in rows]


SESSIONS = web.AppKey("sessions", SessionStore)
SECOND_FACTOR = web.AppKey("second_factor", SecondFactor)


def session_of(request: web.Request) -> Session:
    s: Session = request[SESSION_KEY]
    return s


def translator_of(request: web.Request) -> Translator:
    t: Translator = request[TRANSLATOR_KEY]
    return t


def safe_next(target: str | None, default: str = "/") -> str:
    """Only a path on this site: `next=https://evil` or `//evil` would make us an open redirect."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")) or any(c in target for c in "\r\n\\"):
        return default
    return target[:500]


async def _csrf_ok(request: web.Request, s: Session) -> bool:
    """A visitor who was never shown a form has no token: refused before the body is even read.
    Otherwise the form is read (within the edge's limits) and every field checked, then the token."""
    if not s.stored:
        return False
    sent = request.headers.get(CSRF_HEADER)
    form = await read_form(request) if request.content_type in FORM_TYPES else None
    if sent is None and form is not None:
        value = form.get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    return sent is not None and bool(sent) and secrets.compare_digest(sent.encode(), s.csrf.encode())


def _client_ip(request: web.Request) -> str:
    return request.remote or ""


def _context(request: web.Request, s: Session, _: Translator) -> dict[str, Any]:
    ex: Exchange = request.app[EXCHANGE]
    return {
        "_": _,
        "lang": _.lang,
        "langs": LANGS,
        "html_lang": _.html_lang,
        "session": s,
        "current_member": {"id": s.member_id, "email": s.email} if s.authenticated else None,
        "csrf_token": s.csrf_token,
        "csrf_field": s.csrf_field,
        "flashes": s.pop_flashes,
        "site_name": ex.config.name,
        "exchange": ex.config.name,
        "markets_nav": list(ex.config.markets.values()),
        "here": request.path_qs,
        "js_i18n": _.js,
    }


def page_context(request: web.Request) -> dict[str, Any]:
    """The context the session middleware gave the request's templates (empty outside the pages)."""
    ctx: dict[str, Any] = request.get(PAGE_CONTEXT) or {}
    return ctx


def render(request: web.Request, template: str, context: dict[str, Any], status: int = 200) -> web.Response:
    resp = aiohttp_jinja2.render_template(template, request, {**page_context(request), **context}, status=status)
    resp.headers["Cache-Control"] = "no-store"  # pages carry personal data and CSRF tokens
    return resp


def error_page(request: web.Request, status: int, title: str, message: str) -> web.Response:
    return render(request, "error.html", {"status": status, "title": title, "message": message}, status=status)


async def _finish(request: web.Request, s: Session, resp: web.StreamResponse) -> None:
    """Write the session if it changed, and hand the browser a new key (before the response is sent)."""
    if s.wanted and (s.dirty or not s.stored or s.old_key is not None):
        await request.app[SESSIONS].save(s)
    if s.new_cookie and not resp.prepared:
        set_cookie(request, resp, SECURE_COOKIE if request.secure else COOKIE, s.key, ABSOLUTE_MS // 1000)


def set_cookie(request: web.Request, resp: web.StreamResponse, name: str, value: str, max_age: int) -> None:
    """HttpOnly and SameSite=Lax always; Secure whenever the request came over TLS."""
    resp.set_cookie(name, value, path="/", secure=request.secure, httponly=True, samesite="Lax", max_age=max_age)


def set_lang_cookie(request: web.Request, resp: web.StreamResponse, lang: str) -> None:
    set_cookie(request, resp, LANG_COOKIE, lang, 365 * 86_400)


@web.middleware
async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Load the session, check CSRF on state-changing requests, give templates their context, and
    turn errors that reach a page into a page (the API keeps its JSON envelope)."""
    if request.path.startswith(BYPASS) or SESSIONS not in request.app:
        return await handler(request)
    sessions = request.app[SESSIONS]
    key = request.cookies.get(SECURE_COOKIE) or request.cookies.get(COOKIE)
    s = await sessions.load(key) if key else None
    if s is None:
        s = sessions.new(_client_ip(request), request.headers.get("User-Agent", ""))
    _ = translator(pick_lang(request.cookies.get(LANG_COOKIE), request.headers.get("Accept-Language")))
    request[SESSION_KEY] = s
    request[TRANSLATOR_KEY] = _
    request[PAGE_CONTEXT] = _context(request, s, _)
    resp: web.StreamResponse
    try:
        check_request(request)  # the query and the path's parameters (a form's fields: in _csrf_ok)
        if too_large(request):  # the route's limit (node/web/edge.py), from Content-Length: nothing read
            raise web.HTTPRequestEntityTooLarge(max_size=request.client_max_size, actual_size=request.content_length or 0)
        if request.method not in SAFE_METHODS and not await _csrf_ok(request, s):
            _csrf_quiet.warn(log, "CSRF check failed on %s %s", request.method, shown(request.path, 200),
                             level=logging.INFO)
            resp = error_page(request, 403, _("This form has expired"), _(
                "The security token of the form was missing or out of date, so nothing was changed. "
                "Please go back, reload the page and try again."))
        else:
            resp = await handler(request)
    except web.HTTPException as e:
        if e.status == 404:
            resp = error_page(request, 404, _("Page not found"), _("There is no page at this address."))
        elif e.status == 405:
            resp = error_page(request, 405, _("Not allowed"), _("This page cannot be used this way."))
        elif e.status == 413:  # over the route's body limit (node/web/edge.py)
            resp = error_page(request, 413, _("Too large"), _(
                "What you sent is too large, so nothing was changed. Files may be at most 5 MB each."))
            resp.force_close()  # the rest of the body is not worth reading
        else:
            await _finish(request, s, e)
            raise
    except ExchangeError as e:
        resp = error_page(request, e.status, _("Something went wrong"), _.error(e))
    await _finish(request, s, resp)
    return resp

