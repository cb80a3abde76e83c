"""The OpenAPI 3 description of API v2, served at `/api/v2/doc` (and a page at `/api-docs`).

The description is built at start from the configuration (market and currency ids become enums, so
a reader, or a test generator such as schemathesis, sees the values that exist) and from
:data:`OPERATIONS`, one entry per route. `tests/test_api_openapi.py` checks that every route of the
application is described here and that every description has a route, so the two cannot drift.

Other modules that add routes under `/api/v2` describe them by adding to :data:`OPERATIONS` (with
the helpers below); the served description lists the operations that have a route in the running
application, so a module that is not wired in is not advertised.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from node.config import Config
from node.wallet.records import DEPOSIT_STATES, WITHDRAW_STATES
from node.web.api.common import EXCHANGE

__all__ = ["OPERATIONS", "add_routes", "app_operations", "build_spec", "err", "ok", "param", "ref"]

STATIC = Path(__file__).resolve().parent / "static"
SPEC = web.AppKey("openapi_spec", dict)  # {"body": bytes}, filled on first use
PREFIX = "/api/v2"

DECIMAL = {"type": "string", "pattern": r"^[0-9]{1,20}\.[0-9]{1,18}$", "example": "3100.0"}
DECIMAL_IN = {"type": "string", "pattern": r"^[0-9]{1,12}(\.[0-9]{1,8})?$", "example": "0.15",
              "description": "a plain positive decimal; more decimals than the market allows are refused"}
TIME = {"type": "string", "pattern": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$",
        "example": "2014-04-18T02:02:33Z"}
MAX_ID = 2**62
K_PERIODS = (1, 5, 15, 30, 60, 120, 240, 360, 720, 1440, 4320, 10080)
CANDLE = {"type": "array", "minItems": 6, "maxItems": 6, "items": {"type": "number"}}


def ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def param(name: str, schema: dict[str, Any], description: str = "", required: bool = False,
          where: str = "query") -> dict[str, Any]:
    """A parameter; for GET it is read from the query string (a form body works too, as in Peatio)."""
    return {"name": name, "in": where, "required": required or where == "path", "description": description,
            "schema": schema}


def integer(lo: int, hi: int, default: int | None = None) -> dict[str, Any]:
    s: dict[str, Any] = {"type": "integer", "minimum": lo, "maximum": hi}
    if default is not None:
        s["default"] = default
    return s


def enum(values: list[str] | tuple[str, ...], default: str | None = None) -> dict[str, Any]:
    s: dict[str, Any] = {"type": "string", "enum": list(values)}
    if default is not None:
        s["default"] = default
    return s


PAGE_HEADERS = {
    "X-Page": {"description": "this page", "schema": {"type": "string"}},
    "X-Per-Page": {"description": "items per page (the limit)", "schema": {"type": "string"}},
    "X-Next-Page": {"description": "next page, when this one was full", "schema": {"type": "string"}},
}


def ok(schema: dict[str, Any], description: str = "success", status: str = "200", paged: bool = False,
       errors: tuple[str, ...] = ("400", "401", "429")) -> dict[str, Any]:
    """The responses of an operation: its success, and the error envelope for each error status."""
    body: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": schema}}}
    if paged:
        body["headers"] = PAGE_HEADERS
    out: dict[str, Any] = {status: body}
    for code in errors:
        out[code] = err(code)
    return out


ERROR_TEXT = {
    "400": "invalid parameter (1001, the message names the field) or request refused (2002, 2003, 3002)",
    "401": "authentication failed; public endpoints check signed calls too (2001, 2005 bad signature, 2006 tonce used, 2007 tonce out of ±30 s, "
           "2008 unknown key, 2009 disabled, 2010 expired, 2011 out of scope)",
    "404": "no such order (2004), deposit (2012) or withdrawal (3103)",
    "429": "rate limited (3001); see Retry-After",
    "503": "busy (3003: nothing was done) or unavailable (3006: retry; resend orders with the same client_id, as a request cut off by a lost database connection may have been done)",
    "504": "no answer in time (3005): the request may have been done; retry with the same client_id",
}


def err(code: str) -> dict[str, Any]:
    resp: dict[str, Any] = {"description": ERROR_TEXT[code], "content": {"application/json": {"schema": ref("Error")}}}
    if code == "429":
        resp["headers"] = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "string"}}}
    return resp


SIGNED: list[dict[str, list[str]]] = [{"access_key": [], "tonce": [], "signature": []}]
PUBLIC_SIGNED: list[dict[str, list[str]]] = [{}, {"access_key": [], "tonce": [], "signature": []}]
PRIVATE_ERRORS = ("400", "401", "429")
ORDER_ERRORS = ("400", "401", "429", "503", "504")


def _trade_filters() -> list[dict[str, Any]]:
    return [
        param("limit", integer(1, 1000, 50), "how many trades"),
        param("timestamp", integer(0, MAX_ID // 1000), "only trades created at or before this epoch second"),
        param("from", integer(0, MAX_ID), "only trades with an id above this one"),
        param("to", integer(0, MAX_ID), "only trades with an id below this one"),
        param("order_by", enum(("asc", "desc"), "desc"), "by id"),
        param("page", integer(1, 10_000, 1), "page of `limit` trades"),
    ]


FORM_ORDER_KEYS = ("side", "volume", "price", "ord_type")


def multi_items(fields: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "array", "minItems": 1, "maxItems": 100,
            "items": {"type": "object", "properties": fields, "required": required, "additionalProperties": False}}


def _operations() -> dict[tuple[str, str], dict[str, Any]]:
    """Route → operation. `{market}`/`{currency}` placeholders in schemas are filled by build_spec."""
    market_q = param("market", {"$market": True}, "market id, e.g. btcusd", required=True)
    k_params = [market_q, param("limit", integer(1, 10_000, 30), "how many candles"),
                param("period", {"type": "integer", "enum": list(K_PERIODS), "default": 1}, "minutes per candle"),
                param("timestamp", integer(0, MAX_ID // 1000), "candles from this epoch second on")]
    order_fields = {
        "side": {**enum(("buy", "sell")), "description": "buy or sell"},
        "volume": {**DECIMAL_IN, "description": "amount of the base currency"},
        "price": {**DECIMAL_IN, "description": "limit price in the quote currency (absent for market orders)"},
        "ord_type": {**enum(("limit", "market", "stop_limit"), "limit")},
        "time_in_force": {**enum(("gtc", "ioc", "fok", "post_only"), "gtc"),
                          "description": "ours: good till cancelled, immediate or cancel, fill or kill, post only"},
        "stop_price": {**DECIMAL_IN, "description": "ours: trigger price of a stop_limit order"},
        "client_id": {"type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[!-~]{1,64}$",
                      "description": "ours: your id for the order; a retry with the same id returns the same order"},
    }
    return {
        ("GET", "/markets"): {
            "summary": "Markets", "tags": ["public"], "security": PUBLIC_SIGNED,
            "responses": ok({"type": "array", "items": ref("Market")})},
        ("GET", "/tickers"): {
            "summary": "Tickers of every market (24 h)", "tags": ["public"], "security": PUBLIC_SIGNED,
            "responses": ok({"type": "object", "additionalProperties": ref("TickerAt")})},
        ("GET", "/tickers/{market}"): {
            "summary": "Ticker of a market (24 h)", "tags": ["public"], "security": PUBLIC_SIGNED,
            "parameters": [param("market", {"$market": True}, "market id", where="path")],
            "responses": ok(ref("TickerAt"))},
        ("GET", "/k"): {
            "summary": "K-lines (OHLC candles)", "tags": ["public"], "security": PUBLIC_SIGNED,
            "description": "`[[timestamp, open, high, low, close, volume], …]`, values as JSON numbers (as Peatio).",
            "parameters": k_params,
            "responses": ok({"type": "array", "items": CANDLE})},
        ("GET", "/k_with_pending_trades"): {
            "summary": "K-lines and the trades of the last candle before a trade id", "tags": ["public"],
            "security": PUBLIC_SIGNED,
            "parameters": [*k_params, param("trade_id", integer(0, MAX_ID), "the first trade you received",
                                            required=True)],
            "responses": ok({"type": "object", "required": ["k", "trades"], "properties": {
                "k": {"type": "array", "items": CANDLE},
                "trades": {"type": "array", "items": {
                    "type": "object", "required": ["tid", "type", "date", "price", "amount"],
                    "properties": {"tid": {"type": "integer"}, "type": enum(("buy", "sell")),
                                   "date": {"type": "integer"}, "price": DECIMAL, "amount": DECIMAL}}}}})},
        ("GET", "/order_book"): {
            "summary": "Resting orders", "tags": ["public"], "security": PUBLIC_SIGNED,
            "description": "Asks by price ascending, bids by price descending, then by time.",
            "parameters": [market_q, param("asks_limit", integer(1, 200, 20)), param("bids_limit", integer(1, 200, 20))],
            "responses": ok(ref("OrderBook"))},
        ("GET", "/depth"): {
            "summary": "Aggregated price levels", "tags": ["public"], "security": PUBLIC_SIGNED,
            "description": "Both lists are sorted from the highest price to the lowest (as Peatio did). "
                           "`sequence` (ours) numbers the book's changes, for websocket diffs.",
            "parameters": [market_q, param("limit", integer(1, 1000, 300), "price levels per side")],
            "responses": ok(ref("Depth"))},
        ("GET", "/trades"): {
            "summary": "Recent trades of a market", "tags": ["public"], "security": PUBLIC_SIGNED,
            "parameters": [market_q, *_trade_filters()],
            "responses": ok({"type": "array", "items": ref("Trade")}, paged=True)},
        ("GET", "/timestamp"): {
            "summary": "Server time, epoch seconds", "tags": ["public"], "security": PUBLIC_SIGNED,
            "responses": ok({"type": "integer"})},
        ("GET", "/fees"): {
            "summary": "Maker and taker fees per market (ours)", "tags": ["public"], "security": PUBLIC_SIGNED,
            "description": "A fraction of what the member receives: the buyer pays in base, the seller in quote.",
            "responses": ok({"type": "array", "items": ref("Fee")})},
        ("GET", "/members/me"): {
            "summary": "Your profile and every account", "tags": ["private"], "security": SIGNED,
            "description": "Scope: profile.",
            "responses": ok(ref("Member"), errors=PRIVATE_ERRORS)},
        ("GET", "/deposits"): {
            "summary": "Your deposits, newest first", "tags": ["private"], "security": SIGNED,
            "parameters": [param("currency", {"$currency": True}),
                           param("limit", integer(1, 100, 3)),
                           param("state", enum(DEPOSIT_STATES)),
                           param("page", integer(1, 10_000, 1))],
            "responses": ok({"type": "array", "items": ref("Deposit")}, paged=True, errors=PRIVATE_ERRORS)},
        ("GET", "/deposit"): {
            "summary": "One of your deposits, by transaction id", "tags": ["private"], "security": SIGNED,
            "parameters": [param("txid", {"type": "string", "minLength": 1, "maxLength": 256}, required=True)],
            "responses": ok(ref("Deposit"), errors=(*PRIVATE_ERRORS, "404"))},
        ("GET", "/deposit_address"): {
            "summary": "Where to deposit a currency", "tags": ["private"], "security": SIGNED,
            "description": "For a coin, an address of the member's own; for fiat, the member's reference code "
                           "(`address`) and the exchange's bank details (`bank`). Refused (1001) for a currency "
                           "that has no wallet.",
            "parameters": [param("currency", {"$currency": True}, required=True)],
            "responses": ok(ref("DepositAddress"), errors=PRIVATE_ERRORS)},
        ("POST", "/withdraws"): {
            "summary": "Withdraw to an address", "tags": ["private"], "security": SIGNED,
            "description": "Scope: all. `amount` arrives at `address` (Peatio's `rid`/`fund_uid` and `sum` are "
                           "accepted too); the currency's fee comes on top and both are locked until done. "
                           "`otp`: the second factor, when the member has one.",
            "requestBody": _form({"currency": {"$currency": True}, "amount": DECIMAL_IN,
                                  "address": {"type": "string", "minLength": 1, "maxLength": 200},
                                  "otp": {"type": "string", "maxLength": 16}}, ["currency", "amount", "address"]),
            "responses": ok(ref("Withdraw"), status="201", errors=ORDER_ERRORS)},
        ("GET", "/withdraws"): {
            "summary": "Your withdrawals, newest first", "tags": ["private"], "security": SIGNED,
            "parameters": [param("currency", {"$currency": True}), param("limit", integer(1, 100, 3)),
                           param("state", enum(WITHDRAW_STATES)), param("page", integer(1, 10_000, 1))],
            "responses": ok({"type": "array", "items": ref("Withdraw")}, paged=True, errors=PRIVATE_ERRORS)},
        ("GET", "/withdraw"): {
            "summary": "One of your withdrawals", "tags": ["private"], "security": SIGNED,
            "parameters": [param("id", integer(1, MAX_ID), required=True)],
            "responses": {**ok(ref("Withdraw"), errors=PRIVATE_ERRORS), "404": err("404")}},
        ("POST", "/withdraw/cancel"): {
            "summary": "Cancel a withdrawal not yet being paid", "tags": ["private"], "security": SIGNED,
            "description": "Scope: all. Answers the withdrawal, state `canceled`.",
            "requestBody": _form({"id": integer(1, MAX_ID)}, ["id"]),
            "responses": {**ok(ref("Withdraw"), errors=ORDER_ERRORS), "404": err("404")}},
        ("GET", "/orders"): {
            "summary": "Your orders", "tags": ["private"], "security": SIGNED,
            "description": "Scope: history or trade. X-Total (ours) counts every matching order.",
            "parameters": [param("market", {"$market": True}, "a market, or every market when absent"),
                           param("state", enum(("wait", "done", "cancel"), "wait")),
                           param("limit", integer(1, 1000, 100)),
                           param("page", integer(1, 10_000, 1)),
                           param("order_by", enum(("asc", "desc"), "asc"), "by id")],
            "responses": ok({"type": "array", "items": ref("Order")}, paged=True, errors=PRIVATE_ERRORS)},
        ("GET", "/order"): {
            "summary": "One of your orders, with its trades", "tags": ["private"], "security": SIGNED,
            "description": "Scope: history or trade.",
            "parameters": [param("id", integer(1, MAX_ID), required=True)],
            "responses": ok(ref("OrderWithTrades"), errors=(*PRIVATE_ERRORS, "404"))},
        ("POST", "/orders"): {
            "summary": "Place an order", "tags": ["private"], "security": SIGNED,
            "description": "Scope: trade. Funds are locked when the order is accepted; the answer comes after "
                           "the order is durably stored. Params may be in the form body or the query string.",
            "requestBody": _form({"market": {"$market": True}, **order_fields}, ["market", "side", "volume"]),
            "responses": ok(ref("Order"), status="201", errors=ORDER_ERRORS)},
        ("POST", "/orders/multi"): {
            "summary": "Place several orders of one market, all or nothing", "tags": ["private"],
            "security": SIGNED,
            "description": "Scope: trade. As a form: `orders[][side]=buy&orders[][volume]=0.15&orders[][price]=2955.0"
                           "&orders[][side]=sell&…` (a new order starts when a sub-key repeats, so in a form "
                           "every order must carry the same keys; a JSON body has no such limit).",
            "requestBody": _form({"market": {"$market": True}, "orders": multi_items(order_fields, ["side", "volume"])},
                                 ["market", "orders"],
                                 form={"type": "object", "required": ["market", "orders"], "additionalProperties": False,
                                       "properties": {"market": {"$market": True}, "orders": multi_items(
                                           {k: order_fields[k] for k in FORM_ORDER_KEYS}, list(FORM_ORDER_KEYS))}}),
            "responses": ok({"type": "array", "items": ref("Order")}, status="201", errors=ORDER_ERRORS)},
        ("POST", "/order/delete"): {
            "summary": "Cancel an order", "tags": ["private"], "security": SIGNED,
            "description": "Scope: trade. Answers the order as it stood when the cancel was accepted (state "
                           "`wait`, as Peatio did); the cancel is final by the time the answer arrives. An "
                           "order that is not yours, or no order at all, is 400/2003 like one that cannot be "
                           "cancelled any more (Peatio's codes; 404/2004 is `GET /order`'s).",
            "requestBody": _form({"id": integer(1, MAX_ID)}, ["id"]),
            "responses": ok(ref("Order"), status="201", errors=ORDER_ERRORS)},
        ("POST", "/orders/clear"): {
            "summary": "Cancel all your orders (of one side, of one market)", "tags": ["private"],
            "security": SIGNED, "description": "Scope: trade. `market` is ours.",
            "requestBody": _form({"side": enum(("buy", "sell")), "market": {"$market": True}}, []),
            "responses": ok({"type": "array", "items": ref("Order")}, status="201", errors=ORDER_ERRORS)},
        ("GET", "/trades/my"): {
            "summary": "Your trades", "tags": ["private"], "security": SIGNED,
            "description": "Scope: history. `side` is ask or bid, `order_id` your order.",
            "parameters": [market_q, *_trade_filters()],
            "responses": ok({"type": "array", "items": ref("Trade")}, paged=True, errors=PRIVATE_ERRORS)},
        ("GET", "/doc"): {
            "summary": "This description (OpenAPI 3)", "tags": ["meta"], "security": [{}],
            "responses": {"200": {"description": "the OpenAPI document",
                                  "content": {"application/json": {"schema": {"type": "object"}}}}}},
    }


def _form(props: dict[str, Any], required: list[str], form: dict[str, Any] | None = None) -> dict[str, Any]:
    """A request body as a form or as JSON (same params); `form` overrides the form's schema."""
    schema = {"type": "object", "properties": props, "required": required, "additionalProperties": False}
    return {"required": bool(required),
            "content": {"application/x-www-form-urlencoded": {"schema": form or schema},
                        "application/json": {"schema": schema}}}


