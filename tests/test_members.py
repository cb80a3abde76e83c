"""Members' accounts (node/members.py) on both backends: sign-up and activation, log in, password
change and reset with single-use 30-minute links, login history, and what a stranger can learn."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from argon2 import PasswordHasher

from node.bootstrap import start_exchange
from node.exchange import Exchange
from node.mail import Mail
from node.members import LoginAttempt, Members, token_hash
from node.store import open_store
from node.store.members import ensure_house
from node.web.i18n import FormError, FormErrors, translator
from tests.conftest import Clock, config_with

PASSWORD = "correct horse battery"
CHEAP = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)  # argon2id, fast enough for tests


class Outbox:
    """Collects mails instead of sending them (the browser test uses a real SMTP server)."""

    def __init__(self) -> None:
        self.mails: list[Mail] = []

    async def send(self, mail: Mail) -> None:
        self.mails.append(mail)

    def link(self, kind: str) -> str:
        for mail in reversed(self.mails):
            m = re.search(rf"https?://\S+/{kind}/(\S+)", mail.text)
            if m:
                return m.group(1)
        raise AssertionError(f"no {kind} link in {self.mails}")



@pytest.fixture
def outbox() -> Outbox:
    return Outbox()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def members(ex: Exchange, outbox: Outbox, clock: Clock) -> Members:
    return Members(ex, outbox, "https://exchange.example", clock=clock, hasher=CHEAP)


async def count(ex: Exchange, table: str) -> int:
    return int(await ex.store.fetchval(f"SELECT COUNT(*) FROM {table}"))


async def active_member(members: Members, outbox: Outbox, clock: Clock, email: str = "ann@example.com") -> int:
    mid = await members.sign_up(email, PASSWORD, PASSWORD)
    assert mid is not None
    await members.activate(outbox.link("activate"))
    clock.now += 61  # past the one-mail-a-minute throttle
    return mid


def fields(e: FormErrors) -> dict[str | None, str]:
    return {x.field: x.msgid for x in e.errors}


async def test_sign_up_mails_an_activation_link_that_works_once(members: Members, outbox: Outbox, ex: Exchange) -> None:
    mid = await members.sign_up(" Ann@Example.com ", PASSWORD, PASSWORD)
    assert mid is not None
    row = await ex.member(mid)
    assert row["email"] == "ann@example.com" and not row["activated"]
    assert row["password_hash"].startswith("$argon2id$") and PASSWORD not in row["password_hash"]
    assert len(outbox.mails) == 1 and outbox.mails[0].to == "ann@example.com"
    assert "https://exchange.example/activate/" in outbox.mails[0].text
    token = outbox.link("activate")
    # only the hash of the token is stored
    assert await ex.store.fetchval("SELECT COUNT(*) FROM member_tokens WHERE token_hash = ?", token_hash(token)) == 1
    assert await ex.store.fetchval("SELECT COUNT(*) FROM member_tokens WHERE token_hash = ?", token) == 0
    assert await members.activate(token) == mid
    assert (await ex.member(mid))["activated"]
    with pytest.raises(FormError) as e:
        await members.activate(token)
    assert "already been used" in e.value.message


async def test_activation_link_expires_after_48_hours(members: Members, outbox: Outbox, clock: Clock) -> None:
    await members.sign_up("bob@example.com", PASSWORD, PASSWORD)
    clock.now += 48 * 3600 + 1
    with pytest.raises(FormError) as e:
        await members.activate(outbox.link("activate"))
    assert "expired" in e.value.message
    with pytest.raises(FormError):
        await members.activate("no-such-token")


BAD_SIGN_UPS: list[tuple[str, str, str, dict[str, str]]] = [
    ("", PASSWORD, PASSWORD, {"email": "Please enter your e-mail address"}),
    ("a" * 250 + "@example.com", PASSWORD, PASSWORD, {"email": "The e-mail address is too long (at most {n} characters)"}),
    ("not-an-address", PASSWORD, PASSWORD, {"email": "This is not a valid e-mail address"}),
    ("x@localhost", PASSWORD, PASSWORD, {"email": "This is not a valid e-mail address"}),
    ("ann@example.com", "", "", {"password": "Please choose a password"}),
    ("ann@example.com", "short", "short", {"password": "The password is too short (at least {n} characters)"}),
    ("ann@example.com", "p" * 129, "p" * 129, {"password": "The password is too long (at most {n} characters)"}),
    ("ann@example.com", "password1", "password1", {"password": "This password is too easy to guess"}),
    ("ann@example.com", "aaaaaaaaaaaa", "aaaaaaaaaaaa", {"password": "This password is too easy to guess"}),
    ("ann@example.com", PASSWORD, "", {"password_confirmation": "Please repeat the password"}),
    ("ann@example.com", PASSWORD, PASSWORD + "x", {"password_confirmation": "The two passwords are not the same"}),
    ("bad", "short", "", {"email": "This is not a valid e-mail address",
                          "password": "The password is too short (at least {n} characters)"}),
]


@pytest.fixture
async def sqlite_members(tmp_path: Any, outbox: Outbox, clock: Clock) -> AsyncIterator[Members]:
    """Checks that touch no SQL of their own run on one backend only (they are many)."""
    e = await start_exchange(config_with(f"sqlite:///{tmp_path}/m.db"), actors=False)
    try:
        yield Members(e, outbox, "https://exchange.example", clock=clock, hasher=CHEAP)
    finally:
        await e.stop()


async def test_sign_up_refuses_bad_input_and_creates_nothing(sqlite_members: Members, outbox: Outbox) -> None:
    ex = sqlite_members.ex
    before = await count(ex, "members")
    for email, password, confirmation, expected in BAD_SIGN_UPS:
        with pytest.raises(FormErrors) as e:
            await sqlite_members.sign_up(email, password, confirmation)
        assert fields(e.value) == expected, email
    assert await count(ex, "members") == before and outbox.mails == []


async def test_sign_up_with_a_taken_address_tells_nothing_but_the_owner(members: Members, outbox: Outbox, ex: Exchange,
                                                                        clock: Clock) -> None:
    await active_member(members, outbox, clock)
    before, mails = await count(ex, "members"), len(outbox.mails)
    assert await members.sign_up("ann@example.com", "another good passphrase", "another good passphrase") is None
    assert await count(ex, "members") == before
    assert len(outbox.mails) == mails + 1 and "already has an account" in outbox.mails[-1].text
    # a second try within the minute sends no second mail (no mail bombing through the form)
    assert await members.sign_up("ann@example.com", "another good passphrase", "another good passphrase") is None
    assert len(outbox.mails) == mails + 1


async def test_log_in(members: Members, outbox: Outbox, clock: Clock, ex: Exchange) -> None:
    mid = await members.sign_up("ann@example.com", PASSWORD, PASSWORD)
    assert mid is not None
    attempt = LoginAttempt("203.0.113.9", "Mozilla/5.0 Test")
    with pytest.raises(FormError) as e:  # not activated yet
        await members.authenticate("ann@example.com", PASSWORD, attempt)
    assert e.value.field == "email" and "not activated" in e.value.message
    await members.activate(outbox.link("activate"))
    with pytest.raises(FormError) as wrong:
        await members.authenticate("ann@example.com", PASSWORD + "!", attempt)
    with pytest.raises(FormError) as unknown:
        await members.authenticate("nobody@example.com", PASSWORD, attempt)
    assert wrong.value.message == unknown.value.message == "Wrong e-mail address or password"
    with pytest.raises(FormErrors) as empty:
        await members.authenticate("", "", attempt)
    assert set(fields(empty.value)) == {"email", "password"}
    member = await members.authenticate("ANN@example.com", PASSWORD, attempt)
    assert member["id"] == mid
    await members.record_login(mid, True, "", attempt)
    history = await members.login_history(mid)
    assert [(h["ok"], h["reason"]) for h in history] == [(1, ""), (0, "wrong password"), (0, "not activated")]
    assert history[0]["ip"] == "203.0.113.9" and history[0]["user_agent"] == "Mozilla/5.0 Test"
    await ex.store.execute("UPDATE members SET disabled = 1 WHERE id = ?", mid)
    with pytest.raises(FormError) as disabled:
        await members.authenticate("ann@example.com", PASSWORD, attempt)
    assert "disabled" in disabled.value.message


async def test_weak_hashes_are_upgraded_at_log_in(ex: Exchange, outbox: Outbox, clock: Clock) -> None:
    weak = Members(ex, outbox, "http://x", clock=clock, hasher=CHEAP)
    mid = await active_member(weak, outbox, clock)
    strong = Members(ex, outbox, "http://x", clock=clock)  # argon2-cffi's defaults
    await strong.authenticate("ann@example.com", PASSWORD)
    stored = (await ex.member(mid))["password_hash"]
    assert not strong.hasher.check_needs_rehash(stored) and CHEAP.check_needs_rehash(stored)


async def test_password_reset_link_is_single_use_and_lasts_30_minutes(members: Members, outbox: Outbox, clock: Clock,
                                                                      ex: Exchange) -> None:
    mid = await active_member(members, outbox, clock)
    mails = len(outbox.mails)
    await members.request_reset("nobody@example.com")  # unknown: same answer, no mail
    assert len(outbox.mails) == mails
    with pytest.raises(FormError):
        await members.request_reset("not an address")
    await members.request_reset("ann@example.com")
    assert len(outbox.mails) == mails + 1 and "30 minutes" in outbox.mails[-1].text
    token = outbox.link("password/reset")
    assert await members.check_token(token, "reset") == mid
    # a bad new password does not use the link up
    with pytest.raises(FormErrors) as e:
        await members.reset_password(token, "short", "short")
    assert set(fields(e.value)) == {"password"}
    with pytest.raises(FormErrors):
        await members.reset_password(token, "a new good passphrase", "a different one")
    assert await members.reset_password(token, "a new good passphrase", "a new good passphrase") == mid
    with pytest.raises(FormError) as used:
        await members.reset_password(token, "yet another passphrase", "yet another passphrase")
    assert "already been used" in used.value.message
    await members.authenticate("ann@example.com", "a new good passphrase")
    with pytest.raises(FormError):
        await members.authenticate("ann@example.com", PASSWORD)
    # expiry: 30 minutes
    clock.now += 61
    await members.request_reset("ann@example.com")
    late = outbox.link("password/reset")
    clock.now += 30 * 60 + 1
    with pytest.raises(FormError) as expired:
        await members.reset_password(late, "and another passphrase", "and another passphrase")
    assert "expired" in expired.value.message


async def test_a_new_reset_link_voids_the_older_one(members: Members, outbox: Outbox, clock: Clock) -> None:
    await active_member(members, outbox, clock)
    await members.request_reset("ann@example.com")
    first = outbox.link("password/reset")
    await members.request_reset("ann@example.com")  # within the minute: throttled, no new mail
    assert outbox.link("password/reset") == first
    clock.now += 61
    await members.request_reset("ann@example.com")
    second = outbox.link("password/reset")
    assert second != first
    with pytest.raises(FormError):
        await members.check_token(first, "reset")
    await members.check_token(second, "reset")
    with pytest.raises(FormError):  # an activation token is no reset token
        await members.check_token(second, "activate")


async def test_change_password(members: Members, outbox: Outbox, clock: Clock) -> None:
    mid = await active_member(members, outbox, clock)
    with pytest.raises(FormErrors) as e:
        await members.change_password(mid, "wrong", "a new good passphrase", "a new good passphrase")
    assert set(fields(e.value)) == {"current_password"}
    with pytest.raises(FormErrors) as e:
        await members.change_password(mid, "", "", "")
    assert set(fields(e.value)) == {"current_password", "password"}
    with pytest.raises(FormErrors) as e:
        await members.change_password(mid, PASSWORD, PASSWORD, PASSWORD)
    assert fields(e.value) == {"password": "The new password must differ from the current one"}
    with pytest.raises(FormErrors) as e:
        await members.change_password(mid, PASSWORD, "a new good passphrase", "mismatch")
    assert set(fields(e.value)) == {"password_confirmation"}
    mails = len(outbox.mails)
    await members.change_password(mid, PASSWORD, "a new good passphrase", "a new good passphrase")
    assert len(outbox.mails) == mails + 1 and "was just changed" in outbox.mails[-1].text
    await members.authenticate("ann@example.com", "a new good passphrase")


async def test_mails_are_in_the_language_of_the_page(members: Members, outbox: Outbox) -> None:
    await members.sign_up("chen@example.com", PASSWORD, PASSWORD, lang="zh-CN")
    mail = outbox.mails[-1]
    assert "激活" in mail.subject and "欢迎" in mail.text and "/activate/" in mail.text


def test_errors_translate_by_id_and_by_pattern() -> None:
    zh = translator("zh-CN")
    e = FormError("email", "The e-mail address is too long (at most {n} characters)", n=254)
    assert e.message == "The e-mail address is too long (at most 254 characters)"
    assert zh.error(e) == "邮箱地址过长（最多 254 个字符）"
    from node.errors import InvalidParameter

    core: Any = InvalidParameter("volume has too many decimal places (at most 4)", "volume")
    assert zh.error(core) == "数量的小数位数过多（最多 4 位）"
    assert translator("en").error(core) == core.message
    assert zh.error(InvalidParameter("something nobody translated")) == "something nobody translated"


async def test_nodes_starting_together_share_the_house_accounts(database_url: str) -> None:
    """Three nodes started at once on a new database each create the house fee accounts: one insert
    wins, the others take its row instead of stopping on the database's unique-key error."""
    stores = [await open_store(database_url) for _ in range(3)]
    try:
        ids = await asyncio.gather(*(ensure_house(s, ["btc", "usd"], "btcusd") for s in stores for _ in range(2)))
        assert len(set(ids)) == 1
        assert await stores[0].fetchval("SELECT COUNT(*) FROM accounts WHERE member_id = ?", ids[0]) == 2
    finally:
        for s in stores:
            await s.close()
