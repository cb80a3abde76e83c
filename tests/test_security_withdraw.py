"""Withdrawal protection end to end (API v2 and pages, a fake coin wallet): a new address waits out
its hold, each withdrawal waits for the mailed confirmation (or is cancelled by it, or expires), the
second factor on `POST /withdraws`, the address book, and books that balance throughout."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from node.audit import audit as books
from node.exchange import Exchange
from node.security import audit
from node.web.app import KEYS
from node.web.pages.security import SECURITY
from tests.apiclient import ApiClient, ApiError
from tests.security_site import Site, code, enable_totp, security_site
from tests.test_pages import count
from tests.test_wallet import BTC, WALLETS

HOUR = 3600.0


async def api_client(site: Site, email: str) -> ApiClient:
    mid = await site.mid(email)
    access, secret = await site.server.app[KEYS].create(mid, "t", "all", now=int(time.time() * 1000))
    return ApiClient(f"http://127.0.0.1:{site.server.port}", access, secret)


async def account(ex: Exchange, mid: int) -> tuple[int, int]:
    row = await ex.store.fetchrow("SELECT balance, locked FROM accounts WHERE member_id = ? AND currency = 'btc'", mid)
    return int(row["balance"]), int(row["locked"])


async def state(ex: Exchange, wid: int) -> str:
    return str((await ex.funds.withdraw(wid))["state"])


@contextmanager
def wallet_held() -> Iterator[None]:
    """Releasing a withdrawal wakes the wallet actor, which would audit and pay it at once (it is under
    `auto_approve`) while the test reads its state. With the fake daemon unreachable meanwhile, the
    woken cycle stops before the withdrawals; the test's own `poll` pays them afterwards."""
    WALLETS["btc"].down = True
    try:
        yield
    finally:
        WALLETS["btc"].down = False


async def balanced(ex: Exchange) -> None:
    report = await books(ex.store, ex.config.markets)
    assert report.ok, report.lines()


