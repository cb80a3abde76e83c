"""The verify buttons in a real browser (headless Chromium driven by Playwright).

The member page checks the member's embedded proofs against the roots the public API publishes;
the public page checks whatever root and proof a visitor pastes. Both under the pages' strict
Content-Security-Policy, with SHA-256 from the browser's own crypto.subtle. Skips where Playwright
or a Chromium binary is not installed (the verifier's logic is also run under Node.js by
test_solvency_snapshot_js.py).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from node.bootstrap import start_exchange, web_app
from node.web.api.solvency import service
from tests.conftest import config_with
from tests.test_solvency_snapshot import as_member

pytestmark = pytest.mark.slow


def chromium() -> str:
    for candidate in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser"), shutil.which("google-chrome")):
        if candidate and Path(candidate).exists():
            return candidate
    pytest.skip("no Chromium binary installed (apt-get install chromium)")


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    pw_api = pytest.importorskip("playwright.async_api", reason="Playwright is not installed")
    path = chromium()
    async with pw_api.async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=path, args=["--no-sandbox", "--disable-gpu"])
        try:
            yield b
        finally:
            await b.close()


async def test_verify_buttons_in_the_browser(browser: Any, tmp_path: Path) -> None:
    ex = await start_exchange(config_with(f"sqlite:///{tmp_path}/x.db"))
    app = web_app(ex, key_file=tmp_path / "secret.key")
    app.middlewares.append(as_member)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    base = f"http://127.0.0.1:{server.port}"
    try:
        alice = await ex.create_member("alice@example.com")
        for i in range(6):
            await ex.deposit(await ex.create_member(f"m{i}@example.com"), "btc", f"{i + 1}.5")
        await ex.deposit(alice, "btc", "1.25")
        await ex.deposit(alice, "usd", "300")
        svc = service(app)
        await svc.take_snapshot(assets=False)
        errors: list[str] = []

        # the member page: both schemes, both currencies, against the public roots
        page = await browser.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        await page.set_extra_http_headers({"X-Test-Member": str(alice)})
        await page.goto(base + "/solvency/me")
        for code in ("btc", "usd"):
            section = page.locator(f"#proof-{code}")
            await section.locator("button.verify-member").click()
            out = section.locator("output.verify-result")
            await out.filter(has_text="✓").wait_for(timeout=10_000)
            text = await out.inner_text()
            assert text.count("✓") == 2 and "✗" not in text and "could not be fetched" not in text, text
            assert await out.get_attribute("data-ok") == "true"
        assert "alice@example.com holds 1.25 BTC" in await page.locator("#proof-btc output").inner_text()

        # the public page: paste a root and a proof, then a tampered proof
        proof = await svc.proof(alice, "btc")
        page2 = await browser.new_page()
        page2.on("pageerror", lambda e: errors.append(str(e)))
        await page2.goto(base + "/solvency")
        form = page2.locator("#verify-paste")
        await form.locator("textarea[name=root]").fill(json.dumps(proof["v2_root"]))
        await form.locator("textarea[name=proof]").fill(json.dumps(proof["v2"]))
        await form.locator("input[name=user]").fill("alice@example.com")
        await form.locator("input[name=balance]").fill("1.25")
        await form.locator("button[type=submit]").click()
        out = page2.locator("#verify-result")
        await out.filter(has_text="✓").wait_for(timeout=10_000)
        assert "1.25" in await out.inner_text()
        lowered = json.loads(json.dumps(proof["v2"]))
        lowered["path"][-1]["value"] = "0"  # the split-sum trick: a lower sibling value
        await form.locator("textarea[name=proof]").fill(json.dumps(lowered))
        await form.locator("button[type=submit]").click()
        await out.filter(has_text="✗").wait_for(timeout=10_000)
        await form.locator("textarea[name=root]").fill(json.dumps(proof["maxwell_root"]))
        await form.locator("textarea[name=proof]").fill(json.dumps(proof["maxwell"]))
        await form.locator("input[name=user]").fill("")
        await form.locator("input[name=balance]").fill("")
        await form.locator("button[type=submit]").click()
        await out.filter(has_text="Peatio tree: alice@example.com").wait_for(timeout=10_000)
        assert errors == []
    finally:
        await server.close()
        await ex.stop()
