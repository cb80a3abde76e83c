"""API v2 over real sockets: every endpoint's shape (Peatio's field names, decimal strings, times),
our additions (client_id, time_in_force, pagination, clear by market, fees, deposits), the request
forms Peatio clients use (`.json` paths, GET params in a body, POST params in the query string, JSON
bodies, route params), and a race of concurrent orders against one balance.

The flows that touch the store run on SQLite and on PostgreSQL (skipped without it, unless
EXCHANGE_REQUIRE_SERVICES=1); the rest on SQLite only, to keep the suite quick.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from node.web.signature import payload, sign, to_query
from tests.apiclient import ApiClient, ApiError
from tests.test_api_support import ApiServer, api_server

DECIMAL = re.compile(r"^[0-9]+\.[0-9]+$")
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
ORDER_KEYS = {"id", "side", "ord_type", "price", "avg_price", "state", "market", "created_at", "volume",
              "remaining_volume", "executed_volume", "trades_count"}
TRADE_KEYS = {"id", "price", "volume", "funds", "market", "created_at", "side"}


@pytest.fixture
async def srv(tmp_path: Path) -> Any:
    async with api_server(f"sqlite:///{tmp_path}/exchange.db", tmp_path) as s:
        yield s


@pytest.fixture
async def srv_any(database_url: str, tmp_path: Path) -> Any:
    """The same on each backend."""
    async with api_server(database_url, tmp_path) as s:
        yield s


def check_order(o: dict[str, Any]) -> None:
    assert ORDER_KEYS <= set(o), o
    for k in ("avg_price", "volume", "remaining_volume", "executed_volume"):
        assert DECIMAL.match(o[k]), (k, o[k])
    assert o["price"] is None or DECIMAL.match(o["price"])
    assert TIME.match(o["created_at"])
    assert o["state"] in ("wait", "done", "cancel")


def check_trade(t: dict[str, Any]) -> None:
    assert TRADE_KEYS <= set(t), t
    for k in ("price", "volume", "funds"):
        assert DECIMAL.match(t[k])
    assert TIME.match(t["created_at"])


async def wait_state(c: ApiClient, oid: int, state: str) -> dict[str, Any]:
    """Orders are matched just after they are acknowledged: poll until the state shows."""
    for _ in range(100):
        o: dict[str, Any] = await c.get("/order", id=str(oid))
        if o["state"] == state:
            return o
        await asyncio.sleep(0.02)
    raise AssertionError(f"order {oid} never reached {state}: {o}")


# ------------------------------------------------------------------------------------------- public
async def test_public_endpoints(srv: ApiServer) -> None:
    c = ApiClient(srv.base)
    assert await c.public("/markets") == [
        {"id": "btcusd", "name": "BTC/USD"}, {"id": "ltcbtc", "name": "LTC/BTC"}, {"id": "dogebtc", "name": "DOGE/BTC"}]
    ts = await c.public("/timestamp")
    assert isinstance(ts, int) and abs(ts - time.time()) < 5
    fees = await c.public("/fees")
    assert {"market": "btcusd", "maker": "0.001", "taker": "0.002"} in fees
    d = await c.public("/depth", market="btcusd")
    assert d["asks"] == [] and d["bids"] == [] and isinstance(d["timestamp"], int)
    assert await c.public("/order_book", market="btcusd") == {"asks": [], "bids": []}
    assert await c.public("/trades", market="btcusd") == []
    async with c.session.get(srv.base + "/api/v2/markets.json") as r:
        assert r.status == 200
        assert r.headers["Access-Control-Allow-Origin"] == "*"
        assert r.headers["Content-Type"].startswith("application/json")
    await c.close()


async def test_depth_follows_the_book(srv: ApiServer) -> None:
    """/depth is answered from a cache kept per book sequence number: every change of the book
    shows in the next answer, and the sequence number moves with it."""
    alice = await srv.client("alice@example.com", {"usd": "10000", "btc": "2"})
    empty = await alice.public("/depth", market="btcusd")
    assert empty["asks"] == [] and empty["bids"] == []
    ask = await alice.post("/orders", market="btcusd", side="sell", volume="0.5", price="3100")
    await wait_state(alice, ask["id"], "wait")
    assert "X-Shard-Node" not in alice.headers  # a single node runs every shard: nowhere else to go
    for _ in range(100):  # the order is matched (and rests) just after it is acknowledged
        d = await alice.public("/depth", market="btcusd")
        if d["asks"]:
            break
        await asyncio.sleep(0.02)
    assert d["asks"] == [["3100.0", "0.5"]] and d["sequence"] > empty["sequence"]
    await alice.post("/order/delete", id=str(ask["id"]))
    after = await alice.public("/depth", market="btcusd")
    assert after["asks"] == [] and after["sequence"] > d["sequence"]
    await alice.close()


async def test_trading_flow(srv_any: ApiServer) -> None:
    """Orders on both sides, a trade, every list and entity in Peatio's shape (both backends)."""
    srv = srv_any
    alice = await srv.client("alice@example.com", {"usd": "10000", "btc": "2"})
    bob = await srv.client("bob@example.com", {"usd": "10000", "btc": "2"})
    ask = await alice.post("/orders", market="btcusd", side="sell", volume="0.5", price="3100")
    check_order(ask)
    assert (ask["side"], ask["price"], ask["volume"], ask["state"]) == ("sell", "3100.0", "0.5", "wait")
    bid = await bob.post("/orders", market="btcusd", side="buy", volume="0.2", price="3200")
    done = await wait_state(bob, bid["id"], "done")
    assert (done["executed_volume"], done["remaining_volume"], done["trades_count"]) == ("0.2", "0.0", 1)
    assert done["avg_price"] == "3100.0"  # the maker's price
    assert len(done["trades"]) == 1
    t = done["trades"][0]
    check_trade(t)
    assert (t["price"], t["volume"], t["funds"], t["side"]) == ("3100.0", "0.2", "620.0", "buy")

    book = await alice.public("/order_book", market="btcusd")
    assert [o["id"] for o in book["asks"]] == [ask["id"]] and book["bids"] == []
    check_order(book["asks"][0])
    assert book["asks"][0]["remaining_volume"] == "0.3"
    depth = await alice.public("/depth", market="btcusd")
    assert depth["asks"] == [["3100.0", "0.3"]]

    trades = await alice.public("/trades", market="btcusd")
    assert len(trades) == 1 and trades[0]["side"] is None
    mine = await alice.get("/trades/my", market="btcusd")
    assert mine[0]["side"] == "ask" and mine[0]["order_id"] == ask["id"]
    theirs = await bob.get("/trades/my", market="btcusd")
    assert theirs[0]["side"] == "bid" and theirs[0]["order_id"] == bid["id"]

    me = await bob.get("/members/me")
    assert me["email"] == "bob@example.com" and me["activated"] is True
    accounts = {a["currency"]: a for a in me["accounts"]}
    assert set(accounts) == {"btc", "ltc", "doge", "usd"}  # every account, even empty ones
    # bob receives 0.2 btc less the 0.2% taker fee, pays 620 usd
    assert accounts["btc"] == {"currency": "btc", "balance": "2.1996", "locked": "0.0"}
    assert accounts["usd"] == {"currency": "usd", "balance": "9380.0", "locked": "0.0"}

    assert [o["id"] for o in await alice.get("/orders", market="btcusd")] == [ask["id"]]
    assert [o["id"] for o in await bob.get("/orders", market="btcusd", state="done")] == [bid["id"]]
    cancelled = await alice.post("/order/delete", id=str(ask["id"]))
    assert cancelled["id"] == ask["id"] and cancelled["state"] == "wait"  # Peatio's shape
    assert (await alice.get("/order", id=str(ask["id"])))["state"] == "cancel"  # final already
    with pytest.raises(ApiError) as e:
        await alice.post("/order/delete", id=str(ask["id"]))
    assert (e.value.status, e.value.code) == (400, 2003)
    with pytest.raises(ApiError) as e:
        await alice.get("/order", id=str(bid["id"]))  # bob's order: not alice's to see
    assert (e.value.status, e.value.code) == (404, 2004)
    for other in (bid["id"], 10**12):  # bob's order, and none at all: Peatio's cancel error, not 404
        with pytest.raises(ApiError) as e:
            await alice.post("/order/delete", id=str(other))
        assert (e.value.status, e.value.code) == (400, 2003), e.value.body
    for c in (alice, bob):
        await c.close()