OPERATIONS: dict[tuple[str, str], dict[str, Any]] = _operations()


def _schemas() -> dict[str, Any]:
    nullable_decimal = {**DECIMAL, "nullable": True}
    order_props = {
        "id": {"type": "integer"}, "side": enum(("buy", "sell")),
        "ord_type": enum(("limit", "market", "stop_limit")), "price": nullable_decimal, "avg_price": DECIMAL,
        "state": enum(("wait", "done", "cancel")), "market": {"type": "string"}, "created_at": TIME,
        "volume": DECIMAL, "remaining_volume": DECIMAL, "executed_volume": DECIMAL,
        "trades_count": {"type": "integer", "minimum": 0},
        "time_in_force": enum(("gtc", "ioc", "fok", "post_only")), "stop_price": DECIMAL,
        "client_id": {"type": "string"},
    }
    order_required = ["id", "side", "ord_type", "price", "avg_price", "state", "market", "created_at", "volume",
                      "remaining_volume", "executed_volume", "trades_count"]
    trade_props = {
        "id": {"type": "integer"}, "price": DECIMAL, "volume": DECIMAL, "funds": DECIMAL,
        "market": {"type": "string"}, "created_at": TIME,
        "side": {"type": "string", "enum": ["ask", "bid", "buy", "sell", None], "nullable": True},
        "order_id": {"type": "integer"},
    }
    level = {"type": "array", "items": DECIMAL, "minItems": 2, "maxItems": 2}
    ticker = {"type": "object", "required": ["buy", "sell", "low", "high", "last", "vol"],
              "properties": {k: DECIMAL for k in ("buy", "sell", "low", "high", "last", "vol", "open")}}
    return {
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {
            "type": "object", "required": ["code", "message"],
            "properties": {"code": {"type": "integer"}, "message": {"type": "string"}}}}},
        "Market": {"type": "object", "required": ["id", "name"],
                   "properties": {"id": {"type": "string"}, "name": {"type": "string", "example": "BTC/USD"}}},
        "TickerAt": {"type": "object", "required": ["at", "ticker"],
                     "properties": {"at": {"type": "integer"}, "ticker": ticker}},
        "Order": {"type": "object", "required": order_required, "properties": order_props},
        "OrderWithTrades": {"type": "object", "required": [*order_required, "trades"],
                            "properties": {**order_props, "trades": {"type": "array", "items": ref("Trade")}}},
        "OrderBook": {"type": "object", "required": ["asks", "bids"],
                      "properties": {"asks": {"type": "array", "items": ref("Order")},
                                     "bids": {"type": "array", "items": ref("Order")}}},
        "Depth": {"type": "object", "required": ["timestamp", "asks", "bids"],
                  "properties": {"timestamp": {"type": "integer"}, "sequence": {"type": "integer"},
                                 "asks": {"type": "array", "items": level}, "bids": {"type": "array", "items": level}}},
        "Trade": {"type": "object", "required": ["id", "price", "volume", "funds", "market", "created_at", "side"],
                  "properties": trade_props},
        "Fee": {"type": "object", "required": ["market", "maker", "taker"],
                "properties": {"market": {"type": "string"}, "maker": DECIMAL, "taker": DECIMAL}},
        "Account": {"type": "object", "required": ["currency", "balance", "locked"],
                    "properties": {"currency": {"type": "string"}, "balance": DECIMAL, "locked": DECIMAL}},
        "Member": {"type": "object", "required": ["sn", "name", "email", "activated", "accounts"],
                   "properties": {"sn": {"type": "string"}, "name": {"type": "string"}, "email": {"type": "string"},
                                  "activated": {"type": "boolean"},
                                  "accounts": {"type": "array", "items": ref("Account")}}},
        "Deposit": {"type": "object",
                    "required": ["id", "currency", "amount", "fee", "txid", "created_at", "confirmations",
                                 "done_at", "state"],
                    "properties": {"id": {"type": "integer"}, "currency": {"type": "string"}, "amount": DECIMAL,
                                   "fee": DECIMAL, "txid": {"type": "string"}, "created_at": TIME,
                                   "confirmations": {"type": "integer"},
                                   "done_at": {**TIME, "nullable": True}, "state": {"type": "string"},
                                   "note": {"type": "string"}}},
        "Withdraw": {"type": "object",
                     "required": ["id", "sn", "currency", "amount", "fee", "sum", "address", "state", "created_at"],
                     "properties": {"id": {"type": "integer"}, "sn": {"type": "string"}, "currency": {"type": "string"},
                                    "type": enum(("coin", "fiat")), "amount": DECIMAL, "fee": DECIMAL, "sum": DECIMAL,
                                    "address": {"type": "string"}, "rid": {"type": "string"},
                                    "txid": {"type": "string", "nullable": True}, "state": enum(WITHDRAW_STATES),
                                    "note": {"type": "string", "nullable": True}, "created_at": TIME,
                                    "updated_at": TIME, "done_at": {**TIME, "nullable": True}}},
        "DepositAddress": {"type": "object", "required": ["address"],
                           "properties": {"currency": {"type": "string"}, "address": {"type": "string"},
                                          "bank": {"type": "object", "description": "fiat: where to pay"}}},
    }


