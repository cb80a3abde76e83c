"""Operator endpoints of a node: its status (actors, mailboxes, books, leases, bus), on loopback only."""

from __future__ import annotations

from aiohttp import web

from node.web.api import EXCHANGE, json_response


async def ops_status(request: web.Request) -> web.Response:
    """Who runs what, mailbox depths, queue lags and books' state hashes; loopback requests only."""
    if request.remote not in ("127.0.0.1", "::1"):
        raise web.HTTPForbidden(text="status is only served to local requests")
    return json_response(await request.app[EXCHANGE].cluster_status())


def add_routes(app: web.Application) -> None:
    app.router.add_get("/ops/status", ops_status)
