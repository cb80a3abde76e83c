"""Shared set-up of the API tests: a node's web app on a real socket (127.0.0.1) and funded members.

Not a test module of its own (no tests here); the API test modules import `api_server` and
`funded_client` from it. Servers listen on 127.0.0.1 with an ephemeral port, so requests go through
the kernel's TCP stack exactly like a client's.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from node.apikeys import ApiKeys
from node.bootstrap import start_exchange, web_app
from node.exchange import Exchange
from node.web.app import KEYS
from tests.apiclient import ApiClient
from tests.conftest import config_with

GENEROUS_LIMITS = {"signed_limit": 1_000_000, "public_limit": 1_000_000}


@dataclass
class ApiServer:
    ex: Exchange
    app: web.Application
    server: TestServer
    tmp: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    @property
    def keys(self) -> ApiKeys:
        return self.app[KEYS]

    async def member(self, email: str, funds: dict[str, str] | None = None, scopes: str = "all",
                     **token: Any) -> tuple[int, str, str]:
        """A member with deposits and an API token: (member id, access key, secret key)."""
        mid = await self.ex.create_member(email)
        for cur, amount in (funds or {}).items():
            await self.ex.deposit(mid, cur, amount)
        access, secret = await self.keys.create(mid, "test", scopes, now=int(time.time() * 1000), **token)
        return mid, access, secret

    async def client(self, email: str, funds: dict[str, str] | None = None, scopes: str = "all",
                     **token: Any) -> ApiClient:
        _, access, secret = await self.member(email, funds, scopes, **token)
        return ApiClient(self.base, access, secret)


@asynccontextmanager
async def api_server(database_url: str, tmp: Path, api: dict[str, Any] | None = None) -> AsyncIterator[ApiServer]:
    """An exchange node (actors and store) with its web app served on 127.0.0.1."""
    config = config_with(database_url, api=api if api is not None else GENEROUS_LIMITS)
    ex = await start_exchange(config)
    try:
        app = web_app(ex, key_file=tmp / "secret.key")
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        try:
            yield ApiServer(ex, app, server, tmp)
        finally:
            await server.close()
    finally:
        await ex.stop()


async def snapshot(ex: Exchange) -> dict[str, list[tuple[Any, ...]]]:
    """Every table that an API call could change, for "the database is unchanged" checks."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    for table, order in (("accounts", "member_id, currency"), ("orders", "id"), ("trades", "id"),
                         ("ledger", "id"), ("deposits", "id"), ("members", "id")):
        rows = await ex.store.fetch(f"SELECT * FROM {table} ORDER BY {order}")
        out[table] = [tuple(r) for r in rows]
    return out
