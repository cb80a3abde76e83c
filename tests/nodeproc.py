"""Run exchange nodes as real processes for tests: start, wait until they answer, kill -9."""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]


def free_ports(n: int) -> list[int]:
    """n ports that nothing listens on now, taken below the kernel's ephemeral range: a port the OS
    picked (bind to 0) and released can be handed out again, before the node binds it, to a proxy
    or to an outgoing connection (seen: "the port is in use" at a node's start); ports below that
    range are never handed out by the OS."""
    import random
    import socket

    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 0
    ports: list[int] = []
    if low > 11_000:
        rng = random.Random()
        while len(ports) < n:
            port = rng.randrange(10_000, low)
            if port in ports:
                continue
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
            ports.append(port)
        return ports
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def write_config(tmp: Path, database: str, port: int, extra: str = "") -> Path:
    """The default cluster.toml with this test's database and port."""
    text = (ROOT / "cluster.toml").read_text()
    text = text.replace('database = "sqlite:///var/exchange.db"', f'database = "{database}"')
    text = text.replace("port = 8080", f"port = {port}")
    path = tmp / "cluster.toml"
    path.write_text(text + extra)
    return path


def cli(config: Path, *args: str, key_file: Path | None = None) -> str:
    """Run `python -m node …` to completion and return what it printed."""
    cmd = [sys.executable, "-m", "node", "--config", str(config)]
    if key_file is not None:
        cmd += ["--key-file", str(key_file)]
    out = subprocess.run([*cmd, *args], cwd=ROOT, capture_output=True, text=True, timeout=60, env=_env())
    if out.returncode != 0:
        raise RuntimeError(f"{args} failed: {out.stderr[-2000:]}")
    return out.stdout


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


class NodeProcess:
    def __init__(self, config: Path, port: int, key_file: Path, log: Path, node: str | None = None,
                 env: dict[str, str] | None = None, nofile: int | None = None) -> None:
        """`env`: variables added to the child's environment; `nofile`: the child's file-descriptor
        limit (soft and hard), so a test does not depend on the machine's."""
        self.env = env or {}
        self.nofile = nofile
        self.config = config
        self.port = port
        self.key_file = key_file
        self.log = log
        self.node = node
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def spawn(self) -> None:
        """Start the process (without waiting for it to answer)."""
        cmd = [sys.executable, "-m", "node", "--config", str(self.config), "--key-file", str(self.key_file)]
        if self.node:
            cmd += ["--node", self.node]
        cmd += ["serve", "--port", str(self.port)]
        logf = open(self.log, "ab")  # handed to the child, closed here once it has its own copy
        nofile = self.nofile

        def limits() -> None:  # in the child, before it runs python
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=logf, stderr=subprocess.STDOUT, env={**_env(), **self.env},
                                     preexec_fn=limits if nofile is not None else None)
        logf.close()

    async def start(self, timeout: float = 30) -> None:
        """Start the process and wait until its API answers."""
        self.spawn()
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as s:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"node exited with {self.proc.returncode}: {self.log.read_text()[-3000:]}")
                try:
                    async with s.get(self.base + "/api/v2/timestamp") as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError(f"node did not come up: {self.log.read_text()[-3000:]}")

    def pause(self) -> None:
        """SIGSTOP: the process keeps its sockets but does nothing, as in a long GC or VM pause."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind, like a power cut of the process."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def terminate(self) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode
