"""Running a node: pool and PgBouncer settings, /healthz, /readyz and /metrics through real faults,
JSON logs, and no ERROR line for events nobody receives.

The fault test runs one node as a real process whose PostgreSQL and RabbitMQ connections go
through proxies the test controls (tests/faultproxy.py): /readyz must turn 503 while either is cut
and 200 again after, while /healthz stays 200 and /metrics keeps answering.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import time
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestServer

from node.bootstrap import start_exchange, web_app
from node.config import ConfigError, parse_config
from node.exchange import OrderInput
from node.logs import JsonFormatter
from tests.apiclient import ApiClient
from tests.conftest import ROOT, create_pg_database, delete_broker_objects, drop_pg_database, need_service
from tests.faultproxy import FaultProxy
from tests.nodeproc import NodeProcess
from tests.test_faults import FAST, POSTGRES, RABBITMQ, config_text, free_ports, make_members


def _data(**exchange: Any) -> dict[str, Any]:
    data = tomllib.loads((ROOT / "cluster.toml").read_text())
    data["exchange"].update(exchange)
    return data


# -- configuration ---------------------------------------------------------------------------------
def test_pool_and_ops_settings() -> None:
    cfg = parse_config(_data(database="postgresql://u@db:5432/x", pool_min=1, pool_max=4, pgbouncer=True,
                             direct_database="postgresql://u@db-direct:5432/x"))
    assert (cfg.pool.min_size, cfg.pool.max_size, cfg.pool.pgbouncer) == (1, 4, True)
    assert cfg.direct_database == "postgresql://u@db-direct:5432/x"
    assert parse_config(_data(database="postgresql://u@db:5432/x")).direct_database == "postgresql://u@db:5432/x"
    d = parse_config(_data())
    assert (d.pool.min_size, d.pool.max_size, d.pool.pgbouncer) == (2, 10, False)
    assert (d.ops.host, d.ops.port, d.ops.log_format) == ("127.0.0.1", 0, "text")
    assert d.ops.ready_max_mailbox == d.actors.mailbox_size // 2
    data = _data()
    data["ops"] = {"host": "10.0.0.5", "port": 9180, "log_format": "json", "ready_max_mailbox": 50}
    data["nodes"]["main"]["ops_port"] = 9181
    cfg = parse_config(data)
    assert (cfg.ops.host, cfg.ops.port, cfg.ops.log_format, cfg.ops.ready_max_mailbox) == ("10.0.0.5", 9180, "json", 50)
    assert cfg.ops_port(cfg.nodes["main"]) == 9181

    bad: list[tuple[dict[str, Any], dict[str, Any], str]] = [
        ({"pool_min": 5, "pool_max": 2}, {}, "exchange.pool_min"),
        ({"pool_max": 0}, {}, "exchange.pool_max"),
        ({"pgbouncer": "yes"}, {}, "exchange.pgbouncer"),
        ({"direct_database": "mysql://x"}, {}, "exchange.direct_database"),
        ({}, {"log_format": "xml"}, "ops.log_format"),
        ({}, {"listen": "0.0.0.0"}, "ops.listen: unknown key"),
        ({}, {"port": 70000}, "ops.port"),
        ({}, {"host": ""}, "ops.host"),
    ]
    for ex_keys, ops_keys, message in bad:
        data = _data(**ex_keys)
        if ops_keys:
            data["ops"] = ops_keys
        with pytest.raises(ConfigError, match=re.escape(message)):
            parse_config(data)


def test_json_log_lines() -> None:
    import logging

    fmt = JsonFormatter({"node": "a"})
    record = logging.LogRecord("node.x", logging.WARNING, __file__, 1, "order %s from %r", ("7", "evil\nline"), None)
    line = fmt.format(record)
    assert "\n" not in line
    obj = orjson.loads(line)
    assert obj["level"] == "WARNING" and obj["logger"] == "node.x" and obj["node"] == "a"
    assert obj["message"] == "order 7 from 'evil\\nline'"


# -- PgBouncer in transaction mode -----------------------------------------------------------------
@pytest.fixture
async def pgbouncer(tmp_path: Path) -> AsyncIterator[tuple[str, str]]:
    """A PgBouncer in transaction mode in front of the test's own database: (through it, direct)."""
    need_service("PostgreSQL", *POSTGRES)
    binary = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin")
    if binary is None:
        pytest.skip("pgbouncer is not installed (scripts/test.sh installs it)")
    direct = await create_pg_database()
    port = free_ports(1)[0]
    conf = tmp_path / "pgbouncer"
    conf.mkdir()
    (conf / "users.txt").write_text('"postgres" ""\n')
    (conf / "pgbouncer.ini").write_text(
        f"[databases]\n* = host={POSTGRES[0]} port={POSTGRES[1]}\n[pgbouncer]\nlisten_addr = 127.0.0.1\n"
        f"listen_port = {port}\nauth_type = trust\nauth_file = {conf}/users.txt\npool_mode = transaction\n"
        "default_pool_size = 4\nunix_socket_dir =\n")
    cmd = [binary, *(["-u", "postgres"] if os.geteuid() == 0 else []), str(conf / "pgbouncer.ini")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # noqa: ASYNC220 - started once
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                _, w = await asyncio.open_connection("127.0.0.1", port)
                w.close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"pgbouncer did not start: {proc.stdout.read() if proc.stdout else b''!r}") from None
                await asyncio.sleep(0.05)
        yield direct.replace(f":{POSTGRES[1]}/", f":{port}/"), direct
    finally:
        proc.terminate()
        proc.wait(10)
        await drop_pg_database(direct)


