"""PostgreSQL drops every connection of a node while orders flow (what a database restart or a
failover does to the node): requests in flight get 503 and did nothing, the actors rebuild from the
store, and afterwards nothing acknowledged is lost, no trade is doubled, the books balance, and the
node trades again without being restarted."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import PG_ADMIN_URL
from tests.nodeproc import NodeProcess, free_ports, write_config
from tests.test_cluster import (
    Flow,
    check_books,
    make_members,
    still_matches,
    wait_no_pending,
)


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
    traffic = Flow(node.base, keys, seed=11)
    try:
        await asyncio.sleep(1.0)
        before = len(traffic.acked)
        assert await drop_connections(pg_url) > 0
        await asyncio.sleep(0.5)
        assert await drop_connections(pg_url) >= 0  # again, while the node reconnects
        await asyncio.sleep(2.0)
        await traffic.stop()
        assert len(traffic.acked) > before, "no order was acknowledged after the outage"
        assert await wait_no_pending(config) == 0
        await still_matches(traffic.apis, "orders are not matched after the outage")  # the same process trades on
        assert node.proc is not None and node.proc.poll() is None, "the node died"
    finally:
        await traffic.close()
        node.terminate()
    await check_books(config, traffic.acked)
