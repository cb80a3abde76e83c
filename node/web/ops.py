"""Operator endpoints of a node: /healthz, /readyz, /metrics and its status.

They are served either by a listener of their own (`[ops] host`/`port`, or a node's `ops_port`: the
operators' network, the load balancer's health checks, Prometheus), or, without one, by the main
listener to loopback clients only. A request that a proxy on the same machine forwarded also comes
from loopback, so there any proxy header refuses it: the public could otherwise read them through
a local load balancer.
"""

from __future__ import annotations

import time

from aiohttp import web

from node.exchange import Exchange
from node.metrics import CONTENT_TYPE, readiness
from node.web.api import EXCHANGE, json_response

LOOPBACK = ("127.0.0.1", "::1")
PROXY_HEADERS = ("X-Forwarded-For", "Forwarded", "X-Real-IP", "X-Forwarded-Host", "X-Forwarded-Proto")
LOCAL_ONLY = web.AppKey("ops_local_only", bool)


def _guard(request: web.Request) -> None:
    if not request.app.get(LOCAL_ONLY, True):
        return  # the operators' own listener: reachable only where it was bound
    if request.remote not in LOOPBACK or any(h in request.headers for h in PROXY_HEADERS):
        raise web.HTTPForbidden(text="operator endpoints are only served to local requests")


async def healthz(request: web.Request) -> web.Response:
    """Alive: the process runs and its event loop answers. Nothing else is asked, so a restart is
    never triggered by an outage of the store or the bus (that is /readyz)."""
    _guard(request)
    ex = request.app[EXCHANGE]
    return json_response({"alive": True, "node": ex.node.name, "boot": ex.leases.boot,
                          "uptime": round(time.time() - ex.started_at, 1)})


async def readyz(request: web.Request) -> web.Response:
    """200 when this node should get traffic, else 503 with the failed checks."""
    _guard(request)
    ex = request.app[EXCHANGE]
    ok, body = await readiness(ex, draining=ex.metrics.draining)
    return json_response(body, status=200 if ok else 503)


async def metrics(request: web.Request) -> web.Response:
    """Prometheus' text format."""
    _guard(request)
    ex = request.app[EXCHANGE]
    await ex.metrics.refresh()
    return web.Response(body=ex.metrics.render(), headers={"Content-Type": CONTENT_TYPE})


async def ops_status(request: web.Request) -> web.Response:
    """Who runs what, mailbox depths, queue lags and books' state hashes."""
    _guard(request)
    return json_response(await request.app[EXCHANGE].cluster_status())


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/ops/status", ops_status)


def make_ops_app(exchange: Exchange) -> web.Application:
    """The operators' own application, for a listener of its own: these routes and nothing else."""
    app = web.Application()
    app[EXCHANGE] = exchange
    app[LOCAL_ONLY] = False
    add_routes(app)
    return app
