"""Brute force: log ins slowed down per account and client with growing delays (never a lock a
stranger can put on a member), wrong two-factor codes locked out, and the public forms rate-limited
per IP; counts live in the store (both backends)."""

from __future__ import annotations

from pathlib import Path

from node.security import audit
from node.security.throttle import LOGIN_PAIR, Rule, Throttle, account_subject
from node.web.pages.security import PUBLIC_FORMS, PUBLIC_PREFIXES
from tests.security_site import PASSWORD, code, enable_totp, security_site
from tests.test_pages import Visitor


async def login(v: Visitor, email: str, password: str) -> int:
    r = await v.c.post("/login", data={"email": email, "password": password, "csrf_token": await v.token()},
                       allow_redirects=False)
    v.text = await r.text()
    return r.status


async def test_a_guesser_is_slowed_down_and_the_member_is_not(tmp_path: Path, database_url: str) -> None:
    """Failures count per account and client: a stranger's guesses cost the stranger growing delays
    and never lock the member out, neither on her browser (its device cookie) nor from another address."""
    async with security_site(tmp_path, database_url, security={"login_max_failures": 3, "login_delay_s": 60,
                                                               "lockout_s": 600}) as (site, clock):
        owner = await site.member("ann@example.com")  # logged in once: this browser has Ann's device cookie
        assert owner.c.session.cookie_jar.filter_cookies(owner.c.make_url("/")).get("device") is not None
        await owner.post("/logout", {})
        await site.member("bob@example.com")
        ann = await site.mid("ann@example.com")
        thief = await site.visitor()  # same address as the owner, no cookie
        assert await login(thief, "ann@example.com", "guess one") == 400
        assert await login(thief, "ann@example.com", "guess two") == 400
        assert await login(thief, "ann@example.com", "guess three") == 429  # the third failure: a wait
        assert "Too many failed log-in attempts for this account" in thief.text and " UTC " in thief.text
        assert await login(thief, "ANN@example.com ", PASSWORD) == 429  # not even checked meanwhile
        # the owner is not held back: on her own browser, nor on a new one from another address
        assert await login(owner, "ann@example.com", PASSWORD) == 303
        elsewhere = await site.visitor(source="127.0.0.2")
        assert await login(elsewhere, "ann@example.com", PASSWORD) == 303
        bob = await site.visitor()
        assert await login(bob, "bob@example.com", PASSWORD) == 303
        log = [e["action"] for e in await audit.of_member(site.ex.store, ann, limit=100)]
        assert log.count(audit.LOGIN_FAILED) == 3 and audit.LOGIN_LOCKED in log  # the audit trail stays
        # the delays grow: 60 s after the third failure, 120 s after the fourth
        clock.now += 61
        assert await login(thief, "ann@example.com", "guess four") == 429
        clock.now += 61
        assert await login(thief, "ann@example.com", PASSWORD) == 429
        clock.now += 60
        assert await login(thief, "ann@example.com", PASSWORD) == 303  # (had he guessed it)
        assert await site.ex.store.fetchval(
            "SELECT COUNT(*) FROM security_attempts WHERE scope = ? AND subject LIKE ?",
            LOGIN_PAIR, account_subject("ann@example.com") + "|%") == 0


async def test_unknown_addresses_lock_the_same_way(tmp_path: Path) -> None:
    """The wait does not tell whether an account exists; the store holds no typed address."""
    async with security_site(tmp_path, security={"login_max_failures": 2}) as (site, _):
        v = await site.visitor()
        assert await login(v, "nobody@example.com", "x" * 10) == 400
        assert await login(v, "nobody@example.com", "x" * 10) == 429
        assert "Too many failed log-in attempts for this account" in v.text
        stored = {r["subject"] for r in await site.ex.store.fetch("SELECT subject FROM security_attempts")}
        assert account_subject("nobody@example.com") in stored
        assert not [x for x in stored if "nobody" in x]


async def test_many_guessers_on_one_account_do_not_keep_its_member_out(tmp_path: Path) -> None:
    """Guesses spread over addresses meet the per-account count; the member's browser does not."""
    async with security_site(tmp_path, security={"login_max_failures": 100, "login_account_max_failures": 3}) as (site, _):
        owner = await site.member("ann@example.com")
        await owner.post("/logout", {})
        for source in ("127.0.0.2", "127.0.0.3", "127.0.0.4"):
            bot = await site.visitor(source=source)
            status = await login(bot, "ann@example.com", "a guess")
        assert status == 429
        late = await site.visitor(source="127.0.0.5")
        assert await login(late, "ann@example.com", PASSWORD) == 429  # a new client waits too
        assert await login(owner, "ann@example.com", PASSWORD) == 303  # her browser does not


async def test_an_address_trying_many_accounts_is_slowed_down_not_the_office(tmp_path: Path) -> None:
    async with security_site(tmp_path, security={"login_max_failures": 100, "login_ip_max_failures": 4}) as (site, _):
        colleague = await site.member("ann@example.com")  # same address as the sprayer
        await colleague.post("/logout", {})
        v = await site.visitor()
        for i in range(3):
            assert await login(v, f"user{i}@example.com", "password spraying") == 400
        assert await login(v, "user9@example.com", "password spraying") == 429
        assert "Too many failed log-in attempts from your network" in v.text
        assert await login(v, "ann@example.com", PASSWORD) == 429  # this client waits for now
        assert await login(colleague, "ann@example.com", PASSWORD) == 303  # a browser that logged in before does not


