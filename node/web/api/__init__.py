"""REST API v2, wire-compatible with Peatio (the contract: docs/api.md), under `/api/v2`.

Handlers are thin: parse params (query merged with body, like Rack), authenticate when signed,
count the request against its rate limit, ask the exchange, format Peatio's JSON. Every path also
answers with a `.json` suffix, because Peatio clients sign and call `/api/v2/orders.json`.

Beyond Peatio, in the same style: `client_id` and `time_in_force` on orders, `page` on every list
(with X-Page / X-Per-Page / X-Next-Page headers, and X-Total where counting is cheap), `market` on
`/orders/clear`, `GET /fees`, and an OpenAPI description at `/api/v2/doc`. Deposits and
withdrawals are served by `api.funds` (wallets), market data (tickers, k-lines) by `api.marketdata`,
proof of solvency by `api.solvency`; they reuse `_public`/`_private` from here, so signatures,
rate limits and errors behave the same everywhere.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson
from aiohttp import web

from node.apikeys import Token
from node.config import Market
from node.errors import (
    Busy,
    CancelOrderFailed,
    ExchangeError,
    InvalidParameter,
    OrderNotFound,
    RateLimited,
    Timeout,
    TonceReused,
    Unavailable,
)
from node.exchange import Exchange, OrderInput, inputs_from
from node.fees import rates_in_force
from node.money import format_units
from node.tonces import Tonce
from node.web.auth import Authenticator, require_scope
from node.web.format import (
    account_json,
    funds_str,
    iso,
    order_json,
    price_str,
    trade_json,
    volume_str,
)
from node.web.params import MAX_BODY_BYTES, MAX_PARAMS, Params, ParamValue, parse_params
from node.web.ratelimit import RateLimiter

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
EXCHANGE = web.AppKey("exchange", Exchange)
AUTH = web.AppKey("auth", Authenticator)
LIMITER = web.AppKey("limiter", RateLimiter)

MAX_ID = 2**62  # ids, timestamps and cursors above this cannot exist (and would overflow BIGINT)
MAX_PAGE = 10_000
PAGE_HEADERS = "X-Page, X-Per-Page, X-Next-Page, X-Total, Retry-After"


def json_response(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    """JSON with Peatio's `Access-Control-Allow-Origin: *` (browsers may read the API directly)."""
    h = {"Access-Control-Allow-Origin": "*"}
    if headers:
        h["Access-Control-Expose-Headers"] = PAGE_HEADERS
        h.update(headers)
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json", headers=h)


_PLAIN_FORM = re.compile(rb"[A-Za-z0-9_.\-=&]*")
_FORM_TYPES = ("application/x-www-form-urlencoded", "")


def _plain_pairs(data: bytes, out: dict[str, ParamValue]) -> None:
    for pair in data.split(b"&"):
        if pair:
            name, _, value = pair.partition(b"=")
            if name:
                out[name.decode()] = value.decode()


async def request_params(request: web.Request) -> Params:
    """Query merged with the body, for every verb (Peatio clients put GET params in a form body).

    Most requests are plain `k=v&…` forms with nothing to decode (no `%`, `+` or brackets): those
    are split directly, with the same result as `parse_params` (later keys win, the body over the
    query, empty names ignored); everything else goes through `parse_params`, the reference.
    """
    body = await request.read() if request.can_read_body else b""
    query = request.rel_url.raw_query_string.encode()
    ctype = request.content_type if body else ""
    if (ctype in _FORM_TYPES and len(body) <= MAX_BODY_BYTES and _PLAIN_FORM.fullmatch(query)
            and _PLAIN_FORM.fullmatch(body) and query.count(b"&") + body.count(b"&") < MAX_PARAMS - 2):
        data: dict[str, ParamValue] = {}
        _plain_pairs(query, data)
        _plain_pairs(body, data)
        return Params(data)
    return parse_params(query, body, ctype)