async def test_cancel_of_an_order_still_pending(srv_any: ApiServer) -> None:
    """An order accepted (funds locked) whose hand-over to its market is late or lost is still
    `pending` in the store: a cancel reaches the market, which takes it in as cancelled, once. Its
    funds come back through a ledger row, and a late copy of the order or the sweep changes nothing."""
    from node.actors.market_rows import new_order_from_row

    ex = srv_any.ex
    c = await srv_any.client("late@example.com", {"usd": "1000"})
    o = await accepted_but_not_handed_over(srv_any, c, side="buy", volume="1", price="100")
    row = await ex.store.fetchrow("SELECT * FROM orders WHERE id = ?", o["id"])
    assert row["state"] == "pending" and int(row["locked"]) > 0
    cancelled = await c.post("/order/delete", id=str(o["id"]))
    assert cancelled["id"] == o["id"] and cancelled["state"] == "wait"  # as it stood (pending shows as wait)
    assert (await c.get("/order", id=str(o["id"])))["state"] == "cancel"  # final at once
    usd = {a["currency"]: a for a in (await c.get("/members/me"))["accounts"]}["usd"]
    assert (usd["balance"], usd["locked"]) == ("1000.0", "0.0")
    unlocks = await ex.store.fetch("SELECT d_balance, d_locked FROM ledger WHERE ref_id = ? AND reason = 'order_cancel'",
                                   o["id"])
    assert [(int(r["d_balance"]), -int(r["d_locked"])) for r in unlocks] == [(int(row["locked"]), int(row["locked"]))]
    # the lost hand-over turns up late, and the sweep looks for pending orders: neither takes it in
    market = ex.markets["btcusd"]
    await market.put(new_order_from_row(row))
    assert await market.sweep_pending(older_than_ms=0) == 0
    await ex.quiesce()
    assert (await c.get("/order", id=str(o["id"])))["state"] == "cancel"
    assert (await ex.store.fetchval("SELECT COUNT(*) FROM ledger WHERE ref_id = ? AND reason = 'order_cancel'",
                                    o["id"])) == 1
    assert await c.get("/orders", market="btcusd") == []
    with pytest.raises(ApiError) as e:
        await c.post("/order/delete", id=str(o["id"]))
    assert (e.value.status, e.value.code) == (400, 2003)
    # cancel all takes the pending orders too, with the resting ones
    resting = await c.post("/orders", market="btcusd", side="buy", volume="1", price="90")
    late = await accepted_but_not_handed_over(srv_any, c, side="buy", volume="2", price="80")
    cleared = await c.post("/orders/clear", market="btcusd")
    assert sorted(x["id"] for x in cleared) == sorted([resting["id"], late["id"]])
    assert {(await c.get("/order", id=str(i)))["state"] for i in (resting["id"], late["id"])} == {"cancel"}
    usd = {a["currency"]: a for a in (await c.get("/members/me"))["accounts"]}["usd"]
    assert (usd["balance"], usd["locked"]) == ("1000.0", "0.0")
    await c.close()


