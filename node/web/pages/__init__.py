"""Server-rendered pages for traders: markets, trading, funds, API keys, and the member's account.

Every page works without JavaScript (forms post and redirect back); with it, the market page stays
live (book, trades, chart, the member's orders and balances) and its forms are sent with `fetch`, so
placing or cancelling an order never reloads the page. Handlers that the scripts call answer JSON
when asked for it (`Accept: application/json`), with the same per-field errors as the page.

Sessions, CSRF and the template context (translator, member, CSRF field) come from
`node.web.session`'s middleware; members' accounts from `node.members`.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import aiohttp_jinja2
from aiohttp import web
from yarl import URL

from node.apikeys import SCOPES, parse_ip_whitelist
from node.clock import now_ms
from node.config import Market
from node.errors import ExchangeError, InvalidParameter, MarketHalted
from node.exchange import Exchange, OrderInput
from node.fees import rate_in_force
from node.mail import mailer_from
from node.market import FOK, GTC, IOC, LIMIT, MARKET, POST_ONLY, STOP_LIMIT
from node.market.settlement import order_lock
from node.marketdata.service import Ticker
from node.members import NOT_ACTIVATED, WRONG_CODE, LoginAttempt, Members
from node.money import format_units
from node.notices import Notices
from node.notices import text as notice_text
from node.security import audit
from node.wallet.records import freeze_of
from node.web import session as sessions
from node.web.api import EXCHANGE, json_response
from node.web.api.marketdata import MARKETDATA
from node.web.forms import (
    GENERAL,
    Form,
    amount,
    fee_percent,
    iso,
    parse_amount,
    price,
    qr_data_uri,
    utc,
    volume,
)
from node.web.i18n import LANGS, N_, FormError, Translator, translator
from node.web.market_status import MARKET_STATUS, Status
from node.web.session import (
    SECOND_FACTOR,
    SESSIONS,
    Session,
    error_page,
    render,
    safe_next,
    session_of,
    set_lang_cookie,
    translator_of,
)

log = logging.getLogger(__name__)
MEMBERS = web.AppKey("members", Members)
NOTICES = web.AppKey("notices", Notices)
BOOK_LEVELS = 16
RECENT_TRADES = 40
MY_ROWS = 50
LEDGER_PAGE = 50
MAX_API_KEYS = 20
PENDING_LOGIN_MS = 300_000  # a log in waiting for its second factor lapses after five minutes
EXPIRY_CHOICES = {"never": 0, "30": 30, "90": 90, "365": 365}
# Words the pages show from data (translated with `_(value)`), marked here for the catalog.
DATA_WORDS = (
    N_("buy"), N_("sell"), N_("limit"), N_("market"), N_("wait"), N_("done"), N_("cancel"),
    N_("submitted"), N_("accepted"), N_("rejected"), N_("processing"), N_("canceled"), N_("suspect"), N_("failed"),
    N_("almost_done"), N_("skipped"), N_("reverted"),
    N_("checked"), N_("warning"), N_("cancelled"), N_("profile"), N_("history"), N_("trade"), N_("all"),
    N_("stop_limit"), N_("gtc"), N_("ioc"), N_("fok"), N_("post_only"),
)
BANK_FIELDS = {
    "bank_name": N_("Bank"), "account_holder": N_("Account holder"), "account_number": N_("Account number"),
    "swift": N_("SWIFT/BIC"), "bank_address": N_("Bank address"),
}
LEDGER_REASONS = {
    "order_submit": N_("Order placed (funds locked)"),
    "order_cancel": N_("Order cancelled (funds unlocked)"),
    "order_fullfilled": N_("Order filled (unused lock returned)"),
    "strike_add": N_("Trade: received"),
    "strike_sub": N_("Trade: paid"),
    "strike_fee": N_("Trade fee"),
    "deposit": N_("Deposit"),
    "withdraw": N_("Withdrawal"),
    "withdraw_lock": N_("Withdrawal (funds locked)"),
    "withdraw_unlock": N_("Withdrawal cancelled (funds unlocked)"),
    "withdraw_fee": N_("Withdrawal fee"),
    "fix": N_("Correction"),
    "deposit_revert": N_("Deposit reversed (its transaction was double-spent)"),
}


WS_PATH = "/ws"  # the websocket API (node/web/ws.py, docs/websocket.md), when the app serves it


def _has_route(app: web.Application, path: str) -> bool:
    return any(getattr(r.resource, "canonical", None) == path for r in app.router.routes())


def wants_json(request: web.Request) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def redirect(location: str) -> web.Response:
    """303 See Other: after a POST the browser GETs the next page (a reload does not post again)."""
    return web.Response(status=303, headers={"Location": location})


def require_member(request: web.Request) -> int:
    """The logged-in member's id; otherwise off to the log in page (or 401 for scripts)."""
    s = session_of(request)
    if s.member_id is None:
        if wants_json(request) or request.path.endswith(".json"):
            raise web.HTTPUnauthorized(text='{"error":"log in first"}', content_type="application/json")
        target = request.path_qs if request.method == "GET" else _local(request.headers.get("Referer", "/"))
        raise web.HTTPSeeOther(str(URL("/login").with_query(next=safe_next(target))))
    return s.member_id


def path_id(request: web.Request, name: str = "id") -> int:
    """The row id in the path, or 404: a malformed or out-of-range id names nothing, like a missing row."""
    try:
        value = int(request.match_info[name])
    except ValueError:
        raise web.HTTPNotFound() from None
    if not 0 < value < 2**62:
        raise web.HTTPNotFound()
    return value


