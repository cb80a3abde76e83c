"""What every API v2 handler shares: the JSON envelope, request params, signatures and tonces,
rate limits, and the param and paging helpers. `_public` and `_private` are the two entry points
of a handler (funds, market data and solvency use them too), so that signatures, rate limits and
errors behave the same everywhere.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson
from aiohttp import web
from multidict import CIMultiDict

from node.apikeys import ApiKeys, Token
from node.config import Market
from node.errors import ExchangeError, InvalidParameter, RateLimited, TonceReused
from node.exchange import Exchange
from node.tonces import Tonce
from node.web.auth import Authenticator, TonceActor, require_scope
from node.web.inputs import MAX_NAME, MAX_TEXT
from node.web.params import MAX_PARAMS, Params, ParamValue, parse_params
from node.web.ratelimit import RateLimiter

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
EXCHANGE = web.AppKey("exchange", Exchange)
AUTH = web.AppKey("auth", Authenticator)
LIMITER = web.AppKey("limiter", RateLimiter)
KEYS = web.AppKey("keys", ApiKeys)
TONCES = web.AppKey("tonces", TonceActor)

MAX_ID = 2**62  # ids, timestamps and cursors above this cannot exist (and would overflow BIGINT)
MAX_PAGE = 10_000
PAGE_HEADERS = "X-Page, X-Per-Page, X-Next-Page, X-Total, Retry-After"
SHARD_NODE = web.RequestKey("shard_node", str)  # the node of the signer's account shard: `X-Shard-Node`


def json_response(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    """JSON with Peatio's `Access-Control-Allow-Origin: *` (browsers may read the API directly)."""
    return json_body(orjson.dumps(data), status, headers)


SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin"}
"""On every answer of the node (node/web/app.py `secured`)."""
# Every API answer's headers, the security headers included: copied whole into each answer, which
# is cheaper than setting them one by one (`secured` then finds them there).
_HEADERS = CIMultiDict({"Content-Type": "application/json", "Access-Control-Allow-Origin": "*", **SECURITY_HEADERS})


def json_body(body: bytes, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    """`json_response` for a body already encoded (an answer kept in a cache)."""
    if not headers:
        return web.Response(body=body, status=status, headers=_HEADERS)
    h = CIMultiDict(_HEADERS)
    h["Access-Control-Expose-Headers"] = PAGE_HEADERS
    h.update(headers)
    return web.Response(body=body, status=status, headers=h)


_PLAIN_FORM = re.compile(rb"[A-Za-z0-9_.\-=&]*")
_FORM_TYPES = ("application/x-www-form-urlencoded", "")


def _plain_pairs(data: bytes, out: dict[str, ParamValue]) -> bool:
    """`k=v&…` of `_PLAIN_FORM` (ASCII only): decoded once, then split. False (and `out` to be
    dropped) when a name is longer than the edge allows: `parse_params` then says so. No value can
    be too long: the caller takes this path only for data no longer than the shortest value limit."""
    for pair in data.decode("ascii").split("&"):
        if pair:
            name, _, value = pair.partition("=")
            if len(name) > MAX_NAME:
                return False
            if name:
                out[name] = value
    return True


async def request_params(request: web.Request) -> Params:
    """Query merged with the body, for every verb (Peatio clients put GET params in a form body).

    Most requests are plain `k=v&…` forms with nothing to decode (no `%`, `+` or brackets), short
    enough that no value can exceed the edge's length limit: those are split directly, with the same
    result as `parse_params` (later keys win, the body over the query, empty names ignored, a name
    too long refused); everything else goes through `parse_params`, the reference.
    """
    body = await request.read() if request.can_read_body else b""
    query = request.rel_url.raw_query_string.encode()
    if not body:  # a GET's params: the query alone
        if len(query) <= MAX_TEXT and _PLAIN_FORM.fullmatch(query) and query.count(b"&") < MAX_PARAMS - 2:
            data: dict[str, ParamValue] = {}
            if _plain_pairs(query, data):
                return Params(data)
        return parse_params(query, body, "")
    ctype = request.content_type
    if (ctype in _FORM_TYPES and len(body) <= MAX_TEXT and len(query) <= MAX_TEXT and _PLAIN_FORM.fullmatch(query)
            and _PLAIN_FORM.fullmatch(body) and query.count(b"&") + body.count(b"&") < MAX_PARAMS - 2):
        data = {}
        if _plain_pairs(query, data) and _plain_pairs(body, data):
            return Params(data)
    return parse_params(query, body, ctype)


def _limiter(request: web.Request) -> RateLimiter:
    return request.app[LIMITER]


async def signed(request: web.Request, params: Params) -> Token:
    """Authenticate and burn the tonce (see `verified`); a replay counts against the client IP's
    allowance, like any failed authentication."""
    token, tonce = await verified(request, params)
    app = request.app
    try:
        await app[AUTH].burn(tonce)
    except TonceReused:
        app[LIMITER].hit_ip(request.remote)
        raise
    return token


async def verified(request: web.Request, params: Params) -> tuple[Token, Tonce]:
    """Check the signature, *not* burning the tonce yet; a failed attempt counts against the client
    IP's allowance (so guessing signatures or keys is rate-limited), a good one against the access
    key's."""
    app = request.app
    limiter = app[LIMITER]
    match = request.match_info
    try:
        token, tonce = await app[AUTH].verify(
            request.method, request.rel_url.raw_path, params, request.remote, limiter.hit_key,
            dict(match) if match else None)
    except RateLimited:
        raise
    except ExchangeError as e:
        if e.status == 401:
            limiter.hit_ip(request.remote)
        raise
    request[SHARD_NODE] = app[EXCHANGE].shard_node(token.member_id) or ""
    return token, tonce


async def _public(request: web.Request) -> tuple[Exchange, Params]:
    """Public endpoints accept signed calls too (some clients sign everything): then they are checked
    and count against the key; unsigned ones count against the client IP."""
    params = await request_params(request)
    app = request.app
    if "signature" in params or "access_key" in params:
        await signed(request, params)
    else:
        app[LIMITER].hit_ip(request.remote)
    match = request.match_info
    if match:
        params = params.merged(dict(match))
    return app[EXCHANGE], params


async def _private(request: web.Request, *scopes: str) -> tuple[Exchange, Params, Token]:
    params = await request_params(request)
    token = await signed(request, params)
    if scopes:
        require_scope(token, *scopes)
    return request.app[EXCHANGE], params, token


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
