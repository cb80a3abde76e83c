"""REST API v2, wire-compatible with Peatio (see shared/PEATIO.md), under `/api/v2`.

Handlers are thin: parse params (query merged with body, like Rack), authenticate when private,
ask the exchange, format Peatio's JSON. Every path also answers with a `.json` suffix.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from node.apikeys import Token
from node.errors import InvalidParameter, OrderNotFound
from node.exchange import Exchange, inputs_from
from node.money import format_units
from node.web.auth import Authenticator, require_scope
from node.web.format import funds_str, iso, order_json, price_str, trade_json, volume_str
from node.web.params import Params, parse_params

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
EXCHANGE = web.AppKey("exchange", Exchange)
AUTH = web.AppKey("auth", Authenticator)


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json",
                        headers={"Access-Control-Allow-Origin": "*"})


async def request_params(request: web.Request) -> Params:
    body = await request.read() if request.can_read_body else b""
    return parse_params(request.rel_url.raw_query_string, body, request.content_type if body else "")


async def signed(request: web.Request, params: Params) -> Token:
    auth = request.app[AUTH]
    return await auth.authenticate(request.method, request.rel_url.raw_path, params, request.remote)


def _limit(params: Params, name: str, default: int, hi: int) -> int:
    v = params.get_int(name, default=default, min_value=1, max_value=hi)
    assert v is not None
    return v


async def _public(request: web.Request) -> tuple[Exchange, Params]:
    """Public endpoints accept signed calls too (some clients sign everything): then they are checked."""
    params = await request_params(request)
    if "signature" in params or "access_key" in params:
        await signed(request, params)
    return request.app[EXCHANGE], params


# -- public -------------------------------------------------------------------------------------------
async def markets(request: web.Request) -> web.Response:
    ex, _ = await _public(request)
    return json_response([{"id": m.id, "name": m.name} for m in ex.config.markets.values()])


async def _ticker(ex: Exchange, market_id: str) -> dict[str, Any]:
    m = ex.market(market_id)
    now = int(time.time() * 1000)
    row = await ex.store.fetchrow(
        "SELECT MIN(price) AS low, MAX(price) AS high, COALESCE(SUM(volume), 0) AS vol FROM trades "
        "WHERE market = ? AND created_at >= ?", m.id, now - 86_400_000)
    last = await ex.store.fetchval("SELECT price FROM trades WHERE market = ? ORDER BY id DESC LIMIT 1", m.id)
    first = await ex.store.fetchval(
        "SELECT price FROM trades WHERE market = ? AND created_at >= ? ORDER BY id ASC LIMIT 1", m.id, now - 86_400_000)
    actor = ex.markets.get(m.id)
    buy = actor.engine.best_bid() if actor else None
    sell = actor.engine.best_ask() if actor else None

    def p(v: Any) -> str:
        return price_str(m, int(v)) if v is not None else "0.0"

    return {"at": now // 1000, "ticker": {
        "buy": p(buy), "sell": p(sell), "low": p(row["low"] if row else None), "high": p(row["high"] if row else None),
        "last": p(last), "open": p(first), "vol": volume_str(m, int(row["vol"]) if row else 0)}}


async def tickers(request: web.Request) -> web.Response:
    ex, _ = await _public(request)
    return json_response({mid: await _ticker(ex, mid) for mid in ex.config.markets})


async def ticker(request: web.Request) -> web.Response:
    ex, _ = await _public(request)
    return json_response(await _ticker(ex, request.match_info["market"]))


async def order_book(request: web.Request) -> web.Response:
    ex, params = await _public(request)
    m = ex.market(params.get("market"))
    asks_limit = _limit(params, "asks_limit", 20, 200)
    bids_limit = _limit(params, "bids_limit", 20, 200)
    engine = ex.market_actor(m.id).engine

    def view(o: Any) -> dict[str, Any]:
        return order_json(m, {"id": o.id, "side": o.side, "ord_type": o.ord_type, "price": o.price,
                              "state": "wait", "created_at": 0, "volume": o.volume, "remaining": o.remaining,
                              "funds_used": o.funds_used, "trades_count": o.trades_count, "tif": o.tif})

    asks = [view(o) for _, o in zip(range(asks_limit), engine.orders("sell"), strict=False)]
    bids = [view(o) for _, o in zip(range(bids_limit), engine.orders("buy"), strict=False)]
    for lst in (asks, bids):
        for item in lst:
            item.pop("created_at", None)
    return json_response({"asks": asks, "bids": bids})


async def depth(request: web.Request) -> web.Response:
    ex, params = await _public(request)
    m = ex.market(params.get("market"))
    limit = _limit(params, "limit", 300, 1000)
    actor = ex.market_actor(m.id)
    asks, bids = actor.engine.depth(limit)
    return json_response({
        "timestamp": int(time.time()),
        "asks": [[price_str(m, p), volume_str(m, v)] for p, v in reversed(asks)],  # Peatio: high → low
        "bids": [[price_str(m, p), volume_str(m, v)] for p, v in bids],
        "sequence": actor.book_seq,
    })


def _trade_filters(params: Params) -> tuple[str, list[Any], str, int]:
    limit = _limit(params, "limit", 50, 1000)
    where, args = "", []
    ts = params.get_int("timestamp", min_value=0)
    if ts is not None:
        where += " AND created_at <= ?"
        args.append(ts * 1000 + 999)
    frm = params.get_int("from", min_value=0)
    if frm is not None:
        where += " AND id > ?"
        args.append(frm)
    to = params.get_int("to", min_value=0)
    if to is not None:
        where += " AND id < ?"
        args.append(to)
    order_by = params.get_str("order_by") or "desc"
    if order_by not in ("asc", "desc"):
        raise InvalidParameter("order_by does not have a valid value", "order_by")
    return where, args, order_by.upper(), limit


async def trades(request: web.Request) -> web.Response:
    ex, params = await _public(request)
    m = ex.market(params.get("market"))
    where, args, order, limit = _trade_filters(params)
    rows = await ex.store.fetch(f"SELECT * FROM trades WHERE market = ?{where} ORDER BY id {order} LIMIT ?", m.id, *args, limit)
    return json_response([trade_json(m, dict(r)) for r in rows])


async def timestamp(request: web.Request) -> web.Response:
    await _public(request)
    return json_response(int(time.time()))


async def fees(request: web.Request) -> web.Response:
    ex, _ = await _public(request)
    out = []
    for m in ex.config.markets.values():
        out.append({"market": m.id, "maker": format_units(m.maker_fee, 8), "taker": format_units(m.taker_fee, 8)})
    return json_response(out)


# -- private ------------------------------------------------------------------------------------------
async def _private(request: web.Request, *scopes: str) -> tuple[Exchange, Params, Token]:
    params = await request_params(request)
    token = await signed(request, params)
    if scopes:
        require_scope(token, *scopes)
    return request.app[EXCHANGE], params, token


async def members_me(request: web.Request) -> web.Response:
    ex, _, token = await _private(request, "profile")
    member = await ex.member(token.member_id)
    accounts = await ex.accounts_of(token.member_id)
    cur = ex.config.currencies
    return json_response({
        "sn": member["sn"], "name": member["name"], "email": member["email"], "activated": bool(member["activated"]),
        "accounts": [{"currency": a["currency"], "balance": format_units(a["balance"], cur[a["currency"]].precision),
                      "locked": format_units(a["locked"], cur[a["currency"]].precision)} for a in accounts],
    })


async def orders_get(request: web.Request) -> web.Response:
    ex, params, token = await _private(request, "history", "trade")
    market = params.get("market")
    m = ex.market(market) if market is not None else None
    state = params.get_str("state") or "wait"
    states = {"wait": ("wait", "pending"), "done": ("done",), "cancel": ("cancel",)}.get(state)
    if states is None:
        raise InvalidParameter("state does not have a valid value", "state")
    limit = _limit(params, "limit", 100, 1000)
    page = params.get_int("page", default=1, min_value=1, max_value=1_000_000) or 1
    order_by = params.get_str("order_by") or "asc"
    if order_by not in ("asc", "desc"):
        raise InvalidParameter("order_by does not have a valid value", "order_by")
    rows = await ex.orders_of(token.member_id, m.id if m else None, states, limit, (page - 1) * limit, order_by == "asc")
    resp = json_response([order_json(ex.market(o["market"]), o) for o in rows])
    resp.headers["X-Page"] = str(page)
    resp.headers["X-Per-Page"] = str(limit)
    return resp


async def order_get(request: web.Request) -> web.Response:
    ex, params, token = await _private(request, "history", "trade")
    oid = params.get_int("id", required=True, min_value=1)
    assert oid is not None
    o = await ex.order_row(oid)
    if o is None or o["member_id"] != token.member_id:
        raise OrderNotFound(f"Order#{oid} doesn't exist.")
    m = ex.market(o["market"])
    out = order_json(m, o)
    out["trades"] = [trade_json(m, t, token.member_id, order_side=True) for t in await ex.trades_of_order(oid)]
    return json_response(out)


async def orders_post(request: web.Request) -> web.Response:
    ex, params, token = await _private(request, "trade")
    o = await ex.submit_order(token.member_id, inputs_from(params))
    return json_response(order_json(ex.market(o["market"]), o), status=201)


async def orders_multi(request: web.Request) -> web.Response:
    ex, params, token = await _private(request, "trade")
    market = params.get_str("market", required=True)
    items = params.get_dicts("orders", required=True, max_items=100)
    inputs = []
    for i, item in enumerate(items):
        merged = {"market": market, **item}
        try:
            inputs.append(inputs_from(merged))
        except InvalidParameter as e:
            raise InvalidParameter(f"orders[{i}]: {e.message}", e.field) from None
    result = await ex.submit_orders(token.member_id, inputs)
    return json_response([order_json(ex.market(o["market"]), o) for o in result], status=201)


async def order_delete(request: web.Request) -> web.Response:
    ex, params, token = await _private(request, "trade")
    oid = params.get_int("id", required=True, min_value=1)
    assert oid is not None
    before = await ex.cancel_order(token.member_id, oid)
    return json_response(order_json(ex.market(before["market"]), before, state="wait"))


async def orders_clear(request: web.Request) -> web.Response:
    ex, params, token = await _private(request, "trade")
    side = params.get_str("side") or None
    market = params.get_str("market") or None
    cancelled = await ex.cancel_all(token.member_id, side, market)
    return json_response([order_json(ex.market(o["market"]), o, state="wait") for o in cancelled])


async def trades_my(request: web.Request) -> web.Response:
    ex, params, token = await _private(request, "history")
    m = ex.market(params.get("market"))
    where, args, order, limit = _trade_filters(params)
    rows = await ex.store.fetch(
        f"SELECT * FROM trades WHERE market = ? AND (ask_member_id = ? OR bid_member_id = ?){where} "
        f"ORDER BY id {order} LIMIT ?", m.id, token.member_id, token.member_id, *args, limit)
    return json_response([trade_json(m, dict(r), token.member_id) for r in rows])


ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", "/markets", markets),
    ("GET", "/tickers", tickers),
    ("GET", "/tickers/{market}", ticker),
    ("GET", "/order_book", order_book),
    ("GET", "/depth", depth),
    ("GET", "/trades", trades),
    ("GET", "/timestamp", timestamp),
    ("GET", "/fees", fees),
    ("GET", "/members/me", members_me),
    ("GET", "/orders", orders_get),
    ("POST", "/orders", orders_post),
    ("POST", "/orders/multi", orders_multi),
    ("GET", "/order", order_get),
    ("POST", "/order/delete", order_delete),
    ("POST", "/orders/clear", orders_clear),
    ("GET", "/trades/my", trades_my),
]


def add_routes(app: web.Application, prefix: str = "/api/v2") -> None:
    for method, path, handler in ROUTES:
        if "{market}" in path:
            app.router.add_route(method, prefix + path.replace("{market}", "{market:[a-z0-9]+}") + ".json", handler)
            app.router.add_route(method, prefix + path.replace("{market}", "{market:[a-z0-9]+}"), handler)
        else:
            app.router.add_route(method, prefix + path + ".json", handler)
            app.router.add_route(method, prefix + path, handler)


__all__ = ["AUTH", "EXCHANGE", "add_routes", "funds_str", "iso", "json_response"]
