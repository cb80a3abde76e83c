"""The admin dashboard: money, members, markets and nodes at a glance, and the chart series."""

from __future__ import annotations

from aiohttp import web

from node.admin import dashboard
from node.admin.roles import Actor
from node.clock import now_ms
from node.exchange import Exchange
from node.web.api import EXCHANGE, json_response
from node.web.forms import fee_percent, price, volume
from node.web.pages.admin.common import _context, route
from node.web.session import render


@route("GET", "/admin", "dashboard")
async def home(request: web.Request, actor: Actor) -> web.StreamResponse:
    ex: Exchange = request.app[EXCHANGE]
    return render(request, "admin/dashboard.html", await _context(
        request, actor, "dashboard", money=await dashboard.currencies(ex), members=await dashboard.members(ex),
        markets=await dashboard.markets(ex), nodes=await dashboard.nodes(ex), series=await dashboard.series(ex),
        price=price, volume=volume, fee_percent=fee_percent, now=now_ms()))


@route("GET", "/admin/stats.json", "dashboard")
async def stats(request: web.Request, actor: Actor) -> web.StreamResponse:
    return json_response(await dashboard.series(request.app[EXCHANGE]), headers={"Cache-Control": "no-store"})