def _limiter(request: web.Request) -> RateLimiter:
    limiter = request.app.get(LIMITER)
    if limiter is None:  # an app assembled without add_routes' set-up: build it from the config once
        a = request.app[EXCHANGE].config.api
        limiter = RateLimiter(a.signed_limit, a.signed_window, a.public_limit, a.public_window)
        request.app[LIMITER] = limiter
    return limiter


async def signed(request: web.Request, params: Params) -> Token:
    """Authenticate and burn the tonce (see `verified`); a replay counts against the client IP's
    allowance, like any failed authentication."""
    token, tonce = await verified(request, params)
    try:
        await request.app[AUTH].burn(tonce)
    except TonceReused:
        _limiter(request).hit_ip(request.remote)
        raise
    return token


async def verified(request: web.Request, params: Params) -> tuple[Token, Tonce]:
    """Check the signature, *not* burning the tonce yet; a failed attempt counts against the client
    IP's allowance (so guessing signatures or keys is rate-limited), a good one against the access
    key's."""
    limiter = _limiter(request)
    try:
        return await request.app[AUTH].verify(
            request.method, request.rel_url.raw_path, params, request.remote, limiter.hit_key,
            dict(request.match_info) or None)
    except RateLimited:
        raise
    except ExchangeError as e:
        if e.status == 401:
            limiter.hit_ip(request.remote)
        raise


async def _public(request: web.Request) -> tuple[Exchange, Params]:
    """Public endpoints accept signed calls too (some clients sign everything): then they are checked
    and count against the key; unsigned ones count against the client IP."""
    params = await request_params(request)
    if "signature" in params or "access_key" in params:
        await signed(request, params)
    else:
        _limiter(request).hit_ip(request.remote)
    if request.match_info:
        params = params.merged(dict(request.match_info))
    return request.app[EXCHANGE], params


async def _private(request: web.Request, *scopes: str) -> tuple[Exchange, Params, Token]:
    params = await request_params(request)
    token = await signed(request, params)
    if scopes:
        require_scope(token, *scopes)
    return request.app[EXCHANGE], params, token


class _Submission:
    """A signed order submission whose tonce is burnt by the account actor, in the transaction that
    accepts the orders (one commit per request instead of two).

    Whatever is refused before that (scope, params, member, halted market), or never reaches it
    (busy, unavailable, timed out), burns the tonce on its own first, so a request is still
    answered 2006 when replayed and has an effect at most once.
    """

    def __init__(self, request: web.Request, token: Token, tonce: Tonce) -> None:
        self.request = request
        self.auth = request.app[AUTH]
        self.ex = request.app[EXCHANGE]
        self.token = token
        self.tonce = tonce

    async def refused(self, error: ExchangeError, outcome_known: bool = True) -> ExchangeError:
        """The error to answer with: 2006 if the tonce was used before, else `error`.

        When the outcome is not known (the account actor failed or timed out: its transaction may
        have committed, tonce included), the tonce is burnt all the same but `error` stands: a 2006
        would wrongly tell the client that its order was not placed.
        """
        try:
            await self.auth.burn(self.tonce)
        except TonceReused as replay:
            if not outcome_known:
                return error
            _limiter(self.request).hit_ip(self.request.remote)
            return replay
        except ExchangeError:
            pass  # the tonce actor is busy too: the request did nothing, the original error stands
        return error

    async def place(self, inputs: list[OrderInput]) -> list[dict[str, Any]]:
        try:
            reqs = await self.ex.prepare_orders(self.token.member_id, inputs)
        except ExchangeError as e:
            raise await self.refused(e) from None
        try:
            return await self.ex.place_orders(self.token.member_id, reqs, self.tonce)
        except TonceReused:  # the account actor found it used: a replay
            _limiter(self.request).hit_ip(self.request.remote)
            raise
        except Busy as e:  # never reached the account actor
            raise await self.refused(e) from None
        except (Unavailable, Timeout) as e:
            raise await self.refused(e, outcome_known=False) from None


async def _submission(request: web.Request, *scopes: str) -> tuple[_Submission, Params]:
    params = await request_params(request)
    token, tonce = await verified(request, params)
    sub = _Submission(request, token, tonce)
    try:
        require_scope(token, *scopes)
    except ExchangeError as e:
        raise await sub.refused(e) from None
    return sub, params


