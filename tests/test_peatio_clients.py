"""Two real Peatio clients from PyPI, unmodified, against our server on 127.0.0.1.

* `peatio-client==0.1.1` (`peatio_client.Client(endpoint=…)`): signs a URL-escaped, sorted query;
  sends GET params in the query string and POST params in a form body; lets the caller choose the tonce.
* `yunbi==0.2.2` (`yunbi.yunbi.BASE_URL`): signs `/api/v2/<path>.json` and sends the params of GET
  requests in a form *body*; takes its tonce from `time.time()` (the replay test pins that clock).

Both are blocking (requests), so they run in worker threads while the server runs in the test's
event loop. peatio_client imports `websocket` (websocket-client) at import time without declaring
it; the test extra of pyproject.toml installs it.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import peatio_client
import pytest
import yunbi
import yunbi.yunbi as yunbi_module

from tests.test_api_support import ApiServer, api_server


@pytest.fixture
async def srv(tmp_path: Path) -> Any:
    async with api_server(f"sqlite:///{tmp_path}/exchange.db", tmp_path) as s:
        yield s


async def call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    return await asyncio.to_thread(fn, *args, **kwargs)


async def test_peatio_client(srv: ApiServer) -> None:
    _, access, secret = await srv.member("pc@example.com", {"usd": "10000", "btc": "3"})
    _, other_access, other_secret = await srv.member("maker@example.com", {"btc": "3"})
    client = peatio_client.Client(endpoint=srv.base, access_key=access, secret_key=secret, timeout=10)
    maker = peatio_client.Client(endpoint=srv.base, access_key=other_access, secret_key=other_secret, timeout=10)

    # public data
    markets = await call(client.get_public, "/api/v2/markets")
    assert {"id": "btcusd", "name": "BTC/USD"} in markets
    assert "btcusd" in await call(client.get_public, "/api/v2/tickers")
    depth = await call(client.get_public, "/api/v2/depth", {"market": "btcusd", "limit": 5})
    assert depth["asks"] == [] and depth["bids"] == []
    assert isinstance(await call(client.get_public, "/api/v2/timestamp"), int)
    assert await call(client.get_public, "/api/v2/trades", {"market": "btcusd"}) == []

    # members/me
    me = await call(client.get, "/api/v2/members/me")
    assert me["email"] == "pc@example.com"
    assert {"currency": "usd", "balance": "10000.0", "locked": "0.0"} in me["accounts"]

    # create / get / list
    ask = await call(maker.post, "/api/v2/orders", {"market": "btcusd", "side": "sell", "volume": "0.5", "price": "3000"})
    assert ask["state"] == "wait", ask
    bid = await call(client.post, "/api/v2/orders", {"market": "btcusd", "side": "buy", "volume": "0.2", "price": "3000"})
    assert bid["side"] == "buy" and bid["volume"] == "0.2", bid
    for _ in range(50):
        got = await call(client.get, "/api/v2/order", {"id": bid["id"]})
        if got["state"] == "done":
            break
        await asyncio.sleep(0.02)
    assert got["state"] == "done" and got["trades"][0]["price"] == "3000.0"
    rest = [await call(client.post, "/api/v2/orders", {"market": "btcusd", "side": "buy", "volume": "0.1",
                                                       "price": str(p)}) for p in (100, 200, 300)]
    listed = await call(client.get, "/api/v2/orders", {"market": "btcusd"})
    assert [o["id"] for o in listed] == [o["id"] for o in rest]
    mine = await call(client.get, "/api/v2/trades/my", {"market": "btcusd"})
    assert mine[0]["side"] == "bid"

    # cancel one, clear the rest
    cancelled = await call(client.post, "/api/v2/order/delete", {"id": rest[0]["id"]})
    assert cancelled["id"] == rest[0]["id"] and cancelled["state"] == "wait"
    cleared = await call(client.post, "/api/v2/orders/clear")
    assert sorted(o["id"] for o in cleared) == sorted(o["id"] for o in rest[1:])
    assert await call(client.get, "/api/v2/orders", {"market": "btcusd"}) == []

    # a replayed tonce (2006) and a stale one (2007)
    tonce = int(time.time() * 1000)
    assert "email" in await call(client.get, "/api/v2/members/me", {"tonce": tonce})
    replay = await call(client.get, "/api/v2/members/me", {"tonce": tonce})
    assert replay["error"]["code"] == 2006
    stale = await call(client.get, "/api/v2/members/me", {"tonce": int(time.time() * 1000) - 60_000})
    assert stale["error"]["code"] == 2007
    # and a wrong secret is a bad signature
    forged = peatio_client.Client(endpoint=srv.base, access_key=access, secret_key="x" * 40)
    assert (await call(forged.get, "/api/v2/members/me"))["error"]["code"] == 2005


async def test_yunbi(srv: ApiServer, monkeypatch: pytest.MonkeyPatch) -> None:
    _, access, secret = await srv.member("yb@example.com", {"usd": "10000", "btc": "3"})
    monkeypatch.setattr(yunbi_module, "BASE_URL", srv.base + "/api/v2/")
    client = yunbi.Yunbi(access, secret, timeout=10)

    # public data
    assert {"id": "btcusd", "name": "BTC/USD"} in await call(client.get_markets)
    assert "ticker" in await call(client.get_tickers_market, "btcusd")
    assert isinstance(await call(client.get_timestamp), int)
    assert await call(client.get_order_book, "btcusd", asks_limit=5) == {"asks": [], "bids": []}
    depth = await call(client.get_depth, "btcusd", limit=5)
    assert (depth["asks"], depth["bids"]) == ([], [])
    assert await call(client.get_trades, "btcusd", from_id=None) == []

    # members/me: a GET whose params travel in a form body
    me = await call(client.get_members_me)
    assert me["email"] == "yb@example.com"

    # create / get / list / cancel / clear
    o1 = await call(client.post_orders, "btcusd", "sell", "0.5", price="4000")
    o2 = await call(client.post_orders, "btcusd", "buy", "0.1", price="100")
    o3 = await call(client.post_orders, "btcusd", "buy", "0.1", price="110", ord_type="limit")
    assert (o1["side"], o1["price"], o2["volume"], o3["ord_type"]) == ("sell", "4000.0", "0.1", "limit"), (o1, o2, o3)
    assert (await call(client.get_order, o1["id"]))["id"] == o1["id"]
    listed = await call(client.get_orders, "btcusd", state="wait", limit=10, order_by="desc")
    assert [o["id"] for o in listed] == [o3["id"], o2["id"], o1["id"]]
    assert (await call(client.post_order_delete, o1["id"]))["id"] == o1["id"]
    cleared = await call(client.post_orders_clear, side="buy")
    assert sorted(o["id"] for o in cleared) == sorted([o2["id"], o3["id"]])
    assert await call(client.get_orders, "btcusd") == []
    assert await call(client.get_trades_my, "btcusd", from_id=0) == []
    assert [d["currency"] for d in await call(client.get_deposits, limit=10)] == ["btc", "usd"]

    # a replayed tonce (2006) and a stale one (2007): yunbi reads the clock through its `time` module
    frozen = time.time()
    monkeypatch.setattr(yunbi_module, "time", SimpleNamespace(time=lambda: frozen))
    assert "email" in await call(client.get_members_me)
    assert (await call(client.get_members_me))["error"]["code"] == 2006
    monkeypatch.setattr(yunbi_module, "time", SimpleNamespace(time=lambda: frozen - 60))
    assert (await call(client.get_members_me))["error"]["code"] == 2007