async def accepted_but_not_handed_over(srv: ApiServer, c: ApiClient, **order: str) -> dict[str, Any]:
    """Place an order while the account actors have no route to its market: it is accepted (funds
    locked) and waits in the store as `pending`, as after a lost hand-over."""
    routes = [a.markets for a in srv.ex.accounts]
    for a in srv.ex.accounts:
        a.markets = {}
    try:
        result: dict[str, Any] = await c.post("/orders", market="btcusd", **order)
        return result
    finally:
        for a, r in zip(srv.ex.accounts, routes, strict=True):
            a.markets = r


async def test_order_options_and_idempotency(srv: ApiServer) -> None:
    c = await srv.client("c@example.com", {"usd": "10000", "btc": "5"})
    first = await c.post("/orders", market="btcusd", side="buy", volume="1", price="100", client_id="bot-1")
    again = await c.post("/orders", market="btcusd", side="buy", volume="1", price="100", client_id="bot-1")
    assert again["id"] == first["id"] and again["client_id"] == "bot-1"
    me = await c.get("/members/me")
    usd = next(a for a in me["accounts"] if a["currency"] == "usd")
    assert usd["locked"] == "100.0"  # locked once, not twice

    # time in force: ioc and fok on an empty ask side end cancelled, post_only rests
    ioc = await c.post("/orders", market="btcusd", side="buy", volume="1", price="90", time_in_force="ioc")
    fok = await c.post("/orders", market="btcusd", side="buy", volume="1", price="90", time_in_force="fok")
    post = await c.post("/orders", market="btcusd", side="sell", volume="1", price="5000", time_in_force="post_only")
    assert ioc["time_in_force"] == "ioc"
    await wait_state(c, ioc["id"], "cancel")
    await wait_state(c, fok["id"], "cancel")
    assert (await c.get("/order", id=str(post["id"])))["state"] == "wait"
    # a post_only that would cross is cancelled instead of taking
    crossing = await c.post("/orders", market="btcusd", side="buy", volume="1", price="5000",
                            time_in_force="post_only")
    await wait_state(c, crossing["id"], "cancel")
    # a market sell with nothing to sell into is cancelled (never rests)
    mkt = await c.post("/orders", market="btcusd", side="sell", volume="0.5", ord_type="market")
    assert mkt["price"] is None and mkt["ord_type"] == "market"
    await wait_state(c, mkt["id"], "cancel")
    await c.close()