def _fill(node: Any, markets: list[str], currencies: list[str]) -> Any:
    """Replace the `{"$market": True}` / `{"$currency": True}` placeholders by enums of this config."""
    if isinstance(node, dict):
        if node.get("$market"):
            return {"type": "string", "enum": markets}
        if node.get("$currency"):
            return {"type": "string", "enum": currencies}
        return {k: _fill(v, markets, currencies) for k, v in node.items()}
    if isinstance(node, list):
        return [_fill(v, markets, currencies) for v in node]
    return node


DESCRIPTION = """Peatio-compatible REST API v2. Decimals are JSON strings, times ISO-8601 UTC (`at` and
`timestamp` are epoch seconds). Every path also answers with a `.json` suffix. Params are read from the
query string merged with a form (or JSON) body, for every verb.

Signed requests add `access_key`, `tonce` (milliseconds since the epoch, within ±30 s of the server,
used once) and `signature` = hex HMAC-SHA256(secret_key, "VERB|/api/v2/path|query"), where query is
every other param, keys sorted, `k=v` joined by `&`, not URL-escaped. Public endpoints may be signed.

Errors are `{"error": {"code": …, "message": …}}`. Rate limits (per access key for signed requests,
per IP for the others; configured in `[api]` of cluster.toml, counted per node) answer 429 with a
Retry-After header."""


