"""The member's orders in every market on one page (`/orders`, filtered by market and state, with
cancel), and CSV exports of the member's orders, trades and ledger.

CSV cells carry exact amounts (every decimal of the currency or market, as the API gives them), not
the rounded ones of the pages: an export is for bookkeeping. Exports stream in pages of rows, so a
member with a long history does not make the node hold it all at once. A cell that a spreadsheet
would read as a formula is prefixed with a quote (CSV injection).
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Sequence
from typing import Any

from aiohttp import web

from node.config import Market
from node.exchange import Exchange
from node.money import format_plain
from node.web.api import EXCHANGE
from node.web.forms import iso
from node.web.pages.common import require_member
from node.web.pages.funds import LEDGER_REASONS
from node.web.pages.market import _order_view
from node.web.session import render, translator_of

PAGE = 100
CHUNK = 1000
STATES = {"open": ("wait", "pending"), "done": ("done",), "cancel": ("cancel",), "all": ("wait", "pending", "done", "cancel")}


async def all_orders(request: web.Request) -> web.Response:
    member_id = require_member(request)
    ex: Exchange = request.app[EXCHANGE]
    _ = translator_of(request)
    market = request.query.get("market") or None
    if market is not None and market not in ex.config.markets:
        market = None
    state = request.query.get("state", "open")
    if state not in STATES:
        state = "open"
    try:
        page = max(1, min(int(request.query.get("page", "1")), 10_000))
    except ValueError:
        page = 1
    rows = await ex.orders_of(member_id, market, STATES[state], limit=PAGE + 1, offset=(page - 1) * PAGE, ascending=False)
    orders = []
    for o in rows[:PAGE]:
        m = ex.config.markets[o["market"]]
        orders.append({**_order_view(m, o, _), "market": m.id, "market_name": m.name, "open": o["state"] in ("wait", "pending")})
    return render(request, "orders.html", {
        "orders": orders, "markets": list(ex.config.markets.values()), "market": market, "state": state, "page": page,
        "more": len(rows) > PAGE, "states": [("open", _("Open")), ("done", _("Filled")), ("cancel", _("Cancelled")),
                                             ("all", _("All"))],
    })


def _cell(v: Any) -> str:
    s = "" if v is None else str(v)
    return "'" + s if s[:1] in ("=", "+", "-", "@", "\t", "\r") and not _number(s) else s


def _number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


async def _stream(request: web.Request, name: str, header: Sequence[str],
                  rows: AsyncIterator[Sequence[Any]]) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "text/csv; charset=utf-8", "Cache-Control": "no-store",
                                       "Content-Disposition": f'attachment; filename="{name}"'})
    await resp.prepare(request)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(header)
    n = 0
    async for row in rows:
        w.writerow([_cell(v) for v in row])
        n += 1
        if n % CHUNK == 0:
            await resp.write(buf.getvalue().encode())
            buf.seek(0)
            buf.truncate()
    await resp.write(buf.getvalue().encode())
    await resp.write_eof()
    return resp


async def _pages(ex: Exchange, sql: str, *args: Any) -> AsyncIterator[Any]:
    """Rows of `sql` (which ends in `AND id < ? ORDER BY id DESC LIMIT ?`), newest first, a chunk at a time."""
    before = 2**62
    while True:
        rows = await ex.store.fetch(sql, *args, before, CHUNK)
        for r in rows:
            yield r
        if len(rows) < CHUNK:
            return
        before = int(rows[-1]["id"])


def _m(ex: Exchange, mid: str) -> Market:
    return ex.config.markets[mid]


async def orders_csv(request: web.Request) -> web.StreamResponse:
    member_id = require_member(request)
    ex: Exchange = request.app[EXCHANGE]

    async def rows() -> AsyncIterator[Sequence[Any]]:
        async for o in _pages(ex, "SELECT * FROM orders WHERE member_id = ? AND id < ? ORDER BY id DESC LIMIT ?", member_id):
            m = _m(ex, o["market"])
            executed = int(o["volume"]) - int(o["remaining"])
            yield (o["id"], iso(int(o["created_at"])), m.id, o["side"], o["ord_type"], o["tif"],
                   format_plain(int(o["price"]), m.price_precision) if o["ord_type"] != "market" else "",
                   format_plain(int(o["stop_price"]), m.price_precision) if int(o["stop_price"]) else "",
                   format_plain(int(o["volume"]), m.volume_precision), format_plain(executed, m.volume_precision),
                   format_plain(int(o["funds_used"]), m.quote.precision),
                   o["state"], o["client_id"] or "")

    return await _stream(request, "orders.csv", ("id", "created_at", "market", "side", "type", "time_in_force", "price",
                                                 "stop_price", "volume", "executed", "funds", "state", "client_id"), rows())


async def trades_csv(request: web.Request) -> web.StreamResponse:
    member_id = require_member(request)
    ex: Exchange = request.app[EXCHANGE]

    async def rows() -> AsyncIterator[Sequence[Any]]:
        # both sides' indexes, merged newest first (an OR over two columns would scan)
        sides = [_pages(ex, f"SELECT * FROM trades WHERE {col} = ? AND id < ? ORDER BY id DESC LIMIT ?", member_id)
                 for col in ("bid_member_id", "ask_member_id")]
        heads: list[Any] = [await anext(s, None) for s in sides]
        last = None
        while any(h is not None for h in heads):
            i = max((k for k in range(2) if heads[k] is not None), key=lambda k: int(heads[k]["id"]))
            t = heads[i]
            heads[i] = await anext(sides[i], None)
            if last == int(t["id"]):
                continue  # a self-trade is on both sides
            last = int(t["id"])
            m = _m(ex, t["market"])
            buyer = int(t["bid_member_id"]) == member_id
            fee, fee_cur = (int(t["bid_fee"]), m.base) if buyer else (int(t["ask_fee"]), m.quote)
            yield (t["id"], iso(int(t["created_at"])), m.id, "buy" if buyer else "sell",
                   format_plain(int(t["price"]), m.price_precision), format_plain(int(t["volume"]), m.volume_precision),
                   format_plain(int(t["funds"]), m.quote.precision), format_plain(fee, fee_cur.precision), fee_cur.code,
                   "taker" if (t["taker_side"] == "buy") == buyer else "maker", t["bid_id"] if buyer else t["ask_id"])

    return await _stream(request, "trades.csv", ("id", "created_at", "market", "side", "price", "volume", "funds", "fee",
                                                 "fee_currency", "role", "order_id"), rows())


async def ledger_csv(request: web.Request) -> web.StreamResponse:
    member_id = require_member(request)
    ex: Exchange = request.app[EXCHANGE]
    code = request.query.get("currency") or None
    if code is not None and code not in ex.config.currencies:
        raise web.HTTPNotFound()
    _ = translator_of(request)

    async def rows() -> AsyncIterator[Sequence[Any]]:
        sql = "SELECT * FROM ledger WHERE member_id = ?" + (" AND currency = ?" if code else "")
        args = (member_id, code) if code else (member_id,)
        async for r in _pages(ex, sql + " AND id < ? ORDER BY id DESC LIMIT ?", *args):
            cur = ex.config.currencies[r["currency"]]
            reason = LEDGER_REASONS.get(r["reason"])
            yield (r["id"], iso(int(r["created_at"])), cur.code, r["reason"], _(reason) if reason else r["reason"],
                   format_plain(int(r["d_balance"]), cur.precision), format_plain(int(r["d_locked"]), cur.precision),
                   format_plain(int(r["fee"]), cur.precision), r["ref_type"], r["ref_id"])

    name = f"ledger-{code}.csv" if code else "ledger.csv"
    return await _stream(request, name, ("id", "created_at", "currency", "reason", "description", "balance_change",
                                          "locked_change", "fee", "ref_type", "ref_id"), rows())


def add_routes(app: web.Application) -> None:
    app.router.add_get("/orders", all_orders)
    app.router.add_get("/orders/orders.csv", orders_csv)
    app.router.add_get("/orders/trades.csv", trades_csv)
    app.router.add_get("/orders/ledger.csv", ledger_csv)