async def test_multi_all_or_nothing_and_clear(srv: ApiServer) -> None:
    c = await srv.client("m@example.com", {"usd": "1000", "btc": "1", "ltc": "10"})
    orders = [{"side": "buy", "volume": "1", "price": "300"}, {"side": "sell", "volume": "0.5", "price": "9000"},
              {"side": "buy", "volume": "1", "price": "400"}]
    made = await c.post("/orders/multi", market="btcusd", orders=orders)
    assert [(o["side"], o["price"]) for o in made] == [("buy", "300.0"), ("sell", "9000.0"), ("buy", "400.0")]
    # the next batch needs 1000 usd with 300 free: nothing at all is placed
    with pytest.raises(ApiError) as e:
        await c.post("/orders/multi", market="btcusd",
                     orders=[{"side": "buy", "volume": "1", "price": "200"}, {"side": "buy", "volume": "1", "price": "800"}])
    assert (e.value.status, e.value.code) == (400, 2002)
    assert len(await c.get("/orders", market="btcusd")) == 3
    other = await c.post("/orders", market="ltcbtc", side="sell", volume="1", price="0.01")

    sells = await c.post("/orders/clear", side="sell", market="btcusd")
    assert [o["id"] for o in sells] == [made[1]["id"]]
    buys = await c.post("/orders/clear", market="btcusd")
    assert sorted(o["id"] for o in buys) == sorted([made[0]["id"], made[2]["id"]])
    assert all(o["state"] == "wait" for o in buys)  # as they stood, like Peatio
    assert [o["id"] for o in await c.get("/orders")] == [other["id"]]
    rest = await c.post("/orders/clear")
    assert [o["id"] for o in rest] == [other["id"]]
    me = await c.get("/members/me")
    assert all(a["locked"] == "0.0" for a in me["accounts"])
    await c.close()


