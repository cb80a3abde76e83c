"""What the browser tests share: Debian's Chromium launched through Playwright, a local SMTP server
(aiosmtpd) that keeps the mail, and a real node process that sends its mail there. Kept here so the
trader's story (test_browser.py) and the admin stories (test_admin_browser.py) start the same way."""

from __future__ import annotations

import asyncio
import email
import email.policy
import os
import re
import shutil
import socket
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REQUIRE_SERVICES
from tests.nodeproc import NodeProcess, write_config

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "test-output" / "screenshots"
PASSWORD = "correct horse battery"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-dev-shm-usage"]
WAIT_MS = 15_000


def chromium_path() -> str:
    for candidate in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).exists():
            return candidate
    msg = "no Chromium binary (apt-get install chromium; scripts/test.sh does it)"
    if REQUIRE_SERVICES:
        pytest.fail(msg)
    pytest.skip(msg)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Inbox:
    """aiosmtpd handler: keeps every message the exchange sends."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append(msg)  # type: ignore[arg-type]
        return "250 Message accepted for delivery"

    async def link(self, to: str, path: str, timeout: float = 15) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for msg in reversed(self.messages):
                if msg["To"] == to:
                    body = msg.get_body(preferencelist=("plain",))
                    assert body is not None
                    m = re.search(rf"http://\S+{path}\S+", body.get_content())
                    if m:
                        return m.group(0)
            await asyncio.sleep(0.1)
        raise AssertionError(f"no mail with {path} for {to}: {[m['Subject'] for m in self.messages]}")

    async def mail(self, to: str, subject: str, timeout: float = 20) -> str:
        """The body of the newest mail to `to` whose subject contains `subject`, waiting for it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for msg in reversed(self.messages):
                if msg["To"] == to and subject in str(msg["Subject"]):
                    body = msg.get_body(preferencelist=("plain",))
                    assert body is not None
                    return str(body.get_content())
            await asyncio.sleep(0.2)
        raise AssertionError(f"no mail '{subject}' for {to}: {[m['Subject'] for m in self.messages]}")


@contextmanager
def smtp_server() -> Iterator[tuple[Inbox, int]]:
    """A local SMTP server on a free port, running until the block ends; its inbox and port."""
    from aiosmtpd.controller import Controller

    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


@asynccontextmanager
async def mailing_node(tmp_path: Path, smtp_port: int, extra: str = "", base_url: bool = True) -> AsyncIterator[NodeProcess]:
    """A node process on a free port with its own SQLite database, sending mail (whose links point
    back at it) to the SMTP server on `smtp_port`; `extra` is appended to its cluster.toml. Without
    `base_url`, cluster.toml names another port than the one the node is started on (`serve --port`):
    the mailed links must still work."""
    port = free_port()
    mail = (f'\n[mail]\nhost = "127.0.0.1"\nport = {smtp_port}\nsender = "PyExchange <no-reply@exchange.test>"\n'
            + (f'base_url = "http://127.0.0.1:{port}"\n' if base_url else ""))
    config = write_config(tmp_path, f"sqlite:///{tmp_path}/exchange.db", port if base_url else free_port(), mail + extra)
    proc = NodeProcess(config, port, tmp_path / "secret.key", tmp_path / "node.log")
    await proc.start()
    try:
        yield proc
    finally:
        proc.terminate()


AXE = ROOT / "tests" / "vendor" / "axe-core" / "axe.min.js"


async def accessibility(page: Any, where: str = "") -> None:
    """axe-core (vendored for the tests only) on the page as it is now: no serious or critical
    violation. Run through the DevTools protocol, so the page's CSP needs no exception for it."""
    if not await page.evaluate("typeof window.axe !== 'undefined'"):
        await page.evaluate(AXE.read_text())
    result = await page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    bad = [f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']][:5]}"
           for v in result["violations"] if v["impact"] in ("serious", "critical")]
    assert not bad, f"accessibility of {where or page.url}: {bad}"


@asynccontextmanager
async def chromium() -> AsyncIterator[Any]:
    """Headless Chromium (Debian's binary, driven by Playwright), closed when the block ends."""
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium_path(), args=LAUNCH_ARGS)
        try:
            yield browser
        finally:
            await browser.close()