def app_operations(app: web.Application, prefix: str = "/api/v2") -> set[tuple[str, str]]:
    """(METHOD, path) of every route the application serves under `prefix`, with `.json` twins
    folded and `{market:[a-z0-9]+}` written `{market}`, as the description spells paths."""
    out: set[tuple[str, str]] = set()
    for route in app.router.routes():
        if route.method == "HEAD" or route.resource is None:
            continue
        info = route.resource.get_info()
        path = str(info.get("path") or info.get("formatter") or "")
        if path.startswith(prefix + "/"):
            path = re.sub(r"\{(\w+):[^}]*\}", r"{\1}", path[len(prefix):]).removesuffix(".json")
            out.add((route.method, path))
    return out


def build_spec(config: Config, prefix: str = "/api/v2",
               routed: set[tuple[str, str]] | None = None) -> dict[str, Any]:
    """The description of the operations in `routed` (all of OPERATIONS when None): a route that
    another module has not wired (yet) is not advertised."""
    markets, currencies = list(config.markets), list(config.currencies)
    paths: dict[str, dict[str, Any]] = {}
    for (method, path), op in sorted(OPERATIONS.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        if routed is not None and (method, path) not in routed:
            continue
        item = dict(op)
        item.setdefault("operationId", method.lower() + path.replace("/", "_").replace("{", "").replace("}", ""))
        paths.setdefault(path, {})[method.lower()] = _fill(item, markets, currencies)
    key = {"type": "apiKey", "in": "query"}
    return {
        "openapi": "3.0.3",
        "info": {"title": f"{config.name} API v2", "version": "2.0", "description": DESCRIPTION},
        "servers": [{"url": prefix}],
        "tags": [{"name": "public"}, {"name": "private", "description": "signed requests"}, {"name": "meta"}],
        "paths": paths,
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {
                "access_key": {**key, "name": "access_key", "description": "your access key"},
                "tonce": {**key, "name": "tonce", "description": "milliseconds since the epoch, used once"},
                "signature": {**key, "name": "signature", "description": "HMAC-SHA256 of the canonical payload"},
            },
        },
    }


async def doc(request: web.Request) -> web.Response:
    """The description, built on first use (once every module has added its routes) and kept."""
    cache: dict[str, bytes] = request.app[SPEC]
    body = cache.get("body")
    if body is None:
        app = request.app
        body = cache["body"] = orjson.dumps(build_spec(app[EXCHANGE].config, PREFIX, app_operations(app, PREFIX)))
    return web.Response(body=body, content_type="application/json", headers={"Access-Control-Allow-Origin": "*"})


async def doc_page(request: web.Request) -> web.FileResponse:
    """A small page of our own that renders the description (no CDN, strict CSP)."""
    return web.FileResponse(STATIC / "apidoc.html")


def add_routes(app: web.Application, prefix: str = "/api/v2") -> None:
    app[SPEC] = {}
    for suffix in ("", ".json"):
        app.router.add_get(prefix + "/doc" + suffix, doc, allow_head=False)
    app.router.add_get("/api-docs", doc_page, allow_head=False)