def _local(url: str) -> str:
    """The path and query of a same-site URL (a Referer), else "/"."""
    u = URL(url)
    return u.path_qs if not u.is_absolute() or u.host is not None else "/"


def _exchange(request: web.Request) -> Exchange:
    return request.app[EXCHANGE]


def _market(request: web.Request) -> Market:
    m = _exchange(request).config.markets.get(request.match_info["market"])
    if m is None:
        raise web.HTTPNotFound()
    return m


async def _form(request: web.Request, secret: tuple[str, ...] = ()) -> Form:
    return Form(await request.post(), secret=secret)


def _attempt(request: web.Request) -> LoginAttempt:
    return LoginAttempt(ip=request.remote or "", user_agent=request.headers.get("User-Agent", ""))


# -- market list --------------------------------------------------------------------------------------
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


# -- market page --------------------------------------------------------------------------------------
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


async def _check_order(ex: Exchange, m: Market, member_id: int, form: Form, _: Translator) -> OrderInput | None:
    """Check the order form completely, with errors next to the fields; the core checks again."""
    side = form.value("side")
    ord_type = form.value("ord_type", "limit")
    tif = form.value("time_in_force", GTC) or GTC
    if side not in ("buy", "sell"):
        form.error("side", _("Choose buy or sell"))
    if ord_type not in (LIMIT, MARKET, STOP_LIMIT):
        form.error("ord_type", _("Choose a limit, market or stop-limit order"))
    if tif not in (GTC, POST_ONLY, IOC, FOK):
        form.error("time_in_force", _("Choose one of the offered times in force"))
    elif ord_type == MARKET and tif == POST_ONLY:
        form.error("time_in_force", _("A market order always takes from the book: it cannot be post-only"))
    lots = ticks = 0
    try:
        lots = parse_amount(form.value("volume"), m.volume_precision, "volume")
        if lots < m.min_volume:
            form.error("volume", _("The minimum amount is {n} {cur}", n=volume(m, m.min_volume), cur=m.base.symbol))
        elif m.max_volume and lots > m.max_volume:
            form.error("volume", _("The maximum amount is {n} {cur}", n=volume(m, m.max_volume), cur=m.base.symbol))
    except FormError as e:
        form.add(e, _)
    if ord_type in (LIMIT, STOP_LIMIT):
        try:
            ticks = parse_amount(form.value("price"), m.price_precision, "price")
        except FormError as e:
            form.add(e, _)
    elif form.value("price").strip():
        form.error("price", _("A market order has no price: leave it empty"))
    if ord_type == STOP_LIMIT:
        try:
            parse_amount(form.value("stop_price"), m.price_precision, "stop_price")
        except FormError as e:
            form.add(e, _)
    if not form.ok:
        return None
    o = OrderInput(m.id, side, form.value("volume").strip(),
                   form.value("price").strip() if ord_type != MARKET else None, ord_type, tif,
                   form.value("stop_price").strip() if ord_type == STOP_LIMIT else None)
    try:
        req = await ex.prepare(member_id, o)
    except ExchangeError as e:
        if "not deep enough" in e.message:
            form.error("volume", _("Not enough orders in the book for this amount"))
        elif isinstance(e, MarketHalted):
            form.error(GENERAL, _("Trading on {market} is halted: no new orders until it resumes", market=m.name))
        else:
            form.add(e, _)
        return None
    currency, need = (req.lock_currency, req.lock_amount) if ord_type == MARKET else order_lock(m, side, ticks, lots)
    cur = ex.config.currencies[currency]
    have = next((int(a["balance"]) for a in await ex.accounts_of(member_id) if a["currency"] == currency), 0)
    if need > have:
        form.error("volume", _("Insufficient balance: this order needs {need} {cur}, you have {have} {cur} available",
                               need=amount(need, cur), have=amount(have, cur), cur=cur.symbol))
        return None
    return o


async def place_order(request: web.Request) -> web.StreamResponse:
    m = _market(request)
    member_id = require_member(request)
    ex = _exchange(request)
    _ = translator_of(request)
    form = await _form(request)
    o = await _check_order(ex, m, member_id, form, _)
    order: dict[str, Any] | None = None
    if o is not None:
        try:
            order = await ex.submit_order(member_id, o)
        except ExchangeError as e:
            if "cannot lock funds" in e.message:
                form.error("volume", _("Insufficient balance for this order"))
            else:
                form.add(e, _)
    if wants_json(request):
        if order is None:
            return json_response({"ok": False, "errors": form.errors}, status=400)
        return json_response({"ok": True, "message": _("Order placed"), "order": _order_view(m, order, _)})
    if order is None:
        return render(request, "market.html", await _market_context(request, m, form), status=400)
    session_of(request).flash(_("Order placed"), "success")
    return redirect(f"/markets/{m.id}")


def _order_answer(request: web.Request, ok: bool, message: str, back: str) -> web.Response:
    """How a cancel answers: JSON for market.js (400 when refused), else a flash and back to `back`."""
    if wants_json(request):
        return json_response({"ok": ok, "message": message}, status=200 if ok else 400)
    session_of(request).flash(message, "success" if ok else "error")
    return redirect(back)


async def cancel_order(request: web.Request) -> web.StreamResponse:
    member_id = require_member(request)
    ex = _exchange(request)
    _ = translator_of(request)
    form = await _form(request)
    order_id = path_id(request)
    row = await ex.order_row(order_id)
    back = safe_next(form.value("next"), f"/markets/{row['market']}" if row else "/")
    message, ok = _("Order cancelled"), True
    if row is None or row["member_id"] != member_id:  # another member's order does not exist for you
        message, ok = _("This order does not exist"), False
    else:
        try:
            await ex.cancel_order(member_id, order_id)
        except ExchangeError as e:
            message, ok = _.error(e), False
    return _order_answer(request, ok, message, back)


