"""A market's page: the book, recent trades, the tickers and the trading form, with the settings its
script needs (it draws the chart and keeps the page live); the member's open orders, trades and
balances in it (also as JSON for that script), and every market's halted status.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from node.config import Market
from node.exchange import Exchange
from node.fees import rate_in_force
from node.market import FOK, GTC, IOC, LIMIT, MARKET, POST_ONLY, STOP_LIMIT
from node.money import format_units
from node.web.api import json_response
from node.web.forms import Form, amount, fee_percent, iso, price, utc, volume
from node.web.i18n import N_, Translator
from node.web.pages.common import WS_PATH, _exchange, _has_route, _market, require_member
from node.web.pages.home import statuses, ticker
from node.web.session import render, session_of, translator_of

BOOK_LEVELS = 16
RECENT_TRADES = 40
MY_ROWS = 50


def _book(ex: Exchange, m: Market, levels: int = BOOK_LEVELS) -> dict[str, Any]:
    actor = ex.markets.get(m.id)
    asks, bids = actor.engine.depth(levels) if actor else ([], [])

    def side(rows: list[tuple[int, int]]) -> list[dict[str, str]]:
        out, total = [], 0
        for p, v in rows:
            total += v
            out.append({"price": price(m, p), "volume": volume(m, v), "total": volume(m, total)})
        return out

    return {"asks": list(reversed(side(asks))), "bids": side(bids)}


TYPE_LABELS = {LIMIT: N_("Limit"), MARKET: N_("order type|Market"), STOP_LIMIT: N_("Stop-limit")}
TIF_LABELS = {IOC: N_("IOC"), FOK: N_("FOK"), POST_ONLY: N_("Post only")}


def type_label(m: Market, o: dict[str, Any], _: Translator) -> str:
    """"Stop-limit · stop ≥ 31000.00 · IOC": the type, a stop's trigger and a time in force other than GTC."""
    parts = [_(TYPE_LABELS.get(o["ord_type"], o["ord_type"]))]
    if o["ord_type"] == STOP_LIMIT and o.get("stop_price"):
        parts.append(_("stop {op} {price}", op="≥" if o["side"] == "buy" else "≤", price=price(m, int(o["stop_price"]))))
    if o.get("tif") in TIF_LABELS:
        parts.append(_(TIF_LABELS[o["tif"]]))
    return " · ".join(parts)


