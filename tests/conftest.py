"""Shared fixtures: a configuration, and an exchange on SQLite and (when available) PostgreSQL.

PostgreSQL tests get a fresh database each (created and dropped around the test). Where PostgreSQL
is not running they skip with the reason, unless EXCHANGE_REQUIRE_SERVICES=1 (CI), where they fail.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from node.config import Config, load_config, parse_config

pytest_plugins = ["tests.test_admin_fixtures"]  # the admin, KYC and ticket tests' fixtures

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN_URL = os.environ.get("EXCHANGE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REQUIRE_SERVICES = os.environ.get("EXCHANGE_REQUIRE_SERVICES") == "1"


def service_up(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def need_service(name: str, host: str, port: int) -> None:
    """Skip (or, in CI, fail) a test whose service is not running."""
    if service_up(host, port):
        return
    msg = f"{name} is not running on {host}:{port}"
    if REQUIRE_SERVICES:
        pytest.fail(f"{msg} (EXCHANGE_REQUIRE_SERVICES=1)")
    pytest.skip(msg)


def config_with(database: str, **overrides: Any) -> Config:
    """The default cluster.toml with another database (and optional top-level overrides)."""
    import tomllib

    data = tomllib.loads((ROOT / "cluster.toml").read_text())
    data["exchange"]["database"] = database
    for key, value in overrides.items():
        data[key] = value
    return parse_config(data, "test")


@pytest.fixture
def default_config() -> Config:
    return load_config(ROOT / "cluster.toml")


@pytest.fixture(autouse=True)
def _no_env_database(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EXCHANGE_DATABASE_URL", raising=False)


async def create_pg_database() -> str:
    import asyncpg

    name = "t_" + secrets.token_hex(6)
    conn = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name


async def drop_pg_database(url: str) -> None:
    import asyncpg

    name = url.rsplit("/", 1)[1]
    conn = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await conn.close()


async def delete_broker_objects(database: str, rabbitmq: str = "amqp://guest:guest@127.0.0.1:5672/") -> None:
    """The durable market and account shard queues and the events exchange that a cluster test's nodes declared on the
    broker, named after the cluster id in its database (their other queues are exclusive and go with
    their connections): without this, every run leaves them behind."""
    import aio_pika
    import asyncpg

    conn = await asyncpg.connect(database)
    shards: list[int] = []
    try:
        cluster_id = await conn.fetchval("SELECT value FROM cluster_info WHERE name = 'cluster_id'")
        shards = [int(r[0]) for r in await conn.fetch("SELECT shard FROM account_shards")]
    except asyncpg.UndefinedTableError:
        cluster_id = None  # no node ever started on it
    finally:
        await conn.close()
    if cluster_id is None:
        return
    prefix = f"exchange.{cluster_id}"
    broker = await aio_pika.connect(rabbitmq)
    try:
        channel = await broker.channel()
        for market in load_config(ROOT / "cluster.toml").markets:
            await channel.queue_delete(f"{prefix}.market.{market}")
        for shard in shards:  # the account shards' queues (leased shards have a row)
            await channel.queue_delete(f"{prefix}.accounts.{shard}")
        await channel.exchange_delete(f"{prefix}.event-lists")
    finally:
        await broker.close()


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh, empty database on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/exchange.db"
        return
    need_service("PostgreSQL", "127.0.0.1", 5432)
    url = await create_pg_database()
    try:
        yield url
    finally:
        await drop_pg_database(url)


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    """A fresh PostgreSQL database for the tests that run nodes over a message bus (PostgreSQL and
    RabbitMQ must be up: skipped, or failed under EXCHANGE_REQUIRE_SERVICES=1); afterwards the broker
    objects its nodes declared are deleted and the database dropped."""
    need_service("PostgreSQL", "127.0.0.1", 5432)
    need_service("RabbitMQ", "127.0.0.1", 5672)
    url = await create_pg_database()
    try:
        yield url
    finally:
        try:
            await delete_broker_objects(url)
        finally:
            await drop_pg_database(url)


class Clock:
    """A clock the tests move by hand (`clock.now += 60`)."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def ex(database_url: str) -> AsyncIterator[Any]:
    """An exchange on each backend without its actors: for the services beside trading (members,
    two-factor, …), as the admin commands run them."""
    from node.bootstrap import start_exchange

    e = await start_exchange(config_with(database_url), actors=False)
    try:
        yield e
    finally:
        await e.stop()


@pytest.fixture
async def exchange(database_url: str) -> AsyncIterator[Any]:
    from node.bootstrap import start_exchange

    ex = await start_exchange(config_with(database_url))
    try:
        yield ex
    finally:
        await ex.stop()


@pytest.fixture
def free_port() -> Iterator[int]:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    yield port