async def test_a_withdrawal_to_a_new_address_waits_out_the_hold(tmp_path: Path) -> None:
    async with security_site(tmp_path) as (site, clock):
        await site.member(btc="3")
        mid = await site.mid("ann@example.com")
        api = await api_client(site, "ann@example.com")
        sec = site.server.app[SECURITY]
        try:
            w = await api.post("/withdraws", currency="btc", amount="0.5", address="ext-new")
            assert w["state"] == "submitting" and "on hold until" in w["note"] and "e-mail confirmation" in w["note"]
            total = int(0.501 * BTC)
            assert await account(site.ex, mid) == (3 * BTC - total, total)  # locked from the start
            await balanced(site.ex)
            entry = await site.ex.store.fetchrow("SELECT usable_at, created_at FROM withdraw_addresses WHERE member_id = ?", mid)
            assert int(entry["usable_at"]) - int(entry["created_at"]) == 24 * 3_600_000  # the new address joined the book
            mail = site.outbox.mails[-1]
            assert "0.5 BTC" in mail.subject and "ext-new" in mail.text
            token = site.outbox.link("withdraws/confirm")
            # opening the link (a mail scanner does) confirms nothing; the page's button does
            v = await site.visitor()
            assert await v.get(f"/withdraws/confirm/{token}") == 200 and "Yes, send it" in v.text
            await site.ex.funds.poll("btc")
            assert await state(site.ex, w["id"]) == "submitting" and WALLETS["btc"].paid == []
            status, _ = await v.post(f"/withdraws/confirm/{token}", {"action": "confirm"})
            assert status == 200 and "the withdrawal is confirmed" in v.text and "waits until" in v.text
            await site.ex.funds.poll("btc")
            assert await state(site.ex, w["id"]) == "submitting" and WALLETS["btc"].paid == []
            clock.now += 24 * HOUR - 60
            assert await sec.addresses.sweep() == (0, 0)
            assert await state(site.ex, w["id"]) == "submitting"
            clock.now += 61  # the hold is over
            with wallet_held():
                assert await sec.addresses.sweep() == (1, 0)
                assert await state(site.ex, w["id"]) == "submitted"
            await site.ex.funds.poll("btc")
            assert await state(site.ex, w["id"]) == "almost_done" and WALLETS["btc"].paid == ["tx0"]
            assert WALLETS["btc"].built["tx0"][:2] == ("ext-new", BTC // 2)
            await balanced(site.ex)
            # the address is known now: the next withdrawal waits only for its confirmation
            w2 = await api.post("/withdraws", currency="btc", amount="0.1", address="ext-new")
            assert w2["state"] == "submitting" and "hold" not in w2["note"]
            with wallet_held():
                status, _ = await v.post(f"/withdraws/confirm/{site.outbox.link('withdraws/confirm')}", {"action": "confirm"})
                assert await state(site.ex, w2["id"]) == "submitted"  # released at the confirmation itself
            log = [e["action"] for e in await audit.of_member(site.ex.store, mid, limit=100)]
            assert {audit.WITHDRAW_REQUEST, audit.WITHDRAW_CONFIRM, audit.ADDRESS_ADD} <= set(log)
            request = (await audit.search(site.ex.store, member_id=mid, action=audit.WITHDRAW_REQUEST))[-1]
            assert request["channel"] == "api" and request["ip"] == "127.0.0.1" and request["detail"]["amount"] == "0.5"
        finally:
            await api.close()


async def test_unconfirmed_withdrawals_expire_and_the_link_can_cancel(tmp_path: Path) -> None:
    async with security_site(tmp_path, security={"withdraw_hold_hours": 0, "withdraw_confirm_hours": 2}) as (site, clock):
        ann = await site.member(btc="3")
        mid = await site.mid("ann@example.com")
        sec = site.server.app[SECURITY]
        status, _ = await ann.post("/funds/btc/withdraw", {"address": "ext-1", "amount": "1"})
        assert status == 200 and "requested" in ann.text
        w = (await site.ex.funds.withdraws_of(mid))[0]
        assert w["state"] == "submitting"
        assert await ann.get("/funds?currency=btc") == 200 and "/funds/withdraws/" in ann.text  # cancellable there
        clock.now += 2 * HOUR + 1
        assert await sec.addresses.sweep() == (0, 1)
        assert await state(site.ex, int(w["id"])) == "canceled" and await account(site.ex, mid) == (3 * BTC, 0)
        v = await site.visitor()
        status, _ = await v.post(f"/withdraws/confirm/{site.outbox.link('withdraws/confirm')}", {"action": "confirm"})
        assert status == 400 and "can no longer be confirmed" in v.text
        # cancelled by the member from the link in the mail
        status, _ = await ann.post("/funds/btc/withdraw", {"address": "ext-1", "amount": "1"})
        w2 = (await site.ex.funds.withdraws_of(mid))[0]
        status, _ = await v.post(f"/withdraws/confirm/{site.outbox.link('withdraws/confirm')}", {"action": "cancel"})
        assert status == 200 and "cancelled" in v.text
        assert await state(site.ex, int(w2["id"])) == "canceled" and await account(site.ex, mid) == (3 * BTC, 0)
        assert await v.get("/withdraws/confirm/not-a-real-token") == 400
        log = [e["action"] for e in await audit.of_member(site.ex.store, mid, limit=100)]
        assert audit.WITHDRAW_EXPIRED in log and audit.WITHDRAW_CANCEL in log
        await balanced(site.ex)


async def test_post_withdraws_needs_the_code_when_2fa_is_on(tmp_path: Path) -> None:
    async with security_site(tmp_path, security={"withdraw_hold_hours": 0, "withdraw_confirmation": False}) as (site, clock):
        ann = await site.member(btc="3")
        mid = await site.mid("ann@example.com")
        secret, _ = await enable_totp(ann, clock)
        api = await api_client(site, "ann@example.com")
        try:
            for otp in (None, "000000", "12345"):
                params: dict[str, Any] = {"currency": "btc", "amount": "1", "address": "ext-1"}
                if otp is not None:
                    params["otp"] = otp
                with pytest.raises(ApiError) as e:
                    await api.post("/withdraws", **params)
                assert e.value.status == 400 and e.value.code == 3201, e.value.body
            assert await count(site.ex, "withdraws") == 0 and await account(site.ex, mid) == (3 * BTC, 0)
            good = code(secret, clock)
            w = await api.post("/withdraws", currency="btc", amount="1", address="ext-1", otp=good)
            assert w["state"] == "submitted"
            with pytest.raises(ApiError) as e:  # the same code again
                await api.post("/withdraws", currency="btc", amount="1", address="ext-1", otp=good)
            assert e.value.code == 3201 and "already used" in e.value.body["error"]["message"]
            assert await count(site.ex, "withdraws") == 1
        finally:
            await api.close()


async def test_withdrawals_can_require_2fa_for_everyone(tmp_path: Path) -> None:
    async with security_site(tmp_path, security={"withdraw_requires_2fa": True}) as (site, _):
        ann = await site.member(btc="3")
        await ann.get("/funds?currency=btc")
        assert 'name="otp_code"' in ann.text
        status, _ = await ann.post("/funds/btc/withdraw", {"address": "ext-1", "amount": "1", "otp_code": "123456"})
        assert status == 400 and "Set up two-factor authentication first" in ann.error_of("otp_code")
        assert await count(site.ex, "withdraws") == 0


async def test_the_address_book(tmp_path: Path) -> None:
    async with security_site(tmp_path) as (site, clock):
        ann = await site.member("ann@example.com")
        bob = await site.member("bob@example.com")
        for data, field, message in (
                ({"currency": "btc", "address": ""}, "address", "Please enter the address"),
                ({"currency": "btc", "address": "not-a-btc-address"}, "address", "This is not a valid BTC address"),
                ({"currency": "usd", "address": "ext-1"}, "currency", "Withdrawals of this currency are not open"),
                ({"currency": "btc", "address": "ext-1", "label": "x" * 65}, "label", "Too long")):
            status, _ = await ann.post("/security/addresses", data)
            assert status == 400 and message in ann.error_of(field), (data, ann.error_of(field))
        WALLETS["btc"].own.add("fake-ours")
        status, _ = await ann.post("/security/addresses", {"currency": "btc", "address": "fake-ours"})
        assert status == 400 and "belongs to this exchange" in ann.error_of("address")
        status, _ = await ann.post("/security/addresses", {"currency": "btc", "address": "ext-1", "label": "cold"})
        assert status == 200 and "can be used for withdrawals from" in ann.text and "on hold until" in ann.text
        assert "A withdrawal address was added" in site.outbox.mails[-1].subject
        status, _ = await ann.post("/security/addresses", {"currency": "btc", "address": "ext-1"})
        assert status == 400 and "already in your address book" in ann.error_of("address")
        aid = int(await site.ex.store.fetchval("SELECT id FROM withdraw_addresses"))
        status, _ = await bob.post(f"/security/addresses/{aid}/delete", {})
        assert "This address does not exist" in bob.text
        assert await count(site.ex, "withdraw_addresses", "WHERE deleted_at IS NULL") == 1
        clock.now += 24 * HOUR
        await ann.get("/security/addresses")
        assert "ready" in ann.text
        status, _ = await ann.post(f"/security/addresses/{aid}/delete", {})
        assert "removed" in ann.text and await count(site.ex, "withdraw_addresses", "WHERE deleted_at IS NULL") == 0
        # removed and added again: the hold starts over
        await ann.post("/security/addresses", {"currency": "btc", "address": "ext-1"})
        assert "on hold until" in ann.text