def _order_view(m: Market, o: dict[str, Any], _: Translator) -> dict[str, Any]:
    executed = o["volume"] - o["remaining"]
    avg = ""
    if executed:
        avg = price(m, o["funds_used"] // m.quote_factor // executed)
    state = "wait" if o["state"] == "pending" else o["state"]
    return {
        "id": o["id"], "at": iso(o["created_at"]), "time": utc(o["created_at"]), "side": o["side"],
        "side_label": _(o["side"]), "type": o["ord_type"], "type_label": type_label(m, o, _),
        "price": price(m, o["price"]) if o["ord_type"] != "market" else _("market"),
        "volume": volume(m, o["volume"]), "remaining": volume(m, o["remaining"]), "executed": volume(m, executed),
        "avg_price": avg or "—", "state": state, "state_label": _(state),
        "total": amount(m.quote_units(o["price"] * o["volume"]), m.quote) if o["ord_type"] != "market" else "—",
    }


async def _my_trades(ex: Exchange, m: Market, member_id: int, limit: int = MY_ROWS) -> list[dict[str, Any]]:
    """Both sides' indexes, merged (an OR over two columns would scan)."""
    bids = await ex.store.fetch("SELECT * FROM trades WHERE bid_member_id = ? AND market = ? ORDER BY id DESC LIMIT ?",
                                member_id, m.id, limit)
    asks = await ex.store.fetch("SELECT * FROM trades WHERE ask_member_id = ? AND market = ? ORDER BY id DESC LIMIT ?",
                                member_id, m.id, limit)
    seen: dict[int, dict[str, Any]] = {}
    for r in [*bids, *asks]:
        seen[int(r["id"])] = dict(r)
    return sorted(seen.values(), key=lambda r: -int(r["id"]))[:limit]


def _trade_view(m: Market, t: dict[str, Any], member_id: int, _: Translator) -> dict[str, Any]:
    buyer = int(t["bid_member_id"]) == member_id
    side = "buy" if buyer else "sell"
    fee = int(t["bid_fee"]) if buyer else int(t["ask_fee"])
    return {
        "id": int(t["id"]), "at": iso(int(t["created_at"])), "time": utc(int(t["created_at"])), "side": side,
        "order_id": int(t["bid_id"]) if buyer else int(t["ask_id"]), "market": m.id,
        "side_label": _(side), "price": price(m, int(t["price"])), "volume": volume(m, int(t["volume"])),
        "total": amount(int(t["funds"]), m.quote),
        "fee": f"{amount(fee, m.base if buyer else m.quote)} {(m.base if buyer else m.quote).symbol}",
        "role": _("maker") if (t["taker_side"] == "buy") != buyer else _("taker"),
    }


async def _private_state(ex: Exchange, m: Market, member_id: int, _: Translator) -> dict[str, Any]:
    accounts = {a["currency"]: a for a in await ex.accounts_of(member_id)}
    balances = {}
    for cur in (m.base, m.quote):
        a = accounts.get(cur.code, {"balance": 0, "locked": 0})
        balances[cur.code] = {"symbol": cur.symbol, "available": amount(int(a["balance"]), cur),
                              "locked": amount(int(a["locked"]), cur), "units": str(int(a["balance"])),
                              "precision": cur.precision}
    open_orders = await ex.orders_of(member_id, m.id, ("wait", "pending"), limit=MY_ROWS, ascending=False)
    history = await ex.orders_of(member_id, m.id, ("done", "cancel"), limit=MY_ROWS, ascending=False)
    trades = await _my_trades(ex, m, member_id)
    return {
        "balances": balances,
        "open": [_order_view(m, o, _) for o in open_orders],
        "history": [_order_view(m, o, _) for o in history],
        "trades": [_trade_view(m, t, member_id, _) for t in trades],
    }


def book_groups(m: Market) -> list[dict[str, Any]]:
    """Price steps offered for grouping the book: the tick and four coarser powers of ten."""
    out = []
    for i in range(5):
        ticks = 10**i
        out.append({"ticks": ticks, "label": format_units(ticks, m.price_precision) if i < m.price_precision or
                    m.price_precision == 0 else str(ticks // 10**m.price_precision)})
    return out


async def _market_context(request: web.Request, m: Market, form: Form | None = None) -> dict[str, Any]:
    ex = _exchange(request)
    _ = translator_of(request)
    s = session_of(request)
    maker_rate, taker_rate = await rate_in_force(ex.store, m)
    every = statuses(request)
    rows = await ex.store.fetch("SELECT * FROM trades WHERE market = ? ORDER BY id DESC LIMIT ?", m.id, RECENT_TRADES)
    trades = [{"id": int(r["id"]), "price": price(m, int(r["price"])), "volume": volume(m, int(r["volume"])),
               "side": r["taker_side"], "at": iso(int(r["created_at"])), "time": utc(int(r["created_at"]))[11:]}
              for r in rows]
    mine = await _private_state(ex, m, s.member_id, _) if s.member_id is not None else None
    config = {
        "market": m.id, "name": m.name, "base": m.base.symbol, "quote": m.quote.symbol, "baseCode": m.base.code,
        "quoteCode": m.quote.code, "pricePrecision": m.price_precision,
        "volumePrecision": m.volume_precision, "quotePrecision": m.quote.precision, "basePrecision": m.base.precision,
        "baseShown": m.base.shown, "quoteShown": m.quote.shown,
        "makerFee": str(maker_rate), "takerFee": str(taker_rate), "loggedIn": s.member_id is not None,
        "lastTradeId": trades[0]["id"] if trades else 0,
        "websocket": WS_PATH if _has_route(request.app, WS_PATH) else "",
        "markets": list(ex.config.markets), "halted": every[m.id].halted,
    }
    return {
        "market": m,
        "tickers": [await ticker(request, x) for x in ex.config.markets.values()],
        "ticker": await ticker(request, m),
        "book": _book(ex, m),
        "trades": trades,
        "mine": mine,
        "form": form or Form({"side": "buy", "ord_type": "limit"}),
        "maker_fee": fee_percent(maker_rate),
        "taker_fee": fee_percent(taker_rate),
        "min_volume": volume(m, m.min_volume),
        "page_config": config,
        "status": every[m.id],
        "statuses": every,
        "tifs": [(GTC, _("Good till cancelled")), (POST_ONLY, _("Post only (maker)")),
                 (IOC, _("Immediate or cancel")), (FOK, _("Fill or kill"))],
        "book_groups": book_groups(m),
    }


async def market(request: web.Request) -> web.Response:
    m = _market(request)
    return render(request, "market.html", await _market_context(request, m))


async def markets_status(request: web.Request) -> web.Response:
    """Every market's halt and reason, for pages that cannot have the websocket."""
    return json_response([st.json() for st in statuses(request).values()], headers={"Cache-Control": "no-store"})


async def market_me(request: web.Request) -> web.Response:
    """The member's side of a market page, polled by market.js: balances, orders, trades."""
    m = _market(request)
    member_id = require_member(request)
    state = await _private_state(_exchange(request), m, member_id, translator_of(request))
    return json_response(state, headers={"Cache-Control": "no-store"})