async def cancel_all(request: web.Request) -> web.StreamResponse:
    m = _market(request)
    member_id = require_member(request)
    _ = translator_of(request)
    try:
        done = await _exchange(request).cancel_all(member_id, market=m.id)
        n = len(done)
        message, ok = (_("No open orders to cancel") if n == 0 else _("1 order cancelled") if n == 1
                       else _("{n} orders cancelled", n=n)), True
    except ExchangeError as e:
        message, ok = _.error(e), False
    return _order_answer(request, ok, message, f"/markets/{m.id}")


# -- sign up, activation, log in ----------------------------------------------------------------------
async def signup(request: web.Request) -> web.Response:
    _ = translator_of(request)
    if session_of(request).authenticated:
        return redirect("/")
    if request.method == "GET":
        return render(request, "signup.html", {"form": Form()})
    form = await _form(request, secret=("password", "password_confirmation"))
    data = await request.post()
    members = request.app[MEMBERS]
    password, confirmation = str(data.get("password", "")), str(data.get("password_confirmation", ""))
    try:
        form.text("email", 254)
        if form.value("terms") != "on":
            form.error("terms", _("Please accept the terms to continue"))
            members.check_sign_up(form.value("email"), password, confirmation)  # the other fields' errors too
        else:
            await _remember_lang(request, await members.sign_up(form.value("email"), password, confirmation, _.lang), _.lang)
    except ExchangeError as e:
        form.add(e, _)
    if not form.ok:
        return render(request, "signup.html", {"form": form}, status=400)
    return render(request, "message.html", {
        "title": _("Check your mail"),
        "message": _("We have sent an activation link to {email}. Open it to activate your account; it is valid "
                     "for 48 hours.", email=form.value("email").strip().lower()),
        "links": [("/activation/resend", _("Didn't get the mail? Send it again"))],
    })


async def activate(request: web.Request) -> web.Response:
    _ = translator_of(request)
    try:
        await request.app[MEMBERS].activate(request.match_info["token"])
    except ExchangeError as e:
        return render(request, "message.html", {
            "title": _("Activation failed"), "message": _.error(e), "kind": "error",
            "links": [("/activation/resend", _("Send a new activation link")), ("/login", _("Log in"))],
        }, status=400)
    session_of(request).flash(_("Your account is active. You can log in now."), "success")
    return redirect("/login")


async def resend_activation(request: web.Request) -> web.Response:
    _ = translator_of(request)
    if request.method == "GET":
        return render(request, "resend.html", {"form": Form()})
    form = await _form(request)
    try:
        await request.app[MEMBERS].resend_activation(form.text("email", 254), _.lang)
    except ExchangeError as e:
        form.add(e, _)
        return render(request, "resend.html", {"form": form}, status=400)
    return render(request, "message.html", {
        "title": _("Check your mail"),
        "message": _("If {email} has an account that is not active yet, a new activation link is on its way.",
                     email=form.value("email").strip().lower()),
    })


async def _open_session(request: web.Request, member: dict[str, Any], next_url: str) -> web.Response:
    """Log the member in: a new session key (fixation), the success in the login history."""
    s = session_of(request)
    request.app[SESSIONS].rotate(s, int(member["id"]), member["email"])
    await request.app[MEMBERS].record_login(int(member["id"]), True, "", _attempt(request))
    _ = translator_of(request)
    await _remember_lang(request, int(member["id"]), _.lang)
    s.flash(_("Welcome back, {email}", email=member["email"]), "success")
    return redirect(safe_next(next_url, "/funds"))


async def login(request: web.Request) -> web.Response:
    _ = translator_of(request)
    if request.method == "GET":
        if session_of(request).authenticated:
            return redirect(safe_next(request.query.get("next"), "/"))
        return render(request, "login.html", {"form": Form({"next": request.query.get("next", ""),
                                                            "email": request.query.get("email", "")})})
    form = await _form(request, secret=("password",))
    password = str((await request.post()).get("password", ""))
    try:
        form.text("next", 500)
        member = await request.app[MEMBERS].authenticate(form.value("email"), password, _attempt(request))
    except ExchangeError as e:
        form.add(e, _)
        not_active = isinstance(e, FormError) and e.msgid == NOT_ACTIVATED
        return render(request, "login.html", {"form": form, "not_active": not_active}, status=400)
    second = request.app.get(SECOND_FACTOR)
    if second is not None and await second.required(int(member["id"]), "login"):
        s = session_of(request)
        request.app[SESSIONS].rotate(s, None)
        s.set("pending_login", {"member": int(member["id"]), "email": member["email"],
                                "next": safe_next(form.value("next"), "/funds"), "until": now_ms() + PENDING_LOGIN_MS})
        return redirect("/login/2fa")
    return await _open_session(request, member, form.value("next"))


async def login_second_factor(request: web.Request) -> web.Response:
    """Step two of a log in, when the security module asks for a code."""
    _ = translator_of(request)
    s = session_of(request)
    pending = s.data.get("pending_login")
    second = request.app.get(SECOND_FACTOR)
    if not isinstance(pending, dict) or second is None or int(pending.get("until", 0)) < now_ms():
        s.pop("pending_login")
        s.flash(_("Please log in again."), "error")
        return redirect("/login")
    if request.method == "GET":
        return render(request, "login_2fa.html", {"form": Form()})
    form = await _form(request)
    member_id = int(pending["member"])
    try:
        code = form.text("otp_code", 16, required=True)
        await second.verify(member_id, "login", code)
    except ExchangeError as e:
        form.add(e, _)
        await request.app[MEMBERS].record_login(member_id, False, WRONG_CODE, _attempt(request))
        return render(request, "login_2fa.html", {"form": form}, status=400)
    s.pop("pending_login")
    return await _open_session(request, {"id": member_id, "email": pending["email"]}, str(pending["next"]))