async def test_pagination(srv: ApiServer) -> None:
    c = await srv.client("p@example.com", {"usd": "100000"})
    ids = [(await c.post("/orders", market="btcusd", side="buy", volume="1", price=str(10 + i)))["id"] for i in range(7)]
    url = "/api/v2/orders"
    got: list[int] = []
    for page in (1, 2, 3):
        params = c.signed_params("GET", url, {"market": "btcusd", "limit": "3", "page": str(page)})
        async with c.session.get(f"{srv.base}{url}?{to_query(params)}") as r:
            assert r.status == 200
            assert (r.headers["X-Page"], r.headers["X-Per-Page"], r.headers["X-Total"]) == (str(page), "3", "7")
            assert ("X-Next-Page" in r.headers) == (page < 3)
            got += [o["id"] for o in await r.json()]
    assert got == ids
    desc = await c.get("/orders", market="btcusd", order_by="desc", limit="2")
    assert [o["id"] for o in desc] == ids[::-1][:2]
    await c.close()


async def test_deposits(srv: ApiServer) -> None:
    mid, access, secret = await srv.member("d@example.com")
    for i in range(5):
        await srv.ex.deposit(mid, "btc", f"0.{i + 1}", txid=f"tx{i}")
    await srv.ex.deposit(mid, "usd", "50", txid="bank1")
    c = ApiClient(srv.base, access, secret)
    latest = await c.get("/deposits")
    assert [d["txid"] for d in latest] == ["bank1", "tx4", "tx3"]  # newest first, 3 by default
    d = latest[1]
    assert d["currency"] == "btc" and d["amount"] == "0.5" and d["fee"] == "0.0" and d["state"] == "accepted"
    assert TIME.match(d["created_at"]) and TIME.match(d["done_at"]) and isinstance(d["confirmations"], int)
    btc = await c.get("/deposits", currency="btc", limit="10")
    assert [x["txid"] for x in btc] == ["tx4", "tx3", "tx2", "tx1", "tx0"]
    assert [x["txid"] for x in await c.get("/deposits", currency="btc", limit="2", page="3")] == ["tx0"]
    # the funds lists expose their page headers to browsers like every other list
    params = c.signed_params("GET", "/api/v2/deposits", {"currency": "btc", "limit": "2", "page": "2"})
    async with c.session.get(f"{srv.base}/api/v2/deposits?{to_query(params)}") as r:
        assert (r.headers["X-Page"], r.headers["X-Per-Page"], r.headers["X-Next-Page"]) == ("2", "2", "3")
        assert "X-Next-Page" in r.headers["Access-Control-Expose-Headers"]
    assert await c.get("/deposits", state="rejected") == []
    assert (await c.get("/deposit", txid="tx2"))["amount"] == "0.3"
    with pytest.raises(ApiError) as e:
        await c.get("/deposit", txid="nope")
    assert (e.value.status, e.value.code) == (404, 2012)
    # another member's deposit is not ours to see
    other = await srv.client("e@example.com")
    with pytest.raises(ApiError) as e:
        await other.get("/deposit", txid="tx2")
    assert e.value.code == 2012
    with pytest.raises(ApiError) as e:
        await c.get("/deposit_address", currency="btc")
    assert e.value.code == 1001 and "currency" in e.value.body["error"]["message"]
    for x in (c, other):
        await x.close()