# -- param helpers: each error names the field ------------------------------------------------------
def _limit(params: Params, name: str, default: int, hi: int) -> int:
    return params.get_int(name, default=default, min_value=1, max_value=hi)


def _market(ex: Exchange, params: Params, required: bool = True) -> Market | None:
    raw = params.get_str("market", required=required, max_len=32)
    if not raw:
        return None
    return ex.market(raw)


def _choice(params: Params, name: str, choices: tuple[str, ...], default: str | None) -> str | None:
    raw = params.get_str(name, max_len=32)
    if raw is None or raw == "":
        return default
    if raw not in choices:
        raise InvalidParameter(f"{name} does not have a valid value (one of {', '.join(choices)})", name)
    return raw


def page_of(params: Params, limit: int) -> tuple[int, int]:
    """The `page` parameter and the offset of its first row."""
    page = params.get_int("page", default=1, min_value=1, max_value=MAX_PAGE)
    return page, (page - 1) * limit


def paged(data: list[Any], page: int, limit: int, total: int | None = None, status: int = 200) -> web.Response:
    """The one pager of the API: a list with pagination headers, which browsers may read
    (json_response exposes them); X-Next-Page only when a full page came back."""
    headers = {"X-Page": str(page), "X-Per-Page": str(limit)}
    if len(data) == limit:
        headers["X-Next-Page"] = str(page + 1)
    if total is not None:
        headers["X-Total"] = str(total)
    return json_response(data, status, headers)


# -- public -------------------------------------------------------------------------------------------
async def markets(request: web.Request) -> web.Response:
    ex, _ = await _public(request)
    return json_response([{"id": m.id, "name": m.name} for m in ex.config.markets.values()])


async def order_book(request: web.Request) -> web.Response:
    """Resting orders, best first: asks price ascending, bids price descending, then time."""
    ex, params = await _public(request)
    m = _market(ex, params)
    assert m is not None
    asks_limit = _limit(params, "asks_limit", 20, 200)
    bids_limit = _limit(params, "bids_limit", 20, 200)
    asks = await ex.book_orders(m.id, "sell", asks_limit)
    bids = await ex.book_orders(m.id, "buy", bids_limit)
    return json_response({"asks": [order_json(m, o, state="wait") for o in asks],
                          "bids": [order_json(m, o, state="wait") for o in bids]})


DEPTH_CACHE = web.AppKey("depth_cache", dict)
DEPTH_CACHE_MAX = 4096


async def depth(request: web.Request) -> web.Response:
    """Aggregated price levels; both sides high → low (Peatio's quirk, kept for its clients).

    The formatted levels are kept per (market, limit) until the book's sequence number moves:
    a busy public endpoint then formats a book once per change instead of once per request.
    """
    ex, params = await _public(request)
    m = _market(ex, params)
    assert m is not None
    limit = _limit(params, "limit", 300, 1000)
    book = await ex.depth(m.id, limit)
    cache: dict[tuple[str, int], tuple[int, list[Any], list[Any]]] = request.app[DEPTH_CACHE]
    hit = cache.get((m.id, limit))
    if hit is not None and hit[0] == book["seq"]:
        asks, bids = hit[1], hit[2]
    else:
        asks = [[price_str(m, p), volume_str(m, v)] for p, v in reversed(book["asks"])]
        bids = [[price_str(m, p), volume_str(m, v)] for p, v in book["bids"]]
        if len(cache) >= DEPTH_CACHE_MAX:
            cache.clear()
        cache[(m.id, limit)] = (book["seq"], asks, bids)
    return json_response({"timestamp": int(time.time()), "asks": asks, "bids": bids, "sequence": book["seq"]})