async def test_a_password_reset_by_mail_lifts_the_account_lock(tmp_path: Path) -> None:
    async with security_site(tmp_path, security={"login_max_failures": 2}) as (site, _):
        await site.member("ann@example.com")
        v = await site.visitor()
        await login(v, "ann@example.com", "wrong one")
        assert await login(v, "ann@example.com", "wrong two") == 429
        await v.post("/password/forgot", {"email": "ann@example.com"})
        token = site.outbox.link("password/reset")
        status, _ = await v.post(f"/password/reset/{token}", {"password": "a brand new passphrase",
                                                              "password_confirmation": "a brand new passphrase"})
        assert status == 200 and "Please log in with the new one" in v.text
        assert await login(v, "ann@example.com", "a brand new passphrase") == 303
        mid = await site.mid("ann@example.com")
        assert audit.PASSWORD_RESET in [e["action"] for e in await audit.of_member(site.ex.store, mid)]


async def test_wrong_two_factor_codes_lock_the_second_factor(tmp_path: Path) -> None:
    async with security_site(tmp_path, security={"otp_max_failures": 3}) as (site, clock):
        ann = await site.member()
        mid = await site.mid("ann@example.com")
        secret, _ = await enable_totp(ann, clock)
        await ann.post("/logout", {})
        v = await site.visitor()
        assert await login(v, "ann@example.com", PASSWORD) == 303
        for i in range(2):
            status, _ = await v.post("/login/2fa", {"otp_code": f"00000{i}"})
            assert status == 400 and v.error_of("otp_code") == "The two-factor code is wrong"
        status, _ = await v.post("/login/2fa", {"otp_code": "000009"})
        assert status == 400 and "Too many wrong codes" in v.error_of("otp_code")
        status, _ = await v.post("/login/2fa", {"otp_code": code(secret, clock)})  # the right one: still locked
        assert status == 400 and "Too many wrong codes" in v.error_of("otp_code")
        assert await v.get("/funds", allow_redirects=False) == 303
        assert audit.OTP_LOCKED in [e["action"] for e in await audit.of_member(site.ex.store, mid)]
        clock.now += 901  # the lockout is over
        await login(v, "ann@example.com", PASSWORD)
        status, _ = await v.post("/login/2fa", {"otp_code": code(secret, clock)})
        assert status == 200 and "Welcome back" in v.text


async def test_public_forms_are_rate_limited_per_ip(tmp_path: Path) -> None:
    async with security_site(tmp_path, security={"form_limit": 3, "form_window_s": 600}) as (site, _):
        v = await site.visitor()
        for _ in range(3):
            status, _ = await v.post("/password/forgot", {"email": "ann@example.com"})
            assert status == 200
        r = await v.c.post("/password/forgot", data={"email": "ann@example.com", "csrf_token": await v.token()})
        assert r.status == 429 and 0 < int(r.headers["Retry-After"]) <= 600
        assert "sent too often from your network" in await r.text()
        # each form has its own allowance
        status, _ = await v.post("/activation/resend", {"email": "ann@example.com"})
        assert status == 200
        # every public form of the site is limited: each is a route of the app
        routes = {r.resource.canonical for r in site.server.app.router.routes() if r.resource is not None}
        assert set(PUBLIC_FORMS) <= routes
        assert {p + "{token}" for p in PUBLIC_PREFIXES} <= routes


async def test_the_throttle_counts_in_a_window(tmp_path: Path, database_url: str) -> None:
    async with security_site(tmp_path, database_url, wallet=False) as (site, clock):
        t = Throttle(site.ex.store, clock)
        rule = Rule(limit=3, window_ms=60_000, lockout_ms=120_000)
        assert await t.failure("x", "s", rule) is None
        clock.now += 61  # the first failure leaves the window
        assert await t.failure("x", "s", rule) is None
        assert await t.failure("x", "s", rule) is None
        until = await t.failure("x", "s", rule)
        assert until == int(clock.now * 1000) + 120_000 and await t.locked_until("x", "s") == until
        assert await t.locked_until("x", "other") is None
        clock.now += 121
        assert await t.locked_until("x", "s") is None
        assert await t.hit("f", "ip", 2, 10_000) is None and await t.hit("f", "ip", 2, 10_000) is None
        assert await t.hit("f", "ip", 2, 10_000) == 10
        slow = Rule(limit=2, window_ms=600_000, lockout_ms=50_000, delay_ms=10_000)
        for _ in range(2):
            assert await t.wait_until("y", "s", slow) is None
            await t.record("y", "s")
        now = int(clock.now * 1000)
        assert await t.wait_until("y", "s", slow) == now + 10_000  # limit reached: the first delay
        await t.record("y", "s")
        assert await t.wait_until("y", "s", slow) == now + 20_000  # doubled
        for _ in range(3):
            await t.record("y", "s")
        assert await t.wait_until("y", "s", slow) == now + 50_000  # at most lockout_ms
        clock.now += 51
        assert await t.wait_until("y", "s", slow) is None