async def logout(request: web.Request) -> web.Response:
    s = session_of(request)
    request.app[SESSIONS].rotate(s, None)
    _ = translator_of(request)
    s.flash(_("You are logged out."), "info")
    return redirect("/")


async def forgot_password(request: web.Request) -> web.Response:
    _ = translator_of(request)
    if request.method == "GET":
        return render(request, "forgot.html", {"form": Form({"email": request.query.get("email", "")})})
    form = await _form(request)
    try:
        await request.app[MEMBERS].request_reset(form.text("email", 254), _.lang)
    except ExchangeError as e:
        form.add(e, _)
        return render(request, "forgot.html", {"form": form}, status=400)
    return render(request, "message.html", {
        "title": _("Check your mail"),
        "message": _("If {email} has an account, a link to choose a new password is on its way. It is valid for "
                     "30 minutes and works once.", email=form.value("email").strip().lower()),
    })


async def reset_password(request: web.Request) -> web.Response:
    _ = translator_of(request)
    token = request.match_info["token"]
    members = request.app[MEMBERS]
    if request.method == "GET":
        try:
            await members.check_token(token, "reset")
        except ExchangeError as e:
            return render(request, "message.html", {
                "title": _("This link cannot be used"), "message": _.error(e), "kind": "error",
                "links": [("/password/forgot", _("Ask for a new link"))]}, status=400)
        return render(request, "reset.html", {"form": Form(), "token": token})
    form = await _form(request, secret=("password", "password_confirmation"))
    data = await request.post()
    try:
        member_id = await members.reset_password(token, str(data.get("password", "")),
                                                 str(data.get("password_confirmation", "")))
    except ExchangeError as e:
        form.add(e, _)
        if GENERAL in form.errors:  # the link itself is bad: no form can help
            return render(request, "message.html", {
                "title": _("This link cannot be used"), "message": form.errors[GENERAL], "kind": "error",
                "links": [("/password/forgot", _("Ask for a new link"))]}, status=400)
        return render(request, "reset.html", {"form": form, "token": token}, status=400)
    await request.app[SESSIONS].end_member_sessions(member_id)
    session_of(request).flash(_("Your password is changed. Please log in with the new one."), "success")
    return redirect("/login")


# -- account: profile, password, login history --------------------------------------------------------
async def _account_context(request: web.Request, member_id: int, form: Form | None = None) -> dict[str, Any]:
    ex = _exchange(request)
    member = await ex.member(member_id)
    history = await request.app[MEMBERS].login_history(member_id)
    live = await request.app[SESSIONS].of_member(member_id)
    return {
        "member": {"email": member["email"], "sn": member["sn"], "since": utc(int(member["created_at"]))[:10]},
        "history": [{"time": utc(int(h["created_at"])), "at": iso(int(h["created_at"])), "ok": bool(h["ok"]),
                     "reason": h["reason"], "ip": h["ip"], "agent": _short_agent(h["user_agent"])} for h in history],
        "sessions": [{"ip": x["ip"], "agent": _short_agent(x["user_agent"]), "seen": utc(int(x["seen_at"])),
                      "at": iso(int(x["seen_at"]))} for x in live],
        "form": form or Form(),
    }


def _short_agent(ua: str) -> str:
    """A readable browser name from a User-Agent (the full string is noise on a page)."""
    for name in ("Edg/", "OPR/", "Firefox/", "Chrome/", "HeadlessChrome/", "Safari/", "curl/", "python"):
        if name in ua:
            browser = name.rstrip("/")
            break
    else:
        browser = ua[:40] or "—"
    system = next((s for s in ("Windows", "Android", "iPhone", "iPad", "Mac OS X", "Linux") if s in ua), "")
    return f"{browser} · {system}" if system else browser


async def account(request: web.Request) -> web.Response:
    member_id = require_member(request)
    return render(request, "account.html", await _account_context(request, member_id))


async def change_password(request: web.Request) -> web.Response:
    member_id = require_member(request)
    _ = translator_of(request)
    form = await _form(request, secret=("current_password", "password", "password_confirmation"))
    data = await request.post()
    try:
        await request.app[MEMBERS].change_password(
            member_id, str(data.get("current_password", "")), str(data.get("password", "")),
            str(data.get("password_confirmation", "")), _.lang)
    except ExchangeError as e:
        form.add(e, _)
        return render(request, "account.html", await _account_context(request, member_id, form), status=400)
    s = session_of(request)
    await request.app[SESSIONS].end_member_sessions(member_id, keep=s)
    s.flash(_("Your password is changed. Your other sessions are logged out."), "success")
    return redirect("/account")


# -- funds ------------------------------------------------------------------------------------------------
def _funds_api(ex: Exchange) -> Any:
    """The wallets' facade (deposits, addresses, withdrawals; node/wallet/funds.py)."""
    return ex.funds


async def _balances(ex: Exchange, member_id: int) -> list[dict[str, Any]]:
    out = []
    for a in await ex.accounts_of(member_id):
        cur = ex.config.currencies[a["currency"]]
        bal, locked = int(a["balance"]), int(a["locked"])
        out.append({"code": cur.code, "symbol": cur.symbol, "name": cur.name, "kind": cur.kind,
                    "available": amount(bal, cur), "locked": amount(locked, cur), "total": amount(bal + locked, cur),
                    "empty": bal + locked == 0})
    return out


