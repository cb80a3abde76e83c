"""Garbage in every parameter of every endpoint: 400, code 1001 (or 2002), a message that names the
field, and the database unchanged.

For each endpoint the test starts from a valid request and spoils one parameter at a time with
values of the wrong type (text for a number, an array or a hash for a scalar), out of range, with
too many decimals, huge, an unknown market or currency, or missing when required. Everything is
signed correctly, so what answers is the validation behind authentication.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.apiclient import ApiClient, ApiError
from tests.test_api_support import ApiServer, api_server, snapshot

MISSING = object()
ARRAY = ["1", "2"]
HASH = {"a": "1"}

INT_GARBAGE: list[Any] = ["abc", "1.5", "1e3", "0x10", " 1", "１", "-1", "9" * 40, ARRAY, HASH]
ID_GARBAGE: list[Any] = [*INT_GARBAGE, "0", str(2**63), MISSING, ""]
DECIMAL_GARBAGE: list[Any] = ["abc", "-1", "1e3", "NaN", "Infinity", "0x10", " 1", "1,5", "１", "1.123456789012",
                              "9" * 25, "9" * 40, "0", ARRAY, HASH]
MARKET_GARBAGE: list[Any] = ["btc", "BTCUSD", "btcusd ", "x" * 300, "nope", ARRAY, HASH]
ENUM_GARBAGE: list[Any] = ["x", "BUY", "buy ", ARRAY, HASH]


def limit_garbage(hi: int) -> list[Any]:
    return [*INT_GARBAGE, "0", str(hi + 1)]


TRADE_FILTERS: dict[str, list[Any]] = {
    "limit": limit_garbage(1000),
    "timestamp": [*INT_GARBAGE, str(2**62)],
    "from": [*INT_GARBAGE, str(2**63)],
    "to": [*INT_GARBAGE, str(2**63)],
    "order_by": ENUM_GARBAGE,
    "page": limit_garbage(10_000),
}

# (verb, path, valid params, {param: garbage values}); MISSING means "leave the param out"
CASES: list[tuple[str, str, dict[str, Any], dict[str, list[Any]]]] = [
    ("GET", "/order_book", {"market": "btcusd"}, {
        "market": [*MARKET_GARBAGE, MISSING, ""], "asks_limit": limit_garbage(200), "bids_limit": limit_garbage(200)}),
    ("GET", "/depth", {"market": "btcusd"}, {"market": [*MARKET_GARBAGE, MISSING], "limit": limit_garbage(1000)}),
    ("GET", "/trades", {"market": "btcusd"}, {"market": [*MARKET_GARBAGE, MISSING], **TRADE_FILTERS}),
    ("GET", "/trades/my", {"market": "btcusd"}, {"market": [*MARKET_GARBAGE, MISSING], **TRADE_FILTERS}),
    ("GET", "/deposits", {}, {
        "currency": ["xyz", "BTC", ARRAY, HASH], "limit": limit_garbage(100), "state": ENUM_GARBAGE,
        "page": limit_garbage(10_000)}),
    ("GET", "/deposit", {"txid": "x"}, {"txid": [MISSING, "", "x" * 300, ARRAY, HASH]}),
    ("GET", "/deposit_address", {"currency": "btc"}, {"currency": [MISSING, "", "xyz", "BTC", ARRAY, HASH]}),
    ("GET", "/orders", {}, {
        "market": MARKET_GARBAGE, "state": ENUM_GARBAGE, "limit": limit_garbage(1000), "page": limit_garbage(10_000),
        "order_by": ENUM_GARBAGE}),
    ("GET", "/order", {"id": "1"}, {"id": ID_GARBAGE}),
    ("POST", "/orders", {"market": "btcusd", "side": "buy", "volume": "0.01", "price": "100"}, {
        "market": [*MARKET_GARBAGE, MISSING, ""], "side": [*ENUM_GARBAGE, MISSING, ""],
        "volume": [*DECIMAL_GARBAGE, "0.00001", MISSING, ""], "price": [*DECIMAL_GARBAGE, "100.001", MISSING],
        "ord_type": ENUM_GARBAGE, "time_in_force": ENUM_GARBAGE, "stop_price": ["100", "abc", ARRAY],
        "client_id": ["x" * 65, "a\x01b", "tab\there", ARRAY, HASH]}),
    ("POST", "/orders/multi", {"market": "btcusd", "orders": [{"side": "buy", "volume": "0.01", "price": "100"}]}, {
        "market": [*MARKET_GARBAGE, MISSING, ""],
        "orders": [MISSING, "x", ARRAY, HASH, [{"side": "buy", "volume": "0.01", "price": "100"}] * 101]}),
    ("POST", "/order/delete", {"id": "1"}, {"id": ID_GARBAGE}),
    ("POST", "/orders/clear", {}, {"side": ENUM_GARBAGE, "market": MARKET_GARBAGE}),
]

# Sub-parameters of /orders/multi: garbage in the second order of two.
MULTI_FIELDS: dict[str, list[Any]] = {
    "side": ["x", MISSING, HASH], "volume": ["abc", "-1", "1.123456789", "9" * 25, MISSING],
    "price": ["abc", "0", "1.001", MISSING], "ord_type": ["x"], "time_in_force": ["x"], "client_id": ["x" * 65],
}

MULTI_VALID = {"ord_type": {"ord_type": "limit"}, "time_in_force": {"time_in_force": "gtc"},
               "client_id": {"client_id": "c1"}}

# A market order: price must be absent; a limit order with a stop price; a stop_limit without one.
SPECIAL: list[tuple[dict[str, Any], str]] = [
    ({"market": "btcusd", "side": "sell", "volume": "0.01", "ord_type": "market", "price": "100"}, "price"),
    ({"market": "btcusd", "side": "buy", "volume": "0.01", "ord_type": "market", "time_in_force": "post_only"},
     "time_in_force"),
    ({"market": "btcusd", "side": "buy", "volume": "0.01", "price": "100", "stop_price": "90"}, "stop_price"),
    ({"market": "btcusd", "side": "buy", "volume": "0.01", "price": "100", "ord_type": "stop_limit"}, "stop_price"),
    ({"market": "btcusd", "side": "buy", "volume": "999999999999", "price": "999999999999"}, "volume"),
    ({"market": "dogebtc", "side": "buy", "volume": "1.5", "price": "0.00000001"}, "volume"),
]


def spoil(params: dict[str, Any], name: str, value: Any) -> dict[str, Any]:
    out = dict(params)
    if value is MISSING:
        out.pop(name, None)
    else:
        out[name] = value
    return out


async def expect_400(c: ApiClient, verb: str, path: str, params: dict[str, Any], field: str) -> None:
    with pytest.raises(ApiError) as e:
        await c.request(verb, path, params)
    err = e.value
    context = f"{verb} {path} {params!r}"
    assert err.status == 400, f"{context}: {err}"
    assert err.code in (1001, 2002), f"{context}: {err}"
    message = err.body["error"]["message"]
    assert field in message, f"{context}: message {message!r} does not name {field}"


@pytest.fixture
async def srv(tmp_path: Path) -> Any:
    async with api_server(f"sqlite:///{tmp_path}/exchange.db", tmp_path) as s:
        yield s


async def test_every_parameter_of_every_endpoint(srv: ApiServer) -> None:
    c = await srv.client("bad@example.com", {"usd": "100000", "btc": "10", "doge": "1000"})
    # some state for the reads to work on: an order and a deposit that the valid requests find
    await c.post("/orders", market="btcusd", side="buy", volume="0.01", price="100")
    await srv.ex.deposit((await srv.ex.member_by_email("bad@example.com"))["id"], "btc", "1", txid="x")
    before = await snapshot(srv.ex)
    checked = 0
    for verb, path, valid, params in CASES:
        if verb == "GET" and path != "/deposit_address":  # the valid request itself is fine (no wallets yet)
            await c.request(verb, path, valid)
        for name, values in params.items():
            for value in values:
                await expect_400(c, verb, path, spoil(valid, name, value), name)
                checked += 1
    for name, values in MULTI_FIELDS.items():
        for value in values:
            # Both orders carry the same keys: in Peatio's form encoding a key that only the second
            # order has would be read as the first order's (a new element starts on a repeated key).
            first = {"side": "buy", "volume": "0.01", "price": "100", **MULTI_VALID.get(name, {})}
            second = spoil({"side": "sell", "volume": "0.01", "price": "200", **MULTI_VALID.get(name, {})}, name, value)
            body = {"market": "btcusd", "orders": [first, second]}
            await expect_400(c, "POST", "/orders/multi", body, name)
            checked += 1
    for params, field in SPECIAL:
        await expect_400(c, "POST", "/orders", params, field)
        checked += 1
    assert checked > 300
    assert await snapshot(srv.ex) == before  # nothing moved: no order, no lock, no ledger row
    await c.close()


async def test_funds_refusal_is_2002_and_changes_nothing(srv: ApiServer) -> None:
    c = await srv.client("poor@example.com", {"usd": "10"})
    before = await snapshot(srv.ex)
    with pytest.raises(ApiError) as e:
        await c.post("/orders", market="btcusd", side="buy", volume="1", price="12.13")
    assert (e.value.status, e.value.code) == (400, 2002)
    assert e.value.body["error"]["message"] == "cannot lock funds (amount: 12.13)"  # Peatio's words
    with pytest.raises(ApiError) as e:
        await c.post("/orders", market="btcusd", side="buy", volume="1", ord_type="market")
    assert (e.value.status, e.value.code) == (400, 2002)  # an empty book cannot price a market buy
    assert await snapshot(srv.ex) == before
    await c.close()
