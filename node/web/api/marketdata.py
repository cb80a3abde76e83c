"""Market data endpoints of API v2 (`/tickers`, `/tickers/:market`, `/k`, `/k_with_pending_trades`).

Answered from the node's `MarketData` (memory, and the store for old candles), in Peatio's shapes.
K-line values are JSON numbers, as Peatio's `/k` returned them (its charts read them as numbers),
written from the exact decimal strings so no float ever rounds them.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from node.config import Market
from node.errors import InvalidParameter
from node.exchange import Exchange
from node.marketdata import PERIODS, MarketData, Ticker
from node.web.api.common import Handler, json_response
from node.web.api.common import _public as api_public
from node.web.format import price_str, volume_str
from node.web.params import Params

MARKETDATA = web.AppKey("marketdata", MarketData)
PENDING_TRADES_MAX = 10_000
"""Bound on `/k_with_pending_trades`' trades (Peatio had none; its window is one candle anyway)."""


async def _md_public(request: web.Request) -> tuple[Exchange, MarketData, Params]:
    """api.py's public preamble (signed calls checked, rate limits counted, path params merged)."""
    ex, params = await api_public(request)
    return ex, request.app[MARKETDATA], params


def ticker_json(m: Market, t: Ticker) -> dict[str, Any]:
    """Peatio's `{at, ticker: {buy, sell, low, high, last, vol}}`, plus the 24 h `open`; "0.0" when empty."""

    def p(v: int | None) -> str:
        return price_str(m, v) if v is not None else "0.0"

    return {"at": t.at, "ticker": {"buy": p(t.buy), "sell": p(t.sell), "low": p(t.low), "high": p(t.high),
                                   "last": p(t.last), "open": p(t.open), "vol": volume_str(m, t.vol)}}


def kline_json(m: Market, row: tuple[int, ...]) -> list[Any]:
    """[ts, open, high, low, close, volume] with JSON numbers spelled from exact decimals."""
    ts, o, h, lo, c, v = row[:6]
    f = orjson.Fragment
    return [ts, f(price_str(m, o)), f(price_str(m, h)), f(price_str(m, lo)), f(price_str(m, c)), f(volume_str(m, v))]


async def tickers(request: web.Request) -> web.Response:
    ex, md, _ = await _md_public(request)
    return json_response({mid: ticker_json(m, await md.ticker(mid)) for mid, m in ex.config.markets.items()})


async def ticker(request: web.Request) -> web.Response:
    ex, md, _ = await _md_public(request)
    m = ex.market(request.match_info["market"])
    return json_response(ticker_json(m, await md.ticker(m.id)))


async def _k(ex: Exchange, md: MarketData, params: Params) -> tuple[Market, list[tuple[int, int, int, int, int, int]]]:
    m = ex.market(params.get("market"))
    limit = params.get_int("limit", default=30, min_value=1, max_value=10_000)
    period = params.get_int("period", default=1)
    if period not in PERIODS:
        raise InvalidParameter("period does not have a valid value", "period")
    ts = params.get_int("timestamp", min_value=0)
    rows = await md.klines(m.id, period, limit, ts)
    return m, rows


async def k(request: web.Request) -> web.Response:
    ex, md, params = await _md_public(request)
    m, rows = await _k(ex, md, params)
    return json_response([kline_json(m, r) for r in rows])


async def k_with_pending_trades(request: web.Request) -> web.Response:
    """Candles plus the trades from the last candle's start with an id below `trade_id`: a chart that
    got its newest trades from a stream rebuilds its last candle from these (Peatio's contract)."""
    ex, md, params = await _md_public(request)
    trade_id = params.get_int("trade_id", required=True)
    m, rows = await _k(ex, md, params)
    trades: list[dict[str, Any]] = []
    if rows and trade_id > 0:
        found = await ex.store.fetch(
            "SELECT id, price, volume, created_at FROM trades WHERE market = ? AND created_at >= ? AND id < ? "
            "ORDER BY id LIMIT ?", m.id, rows[-1][0] * 1000, trade_id, PENDING_TRADES_MAX)
        if found:
            prev = await ex.store.fetchval(
                "SELECT price FROM trades WHERE market = ? AND id < ? ORDER BY id DESC LIMIT 1", m.id, int(found[0]["id"]))
            for r in found:
                price = int(r["price"])
                # Peatio's `type` is the trend: up (buy) when the price did not fall from the trade before.
                trend = "buy" if prev is None or price >= int(prev) else "sell"
                prev = price
                trades.append({"tid": int(r["id"]), "type": trend, "date": int(r["created_at"]) // 1000,
                               "price": price_str(m, price), "amount": volume_str(m, int(r["volume"]))})
    return json_response({"k": [kline_json(m, r) for r in rows], "trades": trades})


ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", "/tickers", tickers),
    ("GET", "/tickers/{market:[a-z0-9]+}", ticker),
    ("GET", "/k", k),
    ("GET", "/k_with_pending_trades", k_with_pending_trades),
]


def add_routes(app: web.Application, md: MarketData) -> None:
    """The routes of the node's market data service (which node/services.py starts and stops)."""
    app[MARKETDATA] = md
    for method, path, handler in ROUTES:
        app.router.add_route(method, "/api/v2" + path + ".json", handler)
        app.router.add_route(method, "/api/v2" + path, handler)
