"""The trader's pages in a real headless Chromium against a real node process and a real SMTP server.

One story, as a person would live it: sign up, read the activation mail from a local SMTP server
(aiosmtpd), activate, log in, get funds from the admin CLI, try bad orders, place a limit order and
see it in the book, have a second member fill it through the API, see the trade and the new
balances arrive without reloading, cancel the rest, check a form without its CSRF token is refused,
switch to Chinese; on the way: the market page fits 1366×768, fill toasts, the depth chart and book
grouping, the bank withdrawal form and its states in words, mails and toasts for money events, the
CSV exports, the light theme, search and favourites, phone tabs, and axe-core on every page (no
serious or critical violation). Mailed links must work without `[mail] base_url` (cluster.toml
names another port than the node serves on). Screenshots at 1366×768 and 390×844 go to
`test-output/screenshots/` for a person to look at.

Chromium is Debian's package (`scripts/test.sh` installs it); Playwright only drives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.apiclient import ApiClient
from tests.browser_support import (
    PASSWORD,
    SHOTS,
    WAIT_MS,
    Inbox,
    accessibility,
    chromium,
    mailing_node,
    smtp_server,
)
from tests.nodeproc import NodeProcess, cli

pytestmark = pytest.mark.slow


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    with smtp_server() as box:
        yield box


@pytest.fixture
def wallets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, dict[str, Any]]]:
    """USD through the wallet module's bank channel; BTC through a regtest bitcoind when one can be
    had (then the funds page shows a real deposit address and its QR code), else without a wallet."""
    from tests.regtest import coin_wallet, network, set_credentials
    from tests.test_wallet import BANK

    tables: dict[str, dict[str, Any]] = {"usd": dict(BANK)}
    with contextlib.ExitStack() as stack:
        try:
            net = stack.enter_context(network(tmp_path / "regtest"))
            daemon = net.node("wallet")
            set_credentials(monkeypatch)
            tables["btc"] = coin_wallet(daemon, poll_interval_ms=2000)
        except (pytest.skip.Exception, pytest.fail.Exception, OSError, RuntimeError) as e:
            print(f"no regtest bitcoind ({e}): BTC runs without a wallet in this test")
        yield tables


@pytest.fixture
async def node(tmp_path: Path, smtp: tuple[Inbox, int], wallets: dict[str, dict[str, Any]]) -> AsyncIterator[NodeProcess]:
    from tests.regtest import toml_wallets

    async with mailing_node(tmp_path, smtp[1], toml_wallets(wallets), base_url=False) as proc:
        yield proc


async def make_maker(node: NodeProcess) -> ApiClient:
    """A member with an API key who rests a ladder of orders on both sides of 30000 USD."""
    who = "maker@example.com"
    await asyncio.to_thread(cli, node.config, "member", "create", who, key_file=node.key_file)
    await asyncio.to_thread(cli, node.config, "deposit", who, "btc", "10", key_file=node.key_file)
    await asyncio.to_thread(cli, node.config, "deposit", who, "usd", "300000", key_file=node.key_file)
    out = await asyncio.to_thread(cli, node.config, "apikey", "create", who, key_file=node.key_file)
    keys = dict(line.split("=", 1) for line in out.split())
    api = ApiClient(node.base, keys["access_key"], keys["secret_key"])
    for side, price, volume in [("sell", "30050", "0.35"), ("sell", "30120", "0.8"), ("sell", "30200", "1.2"),
                                ("sell", "30350", "0.5"), ("sell", "30500", "2.1"), ("sell", "30800", "0.9"),
                                ("buy", "29900", "0.4"), ("buy", "29820", "1.1"), ("buy", "29650", "0.6"),
                                ("buy", "29500", "2.5"), ("buy", "29300", "0.75")]:
        await api.post("/orders", market="btcusd", side=side, volume=volume, price=price)
    return api


async def session_socket(base: str, cookies: list[dict[str, Any]], origin: str) -> dict[str, Any]:
    """What `{"auth": "session"}` answers on a websocket carrying the browser's session cookie, opened
    by a page of `origin` (a browser sends the cookie along to any site's page that asks)."""
    jar = {c["name"]: c["value"] for c in cookies}
    async with aiohttp.ClientSession(cookies=jar) as s, s.ws_connect(base.replace("http", "ws", 1) + "/ws",
                                                                      headers={"Origin": origin}) as ws:
        assert "challenge" in await ws.receive_json(timeout=5)
        await ws.send_json({"auth": "session"})
        answer: dict[str, Any] = await ws.receive_json(timeout=5)
        if "success" in answer:
            await ws.send_json({"subscribe": {"channels": ["order", "notice"]}})
            answer["then"] = await ws.receive_json(timeout=5)
        return answer


async def test_a_trader_from_sign_up_to_a_filled_order(node: NodeProcess, smtp: tuple[Inbox, int],
                                                       wallets: dict[str, dict[str, Any]]) -> None:
    from playwright.async_api import expect

    inbox = smtp[0]
    base = node.base
    SHOTS.mkdir(parents=True, exist_ok=True)
    me = "trader@example.com"
    maker: ApiClient | None = None
    try:
        async with chromium() as browser:
            desk = await browser.new_context(viewport={"width": 1366, "height": 768}, locale="en-US")
            page = await desk.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            refused = re.compile(r"Failed to load resource: .* status of 40[03]")  # refused forms answer 400 / 403
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" and not refused.search(m.text) else None)
            page.on("dialog", lambda d: asyncio.ensure_future(d.accept()))

            # -- sign up: a bad form first, then a good one; the activation link comes by SMTP -------
            await page.goto(base + "/signup")
            await page.fill("#f-email", "trader@")
            await page.fill("#f-password", "short")
            await page.click("#signup-form button[type=submit]")
            await expect(page.locator("#f-email-error")).to_have_text("This is not a valid e-mail address")
            await expect(page.locator("#f-password-error")).to_have_text("The password is too short (at least 8 characters)")
            await expect(page.locator("#f-email")).to_have_value("trader@")
            await page.fill("#f-email", me)
            await page.fill("#f-password", PASSWORD)
            await page.fill("#f-password_confirmation", PASSWORD)
            await page.check("#f-terms")
            await page.click("#signup-form button[type=submit]")
            await expect(page.locator("h1")).to_have_text("Check your mail")
            link = await inbox.link(me, "/activate/")
            assert link.startswith(base + "/"), f"{link}: not the address the node serves on"
            assert "[mail] base_url is not set: mailed links point to " + base in node.log.read_text()
            await page.goto(link)
            await expect(page.locator(".flashes")).to_contain_text("Your account is active")

            # -- log in ------------------------------------------------------------------------------------------
            await page.fill("#f-email", me)
            await page.fill("#f-password", "not the password")
            await page.click("#login-form button[type=submit]")
            await expect(page.locator(".form-error")).to_have_text("Wrong e-mail address or password")
            await page.fill("#f-password", PASSWORD)
            await page.click("#login-form button[type=submit]")
            await expect(page.locator(".flashes")).to_contain_text(f"Welcome back, {me}")
            assert page.url.endswith("/funds")
            # the pages' websocket rides on the session, from this site's pages only (no cross-site hijacking)
            cookies = await desk.cookies()
            evil = await session_socket(base, cookies, "http://evil.example")
            assert evil == {"error": {"message": "No page session here: log in, or authenticate with an API key."}}, evil
            assert "error" in await session_socket(base, [], base)  # no cookie: no member
            own = await session_socket(base, cookies, base)
            assert own["success"] and own["then"] == {"subscribed": {"market": None, "channels": ["order", "notice"]}}, own
            await expect(page.locator("body")).to_have_attribute("data-member-feed", "socket")

            # -- funds from the admin CLI (a deposit with a ledger entry) -------------------------------------------
            await asyncio.to_thread(cli, node.config, "deposit", me, "usd", "100000", key_file=node.key_file)
            await asyncio.to_thread(cli, node.config, "deposit", me, "btc", "1", key_file=node.key_file)
            # a second member, trading through the API, makes a market (so that the book looks like one)
            maker = await make_maker(node)
            polled: list[str] = []  # while the member's socket is up, nothing of the member's is polled
            page.on("request", lambda r: polled.append(r.url) if "/notices.json?" in r.url else None)
            await page.goto(base + "/markets/btcusd")
            await expect(page.locator("#market")).to_have_attribute("data-feed", "socket")  # live through /ws
            await expect(page.locator("body")).to_have_attribute("data-member-feed", "socket")
            await expect(page.locator("#bal-usd-available")).to_have_text("100000.00")
            await expect(page.locator("#bal-btc-available")).to_have_text("1.00000000")

            # -- bad orders: a clear message next to the field, and nothing changes ----------------------------
            await page.fill("#f-price", "30000")
            await page.fill("#f-volume", "0.00001")
            await page.click("#order-submit")
            await expect(page.locator("#field-volume .field-error")).to_have_text("At most 4 decimal places")
            await page.fill("#f-volume", "10")
            await page.click("#order-submit")
            await expect(page.locator("#field-volume .field-error")).to_have_text(
                "Insufficient balance: this order needs 300000.00 USD, you have 100000.00 USD available")
            await expect(page.locator("#open-orders tr")).to_have_count(0)

            # -- a limit order: total and fee before submitting, then in the book and in my orders --------------
            await page.evaluate("window.__sameDocument = true")
            await page.fill("#f-volume", "0.5")
            await expect(page.locator("#of-total")).to_have_text("15000.00")
            await expect(page.locator("#of-fee")).to_have_text("0.00050000 (maker)")  # rests below the asks: 0.1 %
            await page.click("#order-submit")
            await expect(page.locator("#order-status")).to_have_text("Order placed")
            await expect(page.locator("#bids tr[data-price='30000.00'] td").nth(1)).to_have_text("0.5000", timeout=WAIT_MS)
            await expect(page.locator("#open-orders tr")).to_have_count(1)
            await expect(page.locator("#bal-usd-locked")).to_have_text("15000.00")

            # -- the second member sells into it through the API ------------------------------------------------------
            await maker.post("/orders", market="btcusd", side="sell", volume="0.2", price="30000")

            # -- the trade, a toast and the new balances arrive without a reload ---------------------------------------------
            await expect(page.locator("#trades tr").first.locator("td").first).to_have_text("30000.00", timeout=WAIT_MS)
            await expect(page.locator(".toast").filter(has_text="order partly filled: 0.2000 BTC at 30000.00")).to_have_count(
                1, timeout=WAIT_MS)
            await expect(page.locator("#bal-btc-available")).to_have_text("1.19980000", timeout=WAIT_MS)  # less 0.1 % fee
            await expect(page.locator("#bal-usd-locked")).to_have_text("9000.00")
            await expect(page.locator("#bids tr[data-price='30000.00'] td").nth(1)).to_have_text("0.3000", timeout=WAIT_MS)
            await page.click(".tabbar [data-tab=mytrades]")
            await expect(page.locator("#my-trades tr").first).to_contain_text("30000.00")
            await expect(page.locator("#my-trades tr").first).to_contain_text("0.2000")
            await page.click(".tabbar [data-tab=open]")
            await expect(page.locator("#open-orders tr").first).to_contain_text("0.2000")  # filled so far
            assert await page.evaluate("window.__sameDocument === true"), "the page was reloaded"
            mine = await page.evaluate("performance.getEntriesByType('resource').filter(e => e.name.includes('/me.json')).length")
            assert mine <= 8, f"{mine} requests of /me.json: polled although the socket is up"
            # a credited deposit: its notice is pushed over the member's socket, in the page's language
            await asyncio.to_thread(cli, node.config, "deposit", me, "ltc", "3", key_file=node.key_file)
            await expect(page.locator(".toast").filter(has_text=re.compile(r"Deposit of 3(\.0+)? LTC credited"))).to_have_count(
                1, timeout=WAIT_MS)
            assert not polled, polled

            # -- cancel the rest ------------------------------------------------------------------------------------------
            await page.click("#open-orders .cancel-form button")
            await expect(page.locator("#open-orders tr")).to_have_count(0, timeout=WAIT_MS)
            await expect(page.locator("#bal-usd-locked")).to_have_text("0.00")
            await expect(page.locator("#bal-usd-available")).to_have_text("94000.00")
            await expect(page.locator("#bids tr[data-price='30000.00']")).to_have_count(0, timeout=WAIT_MS)
            await page.click(".tabbar [data-tab=history]")
            await expect(page.locator("#order-history tr").first).to_contain_text("cancel")

            # -- a market order takes the best ask; a new limit order rests ------------------------------------------
            await page.click("label[for=type-market]")
            await expect(page.locator("#f-price")).to_be_hidden()
            await page.fill("#f-volume", "0.05")
            await expect(page.locator("#of-total")).to_have_text("≈ 1502.50")
            await expect(page.locator("#of-fee")).to_have_text("0.00010000 (taker)")
            await page.click("#order-submit")
            await expect(page.locator("#bal-btc-available")).to_have_text("1.24970000", timeout=WAIT_MS)  # less 0.2 %
            await expect(page.locator("#bal-usd-available")).to_have_text("92497.50", timeout=WAIT_MS)
            await expect(page.locator("#trades tr").first.locator("td").first).to_have_text("30050.00", timeout=WAIT_MS)
            await page.click("label[for=type-limit]")
            await page.fill("#f-price", "29950")
            await page.fill("#f-volume", "0.25")
            await page.click("#order-submit")
            await page.click(".tabbar [data-tab=open]")
            await expect(page.locator("#open-orders tr")).to_have_count(1, timeout=WAIT_MS)
            await expect(page.locator("#bal-usd-locked")).to_have_text("7487.50")
            await expect(page.locator("#bids tr[data-price='29950.00']")).to_have_count(1, timeout=WAIT_MS)
            await expect(page.locator("#tk-high")).to_have_text("30050.00", timeout=WAIT_MS)
            assert await page.evaluate("window.__sameDocument === true"), "the page was reloaded"
            await page.fill("#f-volume", "0.1")
            # -- at 1366×768 the book, the chart, the form and my open orders are all on the screen ----------------
            assert await page.evaluate("document.documentElement.scrollHeight <= window.innerHeight + 70")  # the footer
            for sel in (".book-panel", ".chart-panel", "#order-submit", "#open-orders tr"):
                box = await page.locator(sel).first.bounding_box()
                assert box is not None and box["y"] >= 0 and box["y"] + box["height"] <= 768, (sel, box)
            assert await page.locator(".trades-box").evaluate("e => getComputedStyle(e).overflowY") == "auto"
            await page.click("[data-view=depth]")
            await expect(page.locator("#depth-chart")).to_be_visible()
            await page.screenshot(path=str(SHOTS / "market-depth-1366x768.png"))
            await page.click("[data-view=candles]")
            await page.select_option("#book-group", "100")  # 1.00 USD steps
            await expect(page.locator("#bids tr[data-price='29950.00']")).to_have_count(1)
            await page.select_option("#book-group", "1")
            await page.focus("#asks tr[data-price='30120.00']")
            await page.keyboard.press("Enter")  # a book row by keyboard takes its price
            await expect(page.locator("#f-price")).to_have_value("30120.00")
            await page.click("label[for=type-stop]")
            await expect(page.locator("#f-stop_price")).to_be_visible()
            await page.click("label[for=type-limit]")
            await page.fill("#f-price", "29950")
            await accessibility(page, "market page")
            await page.mouse.move(700, 330)  # the chart's crosshair
            await page.screenshot(path=str(SHOTS / "market-1366x768.png"))

            # -- every market's orders, and the exports -----------------------------------------------------------
            await page.goto(base + "/orders?state=all")
            await expect(page.locator("#orders-table tbody tr")).to_have_count(3)
            await accessibility(page, "all orders")
            trades_csv = await page.request.get(base + "/orders/trades.csv")
            text = await trades_csv.text()
            assert trades_csv.status == 200 and text.splitlines()[0].startswith("id,created_at,market,side,price")
            assert ",btcusd,buy,30000.00,0.2000,6000.000000,0.00020000,btc,maker," in text
            ledger_csv = await (await page.request.get(base + "/orders/ledger.csv?currency=usd")).text()
            assert "strike_sub" in ledger_csv and "100000.000000" in ledger_csv
            await page.screenshot(path=str(SHOTS / "orders-1366x768.png"))

            # -- funds: a bank withdrawal (bad input first), the ledger, the deposit address --------------------------
            await page.goto(base + "/funds?currency=usd")
            await expect(page.locator("#deposit")).to_contain_text("First Test Bank")
            await expect(page.locator("#deposit-address")).to_have_text(re.compile(r"^PX[A-Z0-9]+$"))
            await expect(page.locator("#f-address")).to_have_count(0)  # a bank account, not a coin address
            for fields, field, message in [
                ({"account_holder": "", "account_number": "GB29 NWBK 6016 1331 9268 19", "amount": "100"}, "account_holder",
                 "This field is required"),
                ({"account_holder": "T. Rader", "account_number": "GB29 NWBK 6016 1331 9268 18", "amount": "100"},
                 "account_number", "This IBAN is not valid: please check it (its check digits do not match)"),
                ({"account_holder": "T. Rader", "account_number": "GB29 NWBK 6016 1331 9268 19", "amount": "1.0000001"},
                 "amount", "At most 6 decimal places"),
                ({"account_holder": "T. Rader", "account_number": "GB29 NWBK 6016 1331 9268 19", "amount": "5"}, "amount",
                 "amount is below the minimum withdrawal of 10.0 USD"),
            ]:
                for k, v in fields.items():
                    await page.fill(f"#f-{k}", v)
                await page.click("#withdraw-form button[type=submit]")
                await expect(page.locator(f"#f-{field}-error")).to_have_text(message)
                await expect(page.locator("#f-amount")).to_have_value(fields["amount"])
            await page.fill("#f-account_number", "GB29 NWBK 6016 1331 9268 19")
            await page.fill("#f-amount", "100000")
            await page.click("#withdraw-form button[type=submit]")
            await expect(page.locator(".form-error")).to_contain_text("balance too low")
            await page.fill("#f-amount", "250")
            await page.click("#withdraw-form button[type=submit]")
            await expect(page.locator(".flashes")).to_contain_text("requested: waiting for your confirmation by the link")
            await expect(page.locator("#withdraws tbody tr")).to_have_count(1)
            await expect(page.locator("#withdraws tbody tr").first).to_contain_text("Waiting")
            await expect(page.locator("#withdraws tbody tr").first).to_contain_text("new address on hold until")
            await expect(page.locator("#balances tr[data-currency=usd] [data-k=available]")).to_have_text("84758.00")
            confirm = await inbox.link(me, "/withdraws/confirm/")
            assert confirm.startswith(base + "/")
            await accessibility(page, "funds")
            await page.click("#withdraws form button")
            await expect(page.locator(".flashes")).to_contain_text("Withdrawal cancelled")
            assert not polled, polled
            await expect(page.locator("#withdraws tbody tr").first).to_contain_text("Reason: canceled by the member")
            await expect(page.locator("#balances tr[data-currency=usd] [data-k=available]")).to_have_text("85010.00")
            await expect(page.locator("body")).to_have_attribute("data-member-feed", "socket")
            await asyncio.sleep(3)  # the reads when it came up, and the one for the cancel's notice, are over
            balance_reads: list[str] = []
            page.on("request", lambda r: balance_reads.append(r.url) if "/funds/balances.json" in r.url else None)
            await asyncio.sleep(3.5)  # no polling while the socket is up
            assert not balance_reads, balance_reads
            await asyncio.to_thread(cli, node.config, "deposit", me, "usd", "5", key_file=node.key_file)
            await expect(page.locator("#balances tr[data-currency=usd] [data-k=available]")).to_have_text(
                "85015.00", timeout=WAIT_MS)  # the deposit's notice, pushed, refreshes the balances
            body = await inbox.mail(me, "cancelled")
            assert "canceled by the member" in body
            await page.goto(base + "/funds?currency=btc")
            await expect(page.locator("#balances tr[data-currency=btc] [data-k=available]")).to_have_text("1.24970000")
            await expect(page.locator("#ledger tbody tr")).to_have_count(3)  # the deposit and two trades
            await expect(page.locator("#ledger")).to_contain_text("Trade: received")
            if "btc" in wallets:
                await expect(page.locator("#deposit-qr")).to_be_visible()
                assert len(await page.locator("#deposit-address").inner_text()) >= 26
            await page.screenshot(path=str(SHOTS / "funds-1366x768.png"))
            await page.screenshot(path=str(SHOTS / "funds-1366-full.png"), full_page=True)
            # -- the light theme ---------------------------------------------------------------------------------------
            await page.click("#theme-toggle")
            await expect(page.locator("html")).to_have_attribute("data-theme", "light")
            await accessibility(page, "funds, light theme")
            await page.goto(base + "/markets/btcusd")
            await accessibility(page, "market page, light theme")
            await page.screenshot(path=str(SHOTS / "market-light-1366x768.png"))
            await page.goto(base + "/")
            await page.fill("#market-search", "ltc")
            await expect(page.locator("#markets tr[data-market=btcusd]")).to_be_hidden()
            await page.fill("#market-search", "")
            await page.click("#markets tr[data-market=ltcbtc] .fav")
            await page.click("[data-filter=fav]")
            await expect(page.locator("#markets tbody tr:visible")).to_have_count(1)
            await accessibility(page, "home, light theme")
            await page.click("#theme-toggle")
            await expect(page.locator("html")).to_have_attribute("data-theme", "dark")
            for path in ("/", "/account", "/api_keys", "/solvency", "/kyc", "/support/tickets", "/security"):
                await page.goto(base + path)
                await accessibility(page, path)

            # -- a form without its CSRF token is refused and changes nothing ----------------------------------------
            await page.goto(base + "/api_keys")
            await page.fill("#f-label", "bot")
            await page.evaluate("document.querySelector('#key-form input[name=csrf_token]').remove()")
            await page.click("#key-form button[type=submit]")
            await expect(page.locator("h1")).to_have_text("This form has expired")
            await page.goto(base + "/api_keys")
            await expect(page.locator("#keys")).to_have_count(0)

            # -- the phone -------------------------------------------------------------------------------------------------
            phone = await browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2,
                                              is_mobile=True, has_touch=True, storage_state=await desk.storage_state())
            async def refuse(ws: Any) -> None:  # the websocket cannot be had on this phone: everything is polled
                await ws.close()

            await phone.route_web_socket(re.compile(r"/ws$"), refuse)
            mobile = await phone.new_page()
            await mobile.goto(base + "/markets/btcusd?feed=poll")  # the REST fallback keeps the page live too
            await expect(mobile.locator("#market")).to_have_attribute("data-feed", "poll")
            await expect(mobile.locator(".chart-panel")).to_be_visible()
            await expect(mobile.locator(".book-panel")).to_be_hidden()
            await mobile.click("#ptab-book")
            await expect(mobile.locator("#bids tr[data-price='29950.00']")).to_have_count(1)
            await mobile.screenshot(path=str(SHOTS / "market-390-book.png"))
            await mobile.click("#ptab-mine")
            await expect(mobile.locator("#open-orders tr")).to_have_count(1)
            await mobile.screenshot(path=str(SHOTS / "market-390-orders.png"))
            await accessibility(mobile, "market page on a phone")
            await expect(mobile.locator("#bal-btc-available")).to_have_text("1.24970000")
            await expect(mobile.locator("body")).to_have_attribute("data-member-feed", "poll")
            await asyncio.to_thread(cli, node.config, "deposit", me, "ltc", "1", key_file=node.key_file)
            await expect(mobile.locator(".toast").filter(has_text=re.compile(r"Deposit of 1(\.0+)? LTC credited"))).to_have_count(
                1, timeout=WAIT_MS)  # the notices, polled while the socket is down
            width = await mobile.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, f"the market page is {width}px wide on a 390px phone"
            await mobile.screenshot(path=str(SHOTS / "market-390x844.png"))
            await mobile.screenshot(path=str(SHOTS / "market-390-full.png"), full_page=True)
            for path in ("/", "/account", "/orders", "/solvency"):
                await mobile.goto(base + path)
                width = await mobile.evaluate("document.documentElement.scrollWidth")
                assert width <= 390, f"{path} is {width}px wide on a 390px phone"
                widest = await mobile.evaluate("Math.max(...Array.from(document.querySelectorAll('main *'))"
                                               ".filter(e => e.offsetParent !== null && !e.closest('.table-wrap'))"
                                               ".map(e => e.getBoundingClientRect().right))")
                assert widest <= 391, f"{path}: something reaches {widest}px on a 390px phone"
                await mobile.screenshot(path=str(SHOTS / f"phone{path.replace('/', '-') or '-home'}-390x844.png"), full_page=True)
            await mobile.goto(base + "/")
            for b in await mobile.locator("#markets tbody tr:visible a.btn, #markets tbody tr:visible button.trade").all():
                box = await b.bounding_box()
                assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390, box  # whole Trade buttons
            await mobile.goto(base + "/funds?currency=btc")
            assert await mobile.evaluate("document.documentElement.scrollWidth") <= 390
            await mobile.screenshot(path=str(SHOTS / "funds-390x844.png"))
            await mobile.screenshot(path=str(SHOTS / "funds-390-full.png"), full_page=True)

            # -- switch language ----------------------------------------------------------------------------------------
            await page.goto(base + "/markets/btcusd")
            await page.click("a[data-lang='zh-CN']")
            await expect(page.locator("html")).to_have_attribute("lang", "zh-Hans")
            await expect(page.locator(".book-panel h2")).to_have_text("盘口")
            await expect(page.locator("#order-submit .for-buy")).to_have_text("买入 BTC")
            await page.fill("#f-price", "30000")
            await page.fill("#f-volume", "abc")
            await page.click("#order-submit")
            await expect(page.locator("#field-volume .field-error")).to_have_text(
                "请输入正数，例如 12.5（只能包含数字和一个小数点）")
            await page.fill("#f-volume", "")
            await page.screenshot(path=str(SHOTS / "market-zh-1366x768.png"))
            await page.goto(base + "/funds")
            await expect(page.locator("h1")).to_have_text("资产")
            await page.screenshot(path=str(SHOTS / "funds-zh-1366x768.png"))
            await page.goto(base + "/solvency")  # translated, and its button is one of ours
            await expect(page.locator("h1")).to_have_text("偿付能力证明")
            await expect(page.locator("#verify-paste button[type=submit]")).to_have_text("核验")
            assert await page.locator("#verify-paste button[type=submit]").evaluate(
                "b => b.classList.contains('btn') && getComputedStyle(b).borderRadius !== '0px'")
            await page.screenshot(path=str(SHOTS / "solvency-zh-1366x768.png"))
            await page.goto(base + "/funds")
            await page.click("a[data-lang='en']")
            await expect(page.locator("h1")).to_have_text("Funds")
            assert not errors, errors
    finally:
        if maker is not None:
            await maker.close()