async def funds(request: web.Request) -> web.Response:
    member_id = require_member(request)
    return render(request, "funds.html", await _funds_context(request, member_id))


async def _funds_context(request: web.Request, member_id: int, withdraw_form: Form | None = None,
                         code: str | None = None) -> dict[str, Any]:
    ex = _exchange(request)
    _ = translator_of(request)
    balances = await _balances(ex, member_id)
    code = code or request.query.get("currency") or next((b["code"] for b in balances if not b["empty"]), None) \
        or next(iter(ex.config.currencies))
    if code not in ex.config.currencies:
        raise web.HTTPNotFound()
    cur = ex.config.currencies[code]
    try:
        page = max(1, min(int(request.query.get("page", "1")), 10_000))
    except ValueError:
        page = 1
    facade = _funds_api(ex)
    second = request.app.get(SECOND_FACTOR)
    address, address_error, bank = None, None, None
    try:
        got = await facade.deposit_address(member_id, code)
        address = got.get("address") if isinstance(got, dict) else got
        bank = got.get("bank") if isinstance(got, dict) else None
    except ExchangeError as e:
        address_error = (_("The {cur} wallet cannot be reached right now; please try again in a few minutes.",
                           cur=cur.symbol) if e.status == 503 else
                         _("Deposits of {cur} are not open on this exchange yet.", cur=cur.symbol))
    deposits = await facade.deposits_of(member_id, code, limit=20)
    withdraws = await facade.withdraws_of(member_id, code, limit=20)
    holds = await _holds(ex, [int(w["id"]) for w in withdraws or () if w["state"] == "submitting"])
    w = cur.wallet
    ledger = await ex.store.fetch(
        "SELECT * FROM ledger WHERE member_id = ? AND currency = ? ORDER BY id DESC LIMIT ? OFFSET ?",
        member_id, code, LEDGER_PAGE + 1, (page - 1) * LEDGER_PAGE)
    return {
        "balances": balances,
        "cur": cur,
        "address": address,
        "address_error": address_error,
        "qr": qr_data_uri(address) if address and cur.kind == "coin" else None,
        "bank": [(_(BANK_FIELDS.get(k, k)), v) for k, v in bank.items()] if bank else None,
        "withdraw_fee": amount(w.withdraw_fee, cur) if w is not None else None,
        "withdraw_min": amount(w.min_withdraw, cur) if w is not None else None,
        "withdraw_code": facade is not None and (await second.required(member_id, "withdraw") if second is not None
                                                 else getattr(facade, "second_factor", None) is not None),
        "deposits": [_deposit_view(cur, d, _) for d in deposits],
        "withdraws": None if withdraws is None else [_withdraw_view(cur, w, _, holds) for w in withdraws],
        "hold": await freeze_of(ex.store, member_id),
        "withdraw_form": withdraw_form or Form(),
        "withdraw_open": facade is not None and cur.wallet is not None,
        "ledger": [_ledger_view(cur, dict(r), _) for r in ledger[:LEDGER_PAGE]],
        "page": page,
        "more": len(ledger) > LEDGER_PAGE,
    }


async def _holds(ex: Exchange, ids: list[int]) -> dict[int, dict[str, Any]]:
    """The confirmation and address holds of withdrawals waiting in `submitting` (node/security/addresses.py)."""
    if not ids:
        return {}
    marks = ",".join("?" * len(ids))
    rows = await ex.store.fetch(f"SELECT * FROM withdraw_holds WHERE withdraw_id IN ({marks})", *ids)
    return {int(r["withdraw_id"]): dict(r) for r in rows}


def explorer_link(cur: Any, txid: str | None) -> str:
    """The block explorer page of a transaction, from the currency's `explorer_tx` template."""
    if not txid or not cur.explorer_tx or cur.kind != "coin":
        return ""
    return cur.explorer_tx.replace("{txid}", str(URL.build(path=txid)).lstrip("/"))


def _withdraw_view(cur: Any, w: dict[str, Any], _: Translator, holds: dict[int, dict[str, Any]] | None = None) -> dict[str, Any]:
    """A withdrawal in words: its state, what it waits for, its transaction or the reason it stopped."""
    state, note, now = str(w["state"]), str(w.get("note") or ""), now_ms()
    hold = (holds or {}).get(int(w["id"]))
    waiting = ""
    if state == "submitting":
        parts = []
        if hold is not None and hold.get("confirmed_at") is None:
            parts.append(_("waiting for your confirmation by the link we mailed you (until {time} UTC)",
                           time=utc(int(hold["confirm_by"]))[:16]))
        if hold is not None and int(hold["release_at"]) > now:
            parts.append(_("new address on hold until {time} UTC", time=utc(int(hold["release_at"]))[:16]))
        waiting = "; ".join(parts) or _("about to be checked")
    elif state == "submitted":
        waiting = (_("waiting for an admin's approval") if w.get("audited_at") and not w.get("approved_at")
                   else _("being checked"))
    elif state == "accepted":
        waiting = _("approved; our staff makes the bank transfer") if cur.kind == "fiat" else _("approved; it will be sent shortly")
        if note.startswith("on hold: ") or note == "waiting to be sent":
            waiting = note  # the wallet's own words for the member (never hot wallet figures)
    elif state == "processing":
        waiting = _("being sent")
    elif state == "almost_done":
        waiting = note
    elif state == "suspect":
        waiting = _("held for a review by our staff")
    reason = ""
    if state in ("rejected", "canceled", "failed"):
        reason = note.removeprefix("rejected by an admin: ")
    label = {"submitting": _("Waiting"), "submitted": _("Checking"), "accepted": _("Approved"), "processing": _("Sending"),
             "almost_done": _("Confirming"), "done": _("Sent"), "rejected": _("Rejected"), "canceled": _("Cancelled"), "failed": _("Failed"),
             "suspect": _("On review")}.get(state, _(state))
    return {"id": int(w["id"]), "sn": w.get("sn") or "", "time": utc(int(w["created_at"])), "at": iso(int(w["created_at"])),
            "amount": amount(int(w["amount"]), cur), "fee": amount(int(w["fee"]), cur), "address": w["address"],
            "state": state, "state_label": label, "waiting": waiting, "reason": reason, "txid": w.get("txid") or "",
            "explorer": explorer_link(cur, w.get("txid")),
            "cancellable": state in ("submitting", "submitted", "accepted")}