async def test_request_forms_of_peatio_clients(srv: ApiServer) -> None:
    """GET params in a form body, POST params in the query string, JSON bodies, `.json` paths."""
    _, access, secret = await srv.member("f@example.com", {"usd": "1000"})
    async with aiohttp.ClientSession() as s:
        def signed(verb: str, path: str, params: dict[str, Any]) -> dict[str, Any]:
            p = dict(params, access_key=access, tonce=str(time.time_ns() // 1_000_000))
            p["signature"] = sign(secret, payload(verb, path, p))
            time.sleep(0.002)  # distinct tonces
            return p

        path = "/api/v2/orders.json"
        p = signed("POST", path, {"market": "btcusd", "side": "buy", "volume": "1", "price": "10"})
        async with s.post(f"{srv.base}{path}?{to_query(p)}") as r:  # all in the query string
            assert r.status == 201, await r.text()
        path = "/api/v2/orders.json"
        p = signed("GET", path, {"market": "btcusd"})
        async with s.get(srv.base + path, data=to_query(p),
                         headers={"Content-Type": "application/x-www-form-urlencoded"}) as r:  # GET with a body
            assert r.status == 200, await r.text()
            assert len(await r.json()) == 1
        path = "/api/v2/orders/multi"
        p = signed("POST", path, {"market": "btcusd", "orders": [{"side": "buy", "volume": "1", "price": "11"},
                                                                {"side": "buy", "volume": "1", "price": "12"}]})
        async with s.post(srv.base + path, json=p) as r:  # a JSON body
            assert r.status == 201, await r.text()
            assert [o["price"] for o in await r.json()] == ["11.0", "12.0"]
        # half in the query, half in the body: one signed set
        path = "/api/v2/orders"
        p = signed("POST", path, {"market": "btcusd", "side": "buy", "volume": "1", "price": "13"})
        q = {k: p[k] for k in ("access_key", "tonce", "signature")}
        b = {k: v for k, v in p.items() if k not in q}
        async with s.post(f"{srv.base}{path}?{to_query(q)}", data=to_query(b),
                          headers={"Content-Type": "application/x-www-form-urlencoded"}) as r:
            assert r.status == 201, await r.text()
        # a signed call of a route with a path param: Grape signed `market` too; both ways work
        for extra in ({"market": "btcusd"}, {}):
            path = "/api/v2/tickers/btcusd.json"
            p = signed("GET", path, extra)
            if extra:
                p.pop("market")  # signed, but carried by the path only
            async with s.get(f"{srv.base}{path}?{to_query(p)}") as r:
                assert r.status == 200, await r.text()


async def test_concurrent_orders_never_overdraw(srv_any: ApiServer) -> None:
    """20 orders at once, each needing 100 usd, against 1000 usd: exactly 10 get through."""
    srv = srv_any
    mid, access, secret = await srv.member("race@example.com", {"usd": "1000"})
    clients = [ApiClient(srv.base, access, secret) for _ in range(20)]
    for i, c in enumerate(clients):
        c._tonce = int(time.time() * 1000) + i * 1000  # distinct tonces across the clients of one key

    async def one(i: int, c: ApiClient) -> Any:
        try:
            return await c.post("/orders", market="btcusd", side="buy", volume="1", price="100", client_id=f"r{i}")
        except ApiError as e:
            return e

    results = await asyncio.gather(*(one(i, c) for i, c in enumerate(clients)))
    ok = [r for r in results if isinstance(r, dict)]
    refused = [r for r in results if isinstance(r, ApiError)]
    assert len(ok) == 10 and len(refused) == 10
    assert all((e.status, e.code) == (400, 2002) for e in refused)
    assert all("cannot lock funds" in e.body["error"]["message"] for e in refused)
    row = await srv.ex.store.fetchrow("SELECT balance, locked FROM accounts WHERE member_id = ? AND currency = 'usd'", mid)
    assert (int(row["balance"]), int(row["locked"])) == (0, 1000 * 10**6)
    ledger = await srv.ex.store.fetchval(
        "SELECT SUM(d_balance) FROM ledger WHERE member_id = ? AND currency = 'usd'", mid)
    assert int(ledger) == 0
    assert int(await srv.ex.store.fetchval("SELECT COUNT(*) FROM orders WHERE member_id = ?", mid)) == 10
    for c in clients:
        await c.close()


async def test_errors_are_json_envelopes(srv: ApiServer) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.delete(srv.base + "/api/v2/orders") as r:  # wrong verb
            assert r.status == 405
            body = await r.json()
            assert body["error"]["code"] == 1001
        async with s.get(srv.base + "/api/v2/depth?market=nope") as r:
            assert r.status == 400
            assert await r.json() == {"error": {"code": 1001, "message": "market does not have a valid value"}}
        async with s.get(srv.base + "/api/v2/depth") as r:
            assert (await r.json())["error"]["message"] == "market is missing"
        async with s.get(srv.base + "/api/v2/members/me") as r:
            assert r.status == 401
            assert (await r.json())["error"]["code"] == 2001