async def test_behind_pgbouncer_transaction_mode(pgbouncer: tuple[str, str], caplog: pytest.LogCaptureFixture) -> None:
    """Orders are accepted, matched and the liveness lock held with `pgbouncer = true` and the lock
    on its direct URL; without the setting the pool cannot even open through PgBouncer. A database
    without its own idle-transaction limit is warned about."""
    through, direct = pgbouncer
    with pytest.raises(ConfigError, match="set pgbouncer = true"):  # the idle-transaction limit at connect
        await start_exchange(parse_config(_data(database=through)), actors=False)
    cfg = parse_config(_data(database=through, pgbouncer=True, direct_database=direct, pool_min=1, pool_max=3))
    ex = await start_exchange(cfg)
    try:
        assert "idle_in_transaction_session_timeout is off" in caplog.text
        assert ex.leases.liveness is not None and ex.leases.liveness.url == direct
        assert ex.store.pool_use()["max"] == 3  # type: ignore[attr-defined]
        buyer, seller = await ex.create_member("b@example.com"), await ex.create_member("s@example.com")
        await ex.deposit(buyer, "usd", "100000", txid="b")
        await ex.deposit(seller, "btc", "10", txid="s")
        for i in range(20):  # many statements, each on whichever server connection PgBouncer gives
            await ex.submit_order(seller, OrderInput("btcusd", "sell", "0.01", "100", client_id=f"s{i}"))
            await ex.submit_order(buyer, OrderInput("btcusd", "buy", "0.01", "100", client_id=f"b{i}"))
        # and batches of many rows (COPY, column arrays): PgBouncer must pass them as well
        await asyncio.gather(*(ex.submit_order(seller, OrderInput("btcusd", "sell", "0.01", "100", client_id=f"S{i}"))
                               for i in range(20)))
        await asyncio.gather(*(ex.submit_order(buyer, OrderInput("btcusd", "buy", "0.01", "100", client_id=f"B{i}"))
                               for i in range(20)))
        await ex.quiesce()
        assert int(await ex.store.fetchval("SELECT COUNT(*) FROM trades")) == 40
        from node.actors.lease import Liveness

        probe = Liveness(direct, "probe", 5.0)  # another process's view: our lock is held, on the direct connection
        try:
            assert not await probe.gone(ex.leases.owner)
        finally:
            await probe.close()
        view = await ex.cluster_status()
        assert view["markets"]["btcusd"]["epoch"] >= 1
        assert ex.accepted["btcusd"] == 80
    finally:
        await ex.stop()


