"""The server key: a key that cannot open an API secret is a clear 503 (3009) and one operator's log
line, never a 500; a node or command started with another key than the exchange's refuses to start,
naming where the key came from (SECURITY.md, "Server key")."""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from node.apikeys import ApiKeys
from node.config import ConfigError
from node.errors import SecretUnreadable
from node.secrets_box import SecretBox
from node.security.totp import Totp
from node.server_key import check_server_key
from node.web.signature import payload, sign, to_query
from tests.nodeproc import ROOT, NodeProcess, _env, cli, write_config
from tests.test_api_auth import now_ms
from tests.test_api_support import api_server


async def test_a_secret_sealed_under_another_key_answers_3009_and_one_log_line(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with api_server(f"sqlite:///{tmp_path}/exchange.db", tmp_path) as srv:
        mid = await srv.ex.create_member("a@example.com")
        other = ApiKeys(srv.ex.store, SecretBox(b"another-server-key", "api-secret"))
        access, secret = await other.create(mid, "elsewhere", now=now_ms())
        caplog.set_level(logging.WARNING)
        answers = []
        async with aiohttp.ClientSession() as s:
            for _ in range(3):
                p: dict[str, Any] = {"access_key": access, "tonce": str(now_ms())}
                p["signature"] = sign(secret, payload("GET", "/api/v2/members/me", p))
                async with s.get(f"{srv.base}/api/v2/members/me?{to_query(p)}") as r:
                    answers.append((r.status, await r.json()))
        for status, body in answers:
            assert status == 503 and body["error"]["code"] == 3009, body
            assert "sealed with another server key" in body["error"]["message"]
            assert "Traceback" not in str(body)
        lines = [r for r in caplog.records if "cannot be decrypted" in r.getMessage()]
        assert len(lines) == 1, [r.getMessage() for r in caplog.records]  # cached: not one line per request
        assert access in lines[0].getMessage() and lines[0].exc_info is None
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
        with pytest.raises(SecretUnreadable):
            await srv.keys.find(access)


async def test_the_first_key_a_store_sees_is_its_key(ex: Any) -> None:
    """Both backends: the fingerprint is written once; another key is refused, naming its source;
    a store from before the fingerprint is judged by a sealed secret."""
    good, bad = b"k" * 44, b"x" * 44
    await check_server_key(ex.store, good, "the key file a.key")
    await check_server_key(ex.store, good, "the key file a.key")
    with pytest.raises(ConfigError, match="from the key file b.key is not this exchange's"):
        await check_server_key(ex.store, bad, "the key file b.key")
    # before the fingerprint: a TOTP secret sealed with the good key tells
    await ex.store.execute("DELETE FROM cluster_info WHERE name = 'server_key_check'")
    mid = await ex.create_member("t@example.com")
    await Totp(ex.store, SecretBox(good, "totp-secret"), b"pepper").pending_secret(mid)
    with pytest.raises(ConfigError, match="do not open"):
        await check_server_key(ex.store, bad, "EXCHANGE_SECRET_KEY")
    assert await ex.store.fetchval("SELECT value FROM cluster_info WHERE name = 'server_key_check'") is None
    # a stray key that sealed one secret once does not become the exchange's key: most must open
    await ApiKeys(ex.store, SecretBox(bad, "api-secret")).create(mid)
    await ApiKeys(ex.store, SecretBox(good, "api-secret")).create(mid)
    await ApiKeys(ex.store, SecretBox(good, "api-secret")).create(mid)
    with pytest.raises(ConfigError, match="do not open"):
        await check_server_key(ex.store, bad, "EXCHANGE_SECRET_KEY")
    await check_server_key(ex.store, good, "EXCHANGE_SECRET_KEY")
    with pytest.raises(ConfigError, match="fingerprint differs"):
        await check_server_key(ex.store, bad, "EXCHANGE_SECRET_KEY")


def serve_exit(config: Path, key_file: Path, port: int) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "node", "--config", str(config), "--key-file", str(key_file), "serve",
           "--port", str(port)]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60, env=_env())


async def test_a_node_started_with_another_key_refuses_naming_it(tmp_path: Path, free_port: int) -> None:
    db = tmp_path / "exchange.db"
    config = write_config(tmp_path, f"sqlite:///{db}", free_port)
    right, wrong = tmp_path / "secret.key", tmp_path / "other.key"
    cli(config, "member", "create", "cli@example.com")
    cli(config, "apikey", "create", "cli@example.com", key_file=right)  # the store learns its key
    out = serve_exit(config, wrong, free_port)
    assert out.returncode == 2, out.stderr
    assert f"server key from the key file {wrong} is not this exchange's" in out.stderr
    assert "Traceback" not in out.stderr
    with pytest.raises(RuntimeError, match="is not this exchange's"):  # commands that use the key too
        cli(config, "apikey", "create", "cli@example.com", key_file=wrong)
    # a database from before the fingerprint: its sealed API secret tells
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM cluster_info WHERE name = 'server_key_check'")
    out = serve_exit(config, wrong, free_port)
    assert out.returncode == 2 and "most secrets sealed in the database do not open with it" in out.stderr
    node = NodeProcess(config, free_port, right, tmp_path / "node.log")
    await node.start()
    node.terminate()


async def test_the_websocket_says_3009_too(tmp_path: Path) -> None:
    from node.bootstrap import start_exchange
    from tests.conftest import config_with
    from tests.wsclient import serve

    ex = await start_exchange(config_with(f"sqlite:///{tmp_path}/exchange.db"))
    try:
        async with serve(ex, tmp_path) as node:
            mid = await ex.create_member("w@example.com")
            access, secret = await ApiKeys(ex.store, SecretBox(b"another-server-key", "api-secret")).create(mid)
            c = await node.connect()
            answer = await c.auth(access, secret)
            assert answer["error"]["code"] == 3009, answer
            await c.ws.close()
    finally:
        await ex.stop()
