"""Server-rendered pages: the market list and a live market page (book, trades) for everyone."""

from __future__ import annotations

from typing import Any

import aiohttp_jinja2
from aiohttp import web

from node.web.api import EXCHANGE, json_response
from node.web.format import price_str, volume_str


@aiohttp_jinja2.template("index.html")
async def index(request: web.Request) -> dict[str, Any]:
    ex = request.app[EXCHANGE]
    rows = []
    for m in ex.config.markets.values():
        actor = ex.markets.get(m.id)
        last = actor.engine.last_price if actor else None
        bid = actor.engine.best_bid() if actor else None
        ask = actor.engine.best_ask() if actor else None
        rows.append({
            "id": m.id, "name": m.name,
            "last": price_str(m, last) if last is not None else "—",
            "bid": price_str(m, bid) if bid is not None else "—",
            "ask": price_str(m, ask) if ask is not None else "—",
        })
    return {"exchange": ex.config.name, "markets": rows}


@aiohttp_jinja2.template("market.html")
async def market(request: web.Request) -> dict[str, Any]:
    ex = request.app[EXCHANGE]
    m = ex.config.markets.get(request.match_info["market"])
    if m is None:
        raise web.HTTPNotFound(text="no such market")
    actor = ex.markets.get(m.id)
    asks, bids = actor.engine.depth(20) if actor else ([], [])
    rows = await ex.store.fetch("SELECT * FROM trades WHERE market = ? ORDER BY id DESC LIMIT 30", m.id)
    return {
        "exchange": ex.config.name,
        "market": m,
        "asks": [(price_str(m, p), volume_str(m, v)) for p, v in reversed(asks)],
        "bids": [(price_str(m, p), volume_str(m, v)) for p, v in bids],
        "trades": [{"price": price_str(m, r["price"]), "volume": volume_str(m, r["volume"]), "side": r["taker_side"],
                    "at": r["created_at"]} for r in rows],
        "markets": list(ex.config.markets.values()),
    }


async def ops_status(request: web.Request) -> web.Response:
    """Node status for operators (actors, mailboxes, books' state hashes); answered on loopback only."""
    if request.remote not in ("127.0.0.1", "::1"):
        raise web.HTTPForbidden(text="status is only served to local requests")
    return json_response(await request.app[EXCHANGE].cluster_status())


def add_routes(app: web.Application) -> None:
    app.router.add_get("/ops/status", ops_status)
    app.router.add_get("/", index)
    app.router.add_get("/markets/{market}", market)
