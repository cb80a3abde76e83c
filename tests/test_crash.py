"""kill -9 the node while clients trade through the API; restart; nothing acknowledged is lost.

Several rounds: start the node as its own process, let 8 clients send random orders and cancels over
HTTP, SIGKILL it at a random moment, restart. At the end: every acknowledged order is in the store,
every acknowledged cancel is final, no trade is lost or doubled (each order's executed volume and
funds equal the sum of its trades), the books balance, and the live book equals one rebuilt from
the stored orders.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from node.audit import audit
from node.config import load_config
from node.market import Engine, Order
from node.store import open_store
from tests.apiclient import ApiClient, ApiError
from tests.nodeproc import NodeProcess, cli, write_config

MEMBERS = 6
ROUNDS = 4
PRICES = [str(p) for p in range(29_990, 30_011)]


async def client_loop(api: ApiClient, rng: random.Random, acked: dict[str, Any], stop: asyncio.Event) -> None:
    mine: list[int] = []
    while not stop.is_set():
        try:
            if mine and rng.random() < 0.25:
                oid = mine.pop(rng.randrange(len(mine)))
                await api.post("/order/delete", id=str(oid))
                acked["cancels"].add(oid)
            else:
                kind = rng.random()
                params = {"market": "btcusd", "side": rng.choice(["buy", "sell"]),
                          "volume": f"0.{rng.randint(1, 30):04d}"}
                if kind < 0.1:
                    params["ord_type"] = "market"
                else:
                    params["price"] = rng.choice(PRICES)
                if rng.random() < 0.3:
                    params["client_id"] = f"r{rng.getrandbits(48)}"
                o = await api.post("/orders", **params)
                acked["orders"][o["id"]] = params
                mine.append(o["id"])
        except ApiError as e:
            if e.status >= 500 and e.code not in (3003, 3005, 3006):
                raise
        except (TimeoutError, aiohttp.ClientError, ConnectionError):
            await asyncio.sleep(0.05)  # the node is down: not acknowledged, nothing to check


@pytest.mark.slow
async def test_sigkill_loses_nothing_acknowledged(tmp_path: Path, free_port: int) -> None:
    db = tmp_path / "exchange.db"
    config = write_config(tmp_path, f"sqlite:///{db}", free_port)
    key_file = tmp_path / "secret.key"
    keys: list[tuple[str, str]] = []
    for i in range(MEMBERS):
        email = f"crash{i}@example.com"
        cli(config, "member", "create", email)
        cli(config, "deposit", email, "usd", "10000000")
        cli(config, "deposit", email, "btc", "300")
        out = cli(config, "apikey", "create", email, key_file=key_file)
        kv = dict(line.split("=", 1) for line in out.strip().splitlines())
        keys.append((kv["access_key"], kv["secret_key"]))

    acked: dict[str, Any] = {"orders": {}, "cancels": set()}
    rng = random.Random(20261125)
    node = NodeProcess(config, free_port, key_file, tmp_path / "node.log")
    for _ in range(ROUNDS):
        await node.start()
        stop = asyncio.Event()
        apis = [ApiClient(node.base, *keys[i % MEMBERS]) for i in range(8)]
        tasks = [asyncio.create_task(client_loop(api, random.Random(rng.random()), acked, stop)) for api in apis]
        await asyncio.sleep(rng.uniform(0.5, 2.0))
        node.kill()
        stop.set()
        await asyncio.gather(*tasks)
        for api in apis:
            await api.close()

    await node.start()  # recovery: the books are rebuilt and pending orders matched
    async with aiohttp.ClientSession() as s, s.get(node.base + "/ops/status") as r:
        status = await r.json()
    live_hash = status["markets"]["btcusd"]["state_hash"]
    assert node.terminate() == 0

    assert len(acked["orders"]) > 100, "the clients got too few orders through to test anything"
    cfg = load_config(config)
    store = await open_store(cfg.database)
    try:
        rows = {int(r["id"]): dict(r) for r in await store.fetch("SELECT * FROM orders")}
        missing = set(acked["orders"]) - set(rows)
        assert not missing, f"acknowledged orders lost: {sorted(missing)[:10]}"
        assert all(rows[i]["state"] != "pending" for i in rows), "an accepted order was never matched"
        for oid in acked["cancels"]:
            assert rows[oid]["state"] in ("cancel", "done"), rows[oid]
        trades = await store.fetch("SELECT * FROM trades")
        executed: dict[int, int] = {}
        funds: dict[int, int] = {}
        for t in trades:
            for oid in (int(t["ask_id"]), int(t["bid_id"])):
                executed[oid] = executed.get(oid, 0) + int(t["volume"])
                funds[oid] = funds.get(oid, 0) + int(t["price"]) * int(t["volume"])
        for oid, r in rows.items():
            assert r["volume"] - r["remaining"] == executed.get(oid, 0), f"order {oid}: trades lost or doubled"
            assert r["funds_used"] == funds.get(oid, 0), f"order {oid}: funds do not match its trades"
            assert r["trades_count"] == sum(1 for t in trades if oid in (t["ask_id"], t["bid_id"]))
        report = await audit(store, cfg.markets)
        assert report.ok, report.lines()
        rebuilt = Engine("btcusd")
        for r in await store.fetch("SELECT * FROM orders WHERE market = 'btcusd' AND state = 'wait' ORDER BY seq"):
            o = Order(int(r["id"]), int(r["member_id"]), r["side"], r["ord_type"], int(r["price"]), int(r["volume"]),
                      tif=r["tif"], stop_price=int(r["stop_price"]), funds=int(r["funds"]))
            o.remaining, o.funds_used, o.trades_count = int(r["remaining"]), int(r["funds_used"]), int(r["trades_count"])
            o.seq, o.triggered = int(r["seq"]), bool(r["triggered"])
            rebuilt.restore(o)
        assert rebuilt.state_hash() == live_hash
        assert len(trades) > 20
    finally:
        await store.close()