def _deposit_view(cur: Any, d: dict[str, Any], _: Translator) -> dict[str, Any]:
    state = str(d["state"])
    need = cur.wallet.confirmations if cur.wallet is not None else 0
    if state == "submitted":
        waiting = (_("waiting for the bank transfer to be matched") if cur.kind == "fiat" or d.get("channel") == "bank"
                   else _("confirmations {n}/{need}", n=int(d.get("confirmations") or 0), need=need))
        label = _("Pending")
        if d.get("note"):  # a block reward waiting to mature
            waiting = f"{waiting}; {d['note']}"
    elif state == "accepted":
        waiting, label = "", _("Credited")
    else:  # failed, skipped, reverted: the reason is the wallet's note
        waiting, label = str(d.get("note") or ""), _(state)
    return {"time": utc(int(d["created_at"])), "at": iso(int(d["created_at"])), "amount": amount(int(d["amount"]), cur),
            "txid": d["txid"], "explorer": explorer_link(cur, d["txid"]), "state": state, "state_label": label,
            "waiting": waiting, "confirmations": d.get("confirmations", 0)}


def _ledger_view(cur: Any, r: dict[str, Any], _: Translator) -> dict[str, Any]:
    reason = LEDGER_REASONS.get(r["reason"])
    return {"time": utc(int(r["created_at"])), "at": iso(int(r["created_at"])),
            "reason": _(reason) if reason else r["reason"],
            "d_balance": _signed(int(r["d_balance"]), cur), "d_locked": _signed(int(r["d_locked"]), cur),
            "fee": amount(int(r["fee"]), cur) if int(r["fee"]) else "",
            "ref": f"{r['ref_type']} #{r['ref_id']}", "up": int(r["d_balance"]) > 0, "down": int(r["d_balance"]) < 0}


def _signed(units: int, cur: Any) -> str:
    if units == 0:
        return "0"
    return ("+" if units > 0 else "−") + amount(abs(units), cur)


async def funds_balances(request: web.Request) -> web.Response:
    """Balances for the funds page to refresh itself."""
    member_id = require_member(request)
    return json_response(await _balances(_exchange(request), member_id), headers={"Cache-Control": "no-store"})


IBAN_RE = re.compile(r"[A-Z]{2}[0-9]{2}[A-Z0-9]{10,30}")
BIC_RE = re.compile(r"[A-Z]{6}[A-Z0-9]{2}([A-Z0-9]{3})?")


