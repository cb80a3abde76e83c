"""The admin area and the member's KYC and ticket pages in a real headless Chromium, against a real node
process and a real SMTP server (aiosmtpd), as the people using them would:

1. a member sends identity documents (a wrong file first), an admin reviews and approves them, and the
   member's withdrawal limit rises: a withdrawal refused before is accepted after;
2. a member opens a ticket with HTML in it (shown as text, never run), support answers, the member
   gets the mail and sees the unread marker, reads the answer, and closes the ticket;
3. an admin halts a market: orders are refused with a clear error on the page and code 3002 in the
   API; after the resume they trade again.

Staff set up their authenticator app on the security page and unlock the admin area with a code of
it, like real staff. Screenshots go to `test-output/screenshots/admin-*.png`.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pyotp
import pytest

from tests.apiclient import ApiClient, ApiError
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
from tests.regtest import toml_wallets
from tests.test_admin_fixtures import BANK, PDF, PNG

pytestmark = pytest.mark.slow
BOSS = "boss@example.com"
REFUSED = re.compile(r"status of 4(00|03)\b")  # a form sent back with its errors answers 400: by design


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, int]]:
    with smtp_server() as box:
        yield box


@pytest.fixture
async def node(tmp_path: Path, inbox: tuple[Inbox, int]) -> AsyncIterator[NodeProcess]:
    extra = (f'\n[admin]\nemails = ["{BOSS}"]\n[admin.withdraw_limits]\nlevel0 = {{ usd = "1000" }}\n'
             'level1 = { usd = "100000" }\n'
             "\n[security]\nwithdraw_confirmation = false\nwithdraw_hold_hours = 0\n"
             + toml_wallets({"usd": dict(BANK)}))
    async with mailing_node(tmp_path, inbox[1], extra) as proc:
        yield proc


class People:
    """Browser contexts of the people in a story, each signed up through the pages."""

    def __init__(self, browser: Any, node: NodeProcess, inbox: Inbox) -> None:
        self.browser = browser
        self.node = node
        self.inbox = inbox
        self.errors: list[str] = []
        self.dialogs: list[str] = []

    async def sign_up(self, email: str) -> Any:
        ctx = await self.browser.new_context(viewport={"width": 1366, "height": 768}, locale="en-US")
        page = await ctx.new_page()
        page.on("pageerror", lambda e: self.errors.append(f"{email}: {e}"))
        page.on("console", lambda m: self.errors.append(f"{email}: {m.text}")
                if m.type == "error" and not REFUSED.search(m.text) else None)
        page.on("dialog", self._dialog)
        base = self.node.base
        await page.goto(base + "/signup")
        await page.fill("#f-email", email)
        await page.fill("#f-password", PASSWORD)
        await page.fill("#f-password_confirmation", PASSWORD)
        await page.check("#f-terms")
        await page.click("#signup-form button[type=submit]")
        from playwright.async_api import expect

        await expect(page.locator("h1")).to_have_text("Check your mail")
        await page.goto(await self.inbox.link(email, "/activate/"))
        await page.fill("#f-email", email)
        await page.fill("#f-password", PASSWORD)
        await page.click("#login-form button[type=submit]")
        await expect(page.locator(".flashes")).to_contain_text(f"Welcome back, {email}")
        return page

    def _dialog(self, d: Any) -> None:
        """Confirmations of admin buttons are accepted; any other dialog would be injected script."""
        self.dialogs.append(d.message)
        asyncio.ensure_future(d.accept())

    async def staff(self, email: str, role: str | None = None) -> Any:
        """A staff member: signed up, role granted by the CLI, authenticator set up on the security
        page, admin area unlocked with a recovery code (the app's current code was just used)."""
        from playwright.async_api import expect

        page = await self.sign_up(email)
        if role is not None:
            await asyncio.to_thread(cli, self.node.config, "admin", "grant", email, role, key_file=self.node.key_file)
        await page.goto(self.node.base + "/admin")
        assert "/admin/unlock" in page.url
        await page.fill("#f-otp_code", "123456")
        await page.click("#unlock-form button[type=submit]")
        await expect(page.locator("#f-otp_code-error")).to_contain_text("Set up two-factor authentication first")
        await page.goto(self.node.base + "/security/totp")
        secret = (await page.locator("#totp-secret").inner_text()).replace(" ", "")
        await page.fill("#f-code", pyotp.TOTP(secret).now())
        await page.click("#totp-form button[type=submit]")
        await expect(page.locator("#codes li")).to_have_count(10)
        recovery = await page.locator("#codes li code").first.inner_text()
        await page.goto(self.node.base + "/admin")
        await page.fill("#f-otp_code", recovery)
        await page.click("#unlock-form button[type=submit]")
        await expect(page.locator("h1")).to_have_text("Dashboard")
        return page


async def run_story(node: NodeProcess, inbox: Inbox, story: Any) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    async with chromium() as browser:
        people = People(browser, node, inbox)
        await story(people)
        assert not people.errors, people.errors


async def test_kyc_submitted_approved_and_the_withdrawal_limit_rises(node: NodeProcess, inbox: tuple[Inbox, int]) -> None:
    from playwright.async_api import expect

    async def story(people: People) -> None:
        base = node.base
        ann = await people.sign_up("ann@example.com")
        await asyncio.to_thread(cli, node.config, "deposit", "ann@example.com", "usd", "5000", key_file=node.key_file)

        # -- unverified: the level-0 limit, and a withdrawal over it is refused with the way out -------------
        await ann.goto(base + "/kyc")
        await expect(ann.locator("#kyc-status")).to_contain_text("Not verified yet")
        await expect(ann.locator("#withdraw-limits tr[data-currency=usd] [data-k=limit]")).to_have_text("1000.00")
        await expect(ann.locator("#withdraw-limits tr[data-currency=usd] [data-k=next]")).to_have_text("100000.00")
        await ann.goto(base + "/funds?currency=usd")
        await ann.fill("#f-account_holder", "Ann Lee")
        await ann.fill("#f-account_number", "GB29 NWBK 6016 1331 9268 19")
        await ann.fill("#f-amount", "1500")
        await ann.click("#withdraw-form button[type=submit]")
        await expect(ann.locator("#f-amount-error")).to_contain_text(
            "over your withdrawal limit of 1000.0 USD per 24 hours (verification level 0)")

        # -- the identity form: a wrong file first, then the real documents -----------------------------------
        await ann.goto(base + "/kyc")
        await ann.fill("#f-full_name", "Ann Lee")
        await ann.fill("#f-birth_date", "1990-04-25")
        await ann.fill("#f-address", "1 Main Road\n10115 Berlin")
        await ann.select_option("#f-country", label="Germany (DE)")  # the whole name, not "Ge"
        box = await ann.locator("#f-country").bounding_box()
        assert box is not None and box["width"] >= 150, box
        await ann.select_option("#f-doc_type", "passport")
        await ann.fill("#f-doc_number", "C01X00T47")
        await ann.set_input_files("#f-document", files=[{"name": "passport.html", "mimeType": "text/html",
                                                          "buffer": b"<html><script>alert(1)</script></html>"}])
        await ann.set_input_files("#f-proof_of_address", files=[{"name": "bill.pdf", "mimeType": "application/pdf",
                                                                  "buffer": PDF}])
        await ann.click("#kyc-form button[type=submit]")
        await expect(ann.locator("#f-document-error")).to_have_text("This type of file is not accepted: only JPEG, PNG, PDF")
        await expect(ann.locator("#f-full_name")).to_have_value("Ann Lee")
        await expect(ann.locator("#f-country")).to_have_value("DE")  # kept after a refused form
        await ann.set_input_files("#f-document", files=[{"name": "passport.png", "mimeType": "image/png", "buffer": PNG}])
        await ann.set_input_files("#f-proof_of_address", files=[{"name": "bill.pdf", "mimeType": "application/pdf",
                                                                  "buffer": PDF}])
        await ann.click("#kyc-form button[type=submit]")
        await expect(ann.locator(".flashes")).to_contain_text("your documents are sent")
        await expect(ann.locator("#kyc-status")).to_contain_text("being reviewed")

        # -- an admin reviews and approves -------------------------------------------------------------------
        boss = await people.staff(BOSS)
        await expect(boss.locator("#nav-kyc .badge")).to_have_text("1")
        await boss.click("#nav-kyc")
        await boss.click("#kyc-queue tr[data-member] a.btn")
        await expect(boss.locator("#kyc-data")).to_contain_text("C01X00T47")
        await expect(boss.locator("img.kyc-image")).to_have_count(1)
        # the image shows once it has loaded (the element appears before its bytes arrive)
        image = await boss.locator("img.kyc-image").element_handle()
        await boss.wait_for_function("img => img.complete && img.naturalWidth === 240", arg=image, timeout=WAIT_MS)
        await boss.screenshot(path=str(SHOTS / "admin-kyc-review-1280x800.png"), full_page=True)
        await boss.fill("#kyc-approve-form #f-level", "1")
        await boss.click("#kyc-approve-form button[type=submit]")
        await expect(boss.locator(".flashes")).to_contain_text("The identity is verified (level 1)")
        body = await people.inbox.mail("ann@example.com", "Your identity is verified (level 1)")
        assert "verified at level 1" in body
        await expect(ann.locator(".toast").filter(has_text="Your identity is verified")).to_have_count(1, timeout=WAIT_MS)

        # -- the member's limit rose: the same withdrawal goes through ------------------------------------------
        await ann.goto(base + "/kyc")
        await expect(ann.locator("#kyc-status")).to_contain_text("Your identity is verified (level 1)")
        await expect(ann.locator("#withdraw-limits tr[data-currency=usd] [data-k=limit]")).to_have_text("100000.00")
        await ann.goto(base + "/funds?currency=usd")
        await ann.fill("#f-account_holder", "Ann Lee")
        await ann.fill("#f-account_number", "GB29 NWBK 6016 1331 9268 19")
        await ann.fill("#f-amount", "1500")
        await ann.click("#withdraw-form button[type=submit]")
        await expect(ann.locator(".flashes")).to_contain_text("requested: ")
        await ann.goto(base + "/kyc")
        await expect(ann.locator("#withdraw-limits tr[data-currency=usd] [data-k=left]")).to_have_text("98500.00")

        # -- the admin's queue at 1366 px: every control of the row on the screen, no sideways scrolling ------------
        row = boss.locator("#withdraw-queue tbody tr").first
        for _ in range(40):  # the withdrawal reaches the queue once the node has moved it on from "submitting"
            await boss.goto(base + "/admin/funds")
            if await row.count():
                break
            await asyncio.sleep(0.5)
        reject = row.locator("form[action$='/reject'] button")
        await expect(reject).to_be_visible()
        for control in (reject, row.locator("form[action$='/reject'] input[name=reason]")):
            box = await control.bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 1366, box
        assert await boss.locator("#withdraw-queue").evaluate("t => t.parentElement.scrollWidth <= t.parentElement.clientWidth")
        assert await boss.evaluate("document.documentElement.scrollWidth") <= 1366
        await boss.screenshot(path=str(SHOTS / "admin-withdraw-queue-1366x768.png"))

        # -- the approval is in the audit log --------------------------------------------------------------------
        await boss.goto(base + "/admin/audit?action=admin.kyc.")
        await expect(boss.locator("#audit-log tr[data-action='admin.kyc.approve']")).to_have_count(1)
        await boss.goto(base + "/admin")
        await expect(boss.locator("#money tr[data-currency=usd] [data-k=balance]")).to_have_text("3498.00")
        await boss.screenshot(path=str(SHOTS / "admin-dashboard-1280x800.png"), full_page=True)

    await run_story(node, inbox[0], story)


async def test_a_ticket_answered_by_support_with_mail_unread_marker_and_close(node: NodeProcess,
                                                                             inbox: tuple[Inbox, int]) -> None:
    from playwright.async_api import expect

    box = inbox[0]
    evil = '<img src=x onerror="alert(1)"><script>alert(2)</script>'

    async def story(people: People) -> None:
        base = node.base
        ann = await people.sign_up("ann@example.com")
        await ann.click("nav.mainnav a[href='/support/tickets']")
        await ann.fill("#f-title", "Where is my deposit? " + evil)
        await ann.fill("#f-body", f"I sent 1 BTC yesterday.\n{evil}")
        await ann.set_input_files("#f-attachment", files=[{"name": "notes.txt", "mimeType": "text/plain",
                                                            "buffer": b"txid 4a5e1e4baab89f3a\n"}])
        await ann.click("#ticket-form button[type=submit]")
        await expect(ann.locator(".flashes")).to_contain_text("Your ticket is open")
        await expect(ann.locator(".comment-body").first).to_contain_text('<script>alert(2)</script>')
        tid = re.search(r"/support/tickets/(\d+)", ann.url)
        assert tid is not None

        sup = await people.staff("sup@example.com", "support")
        await sup.goto(base + "/admin/tickets?filter=unanswered")
        row = sup.locator(f"#ticket-list tr[data-ticket='{tid.group(1)}']")
        await expect(row).to_have_class("unread")
        await expect(row).to_contain_text("<img src=x")
        await row.locator("a").click()
        await expect(sup.locator(".comment-body").first).to_contain_text("<script>alert(2)</script>")
        await expect(sup.locator(".attachment a")).to_have_text("notes.txt")
        await sup.fill("#f-body", "It needs two more confirmations; it will be credited within the hour.")
        await sup.click("#reply-form button[type=submit]")
        await expect(sup.locator(".flashes")).to_contain_text("the member is notified by e-mail")
        await sup.screenshot(path=str(SHOTS / "admin-ticket-1280x800.png"), full_page=True)

        # -- the mail arrives; the member's list shows the unread marker until the ticket is read ---------------
        link = await box.link("ann@example.com", "/support/tickets/")
        assert link.endswith(f"/support/tickets/{tid.group(1)}")
        mail = next(m for m in box.messages if m["To"] == "ann@example.com" and "New reply" in m["Subject"])
        assert "two more confirmations" in mail.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
        await ann.goto(base + "/support/tickets")
        mine = ann.locator(f"#my-tickets tr[data-ticket='{tid.group(1)}']")
        await expect(mine).to_have_class("unread")
        await expect(mine.locator(".tag")).to_have_text("new answer")
        await ann.screenshot(path=str(SHOTS / "support-tickets-1280x800.png"), full_page=True)
        await ann.goto(link)
        await expect(ann.locator(".comment.staff .comment-body")).to_contain_text("two more confirmations")
        await ann.goto(base + "/support/tickets")
        await expect(mine).not_to_have_class("unread")
        await expect(mine.locator(".tag")).to_have_count(0)

        # -- closed by the member; support sees it among the closed ones ----------------------------------------
        await ann.goto(link)
        await ann.click("#ticket-close button")
        await expect(ann.locator(".flashes")).to_contain_text("The ticket is closed")
        await expect(ann.locator("#ticket-state")).to_have_text("closed")
        await sup.goto(base + "/admin/tickets?filter=closed")
        await expect(sup.locator(f"#ticket-list tr[data-ticket='{tid.group(1)}']")).to_have_count(1)
        assert people.dialogs == [], f"script from a ticket ran: {people.dialogs}"

    await run_story(node, box, story)


async def test_a_halted_market_refuses_orders_until_it_is_resumed(node: NodeProcess, inbox: tuple[Inbox, int]) -> None:
    from playwright.async_api import expect

    async def story(people: People) -> None:
        base = node.base
        ann = await people.sign_up("ann@example.com")
        for cur, amount in (("usd", "100000"), ("btc", "2")):
            await asyncio.to_thread(cli, node.config, "deposit", "ann@example.com", cur, amount, key_file=node.key_file)
        out = await asyncio.to_thread(cli, node.config, "apikey", "create", "ann@example.com", key_file=node.key_file)
        keys = dict(line.split("=", 1) for line in out.split())
        api = ApiClient(base, keys["access_key"], keys["secret_key"])
        try:
            boss = await people.staff(BOSS)
            await ann.goto(base + "/markets/btcusd")  # open before the halt: it must learn of it live
            await expect(ann.locator("#halt-banner")).to_be_hidden()
            home = await ann.context.new_page()
            await home.goto(base + "/")
            await boss.click("#nav-markets")
            await boss.fill("#halt-btcusd input[name=reason]", "matching engine upgrade")
            await boss.click("#halt-btcusd button")
            await expect(boss.locator(".flashes")).to_contain_text("Trading on btcusd is halted")
            await expect(boss.locator("#state-btcusd")).to_have_text("halted")
            assert any("Halt trading on this market" in d for d in people.dialogs)

            # -- the trader sees it at once, with the reason, on the market page, the pair menu and the home list ------
            await expect(ann.locator("#halt-banner")).to_be_visible(timeout=WAIT_MS)
            await expect(ann.locator("#halt-reason")).to_have_text("Reason: matching engine upgrade", timeout=WAIT_MS)
            await expect(ann.locator("#order-fields")).to_have_attribute("disabled", "")
            await expect(ann.locator("#order-submit")).to_be_disabled()
            tag = ann.locator("#pair-menu li[data-market=btcusd] [data-k=halted]")  # in the closed menu
            await expect(tag).to_have_text("Halted")
            await expect(tag).not_to_have_attribute("hidden", "")
            await expect(home.locator("tr[data-market=btcusd] [data-k=halted]")).to_be_visible(timeout=WAIT_MS)
            await expect(home.locator("tr[data-market=btcusd] [data-k=reason]")).to_have_text("matching engine upgrade")
            await expect(home.locator("tr[data-market=ltcbtc] [data-k=halted]")).to_be_hidden()
            await ann.screenshot(path=str(SHOTS / "market-halted-1366x768.png"))
            await home.screenshot(path=str(SHOTS / "home-halted-1366x768.png"))
            await accessibility(ann, "market page, halted")
            await accessibility(home, "home, a market halted")
            for path in ("/admin", "/admin/markets", "/admin/funds", "/admin/members", "/admin/kyc", "/admin/tickets",
                         "/admin/audit"):
                await boss.goto(base + path)
                await accessibility(boss, path)
            await boss.goto(base + "/admin/markets")
            await ann.reload()  # and after a reload
            await expect(ann.locator("#halt-reason")).to_have_text("Reason: matching engine upgrade")
            await expect(ann.locator("#order-fields")).to_have_attribute("disabled", "")
            with pytest.raises(ApiError) as info:
                await api.post("/orders", market="btcusd", side="buy", volume="0.1", price="30000")
            assert info.value.code == 3002 and info.value.status == 400
            assert info.value.body["error"]["message"] == "market btcusd is halted, trading is paused"

            # -- resumed: the same order is placed ------------------------------------------------------------
            await boss.click("#resume-btcusd button")
            await expect(boss.locator(".flashes")).to_contain_text("Trading on btcusd is resumed")
            await expect(boss.locator("#state-btcusd")).to_have_text("trading")
            await boss.screenshot(path=str(SHOTS / "admin-markets-1280x800.png"), full_page=True)
            order = await api.post("/orders", market="btcusd", side="buy", volume="0.1", price="29000")
            assert order["state"] in ("wait", "pending")
            await expect(ann.locator("#halt-banner")).to_be_hidden(timeout=WAIT_MS)
            await expect(home.locator("tr[data-market=btcusd] [data-k=halted]")).to_be_hidden(timeout=WAIT_MS)
            await expect(ann.locator("#order-submit")).to_be_enabled()
            await ann.fill("#f-price", "30000")
            await ann.fill("#f-volume", "0.1")
            await ann.click("#order-submit")
            await expect(ann.locator("#order-status")).to_have_text("Order placed", timeout=WAIT_MS)
            await boss.goto(base + "/admin/audit?action=admin.market.")
            await expect(boss.locator("#audit-log tr[data-action='admin.market.halt']")).to_contain_text(
                "matching engine upgrade")
            await expect(boss.locator("#audit-log tr[data-action='admin.market.resume']")).to_have_count(1)
        finally:
            await api.close()

    await run_story(node, inbox[0], story)
