"""REST API v2, wire-compatible with Peatio (the contract: docs/api.md), under `/api/v2`.

Handlers are thin: parse params (query merged with body, like Rack), authenticate when signed,
count the request against its rate limit, ask the exchange, format Peatio's JSON. Every path also
answers with a `.json` suffix, because Peatio clients sign and call `/api/v2/orders.json`.

Beyond Peatio, in the same style: `client_id` and `time_in_force` on orders, `page` on every list
(with X-Page / X-Per-Page / X-Next-Page headers, and X-Total where counting is cheap), `market` on
`/orders/clear`, `GET /fees`, and an OpenAPI description at `/api/v2/doc`.

One module per feature: `common` (envelope, params, signatures, rate limits, paging: what every
handler shares), `market` (markets, book, depth, trades, time, fees), `orders` (the member and
their orders), `funds` (deposits and withdrawals), `marketdata` (tickers, k-lines), `solvency`
(proof of solvency). Here: the routes of `market` and `orders`, and the names the rest of the
web layer imports.
"""

from __future__ import annotations

from aiohttp import web

from node.web.api.common import (
    AUTH,
    EXCHANGE,
    KEYS,
    LIMITER,
    SHARD_NODE,
    TONCES,
    Handler,
    json_response,
    request_params,
)
from node.web.api.market import DEPTH_CACHE, depth, fees, markets, order_book, timestamp, trades, trades_my
from node.web.api.orders import (
    members_me,
    order_delete,
    order_get,
    orders_clear,
    orders_get,
    orders_multi,
    orders_post,
)
from node.web.format import funds_str, iso
from node.web.ratelimit import RateLimiter

ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", "/markets", markets),
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


def add_routes(app: web.Application, limiter: RateLimiter, prefix: str = "/api/v2") -> None:
    """Every route with and without `.json`, limited by the node's rate limiter (from `[api]`)."""
    app[LIMITER] = limiter
    app[DEPTH_CACHE] = {}
    for method, path, handler in ROUTES:
        if "{market}" in path:
            path = path.replace("{market}", "{market:[a-z0-9]+}")
        app.router.add_route(method, prefix + path + ".json", handler)
        app.router.add_route(method, prefix + path, handler)


__all__ = ["AUTH", "EXCHANGE", "KEYS", "LIMITER", "ROUTES", "SHARD_NODE", "TONCES", "Handler", "add_routes", "funds_str", "iso", "json_response",
           "request_params"]