def _iban_ok(iban: str) -> bool:
    """ISO 13616 check digits (mod 97): catches a mistyped IBAN before money leaves."""
    moved = iban[4:] + iban[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def _bank_account(form: Form, _: Translator) -> str:
    """A bank withdrawal's destination from its fields, as one line for the admin who pays it:
    "holder | IBAN or account number | BIC | reference"."""
    holder = form.text("account_holder", 70, required=True)
    number = "".join(form.text("account_number", 40, required=True).split()).upper()
    bic = "".join(form.text("bic", 11).split()).upper()
    ref = form.text("reference", 35)
    if number[:2].isalpha() and IBAN_RE.fullmatch(number) and not _iban_ok(number):
        form.error("account_number", _("This IBAN is not valid: please check it (its check digits do not match)"))
    elif not number.isalnum() or len(number) < 5:
        form.error("account_number", _("Enter an IBAN or an account number (letters and digits)"))
    if bic and not BIC_RE.fullmatch(bic):
        form.error("bic", _("A BIC has 8 or 11 letters and digits, like DEUTDEFF"))
    return " | ".join(p for p in (holder, number, bic, ref) if p)


async def withdraw(request: web.Request) -> web.Response:
    """A withdrawal request through the wallets' facade, checked there completely."""
    member_id = require_member(request)
    ex = _exchange(request)
    _ = translator_of(request)
    code = request.match_info["currency"]
    if code not in ex.config.currencies:
        raise web.HTTPNotFound()
    cur = ex.config.currencies[code]
    form = await _form(request)
    facade = _funds_api(ex)
    if facade is None or cur.wallet is None:
        form.error(GENERAL, _("Withdrawals of {cur} are not open on this exchange yet", cur=cur.symbol))
    else:
        try:
            address = _bank_account(form, _) if cur.kind == "fiat" else form.text("address", 200, required=True)
            units = parse_amount(form.value("amount"), cur.precision, "amount")
            if form.ok:
                await facade.check_address(code, address)  # before the one-time code is spent
            otp = form.text("otp_code", 16) or None
            if form.ok:
                w = await facade.request_withdraw(member_id, code, format_units(units, cur.precision), address, otp=otp)
        except ExchangeError as e:
            form.add(e, _)
    if not form.ok:
        return render(request, "funds.html", await _funds_context(request, member_id, form, code), status=400)
    view = _withdraw_view(cur, w, _, await _holds(ex, [int(w["id"])]))
    session_of(request).flash(_("Withdrawal {sn} requested: {waiting}", sn=view["sn"], waiting=view["waiting"]), "success")
    return redirect(f"/funds?currency={code}#withdraw")


async def withdraw_cancel(request: web.Request) -> web.Response:
    """Take back a withdrawal that is not being paid yet (the wallets' facade unlocks the funds)."""
    member_id = require_member(request)
    ex = _exchange(request)
    _ = translator_of(request)
    facade = _funds_api(ex)
    wid = path_id(request)
    if facade is None:
        raise web.HTTPNotFound()
    s = session_of(request)
    try:
        w = await facade.cancel_withdraw(member_id, wid)
        s.flash(_("Withdrawal cancelled, the funds are available again"), "success")
        return redirect(f"/funds?currency={w['currency']}#withdraw")
    except ExchangeError as e:
        s.flash(_.error(e), "error")
        return redirect("/funds")


# -- API keys -------------------------------------------------------------------------------------------
def _keys(request: web.Request) -> Any:
    from node.web.app import KEYS  # app.py imports this module: look the key up when serving

    return request.app[KEYS]


async def _keys_context(request: web.Request, member_id: int, form: Form | None = None,
                        created: dict[str, str] | None = None) -> dict[str, Any]:
    _ = translator_of(request)
    now = now_ms()
    rows = await _keys(request).list(member_id)
    second = request.app.get(SECOND_FACTOR)
    return {
        "keys": [{"id": int(k["id"]), "label": k["label"], "access_key": k["access_key"],
                  "scopes": [_(s) for s in str(k["scopes"]).split()], "ips": str(k["ip_whitelist"]).split(),
                  "expires": utc(k["expires_at"])[:10] if k["expires_at"] else _("never"),
                  "expired": k["expires_at"] is not None and int(k["expires_at"]) <= now,
                  "disabled": bool(k["disabled"]), "created": utc(int(k["created_at"])),
                  "last_used": utc(k["last_used_at"]) if k["last_used_at"] else _("never")} for k in rows],
        "form": form or Form({"scopes": "history"}),
        "scopes": SCOPES,
        "expiries": [("never", _("Never")), ("30", _("In 30 days")), ("90", _("In 90 days")), ("365", _("In 1 year"))],
        "created": created,
        "needs_code": second is not None and await second.required(member_id, "api_key.create"),
    }


async def api_keys(request: web.Request) -> web.Response:
    member_id = require_member(request)
    return render(request, "api_keys.html", await _keys_context(request, member_id))


async def api_key_create(request: web.Request) -> web.Response:
    member_id = require_member(request)
    _ = translator_of(request)
    form = await _form(request, secret=("otp_code",))
    keys = _keys(request)
    label = scopes = ips = ""
    expires_at: int | None = None
    try:
        label = form.text("label", 64, required=True)
    except FormError as e:
        form.add(e, _)
    chosen = form.values("scopes")
    if not chosen:
        form.error("scopes", _("Choose at least one permission"))
    elif any(s not in SCOPES for s in chosen):
        form.error("scopes", _("Unknown permission"))
    else:
        scopes = " ".join(sorted(set(chosen)))
    try:
        raw_ips = form.text("ip_whitelist", 1000)
        ips = parse_ip_whitelist(raw_ips)
        if len(ips.split()) > 20:
            raise FormError("ip_whitelist", N_("At most {n} addresses or networks"), n=20)
    except FormError as e:
        form.add(e, _)
    except InvalidParameter as e:
        bad = e.message.split("'")[1] if "'" in e.message else ""
        form.error("ip_whitelist", _("{value} is not an IP address or network (like 203.0.113.7 or 10.0.0.0/24)",
                                     value=bad[:60]))
    days = EXPIRY_CHOICES.get(form.value("expiry", "never"))
    if days is None:
        form.error("expiry", _("Choose one of the offered expiry dates"))
    elif days:
        expires_at = now_ms() + days * 86_400_000
    if len(await keys.list(member_id)) >= MAX_API_KEYS:
        form.error(GENERAL, _("You have {n} API keys, the most allowed: revoke one first", n=MAX_API_KEYS))
    second = request.app.get(SECOND_FACTOR)
    if form.ok and second is not None and await second.required(member_id, "api_key.create"):
        code = str((await request.post()).get("otp_code", "")).strip()
        try:
            if not code or len(code) > 16:
                raise FormError("otp_code", N_("Please enter the code"))
            await second.verify(member_id, "api_key.create", code)
        except ExchangeError as e:
            form.add(e, _)
    if not form.ok:
        return render(request, "api_keys.html", await _keys_context(request, member_id, form), status=400)
    access, secret = await keys.create(member_id, label, scopes, ips, expires_at, now=now_ms())
    await audit.record(_exchange(request).store, audit.API_KEY_CREATE, member_id,
                       {"label": label, "access_key": access, "scopes": scopes, "ips": ips, "expires_at": expires_at})
    created = {"label": label, "access_key": access, "secret_key": secret}
    return render(request, "api_keys.html", await _keys_context(request, member_id, None, created))


async def api_key_delete(request: web.Request) -> web.Response:
    member_id = require_member(request)
    _ = translator_of(request)
    try:
        key_id = int(request.match_info["id"])
    except ValueError:
        raise web.HTTPNotFound() from None
    ok = 0 < key_id < 2**62 and await _keys(request).delete(member_id, key_id, now_ms())
    if ok:
        await audit.record(_exchange(request).store, audit.API_KEY_DELETE, member_id, {"id": key_id})
    session_of(request).flash(_("The API key is revoked.") if ok else _("This API key does not exist"),
                              "success" if ok else "error")
    return redirect("/api_keys")


async def notices_json(request: web.Request) -> web.Response:
    """The member's new notices (credited deposits, withdrawal states, KYC decisions) for the pages'
    toasts; without `after`, only the newest id (a page does not replay old news)."""
    member_id = require_member(request)
    svc = request.app[NOTICES]
    _ = translator_of(request)
    try:
        after = max(0, min(int(request.query.get("after", "-1")), 2**62))
    except ValueError:
        after = -1
    if after < 0 or "after" not in request.query:
        return json_response({"last": await svc.last_id(member_id), "notices": []}, headers={"Cache-Control": "no-store"})
    rows = await svc.of_member(member_id, after)
    out = [{"id": int(n["id"]), "kind": n["kind"], "state": n["state"].split(":")[0], "text": notice_text(n, _)}
           for n in rows]
    return json_response({"last": out[-1]["id"] if out else after, "notices": out}, headers={"Cache-Control": "no-store"})


async def _remember_lang(request: web.Request, member_id: int | None, lang: str) -> None:
    """Mails sent later, outside any request (notices), go out in the language the member last used."""
    if member_id is not None and lang in LANGS:
        await _exchange(request).store.execute("UPDATE members SET lang = ? WHERE id = ? AND lang != ?", lang, member_id, lang)


# -- language, operators ------------------------------------------------------------------------------
async def switch_lang(request: web.Request) -> web.Response:
    lang = request.match_info["lang"]
    if lang not in LANGS:
        raise web.HTTPNotFound()
    resp = redirect(safe_next(request.query.get("next"), "/"))
    set_lang_cookie(request, resp, lang)
    await _remember_lang(request, session_of(request).member_id, lang)
    return resp


def _setup(app: web.Application) -> None:
    """Sessions, members and mail; template defaults for pages rendered outside the middleware."""
    sessions.init(app)
    ex = app[EXCHANGE]
    conf = ex.config.mail
    base_url = conf.base_url or f"http://{ex.node.host}:{ex.node.port}"
    app[MEMBERS] = members = Members(ex, mailer_from(conf), base_url)
    app[NOTICES] = notices = Notices(ex, lambda: members.mailer, ex.config.name)

    async def notices_life(app: web.Application):  # type: ignore[no-untyped-def]
        await notices.start()
        yield
        await notices.stop()

    app.cleanup_ctx.append(notices_life)
    env = aiohttp_jinja2.get_env(app)
    env.globals.update({"_": translator("en"), "langs": LANGS, "lang": "en", "html_lang": "en",
                        "current_member": None, "csrf_field": lambda: "", "csrf_token": lambda: "",
                        "flashes": list, "js_i18n": translator("en").js, "here": "/", "markets_nav": []})


def serving_at(app: web.Application, host: str, port: int) -> str:
    """Mailed links (activation, password reset, withdrawal confirmation, tickets) need the address
    members reach the exchange at. `[mail] base_url` says it; without it, the address this node
    really serves on (after `serve --host/--port`) is used instead of cluster.toml's, and a warning
    says so at start-up: it is rarely what members outside this machine can open."""
    ex = app[EXCHANGE]
    if ex.config.mail.base_url:
        return ex.config.mail.base_url
    shown = "127.0.0.1" if host in ("", "0.0.0.0") else "[::1]" if host == "::" else f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}"
    app[MEMBERS].base_url = url
    from node.web.pages.admin import TICKETS  # registered after this module's routes

    if TICKETS in app:
        app[TICKETS].base_url = url
    log.warning("[mail] base_url is not set: mailed links point to %s, the address this node serves on. "
                "Set [mail] base_url in cluster.toml to the exchange's public address.", url)
    return url