def _trade_filters(params: Params) -> tuple[str, list[Any], str, int, int, int]:
    """Peatio's trade-list filters: limit, timestamp (seconds, created at or before), from/to
    (exclusive trade-id bounds), order_by; plus our page."""
    limit = _limit(params, "limit", 50, 1000)
    where, args = "", []
    ts = params.get_int("timestamp", min_value=0, max_value=MAX_ID // 1000)
    if ts is not None:
        where += " AND created_at <= ?"
        args.append(ts * 1000 + 999)
    frm = params.get_int("from", min_value=0, max_value=MAX_ID)
    if frm is not None:
        where += " AND id > ?"
        args.append(frm)
    to = params.get_int("to", min_value=0, max_value=MAX_ID)
    if to is not None:
        where += " AND id < ?"
        args.append(to)
    order_by = _choice(params, "order_by", ("asc", "desc"), "desc")
    assert order_by is not None
    page, offset = page_of(params, limit)
    return where, args, order_by.upper(), limit, page, offset


async def trades(request: web.Request) -> web.Response:
    ex, params = await _public(request)
    m = _market(ex, params)
    assert m is not None
    where, args, order, limit, page, offset = _trade_filters(params)
    rows = await ex.store.fetch(
        f"SELECT * FROM trades WHERE market = ?{where} ORDER BY id {order} LIMIT ? OFFSET ?", m.id, *args, limit, offset)
    return paged([trade_json(m, dict(r)) for r in rows], page, limit)


async def timestamp(request: web.Request) -> web.Response:
    await _public(request)
    return json_response(int(time.time()))


async def fees(request: web.Request) -> web.Response:
    """Maker and taker fee rates in force per market (an admin may have changed the configured
    ones): a fraction of what the member receives."""
    ex, _ = await _public(request)
    rates = await rates_in_force(ex.store, ex.config.markets)
    return json_response([{"market": mid, "maker": format_units(maker, 8), "taker": format_units(taker, 8)}
                          for mid, (maker, taker) in rates.items()])


# -- private ------------------------------------------------------------------------------------------
async def members_me(request: web.Request) -> web.Response:
    ex, _, token = await _private(request, "profile")
    member = await ex.member(token.member_id)
    accounts = await ex.accounts_of(token.member_id)
    cur = ex.config.currencies
    return json_response({
        "sn": member["sn"], "name": member["name"], "email": member["email"], "activated": bool(member["activated"]),
        "accounts": [account_json(cur[a["currency"]], a) for a in accounts],
    })


ORDER_STATES: dict[str, tuple[str, ...]] = {"wait": ("wait", "pending"), "done": ("done",), "cancel": ("cancel",)}


async def orders_get(request: web.Request) -> web.Response:
    ex, params, token = await _private(request, "history", "trade")
    m = _market(ex, params, required=False)
    state = _choice(params, "state", tuple(ORDER_STATES), "wait")
    assert state is not None
    states = ORDER_STATES[state]
    limit = _limit(params, "limit", 100, 1000)
    page, offset = page_of(params, limit)
    order_by = _choice(params, "order_by", ("asc", "desc"), "asc")
    mid = m.id if m else None
    rows = await ex.orders_of(token.member_id, mid, states, limit, offset, order_by == "asc")
    total = await ex.count_orders_of(token.member_id, mid, states)
    return paged([order_json(ex.market(o["market"]), o) for o in rows], page, limit, total)


def _order_id(params: Params) -> int:
    return params.get_int("id", required=True, min_value=1, max_value=MAX_ID)


async def order_get(request: web.Request) -> web.Response:
    ex, params, token = await _private(request, "history", "trade")
    oid = _order_id(params)
    o = await ex.order_row(oid)
    if o is None or o["member_id"] != token.member_id:
        raise OrderNotFound(f"Order#{oid} doesn't exist.")
    m = ex.market(o["market"])
    out = order_json(m, o)
    out["trades"] = [trade_json(m, t, token.member_id, order_side=True) for t in await ex.trades_of_order(oid)]
    return json_response(out)


async def orders_post(request: web.Request) -> web.Response:
    """One order; with `client_id`, a retry returns the order already created (idempotent)."""
    sub, params = await _submission(request, "trade")
    o = (await sub.place([inputs_from(params.to_dict())]))[0]  # a dict: fast .get
    return json_response(order_json(sub.ex.market(o["market"]), o), status=201)


async def orders_multi(request: web.Request) -> web.Response:
    """Several orders of one market, all or nothing (`orders[][side]=…&orders[][volume]=…`)."""
    sub, params = await _submission(request, "trade")
    try:
        inputs = await _multi_inputs(sub.ex, sub.token, params)
    except ExchangeError as e:
        raise await sub.refused(e) from None
    result = await sub.place(inputs)
    return json_response([order_json(sub.ex.market(o["market"]), o) for o in result], status=201)


async def _multi_inputs(ex: Exchange, token: Token, params: Params) -> list[OrderInput]:
    """The orders of `/orders/multi`, checked one by one first, so that an error says which is wrong."""
    m = _market(ex, params)
    assert m is not None
    items = params.get_dicts("orders", required=True, max_items=100)
    inputs = []
    for i, item in enumerate(items):
        try:
            o = inputs_from({**item, "market": m.id})
            await ex.prepare(token.member_id, o)
        except ExchangeError as e:
            field = getattr(e, "field", None)
            if isinstance(e, InvalidParameter):
                raise InvalidParameter(f"orders[{i}]: {e.message}", f"orders[][{field}]" if field else "orders") from None
            e.message = f"orders[{i}]: {e.message}"
            e.args = (e.message,)
            raise
        inputs.append(o)
    return inputs


async def order_delete(request: web.Request) -> web.Response:
    """Peatio's reply: the order as it stood when the cancel was accepted (state `wait`); the cancel
    itself is final by the time this answers. An unknown id, or another member's, is Peatio's
    400/2003 here (its 404/2004 is `GET /order`'s): ccxt and bots read a 404 as an outage."""
    ex, params, token = await _private(request, "trade")
    oid = _order_id(params)
    try:
        before = await ex.cancel_order(token.member_id, oid)
    except OrderNotFound:
        raise CancelOrderFailed(f"Failed to cancel order. Reason: Order#{oid} doesn't exist.") from None
    return json_response(order_json(ex.market(before["market"]), before, state="wait"), status=201)


async def orders_clear(request: web.Request) -> web.Response:
    ex, params, token = await _private(request, "trade")
    side = _choice(params, "side", ("buy", "sell"), None)
    m = _market(ex, params, required=False)
    cancelled = await ex.cancel_all(token.member_id, side, m.id if m else None)
    return json_response([order_json(ex.market(o["market"]), o, state="wait") for o in cancelled], status=201)


async def trades_my(request: web.Request) -> web.Response:
    ex, params, token = await _private(request, "history")
    m = _market(ex, params)
    assert m is not None
    where, args, order, limit, page, offset = _trade_filters(params)
    rows = await ex.store.fetch(
        f"SELECT * FROM trades WHERE market = ? AND (ask_member_id = ? OR bid_member_id = ?){where} "
        f"ORDER BY id {order} LIMIT ? OFFSET ?", m.id, token.member_id, token.member_id, *args, limit, offset)
    return paged([trade_json(m, dict(r), token.member_id) for r in rows], page, limit)


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


def add_routes(app: web.Application, prefix: str = "/api/v2") -> None:
    """Every route with and without `.json`, the rate limiter from `[api]`, and the OpenAPI routes."""
    from node.web import openapi

    if EXCHANGE in app and LIMITER not in app:
        a = app[EXCHANGE].config.api
        app[LIMITER] = RateLimiter(a.signed_limit, a.signed_window, a.public_limit, a.public_window)
    app[DEPTH_CACHE] = {}
    for method, path, handler in ROUTES:
        if "{market}" in path:
            path = path.replace("{market}", "{market:[a-z0-9]+}")
        app.router.add_route(method, prefix + path + ".json", handler)
        app.router.add_route(method, prefix + path, handler)
    openapi.add_routes(app, prefix)


__all__ = ["AUTH", "EXCHANGE", "LIMITER", "ROUTES", "add_routes", "funds_str", "iso", "json_response"]
