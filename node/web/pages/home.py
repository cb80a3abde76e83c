"""The market list (the home page): every market's 24 h ticker and its halted flag."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from node.clock import now_ms
from node.config import Market
from node.marketdata.service import Ticker
from node.web.api.marketdata import MARKETDATA
from node.web.forms import amount, price, volume
from node.web.market_status import MARKET_STATUS, Status
from node.web.pages.common import WS_PATH, _exchange, _has_route
from node.web.session import render


async def ticker(request: web.Request, m: Market) -> dict[str, Any]:
    """The 24 h ticker of a market, formatted for a page: the API's ticker (node/marketdata), so that the
    pages and `/tickers` agree, and the best bid and ask of a market run on another node are shown too."""
    try:
        t = await request.app[MARKETDATA].ticker(m.id)
    except KeyError:  # a market the service has no feed for (yet): nothing to show
        t = Ticker(now_ms() // 1000, None, None, None, None, None, None, 0, 0)
    last, first, bid, ask = t.last, t.open, t.buy, t.sell
    change = ""
    direction = ""
    if last is not None and first:
        bp = (int(last) - int(first)) * 10_000 // int(first)
        direction = "up" if last > first else "down" if last < first else ""
        change = f"{'+' if bp >= 0 else '-'}{abs(bp) // 100}.{abs(bp) % 100:02d}%"
    elif last is not None:
        change = "+0.00%"

    def p(v: Any) -> str:
        return price(m, int(v)) if v is not None else "—"

    return {
        "id": m.id, "name": m.name, "base": m.base.symbol, "quote": m.quote.symbol,
        "last": p(last), "bid": p(bid), "ask": p(ask), "low": p(t.low), "high": p(t.high), "vol": volume(m, t.vol),
        "quote_vol": amount(t.funds, m.quote), "change": change, "direction": direction,
        "pp": m.price_precision, "vp": m.volume_precision,
    }


def statuses(request: web.Request) -> dict[str, Status]:
    """Every market's halted flag and the admin's reason (node/web/market_status.py)."""
    svc = request.app.get(MARKET_STATUS)
    markets = _exchange(request).config.markets
    return svc.all() if svc is not None else {mid: Status(mid) for mid in markets}


async def index(request: web.Request) -> web.Response:
    ex = _exchange(request)
    rows = [await ticker(request, m) for m in ex.config.markets.values()]
    return render(request, "index.html", {"tickers": rows, "statuses": statuses(request),
                                          "websocket": WS_PATH if _has_route(request.app, WS_PATH) else ""})
