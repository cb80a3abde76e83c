"""The aiohttp application of a node: API v2, pages, static files, and one error envelope. It routes to
the services the composition root (node/bootstrap.py) made and gives it."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web
from aiohttp.typedefs import Middleware

from node.config import HttpConf
from node.errors import ExchangeError, RateLimited, Unavailable
from node.resources import templates_dir
from node.security import audit
from node.services import Services
from node.web import (
    api,
    edge,
    openapi,
    ops,
    pages,
    ws,
)
from node.web.api import KEYS, TONCES
from node.web.api import funds as api_funds
from node.web.api import marketdata as api_marketdata
from node.web.api import solvency as api_solvency
from node.web.api.common import SECURITY_HEADERS
from node.web.auth import Authenticator, TonceActor
from node.web.forwarded import TrustedProxies
from node.web.inputs import shown
from node.web.market_status import MARKET_STATUS, MarketStatus
from node.web.pages import admin as pages_admin
from node.web.pages import member_extra as pages_member_extra
from node.web.pages import orders as pages_orders
from node.web.pages import security as pages_security
from node.web.pages import solvency as pages_solvency
from node.web.pages.security import gate as security_gate
from node.web.pages.security.gate import api_origin
from node.web.ratelimit import RateLimiter
from node.web.session import SessionStore
from node.web.session import middleware as page_sessions
from node.web.ws import Hub

log = logging.getLogger(__name__)

TEMPLATES = templates_dir()  # in the repository, or bundled into an installed package
STATIC = Path(__file__).resolve().parent / "static"


@web.middleware
async def errors(request: web.Request, handler: api.Handler) -> web.StreamResponse:
    """Every ExchangeError becomes Peatio's envelope; anything else a logged 500 without internals."""
    try:
        return await handler(request)
    except Exception as e:
        return error_answer(request, e)


def error_answer(request: web.Request, e: Exception) -> web.StreamResponse:
    """The answer to what a handler raised (`errors`); a page's HTTP exception is raised again, for
    aiohttp (or the pages' middleware) to answer."""
    if isinstance(e, ExchangeError):
        resp = api.json_response(e.to_dict(), status=e.status)
        if isinstance(e, RateLimited):
            resp.headers["Retry-After"] = str(e.retry_after)
        return resp
    if isinstance(e, web.HTTPException):
        if request.path.startswith("/api/") and e.status >= 400:
            code = 1001 if e.status < 500 else 3000
            return api.json_response({"error": {"code": code, "message": e.reason}}, status=e.status)
        raise e
    if store_unreachable(e):
        log.warning("storage unreachable on %s %s: %r", request.method, shown(request.path, 200), e)
        return api.json_response(Unavailable("storage is unreachable, retry (a request cut off while committing may have been done: resend orders with the same client_id)").to_dict(), status=503)
    log.exception("unhandled error on %s %s", request.method, shown(request.path, 200), exc_info=e)
    return api.json_response({"error": {"code": 3000, "message": "internal error"}}, status=500)


def store_unreachable(e: BaseException) -> bool:
    """A lost database connection is an outage (503, retry), not a bug (500)."""
    if isinstance(e, (ConnectionError, OSError, sqlite3.OperationalError)):
        return True
    try:
        import asyncpg
    except ImportError:  # pragma: no cover - asyncpg is a dependency
        return False
    # Lost connections, the server shutting down or not accepting yet (OperatorIntervention: 57P0x),
    # and a pooled connection left half-way by one that was cut (InternalClientError, raised before
    # anything is sent): all outages, in which the statement did not run.
    return isinstance(e, (asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
                          asyncpg.exceptions.OperatorInterventionError, asyncpg.exceptions.InternalClientError))


@web.middleware
async def security_headers(request: web.Request, handler: api.Handler) -> web.StreamResponse:
    api_path = request.path.startswith("/api/")
    try:
        resp = await handler(request)
    except web.HTTPException as e:  # a redirect or a page's 404, raised for aiohttp to answer: ours too
        secured(request, e, api_path)
        raise
    return secured(request, resp, api_path)


def secured(request: web.Request, resp: web.StreamResponse, api_path: bool) -> web.StreamResponse:
    """The security headers of every answer (`security_headers`); `api_path`: the request is under
    `/api/` (no Content-Security-Policy: the API answers no pages)."""
    h = resp.headers
    for name, value in SECURITY_HEADERS.items():
        h.setdefault(name, value)
    # The request's own dict, not `request.get`: the mapping's `get` raises and catches a KeyError
    # inside for every request that was not signed.
    shard_node = request._state.get(api.SHARD_NODE)
    if shard_node:  # a signed API answer in a cluster: where the member's requests cost no bus hop
        h["X-Shard-Node"] = shard_node
    if request.secure:  # HSTS only over TLS (RFC 6797 §7.2: a plain-HTTP answer must not carry it)
        h.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
    if not api_path:
        h.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; "
            "frame-ancestors 'none'",
        )
    return resp