def add_routes(app: web.Application) -> None:
    _setup(app)
    r = app.router
    r.add_get("/", index)
    r.add_get("/markets/status.json", markets_status)
    r.add_get("/markets/{market}", market)
    r.add_get("/markets/{market}/me.json", market_me)
    r.add_post("/markets/{market}/orders", place_order)
    r.add_post("/markets/{market}/orders/cancel_all", cancel_all)
    r.add_post("/orders/{id}/cancel", cancel_order)
    for path, handler in (("/signup", signup), ("/activation/resend", resend_activation), ("/login", login),
                          ("/login/2fa", login_second_factor), ("/password/forgot", forgot_password),
                          ("/password/reset/{token}", reset_password)):
        r.add_get(path, handler)
        r.add_post(path, handler)
    r.add_get("/activate/{token}", activate)
    r.add_post("/logout", logout)
    r.add_get("/account", account)
    r.add_post("/account/password", change_password)
    r.add_get("/funds", funds)
    r.add_get("/funds/balances.json", funds_balances)
    r.add_post("/funds/{currency}/withdraw", withdraw)
    r.add_post("/funds/withdraws/{id}/cancel", withdraw_cancel)
    r.add_get("/api_keys", api_keys)
    r.add_post("/api_keys", api_key_create)
    r.add_post("/api_keys/{id}/delete", api_key_delete)
    r.add_get("/lang/{lang}", switch_lang)
    r.add_get("/notices.json", notices_json)


__all__ = ["MEMBERS", "Session", "add_routes", "error_page"]
