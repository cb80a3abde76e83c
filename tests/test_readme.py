"""README's commands, run as a newcomer would: in a copy of the repository, a fresh venv, a real node.

The copy matters: a file that only exists beside the repository, or only in the developer's
editable install, would pass every other test and still fail a clone. The installed package is
also started from another directory, where only what was packaged (templates, static files, the
demo configuration) is there. Every step has a time limit, and each server is stopped with SIGINT,
as Ctrl-C would.
"""

from __future__ import annotations

import fcntl
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
INSTALL_TIMEOUT = 600  # a fresh venv with every dependency (wheels are cached after the first run)
COMMAND_TIMEOUT = 60
START_TIMEOUT = 60
NOT_COPIED = shutil.ignore_patterns(".git", ".venv", "var", "build", "*.egg-info", "__pycache__", ".*_cache",
                                    ".hypothesis", "test-output", "node_modules", "_bundled")

pytestmark = pytest.mark.slow


def readme_block(heading: str) -> list[str]:
    """The command lines of the first `sh` block under a README heading, comments dropped."""
    text = (ROOT / "README.md").read_text()
    section = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block is not None, f"README has no sh block under {heading!r}"
    lines = [line.split("  #", 1)[0].strip() for line in block.group(1).splitlines()]
    return [line for line in lines if line]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def env() -> dict[str, str]:
    """The caller's environment without what points the node elsewhere (configuration, database)."""
    out = {k: v for k, v in os.environ.items() if not k.startswith("EXCHANGE_") and k != "PYTHONPATH"}
    out["PYTHONUNBUFFERED"] = "1"
    return out


def run(command: str, cwd: Path, timeout: float = COMMAND_TIMEOUT) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(["bash", "-c", command], cwd=cwd, env=env(), capture_output=True, text=True,
                         timeout=timeout)
    assert out.returncode == 0, f"{command!r} exited {out.returncode}:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"
    return out


class Server:
    """A README serve command with `--port` added (8080 may be taken on a shared machine)."""

    def __init__(self, command: str, cwd: Path, port: int) -> None:
        self.port = port
        self.log = cwd / f"serve-{port}.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen([*shlex.split(command), "--port", str(port)], cwd=cwd, env=env(),
                                         stdout=log, stderr=subprocess.STDOUT,
                                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))

    def wait_serving(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"the node exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            if "serving http://" in self.log.read_text():
                return
            time.sleep(0.2)
        pytest.fail(f"the node did not start in {START_TIMEOUT} s:\n{self.log.read_text()[-3000:]}")

    def get(self, path: str) -> tuple[int, str]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as r:
            return r.status, r.read().decode()

    def interrupt(self) -> int:
        """Ctrl-C: the node drains and exits by itself."""
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout=COMMAND_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"the node did not stop on SIGINT:\n{self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def check_market_page(server: Server) -> None:
    status, html = server.get("/markets/btcusd")
    assert status == 200 and "BTC/USD" in html
    status, css = server.get("/static/style.css")
    assert status == 200 and css


def serve_market_page(command: str, cwd: Path) -> None:
    """Start the node, read the market page, stop it with Ctrl-C: it must exit cleanly."""
    server = Server(command, cwd, free_port())
    try:
        server.wait_serving()
        check_market_page(server)
        assert server.interrupt() == 0
    finally:
        server.kill()


def lock_is_free(workdir: Path) -> bool:
    with open(workdir / "var" / "exchange.db.lock", "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(f, fcntl.LOCK_UN)
        return True


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A copy of the repository with README's venv and install done (the first two commands)."""
    if shutil.which("python3") is None:
        pytest.skip("python3 is not on PATH")
    repo = tmp_path_factory.mktemp("clone") / "pyexchange"
    shutil.copytree(ROOT, repo, ignore=NOT_COPIED)
    steps = readme_block("Run the exchange")[0].split(" && ")
    assert steps[-1] == ".venv/bin/python -m node serve --demo", steps
    for step in steps[:-1]:
        run(step, repo, timeout=INSTALL_TIMEOUT)
    yield repo


def test_the_readme_demo_serves_the_market_page(installed: Path) -> None:
    serve_market_page(readme_block("Run the exchange")[0].split(" && ")[-1], installed)
    assert lock_is_free(installed)


def test_the_installed_package_serves_the_demo_from_another_directory(installed: Path, tmp_path: Path) -> None:
    python = installed / ".venv" / "bin" / "python"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    found = run(f"{python} -c 'import node; print(node.__file__)'", elsewhere).stdout
    assert "site-packages" in found  # the installed copy, not the source tree
    server = Server(f"{python} -m node serve --demo", elsewhere, free_port())
    try:
        server.wait_serving()
        check_market_page(server)

        # A busy port: one line, exit code 1, the database lock released.
        other = tmp_path / "other"
        other.mkdir()
        busy = subprocess.run([str(python), "-m", "node", "serve", "--demo", "--port", str(server.port)], cwd=other,
                              env=env(), capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
        assert busy.returncode == 1
        assert busy.stderr.strip().splitlines()[-1] == f"cannot serve on 127.0.0.1:{server.port}: the port is in use"
        assert "Traceback" not in busy.stdout + busy.stderr
        assert lock_is_free(other)
        assert server.interrupt() == 0
    finally:
        server.kill()

    # No configuration where it is asked for: a clear message instead of a guess.
    none = subprocess.run([str(python), "-m", "node", "audit"], cwd=elsewhere, env=env(), capture_output=True,
                          text=True, timeout=COMMAND_TIMEOUT)
    assert none.returncode == 2
    assert "--config" in none.stderr and "EXCHANGE_CONFIG" in none.stderr and "Traceback" not in none.stderr
    # ...and the configuration named through the environment is the one read.
    named = subprocess.run([str(python), "-m", "node", "audit"], cwd=elsewhere, capture_output=True, text=True,
                           timeout=COMMAND_TIMEOUT, env={**env(), "EXCHANGE_CONFIG": str(installed / "cluster.toml")})
    assert named.returncode == 0, named.stderr[-2000:]


def test_the_readme_operating_commands(installed: Path) -> None:
    """"Operating a node", line by line, in the copy; the last line runs the node of cluster.toml."""
    lines = readme_block("Operating a node")
    *commands, serve = lines
    assert serve.endswith(" serve"), serve
    for command in commands:
        run(command, installed)
    serve_market_page(serve, installed)
    # The admin commands that need nothing more than this (bank-deposit needs a bank wallet: tests/test_admin.py).
    grant, withdraws, bank_deposit = readme_block("Admin area, identity verification, support")
    assert "bank-deposit" in bank_deposit
    assert run(grant, installed).returncode == 0 and run(withdraws, installed).returncode == 0