def api_chain(page_chain: tuple[Middleware, ...]) -> tuple[Middleware, Callable[[web.Application], Awaitable[None]]]:
    """The middleware chain of an API request, in one frame: `security_headers`, `errors`, the
    edge's body limits and text checks (`edge.middleware`'s, with the configuration read once at
    start: `edge.api_limits`, `edge.guarded`), and the audit origin (the security gate's); then the
    route's handler. The sessions' middleware and the gate's page work (log-in
    limits, two-factor prompts) have nothing to do for the API, and each middleware they skip is a
    frame and a call per request. Every other request takes `page_chain`, the full chain.

    A middleware added to the application after it was made (a test's stand-in for a session, say)
    is never skipped: the chain checks at start that the application's middlewares are still
    `page_chain` (the second function returned, for `on_startup`), and otherwise sends API
    requests through them too."""
    fast = [False]
    confs: list[HttpConf] = []

    async def check(app: web.Application) -> None:
        fast[0] = [m for m in app.middlewares if m is not chain] == list(page_chain)
        confs[:] = [app.get(edge.CONF) or HttpConf()]

    @web.middleware
    async def chain(request: web.Request, handler: api.Handler) -> web.StreamResponse:
        if not fast[0] or not request.path.startswith("/api/"):
            return await handler(request)
        token = audit.set_origin(api_origin(request))
        try:
            route = request.match_info.handler
            limit, seconds = edge.api_limits(request, route, confs[0])
            resp = await edge.guarded(request, route, limit, seconds, True)
        except web.HTTPException as e:
            if e.status < 400:  # a redirect, raised on for aiohttp to answer: with the security headers too
                secured(request, e, True)
                raise
            resp = error_answer(request, e)
        except Exception as e:
            resp = error_answer(request, e)
        finally:
            audit.reset_origin(token)
        return secured(request, resp, True)

    return chain, check


@dataclass(frozen=True)
class WebParts:
    """What only the web app uses, made by the composition root (node/bootstrap.py) beside the services."""

    tonces: TonceActor  # burns signed requests' tonces (the replay memory)
    auth: Authenticator  # API v2 signatures
    sessions: SessionStore  # the pages' sessions
    limiter: RateLimiter  # API v2 request rates, from [api]
    status: MarketStatus  # each market's open/halted/unreachable state, for the pages and the websocket
    hub: Hub  # the websocket's clients and what they follow


def make_app(services: Services, parts: WebParts, *, ops_routes: bool = True) -> web.Application:
    """The node's application, routing to the services it is given (it makes none).
    `ops_routes=False` when the operator endpoints have a listener of their own (node/web/ops.py):
    the public port then does not answer them at all."""
    # edge (body limits, text checks) runs inside errors, so its refusals get the API's envelope;
    # security_gate runs inside the sessions' middleware: after the CSRF check, with the session known
    exchange = services.exchange
    conf = exchange.config.http
    page_chain: list[Middleware] = [security_headers, errors, edge.middleware, page_sessions, security_gate]
    proxies = TrustedProxies(conf.trusted_proxies)
    if proxies:  # first: every later middleware and handler sees the client's address and scheme
        page_chain.insert(0, proxies.middleware())
    fast, check = api_chain(tuple(page_chain))
    first = 1 if proxies else 0  # the API's chain runs right after the proxies' middleware
    app = web.Application(middlewares=[*page_chain[:first], fast, *page_chain[first:]], client_max_size=conf.upload_body_max)
    app.on_startup.append(check)
    app[edge.CONF] = conf
    edge.quiet_malformed()
    app[api.EXCHANGE] = exchange
    app[KEYS] = services.keys
    app[TONCES] = parts.tonces
    app[api.AUTH] = parts.auth
    app[MARKET_STATUS] = parts.status

    async def lifecycle(app: web.Application):  # type: ignore[no-untyped-def]
        await services.start()
        await parts.tonces.start()
        await parts.status.start()
        yield
        await parts.status.stop()
        await parts.tonces.stop()
        await services.stop()

    app.cleanup_ctx.append(lifecycle)
    aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True)
    api_funds.add_routes(app)  # first: it serves /deposits, /deposit, /deposit_address, /withdraws
    api.add_routes(app, parts.limiter)
    openapi.add_routes(app)
    api_marketdata.add_routes(app, services.marketdata)
    ws.setup(app, parts.hub)  # started after the services: it reads the market data
    pages.add_routes(app, services.members, services.notices, parts.sessions)
    pages_security.add_routes(app, services.security)
    if ops_routes:
        ops.add_routes(app)
    api_solvency.add_routes(app, services.solvency)
    pages_solvency.add_routes(app)
    pages_admin.add_routes(app, services.admin, services.kyc, services.tickets, services.uploads)
    pages_member_extra.add_routes(app, services.kyc, services.tickets)
    pages_orders.add_routes(app)
    app.router.add_static("/static/", STATIC)
    return app