# -- the main listener answers operator endpoints to local requests only ----------------------------
async def test_operator_endpoints_on_the_main_listener_are_local_only(tmp_path: Path) -> None:
    cfg = parse_config(_data(database=f"sqlite:///{tmp_path}/x.db"))
    ex = await start_exchange(cfg)
    server = TestServer(web_app(ex, key_file=tmp_path / "secret.key"), host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as s:
            base = f"http://127.0.0.1:{server.port}"
            async with s.get(base + "/healthz") as r:
                assert r.status == 200 and (await r.json())["alive"] is True
            async with s.get(base + "/readyz") as r:
                body = await r.json()
                assert r.status == 200, body
                assert set(body["checks"]["leases"]) == {"btcusd", "ltcbtc", "dogebtc"}
            async with s.get(base + "/metrics") as r:
                assert r.status == 200 and "exchange_mailbox_depth" in await r.text()
            for header in ("X-Forwarded-For", "Forwarded", "X-Real-IP"):  # through a local proxy: the public
                async with s.get(base + "/metrics", headers={header: "203.0.113.9"}) as r:
                    assert r.status == 403
        no_ops = TestServer(web_app(ex, key_file=tmp_path / "secret.key", ops_routes=False), host="127.0.0.1")
        await no_ops.start_server()
        try:
            async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{no_ops.port}/metrics") as r:
                assert r.status == 404  # an operator listener of its own: the public port does not know them
        finally:
            await no_ops.close()
    finally:
        await server.close()
        await ex.stop()


# -- readiness and metrics through real faults --------------------------------------------------------
async def _get(s: aiohttp.ClientSession, url: str) -> tuple[int, Any, float]:
    started = time.monotonic()
    async with s.get(url, timeout=aiohttp.ClientTimeout(total=10)) as r:
        body = await r.json() if r.content_type == "application/json" else await r.text()
        return r.status, body, time.monotonic() - started


async def _until(s: aiohttp.ClientSession, url: str, status: int, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        code, body, _ = await _get(s, url)
        if code == status:
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} stayed {code} (wanted {status}): {body}")
        await asyncio.sleep(0.2)


def _sample(text: str, name: str, **labels: str) -> float | None:
    """The first sample of `name` whose labels include `labels`, from Prometheus' text format."""
    return next(iter(_samples(text, name, **labels)), None)


def _samples(text: str, name: str, **labels: str) -> list[float]:
    out = []
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$", line)
        if m is None or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            out.append(float(m.group(3)))
    return out


@pytest.mark.slow
async def test_readyz_and_metrics_through_store_and_bus_cuts(tmp_path: Path) -> None:
    need_service("PostgreSQL", *POSTGRES)
    need_service("RabbitMQ", *RABBITMQ)
    pg_url = await create_pg_database()
    pg = await FaultProxy(*POSTGRES).start()
    mq = await FaultProxy(*RABBITMQ).start()
    port, ops_port = free_ports(2)
    config = tmp_path / "cluster.toml"
    text = config_text(pg_url, f"amqp://guest:guest@{RABBITMQ[0]}:{RABBITMQ[1]}/", {"a": port}, FAST,
                       placement={"a": ["btcusd", "ltcbtc", "dogebtc"]})
    config.write_text(text + f'\n[ops]\nport = {ops_port}\nready_timeout_ms = 500\nlog_format = "json"\n')
    node: NodeProcess | None = None
    try:
        keys = await make_members(config, tmp_path / "secret.key", 2)
        db = pg_url.rsplit("/", 1)[1]
        env = {"EXCHANGE_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{pg.port}/{db}",
               "EXCHANGE_RABBITMQ_URL": f"amqp://guest:guest@127.0.0.1:{mq.port}/"}
        node = NodeProcess(config, port, tmp_path / "secret.key", tmp_path / "a.log", node="a", env=env)
        await node.start()
        ops = f"http://127.0.0.1:{ops_port}"
        async with aiohttp.ClientSession() as s:
            assert (await _get(s, ops + "/healthz"))[0] == 200
            ready = await _until(s, ops + "/readyz", 200, 15)
            assert ready["checks"]["store"]["ok"] and ready["checks"]["bus"]["ok"]
            assert all(m["runs_here"] and m["epoch"] >= 1 for m in ready["checks"]["leases"].values())
            assert (await _get(s, node.base + "/metrics"))[0] == 404  # not on the public port

            # Orders that trade: accepted and matched counts, commit latency; their account events
            # go to the bus, where no node follows them.
            buyer, seller = (ApiClient(node.base, a, sec, session=s) for a, sec in keys)
            for i in range(5):
                await seller.post("/orders", market="btcusd", side="sell", volume="0.01", price="100", client_id=f"s{i}")
                await buyer.post("/orders", market="btcusd", side="buy", volume="0.01", price="100", client_id=f"b{i}")
            deadline = time.monotonic() + 10
            while True:
                _, text, _ = await _get(s, ops + "/metrics")
                if (_sample(text, "exchange_trades_total", market="btcusd") or 0) >= 5 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
            assert _sample(text, "exchange_orders_accepted_total", market="btcusd") == 10
            assert _sample(text, "exchange_trades_total", market="btcusd") == 5
            assert (_sample(text, "exchange_batch_commit_seconds_count", actor="market:btcusd") or 0) >= 1
            accounts = [v for line in text.splitlines() if line.startswith('exchange_batch_commit_seconds_count{actor="accounts:')
                        for v in [float(line.rsplit(" ", 1)[1])]]
            assert sum(accounts) >= 1, accounts
            for mid in ("btcusd", "ltcbtc", "dogebtc"):
                assert _sample(text, "exchange_market_lease_held", market=mid) == 1
                assert (_sample(text, "exchange_market_epoch", market=mid) or 0) >= 1
            shards = _samples(text, "exchange_account_shard_held")  # the one node runs every account shard
            assert shards and all(v == 1 for v in shards), shards
            assert all(v >= 1 for v in _samples(text, "exchange_account_shard_epoch"))
            assert _samples(text, "exchange_account_shard_off_primary") == [0.0] * len(shards)
            assert _sample(text, "exchange_bus_connected") == 1
            assert _sample(text, "exchange_ready") == 1
            assert _sample(text, "exchange_bus_queued", market="btcusd") == 0
            assert _sample(text, "exchange_websocket_clients") == 0
            assert _sample(text, "exchange_mailbox_depth", actor="market:btcusd") == 0
            assert _sample(text, "exchange_store_pool_max") == 10
            assert (_sample(text, "exchange_store_pool_connections", state="open") or 0) >= 1
            assert (_sample(text, "exchange_store_transactions_total") or 0) >= 10  # the orders' batches at least
            assert (_sample(text, "exchange_store_round_trips_total") or 0) > _sample(text, "exchange_store_transactions_total")
            for name in ("exchange_bus_replies_total", "exchange_bus_events_published_total",
                         "exchange_bus_events_consumed_total"):
                assert _sample(text, name) is not None, name
            for name in ("exchange_store_errors_total", "exchange_bus_errors_total", "exchange_withdrawals_waiting",
                         "exchange_wallet_lag_blocks", "exchange_market_lease_renewed_age_seconds"):
                assert f"# TYPE {name.removesuffix('_total')}" in text, name
            errors_before = sum(_samples(text, "exchange_store_errors_total"))

            # PostgreSQL cut: not ready (within the probe's timeout), still alive, metrics on time.
            pg.blackhole()
            body = await _until(s, ops + "/readyz", 503, 5)
            assert not body["checks"]["store"]["ok"], body
            assert (await _get(s, ops + "/healthz"))[0] == 200
            code, text, took = await _get(s, ops + "/metrics")
            assert code == 200 and took < 3, took
            assert _sample(text, "exchange_ready") == 0 and _sample(text, "exchange_ready_check", check="store") == 0
            await asyncio.sleep(2.5)  # past the self-fence (0.6 of a 3 s lease): the markets stop matching
            code, text, _ = await _get(s, ops + "/metrics")
            assert _sample(text, "exchange_market_lease_held", market="btcusd") == 0
            pg.heal()
            body = await _until(s, ops + "/readyz", 200, 20)  # markets adopted again, leases renewed
            assert all(m["runs_here"] for m in body["checks"]["leases"].values()), body
            _, text, _ = await _get(s, ops + "/metrics")
            errors_after = sum(_samples(text, "exchange_store_errors_total"))
            assert errors_after > errors_before

            # RabbitMQ cut: not ready while the broker does not answer, ready again after.
            mq.blackhole()
            body = await _until(s, ops + "/readyz", 503, 5)
            assert not body["checks"]["bus"]["ok"] and body["checks"]["store"]["ok"], body
            mq.heal()
            await _until(s, ops + "/readyz", 200, 20)
    finally:
        if node is not None:
            assert await asyncio.to_thread(node.terminate) == 0  # the proxies run on this loop: keep it turning
        await pg.close()
        await mq.close()
        await delete_broker_objects(pg_url)
        await drop_pg_database(pg_url)
    log = (tmp_path / "a.log").read_text()
    assert "Basic.Return" not in log and "Unhandled message" not in log, log[-3000:]
    lines = [json_line for json_line in log.splitlines() if json_line.startswith("{")]
    assert lines, log[-2000:]
    parsed = [orjson.loads(x) for x in lines]
    assert any(p.get("node") == "a" and p.get("boot") for p in parsed)
    assert all({"ts", "level", "logger", "message"} <= p.keys() for p in parsed)
