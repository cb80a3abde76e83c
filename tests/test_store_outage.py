"""PostgreSQL drops every connection of a node while orders flow (what a database restart or a
failover does to the node): requests in flight get 503 and did nothing, the actors rebuild from the
store, and afterwards nothing acknowledged is lost, no trade is doubled, the books balance, and the
node trades again without being restarted."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.apiclient import ApiClient
from tests.conftest import PG_ADMIN_URL
from tests.nodeproc import NodeProcess, write_config
from tests.test_cluster import check_books, flow, free_ports, make_members, pg_url, wait_no_pending

__all__ = ["pg_url"]  # the fixture, shared with the cluster tests


async def drop_connections(database_url: str) -> int:
    """Terminate every server process of that database (as `pg_ctl restart` would), but ours."""
    name = database_url.rsplit("/", 1)[1]
    conn = await asyncpg.connect(PG_ADMIN_URL)
    try:
        rows = await conn.fetch("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                "WHERE datname = $1 AND pid <> pg_backend_pid()", name)
        return len(rows)
    finally:
        await conn.close()


@pytest.mark.slow
async def test_database_connections_dropped_during_trading_lose_nothing(tmp_path: Path, pg_url: str) -> None:
    (port,) = free_ports(1)
    config = write_config(tmp_path, pg_url, port)
    key_file = tmp_path / "secret.key"
    keys = await make_members(config, key_file, 4)
    node = NodeProcess(config, port, key_file, tmp_path / "node.log")
    await node.start()
    acked: dict[int, dict[str, Any]] = {}
    stop = asyncio.Event()
    apis = [ApiClient(node.base, *k) for k in keys]
    rng = random.Random(11)
    tasks = [asyncio.create_task(flow(api, random.Random(rng.random()), acked, stop)) for api in apis]
    try:
        await asyncio.sleep(1.0)
        before = len(acked)
        assert await drop_connections(pg_url) > 0
        await asyncio.sleep(0.5)
        assert await drop_connections(pg_url) >= 0  # again, while the node reconnects
        await asyncio.sleep(2.0)
        stop.set()
        await asyncio.gather(*tasks)
        assert len(acked) > before, "no order was acknowledged after the outage"
        assert await wait_no_pending(config) == 0
        # the same process trades on: a crossing pair placed now is matched
        await apis[1].post("/orders", market="dogebtc", side="buy", volume="1", price="0.0000030")
        sell = await apis[0].post("/orders", market="dogebtc", side="sell", volume="1", price="0.0000001")
        acked[sell["id"]] = {}
        state = None
        for _ in range(50):
            state = (await apis[0].get("/order", id=str(sell["id"])))["state"]
            if state in ("done", "cancel"):
                break
            await asyncio.sleep(0.1)
        assert state in ("done", "cancel"), "orders are not matched after the outage"
        assert node.proc is not None and node.proc.poll() is None, "the node died"
    finally:
        for api in apis:
            await api.close()
        node.terminate()
    await check_books(config, acked)
