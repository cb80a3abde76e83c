"""API v2 trading data: markets, order book, depth, trades (public and the member's own), server
time and fees in force.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from aiohttp import web

from node.fees import rates_in_force
from node.money import format_units
from node.web.api.common import (
    MAX_ID,
    _choice,
    _limit,
    _market,
    _private,
    _public,
    json_body,
    json_response,
    page_of,
    paged,
)
from node.web.format import order_json, price_str, trade_json, volume_str
from node.web.params import Params


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


class _Depth:
    """One (market, limit)'s answer as of a book version (the market actor instance and its diff
    sequence number: a new instance starts its sequence again): its levels encoded once, and the
    whole body for the second `at` (the answer carries a timestamp in seconds)."""

    __slots__ = ("version", "asks", "bids", "at", "body")

    def __init__(self, version: tuple[str, int], asks: orjson.Fragment, bids: orjson.Fragment) -> None:
        self.version, self.asks, self.bids = version, asks, bids
        self.at = -1
        self.body = b""


async def depth(request: web.Request) -> web.Response:
    """Aggregated price levels; both sides high → low (Peatio's quirk, kept for its clients).

    The answer is kept per (market, limit) until the book's version (actor instance, sequence) moves: a busy public
    endpoint then aggregates, formats and encodes a book once per change instead of once per request
    (for a book kept on this node the number is read first, and the book only when it moved), and
    encodes the body once a second.
    """
    ex, params = await _public(request)
    m = _market(ex, params)
    assert m is not None
    limit = _limit(params, "limit", 300, 1000)
    cache: dict[tuple[str, int], _Depth] = request.app[DEPTH_CACHE]
    hit = cache.get((m.id, limit))
    if hit is None or hit.version != ex.book_version(m.id):
        book = await ex.depth(m.id, limit)
        version = (str(book["book_id"]), int(book["seq"]))
        if hit is None or hit.version != version:
            asks = [[price_str(m, p), volume_str(m, v)] for p, v in reversed(book["asks"])]
            bids = [[price_str(m, p), volume_str(m, v)] for p, v in book["bids"]]
            if len(cache) >= DEPTH_CACHE_MAX:
                cache.clear()
            hit = cache[(m.id, limit)] = _Depth(version, orjson.Fragment(orjson.dumps(asks)),
                                                 orjson.Fragment(orjson.dumps(bids)))
    now = int(time.time())
    if hit.at != now:
        hit.body = orjson.dumps({"timestamp": now, "asks": hit.asks, "bids": hit.bids, "sequence": hit.version[1]})
        hit.at = now
    return json_body(hit.body)


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


async def trades_my(request: web.Request) -> web.Response:
    ex, params, token = await _private(request, "history")
    m = _market(ex, params)
    assert m is not None
    where, args, order, limit, page, offset = _trade_filters(params)
    rows = await ex.store.fetch(
        f"SELECT * FROM trades WHERE market = ? AND (ask_member_id = ? OR bid_member_id = ?){where} "
        f"ORDER BY id {order} LIMIT ? OFFSET ?", m.id, token.member_id, token.member_id, *args, limit, offset)
    return paged([trade_json(m, dict(r), token.member_id) for r in rows], page, limit)
