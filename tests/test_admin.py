"""The admin area over HTTP (in-process server): every route with every role, the 2FA unlock, the audit
log, balance corrections by two admins, markets (halt, cancel all, fees), the deposit and withdrawal
queues, member search and actions, the dashboard, editable pages, roles and the admin CLI."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from node.admin import roles
from node.admin.roles import MONEY, PERMISSIONS, ROLES, Actor
from node.audit import audit
from node.bootstrap import start_exchange
from node.config import ConfigError
from node.wallet.records import WithdrawFailed
from node.web.app import KEYS
from node.web.pages.admin import ADMIN, ROUTES
from tests.apiclient import ApiClient, ApiError
from tests.test_admin_fixtures import (
    BOSS,
    BOSS2,
    PNG,
    admin_config,
    audit_rows,
    flash,
    post_files,
    staff,
)
from tests.test_pages import PASSWORD, Site, Visitor, balances

# -- the route walk ---------------------------------------------------------------------------------------


async def _fixtures(site: Site) -> dict[str, str]:
    """One of everything a route can point at: a member with an identity submission and a ticket with an
    attachment, a pending correction, a withdrawal, a wallet alert."""
    ann = await site.member("ann@example.com")
    mid = await site.mid("ann@example.com")
    status, _ = await post_files(ann, "/kyc", {"full_name": "Ann Lee", "birth_date": "1990-04-25", "address": "1 Road",
                                               "country": "DE", "doc_type": "passport", "doc_number": "X1234567"},
                                 {"document": ("id.png", PNG, "image/png"), "proof_of_address": ("bill.png", PNG, "image/png")})
    assert status == 200, ann.text[:2000]
    status, _ = await post_files(ann, "/support/tickets", {"title": "Help", "body": "Where is my deposit?"},
                                 {"attachment": ("shot.png", PNG, "image/png")})
    assert status == 200
    tid = int(await site.ex.store.fetchval("SELECT MAX(id) FROM tickets"))
    kyc_file = int(await site.ex.store.fetchval("SELECT MIN(id) FROM uploads WHERE purpose LIKE 'kyc_%'"))
    ticket_file = int(await site.ex.store.fetchval("SELECT MIN(id) FROM uploads WHERE purpose = 'ticket'"))
    boss2 = await site.member(BOSS2, usd=None, btc=None)
    svc = site.server.app[ADMIN]
    boss2_actor = Actor(await site.mid(BOSS2), BOSS2, frozenset({"admin"}))
    adj = await svc.propose_adjustment(boss2_actor, mid, "usd", "5", "a refund we owe")
    ref = (await site.ex.funds.deposit_address(mid, "usd"))["address"]
    w = await site.ex.funds.request_withdraw(mid, "usd", "20", "DE12 5001 0517 0648 4898 90")
    await site.ex.store.execute(
        "INSERT INTO wallet_alerts (currency, kind, ref, message, created_at) VALUES ('usd', 'test', 'x', 'look', 1)")
    alert = int(await site.ex.store.fetchval("SELECT MAX(id) FROM wallet_alerts"))
    del boss2
    return {"member": str(mid), "adjustment": str(adj), "withdraw": str(w["id"]), "alert": str(alert),
            "kyc_file": str(kyc_file), "ticket": str(tid), "ticket_file": str(ticket_file), "reference": ref}


def _path(path: str, ids: dict[str, str]) -> str:
    kind = ("kyc_file" if path.startswith("/admin/kyc/files/") else "ticket_file" if path.startswith("/admin/tickets/files/")
            else "member" if path.startswith(("/admin/members/", "/admin/kyc/")) else "adjustment"
            if path.startswith("/admin/adjustments/") else "withdraw" if path.startswith("/admin/withdraws/")
            else "alert" if path.startswith("/admin/alerts/") else "ticket")
    return (path.replace("{id}", ids[kind]).replace("{market}", "btcusd").replace("{slug}", "fees")
            .replace("{lang}", "en"))


async def _request(v: Visitor, method: str, path: str) -> tuple[int, str]:
    if method == "GET":
        r = await v.c.get(path, allow_redirects=False)
    else:
        token = await v.token()
        r = await v.c.post(path, data=[("csrf_token", token)], allow_redirects=False)
    return r.status, r.headers.get("Location", "")


async def _money(site: Site) -> Any:
    """Everything money-like that a refused request must leave alone."""
    s = site.ex.store
    return (
        [tuple(r) for r in await s.fetch("SELECT member_id, currency, balance, locked FROM accounts ORDER BY 1, 2")],
        [tuple(r) for r in await s.fetch("SELECT id, state FROM balance_adjustments ORDER BY id")],
        [tuple(r) for r in await s.fetch("SELECT id, state FROM withdraws ORDER BY id")],
        [tuple(r) for r in await s.fetch("SELECT market, halted, maker_fee, taker_fee FROM markets_state ORDER BY 1")],
        int(await s.fetchval("SELECT COUNT(*) FROM deposits")),
        int(await s.fetchval("SELECT COUNT(*) FROM wallet_alerts WHERE resolved_at IS NULL")),
        [tuple(r) for r in await s.fetch("SELECT id, disabled, api_disabled FROM members ORDER BY 1")],
        [tuple(r) for r in await s.fetch("SELECT member_id, role FROM admin_roles ORDER BY 1, 2")],
    )


async def test_every_admin_route_with_each_role(asite: Site) -> None:
    app = asite.server.app
    served = {(r.method, r.resource.canonical) for r in app.router.routes()
              if r.resource is not None and r.resource.canonical.startswith("/admin")}
    assert served == {(m, p) for m, p, _ in ROUTES}, "a route without a declared permission"
    assert len(ROUTES) >= 40
    ids = await _fixtures(asite)
    walk = [(m, p, perm) for m, p, perm in ROUTES if p != "/admin/lock"]

    # -- no member, a member without a role, staff with a locked admin area: all refused --------------------
    anon = await asite.visitor()
    plain = await asite.member("plain@example.com", usd=None, btc=None)
    locked = await staff(asite, "locked@example.com", "admin", unlock=False)
    before = await _money(asite)
    for method, path, _perm in walk:
        url = _path(path, ids)
        status, where = await _request(anon, method, url)
        assert (status, where.split("?")[0]) == ((303, "/login") if method == "GET" else (403, "")), (method, url)
        status, _ = await _request(plain, method, url)
        assert status == 403, (method, url, "a member without a role")
        status, where = await _request(locked, method, url)
        if path == "/admin/unlock":
            assert status == (200 if method == "GET" else 400), url
        elif method == "GET":
            assert (status, where.split("?")[0]) == (303, "/admin/unlock"), (url, "locked staff")
        else:
            assert status == 403, (method, url, "locked staff")
    assert await _money(asite) == before
    denied = [r for r in await audit_rows(asite.ex, "admin.denied") if r["actor"] == "plain@example.com"]
    assert len(denied) == len(walk)  # every refusal of the member is in the audit log

    # -- each role, unlocked: allowed exactly where its permission says ------------------------------------------
    walkers = {role: await staff(asite, f"{role}@example.com", role) for role in ("support", "finance", "admin")}
    for role, v in walkers.items():
        money = await _money(asite)
        n_denied = len(await audit_rows(asite.ex, "admin.denied"))
        refused = 0
        for method, path, perm in walk:
            url = _path(path, ids)
            status, _ = await _request(v, method, url)
            allowed = perm is None or role in PERMISSIONS[perm]
            assert (status != 403) == allowed, (role, method, url, status)
            assert status < 500, (role, method, url)
            refused += not allowed
        assert len(await audit_rows(asite.ex, "admin.denied")) == n_denied + refused
        if role == "support":
            assert await _money(asite) == money, "support moved money or changed trading"
        status, where = await _request(v, "POST", "/admin/lock")
        assert status == 303
        status, where = await _request(v, "GET", "/admin")
        assert (status, where.split("?")[0]) == (303, "/admin/unlock")


def test_support_has_no_money_permission() -> None:
    assert set(ROLES) == {"admin", "support", "finance"}
    for perm in MONEY:
        assert "support" not in PERMISSIONS[perm]
    assert all("admin" in allowed for allowed in PERMISSIONS.values())


# -- the unlock ------------------------------------------------------------------------------------------------
async def test_the_admin_area_unlocks_only_with_the_second_factor_and_relocks_when_idle(asite: Site) -> None:
    boss = await staff(asite, BOSS, unlock=False)
    assert await boss.get("/admin/unlock") == 200 and 'name="otp_code"' in boss.text
    status, _ = await boss.post("/admin/unlock", {"otp_code": "000000"})
    assert status == 400 and boss.error_of("otp_code") == "The two-factor code is wrong"
    status, _ = await boss.post("/admin/unlock", {"otp_code": PASSWORD})
    assert status == 400
    r = await boss.c.get("/admin", allow_redirects=False)
    assert r.status == 303
    code = boss.code()
    status, _ = await boss.post("/admin/unlock", {"otp_code": code, "next": "/admin/markets"})
    assert status == 200 and "Halt trading" in boss.text
    assert [r["ok"] for r in await audit_rows(asite.ex, "admin.unlock")] == [1]
    # the sliding expiry: a session idle longer than the unlock period is locked again
    sessions = await asite.ex.store.fetch("SELECT id, data FROM web_sessions WHERE member_id = ?", await asite.mid(BOSS))
    for row in sessions:
        await asite.ex.store.execute("UPDATE web_sessions SET data = ? WHERE id = ?",
                                     re.sub(r'"admin_unlocked_until":\d+', '"admin_unlocked_until":1', row["data"]), row["id"])
    r = await boss.c.get("/admin", allow_redirects=False)
    assert r.status == 303 and r.headers["Location"].startswith("/admin/unlock")


async def test_staff_without_a_second_factor_must_set_one_up(asite: Site) -> None:
    v = await asite.member(BOSS, usd=None, btc=None)
    assert await v.get("/admin/unlock") == 200
    status, _ = await v.post("/admin/unlock", {"otp_code": "123456"})
    assert status == 400 and "Set up two-factor authentication first" in v.error_of("otp_code")


# -- audit ---------------------------------------------------------------------------------------------------------
async def test_admin_actions_are_in_the_audit_log_with_who_what_and_where(asite: Site) -> None:
    boss = await staff(asite, BOSS)
    await boss.post("/admin/markets/btcusd/halt", {"reason": "maintenance"})
    await boss.post("/admin/markets/btcusd/resume", {})
    await boss.post("/admin/roles/grant", {"email": BOSS, "role": "support"})
    rows = await audit_rows(asite.ex)
    halt = next(r for r in rows if r["action"] == "admin.market.halt")
    assert halt["actor"] == BOSS and halt["actor_id"] == await asite.mid(BOSS) and halt["target"] == "market:btcusd"
    assert halt["ip"] == "127.0.0.1" and halt["ok"] == 1 and "maintenance" in halt["detail"]
    assert any(r["action"] == "admin.market.resume" for r in rows)
    assert any(r["action"] == "admin.role.grant" and r["target"] == f"member:{BOSS}" for r in rows)
    assert await boss.get("/admin/audit?action=admin.market.") == 200
    assert "admin.market.halt" in boss.text and "admin.role.grant" not in boss.text
    from node.security.audit import verify_chain

    assert (await verify_chain(asite.ex.store)).ok


# -- balance corrections ------------------------------------------------------------------------------------------
async def test_a_correction_needs_a_reason_and_a_second_admin(asite: Site) -> None:
    boss = await staff(asite, BOSS)
    boss2 = await staff(asite, BOSS2)
    await asite.member("ann@example.com", usd="100", btc=None)
    ann = await asite.mid("ann@example.com")
    status, _ = await boss.post(f"/admin/members/{ann}/adjust", {"currency": "usd", "amount": "25", "reason": " "})
    assert status == 400 and boss.error_of("reason") == "Please give a reason: it is kept in the audit log"
    assert boss.value_of("amount") == "25"  # what was typed stays
    status, _ = await boss.post(f"/admin/members/{ann}/adjust", {"currency": "usd", "amount": "2.1234567", "reason": "x"})
    assert status == 400 and "at most 6 decimal places" in boss.error_of("amount")
    assert await asite.ex.store.fetchval("SELECT COUNT(*) FROM balance_adjustments") == 0
    status, _ = await boss.post(f"/admin/members/{ann}/adjust", {"currency": "usd", "amount": "25",
                                                                 "reason": "ticket #7: fee charged twice"})
    assert status == 200 and "a second admin must approve it" in flash(boss)
    adj = int(await asite.ex.store.fetchval("SELECT MAX(id) FROM balance_adjustments"))
    assert (await balances(asite.ex, ann))["usd"] == (100_000_000, 0)  # nothing moves before the approval
    await boss.post(f"/admin/adjustments/{adj}/approve", {})
    assert "you proposed this one" in flash(boss)
    assert (await balances(asite.ex, ann))["usd"] == (100_000_000, 0)
    await boss2.post(f"/admin/adjustments/{adj}/approve", {})
    assert "approved and booked" in flash(boss2)
    assert (await balances(asite.ex, ann))["usd"] == (125_000_000, 0)
    row = await asite.ex.store.fetchrow("SELECT * FROM ledger WHERE ref_type = 'adjustment' AND ref_id = ?", adj)
    assert row is not None and row["reason"] == "fix" and int(row["d_balance"]) == 25_000_000
    await boss2.post(f"/admin/adjustments/{adj}/approve", {})
    assert "already approved" in flash(boss2)
    # a correction that would make a balance negative stays pending
    await boss.post(f"/admin/members/{ann}/adjust", {"currency": "usd", "amount": "-1000", "reason": "clawback"})
    adj2 = int(await asite.ex.store.fetchval("SELECT MAX(id) FROM balance_adjustments"))
    await boss2.post(f"/admin/adjustments/{adj2}/approve", {})
    assert "balance is too low" in flash(boss2)
    assert await asite.ex.store.fetchval("SELECT state FROM balance_adjustments WHERE id = ?", adj2) == "pending"
    await boss2.post(f"/admin/adjustments/{adj2}/reject", {"note": ""})
    assert "Please give a reason" in flash(boss2)
    await boss2.post(f"/admin/adjustments/{adj2}/reject", {"note": "wrong amount"})
    assert await asite.ex.store.fetchval("SELECT state FROM balance_adjustments WHERE id = ?", adj2) == "rejected"
    report = await audit(asite.ex.store, asite.ex.config.markets)
    assert report.ok, report.lines()  # the books still balance: corrections count like deposits
    actions = [r["action"] for r in await audit_rows(asite.ex) if r["action"].startswith("admin.adjust.")]
    assert actions.count("admin.adjust.propose") == 2 and "admin.adjust.approve" in actions
    assert "admin.adjust.reject" in actions


# -- markets -------------------------------------------------------------------------------------------------------
async def test_halting_a_market_refuses_orders_with_a_clear_error_until_resumed(asite: Site) -> None:
    boss = await staff(asite, BOSS)
    ann = await asite.member("ann@example.com")
    keys = asite.server.app[KEYS]
    access, secret = await keys.create(await asite.mid("ann@example.com"), "bot", "all", "", None, now=1)
    api = ApiClient(str(asite.server.make_url("")), access, secret)
    try:
        status, _ = await boss.post("/admin/markets/btcusd/halt", {"reason": "incident"})
        assert "Trading on btcusd is halted" in flash(boss)
        with pytest.raises(ApiError) as info:
            await api.post("/orders", market="btcusd", side="buy", volume="0.1", price="100")
        assert info.value.status == 400 and info.value.code == 3002
        assert info.value.body["error"]["message"] == "market btcusd is halted, trading is paused"
        status, body = await ann.post("/markets/btcusd/orders", {"side": "buy", "ord_type": "limit", "price": "100",
                                                                 "volume": "0.1"})
        assert status == 400 and ann.general_error() == "Trading on BTC/USD is halted: no new orders until it resumes"
        await api.post("/orders", market="ltcbtc", side="buy", volume="1", price="0.001")  # other markets trade on
        await boss.post("/admin/markets/btcusd/resume", {})
        assert "resumed" in flash(boss)
        order = await api.post("/orders", market="btcusd", side="buy", volume="0.1", price="100")
        assert order["state"] == "wait"
    finally:
        await api.close()


async def test_cancel_all_orders_of_a_market_and_change_its_fees(asite: Site) -> None:
    boss = await staff(asite, BOSS)
    ann = await asite.member("ann@example.com")
    bob = await asite.member("bob@example.com")
    for v, side, price in ((ann, "buy", "100"), (ann, "buy", "99"), (bob, "sell", "200")):
        await v.post("/markets/btcusd/orders", {"side": side, "ord_type": "limit", "price": price, "volume": "1"})
    await asite.ex.quiesce()
    assert await asite.ex.store.fetchval("SELECT COUNT(*) FROM orders WHERE state = 'wait'") == 3
    await boss.post("/admin/markets/btcusd/cancel_all", {})
    assert "3 orders of btcusd are cancelled" in flash(boss)
    assert (await balances(asite.ex, await asite.mid("ann@example.com")))["usd"] == (100_000_000_000, 0)

    status, _ = await boss.post("/admin/markets/btcusd/fees", {"maker_fee": "0.5", "taker_fee": "0.002"})
    assert status == 400 and "fees must be between 0 and 0.1" in boss.general_error() + boss.text
    status, _ = await boss.post("/admin/markets/btcusd/fees", {"maker_fee": "0.0005", "taker_fee": "abc"})
    assert status == 400
    status, _ = await boss.post("/admin/markets/btcusd/fees", {"maker_fee": "0.0005", "taker_fee": "0.003"})
    assert status == 200 and "changed for new trades" in flash(boss)
    assert "maker 0.05%, taker 0.3%" in boss.text
    entry = next(r for r in await audit_rows(asite.ex, "admin.market.fees") if r["ok"])
    assert "maker 0.001 -> 0.0005, taker 0.002 -> 0.003" in entry["detail"]
    # a new trade pays the new fees: bob sells 1 BTC at 100 into ann's bid (ann is the maker)
    await ann.post("/markets/btcusd/orders", {"side": "buy", "ord_type": "limit", "price": "100", "volume": "1"})
    await bob.post("/markets/btcusd/orders", {"side": "sell", "ord_type": "limit", "price": "100", "volume": "1"})
    await asite.ex.quiesce()
    t = await asite.ex.store.fetchrow("SELECT * FROM trades ORDER BY id DESC LIMIT 1")
    assert t is not None and int(t["bid_fee"]) == 50_000 and int(t["ask_fee"]) == 300_000  # 0.05% of 1 BTC, 0.3% of 100 USD
    visitor = await asite.visitor()
    assert await visitor.get("/pages/fees") == 200 and "0.05%" in visitor.text and "0.3%" in visitor.text
    # every other view shows the rates in force too, not the configured ones
    assert await visitor.get("/api/v2/fees") == 200
    assert {"market": "btcusd", "maker": "0.0005", "taker": "0.003"} in json.loads(visitor.text)
    assert await visitor.get("/markets/btcusd") == 200
    page_config = json.loads(visitor.text.split('id="market-config">', 1)[1].split("</script>", 1)[0])
    assert (page_config["makerFee"], page_config["takerFee"]) == ("50000", "300000")  # the order form's fee preview
    assert "0.05%" in visitor.text and "0.3%" in visitor.text


# -- members ------------------------------------------------------------------------------------------------------
async def test_member_search_by_email_name_phone_and_deposit_address(asite: Site) -> None:
    boss = await staff(asite, BOSS)
    await asite.member("zhang.wei@example.com", usd=None, btc=None)
    mid = await asite.mid("zhang.wei@example.com")
    await asite.ex.store.execute(
        "INSERT INTO kyc_profiles (member_id, state, full_name, phone, updated_at) VALUES (?, 'verifying', 'Wei Zhang', "
        "'+8613812345678', 1)", mid)
    ref = (await asite.ex.funds.deposit_address(mid, "usd"))["address"]
    for q in ("ZHANG.WEI", "wei zhang", "+86 138 1234 5678", ref, str(mid)):
        assert await boss.get(f"/admin/members?q={q.replace('+', '%2B').replace(' ', '+')}") == 200
        assert f'href="/admin/members/{mid}"' in boss.text, q
    await boss.get("/admin/members?q=nobody-like-this")
    assert "No member matches" in boss.text
    assert await boss.get(f"/admin/members/{mid}") == 200 and ref in boss.text
    assert any(r["action"] == "admin.member.view" and r["member_id"] == mid for r in await audit_rows(asite.ex))


async def test_disable_log_in_and_api_and_reset_two_factor_with_a_reason(asite: Site) -> None:
    boss = await staff(asite, BOSS)
    ann = await asite.member("ann@example.com")
    mid = await asite.mid("ann@example.com")
    access, secret = await asite.server.app[KEYS].create(mid, "bot", "all", "", None, now=1)
    api = ApiClient(str(asite.server.make_url("")), access, secret)
    try:
        await boss.post(f"/admin/members/{mid}/api", {"disabled": "1", "reason": "bot abuse"})
        assert "API access is disabled" in flash(boss)
        with pytest.raises(ApiError) as info:
            await api.get("/members/me")
        assert info.value.code == 2009
        await boss.post(f"/admin/members/{mid}/api", {"disabled": "0"})
        assert (await api.get("/members/me"))["email"] == "ann@example.com"
    finally:
        await api.close()
    status, _ = await boss.post(f"/admin/members/{mid}/login", {"disabled": "1", "reason": ""})
    assert status == 400 and "Please give a reason" in boss.text
    await boss.post(f"/admin/members/{mid}/login", {"disabled": "1", "reason": "stolen account, owner called"})
    assert "Log in is disabled" in flash(boss)
    assert await ann.get("/funds") == 200 and "Log in" in ann.text and "ann@example.com" not in ann.text  # session ended
    fresh = await asite.visitor()
    await fresh.post("/login", {"email": "ann@example.com", "password": PASSWORD})
    assert "This account is disabled" in fresh.general_error()
    # two-factor reset: a reason is required, then the member's authenticator is gone
    from tests.test_admin_fixtures import enroll

    await enroll(asite, mid)
    status, _ = await boss.post(f"/admin/members/{mid}/2fa", {"reason": ""})
    assert status == 400 and "Please give a reason" in boss.text
    await boss.post(f"/admin/members/{mid}/2fa", {"reason": "lost phone, identity checked by video call"})
    assert "Two-factor authentication is reset" in flash(boss)
    assert await asite.ex.store.fetchval("SELECT COUNT(*) FROM security_totp WHERE member_id = ?", mid) == 0
    mine = [r for r in await audit_rows(asite.ex) if r["member_id"] == mid and r["action"].startswith("admin.")]
    assert {"admin.member.disable_api", "admin.member.enable_api", "admin.member.disable_login",
            "admin.member.reset_2fa"} <= {r["action"] for r in mine}


# -- deposits and withdrawals -------------------------------------------------------------------------------
async def test_withdrawal_queue_and_bank_deposits(asite: Site) -> None:
    fin = await staff(asite, "fin@example.com", "finance")
    await asite.member("ann@example.com", usd="500", btc=None)
    mid = await asite.mid("ann@example.com")
    ref = (await asite.ex.funds.deposit_address(mid, "usd"))["address"]
    status, _ = await fin.post("/admin/deposits/bank", {"currency": "usd", "reference": ref, "amount": "",
                                                        "bank_ref": "B-1"})
    assert status == 400 and fin.error_of("amount") == "This field is required"
    status, _ = await fin.post("/admin/deposits/bank", {"currency": "usd", "reference": "NOPE", "amount": "10",
                                                        "bank_ref": "B-1"})
    assert status == 400 and "does not belong to any member" in fin.text
    status, _ = await fin.post("/admin/deposits/bank", {"currency": "usd", "reference": ref, "amount": "250.5",
                                                        "bank_ref": "B-1"})
    assert status == 200 and "250.50 USD is credited" in flash(fin)
    assert (await balances(asite.ex, mid))["usd"][0] == 750_500_000

    w = await asite.ex.funds.request_withdraw(mid, "usd", "100", "DE12 5001 0517 0648 4898 90")
    # The member's mailed confirmation and the wallet's audit, done at once: now it waits for an admin.
    await asite.ex.store.execute("UPDATE withdraws SET state = 'submitted', audited_at = 1 WHERE id = ?", w["id"])
    await fin.get("/admin/funds")
    assert w["sn"] in fin.text
    await fin.post(f"/admin/withdraws/{w['id']}/approve", {})
    assert "is approved" in flash(fin)
    await fin.post(f"/admin/withdraws/{w['id']}/process", {"bank_ref": ""})
    assert "Enter the bank's reference" in flash(fin)
    await fin.post(f"/admin/withdraws/{w['id']}/process", {"bank_ref": "OUT-77"})
    assert await asite.ex.store.fetchval("SELECT state FROM withdraws WHERE id = ?", w["id"]) == "done"
    w2 = await asite.ex.funds.request_withdraw(mid, "usd", "50", "DE12 5001 0517 0648 4898 90")
    await fin.post(f"/admin/withdraws/{w2['id']}/reject", {"reason": ""})
    assert "Please give a reason" in flash(fin)
    await fin.post(f"/admin/withdraws/{w2['id']}/reject", {"reason": "name does not match the account"})
    assert await asite.ex.store.fetchval("SELECT state FROM withdraws WHERE id = ?", w2["id"]) == "rejected"
    report = await audit(asite.ex.store, asite.ex.config.markets)
    assert report.ok, report.lines()
    acts = {r["action"] for r in await audit_rows(asite.ex) if r["actor"] == "fin@example.com" and r["ok"]}
    assert {"admin.deposit.bank_confirm", "admin.withdraw.approve", "admin.withdraw.process",
            "admin.withdraw.reject"} <= acts


async def test_withdrawal_holds_are_released_by_finance_and_the_reconciliation_page_answers(asite: Site) -> None:
    from node.wallet.records import freeze_withdrawals

    fin = await staff(asite, "fin@example.com", "finance")
    await asite.member("ann@example.com", usd="500", btc=None)
    mid = await asite.mid("ann@example.com")
    async with asite.ex.store.transaction() as tx:
        await freeze_withdrawals(tx, mid, "usd", "deposit:1", 7_000_000, "deposit X was reversed", 1)
    with pytest.raises(WithdrawFailed, match="on hold: deposit X was reversed"):
        await asite.ex.funds.request_withdraw(mid, "usd", "100", "DE12 5001 0517 0648 4898 90")
    await fin.get("/admin/funds")
    assert "deposit X was reversed" in fin.text and "7.00" in fin.text
    hold = (await asite.ex.funds.freezes())[0]
    await fin.post(f"/admin/holds/{hold['id']}/release", {"resolution": ""})
    assert await asite.ex.funds.freezes() != []
    await fin.post(f"/admin/holds/{hold['id']}/release", {"resolution": "repaid by bank transfer"})
    assert "may withdraw again" in flash(fin) and await asite.ex.funds.freezes() == []
    acts = {r["action"] for r in await audit_rows(asite.ex) if r["actor"] == "fin@example.com" and r["ok"]}
    assert "admin.withdraw_hold.release" in acts
    await asite.ex.funds.request_withdraw(mid, "usd", "100", "DE12 5001 0517 0648 4898 90")
    assert await fin.get("/admin/reconcile") == 200 and "No coin wallets are configured" in fin.text


# -- dashboard --------------------------------------------------------------------------------------------------
async def test_the_dashboard_shows_money_members_markets_nodes_and_charts(asite: Site) -> None:
    boss = await staff(asite, BOSS)
    ann = await asite.member("ann@example.com", usd="1000", btc="2")
    bob = await asite.member("bob@example.com", usd="1000", btc="2")
    await ann.post("/markets/btcusd/orders", {"side": "buy", "ord_type": "limit", "price": "100", "volume": "1"})
    await bob.post("/markets/btcusd/orders", {"side": "sell", "ord_type": "limit", "price": "100", "volume": "1"})
    await asite.ex.quiesce()
    assert await boss.get("/admin") == 200
    usd = re.search(r'<tr data-currency="usd">(.*?)</tr>', boss.text, re.S)
    assert usd is not None
    assert 'data-k="balance">1999.80<' in usd.group(1)  # ann 900 + bob 1099.80: the fee went to the house
    assert 'data-k="fees">0.20<' in usd.group(1)  # 0.2% taker fee of 100 USD in the house's btcusd fee account
    assert re.search(r'id="kpi-members">3<', boss.text)  # boss, ann, bob (house accounts not counted)
    assert 'data-market="btcusd"' in boss.text and "trading" in boss.text
    assert 'data-node="main"' in boss.text and "market:btcusd" in boss.text
    assert 'id="chart-data"' in boss.text and '<script src="/static/admin.js">' in boss.text
    r = await boss.c.get("/admin/stats.json")
    data = await r.json()
    assert len(data["labels"]) == 30 and data["signups"][0]["values"][-1] == 3
    btcusd = next(s for s in data["volume"] if s["name"] == "BTC/USD")
    assert btcusd["values"][-1] == "100.0" and btcusd["unit"] == "USD"


# -- pages and roles ---------------------------------------------------------------------------------------------
async def test_editable_pages_in_both_languages_render_safely(asite: Site) -> None:
    sup = await staff(asite, "sup@example.com", "support")
    visitor = await asite.visitor()
    assert await visitor.get("/pages/terms") == 200 and "Terms of use" in visitor.text
    status, _ = await sup.post("/admin/pages/terms/en", {"title": "", "body": ""})
    assert status == 400 and sup.error_of("title") == "This field is required"
    body = "# Rules\n\nBe nice. <script>alert(1)</script>\n\n- [our fees](/pages/fees)\n- [bad](javascript:alert(1))"
    status, _ = await sup.post("/admin/pages/terms/en", {"title": "House rules", "body": body})
    assert status == 200 and "The page is saved" in flash(sup)
    await visitor.get("/pages/terms")
    assert "<h1>House rules</h1>" in visitor.text and "<h2>Rules</h2>" in visitor.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in visitor.text and "<script>alert" not in visitor.text
    assert '<a href="/pages/fees">our fees</a>' in visitor.text and 'href="javascript' not in visitor.text
    await sup.post("/admin/pages/terms/zh-CN", {"title": "规则", "body": "请友善。"})
    await visitor.get("/lang/zh-CN")
    await visitor.get("/pages/terms")
    assert "<h1>规则</h1>" in visitor.text
    assert await visitor.get("/pages/nothing") == 404
    assert any(r["action"] == "admin.cms.save" and r["target"] == "page:terms:en" for r in await audit_rows(asite.ex))


async def test_roles_are_granted_by_admins_and_configured_admins_stay(asite: Site) -> None:
    boss = await staff(asite, BOSS)
    await asite.member("sam@example.com", usd=None, btc=None)
    status, _ = await boss.post("/admin/roles/grant", {"email": "nobody@example.com", "role": "support"})
    assert status == 400 and "no member with e-mail" in boss.text
    status, _ = await boss.post("/admin/roles/grant", {"email": "sam@example.com", "role": "root"})
    assert status == 400 and "role must be one of admin, support, finance" in boss.text
    await boss.post("/admin/roles/grant", {"email": "sam@example.com", "role": "support"})
    sam = await asite.mid("sam@example.com")
    assert await roles.roles_of(asite.ex.store, asite.ex.config, sam, "sam@example.com") == {"support"}
    await boss.get("/admin/roles")
    assert "from cluster.toml" in boss.text and "sam@example.com" in boss.text
    await boss.post("/admin/roles/revoke", {"email": "sam@example.com", "role": "support"})
    assert await roles.roles_of(asite.ex.store, asite.ex.config, sam, "sam@example.com") == frozenset()
    await boss.post("/admin/roles/revoke", {"email": BOSS, "role": "admin"})
    assert "cannot take their own admin role" in flash(boss)
    await asite.member(BOSS2, usd=None, btc=None)
    boss2 = await asite.mid(BOSS2)
    assert await roles.roles_of(asite.ex.store, asite.ex.config, boss2, BOSS2) == {"admin"}
    await asite.ex.store.execute("UPDATE members SET disabled = 1 WHERE id = ?", boss2)
    assert await roles.roles_of(asite.ex.store, asite.ex.config, boss2, BOSS2) == frozenset()  # a disabled admin has none


def test_admin_table_of_the_configuration() -> None:
    c = admin_config("sqlite:///x.db")
    assert c.admin.emails == (BOSS, BOSS2)
    assert dict(c.admin.withdraw_limits)[1] == (("btc", 1_000_000_000), ("usd", 100_000_000_000))
    for bad, msg in (({"emails": ["not-mail"]}, "admin.emails[0]: not an e-mail address"),
                     ({"withdraw_limits": {"gold": {}}}, "admin.withdraw_limits.gold: levels are named"),
                     ({"withdraw_limits": {"level1": {"xyz": "1"}}}, "admin.withdraw_limits.level1.xyz: unknown currency"),
                     ({"withdraw_limits": {"level1": {"btc": "0.000000001"}}}, "admin.withdraw_limits.level1.btc"),
                     ({"owner": "me"}, "admin.owner: unknown key")):
        with pytest.raises(ConfigError, match=re.escape(msg)):
            admin_config("sqlite:///x.db", admin=bad)


async def test_admin_commands_of_the_cli(tmp_path: Any) -> None:
    from tests.nodeproc import cli, write_config

    extra = ('\n[currencies.usd.wallet]\nchannel = "bank"\nbank_name = "B"\naccount_holder = "H"\n'
             'account_number = "DE89 3704 0044 0532 0130 00"\n')
    text = write_config(tmp_path, f"sqlite:///{tmp_path}/cli.db", 0).read_text()
    config = tmp_path / "cluster.toml"
    config.write_text(text.replace("[currencies.ltc]", extra + "\n[currencies.ltc]"))
    key = tmp_path / "secret.key"
    cli(config, "member", "create", "sam@example.com", key_file=key)
    assert "granted" in cli(config, "admin", "grant", "sam@example.com", "finance", key_file=key)
    assert "sam@example.com\tfinance" in cli(config, "admin", "staff", key_file=key)
    cli(config, "deposit", "sam@example.com", "usd", "100", key_file=key)
    from node.config import load_config

    ex = await start_exchange(load_config(config), actors=False)
    try:
        mid = int((await ex.member_by_email("sam@example.com"))["id"])
        ref = (await ex.funds.deposit_address(mid, "usd"))["address"]
        w = await ex.funds.request_withdraw(mid, "usd", "30", "DE12 5001 0517 0648 4898 90")
        await ex.store.execute("UPDATE withdraws SET state = 'submitted', audited_at = 1 WHERE id = ?", w["id"])
    finally:
        await ex.stop()
    assert f"#{w['id']}" in cli(config, "admin", "withdraws", key_file=key)
    assert "accepted" in cli(config, "admin", "approve", str(w["id"]), key_file=key)
    assert "done" in cli(config, "admin", "process", str(w["id"]), "--bank-ref", "OUT-1", key_file=key)
    assert "credited" in cli(config, "admin", "bank-deposit", "usd", ref, "12.5", "IN-1", key_file=key)
    with pytest.raises(RuntimeError, match="reason is missing|Please give a reason"):
        cli(config, "admin", "reject", str(w["id"]), "--reason", " ", key_file=key)
    log = cli(config, "admin", "log", key_file=key)
    for action in ("admin.role.grant", "admin.withdraw.approve", "admin.withdraw.process", "admin.deposit.bank_confirm"):
        assert action in log
    assert "cli:" in log


async def test_a_2fa_reset_from_the_shell(tmp_path: Any) -> None:
    """`admin reset-2fa` gets the server key as `serve` does (here EXCHANGE_SECRET_KEY), so the
    security module's reset runs from a shell, audited with the reason."""
    import base64
    import subprocess
    import sys

    from node.config import load_config
    from node.secrets_box import SecretBox
    from node.security.totp import Totp
    from tests.nodeproc import ROOT, _env, write_config

    config = write_config(tmp_path, f"sqlite:///{tmp_path}/cli.db", 0)
    master = base64.urlsafe_b64encode(b"s" * 32)
    ex = await start_exchange(load_config(config), actors=False)
    try:
        mid = await ex.create_member("lost@example.com")
        totp = Totp(ex.store, SecretBox(master, "totp-secret"), b"pepper")
        await totp.pending_secret(mid)
        await totp.activate(mid)
        assert await totp.enabled(mid)
    finally:
        await ex.stop()

    def admin(*args: str) -> str:
        out = subprocess.run([sys.executable, "-m", "node", "--config", str(config), "admin", *args], cwd=ROOT,
                             env={**_env(), "EXCHANGE_SECRET_KEY": master.decode()}, capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0, out.stderr
        return out.stdout

    assert f"two-factor authentication of member {mid} reset" in admin(
        "reset-2fa", "lost@example.com", "--reason", "lost phone, identity checked")
    assert f"member {mid} had no second factor" in admin("reset-2fa", "lost@example.com", "--reason", "again")
    assert "admin.member.reset_2fa" in admin("log")
    ex = await start_exchange(load_config(config), actors=False)
    try:
        assert not await Totp(ex.store, SecretBox(master, "totp-secret"), b"pepper").enabled(mid)
        detail = await ex.store.fetchval("SELECT detail FROM audit_log WHERE action = '2fa.reset' ORDER BY seq LIMIT 1")
        assert "lost phone, identity checked" in str(detail)
    finally:
        await ex.stop()


async def test_a_recovery_code_unlocks_once(asite: Site) -> None:
    v = await staff(asite, BOSS)
    await v.post("/admin/lock", {})
    assert (await v.c.get("/admin", allow_redirects=False)).status == 303
    code = v.recovery[-1]
    await v.unlock()
    await v.post("/admin/lock", {})
    status, _ = await v.post("/admin/unlock", {"otp_code": code})
    assert status == 400 and v.error_of("otp_code") == "The two-factor code is wrong"


# -- languages ---------------------------------------------------------------------------------------------------
def _texts() -> dict[str, str]:
    """Every text the admin area and the member pages of KYC, tickets and pages mark for translation."""
    import ast
    from pathlib import Path

    import jinja2
    from jinja2.ext import extract_from_ast

    root = Path(__file__).resolve().parents[1]
    found: dict[str, str] = {}
    env = jinja2.Environment()
    templates = [*sorted((root / "templates/admin").glob("*.html")),
                 *(root / "templates" / n for n in ("kyc.html", "tickets.html", "ticket.html", "cms_page.html"))]
    for p in templates:
        for _, _, msg in extract_from_ast(env.parse(p.read_text()), gettext_functions=("_",)):
            first = msg[0] if isinstance(msg, tuple) else msg
            if isinstance(first, str):
                found.setdefault(first, p.name)
    admin_pages = [str(p.relative_to(root)) for p in sorted((root / "node/web/pages/admin").glob("*.py"))]
    member_pages = [f"node/web/pages/{m}.py" for m in ("member_extra", "kyc", "support", "cms")]
    for name in (*admin_pages, *member_pages, "node/kyc.py", "node/tickets.py",
                 "node/cms.py", "node/admin/uploads.py", "node/admin/service.py"):
        for node in ast.walk(ast.parse((root / name).read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("_", "N_")
                    and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
                found.setdefault(node.args[0].value, name)
    return found


def test_every_text_of_the_admin_area_and_the_member_pages_has_a_chinese_translation() -> None:
    import string

    from node.web.i18n import catalog

    zh = catalog("zh-CN")
    texts = _texts()
    assert len(texts) > 300
    assert not [t for t in texts if t not in zh.messages]
    names = lambda s: sorted(f for _, f, _, _ in string.Formatter().parse(s) if f)  # noqa: E731
    assert not [t for t in texts if names(t) != names(zh.messages[t])]


async def test_the_member_pages_in_chinese_have_no_english_left_and_no_inline_code(asite: Site) -> None:
    ann = await asite.member("ann@example.com")
    await post_files(ann, "/support/tickets", {"title": "Hilfe", "body": "x"}, {})
    tid = int(await asite.ex.store.fetchval("SELECT MAX(id) FROM tickets"))
    boss = await staff(asite, BOSS)
    english = re.compile(r">\s*([A-Z][a-z]+(?: [a-z]+){2,})\s*<")
    for v, paths in ((ann, ["/kyc", "/support/tickets", f"/support/tickets/{tid}", "/pages/fees", "/pages/terms", "/pages/api"]),
                     (boss, ["/admin", "/admin/members", "/admin/markets", "/admin/funds", "/admin/kyc", "/admin/tickets",
                             f"/admin/tickets/{tid}", "/admin/pages", "/admin/roles", "/admin/audit", "/admin/adjustments"])):
        await v.get("/lang/zh-CN")
        for path in paths:
            assert await v.get(path) == 200, path
            assert not re.search(r"<script(?![^>]*\bsrc=)(?![^>]*application/json)[^>]*>", v.text), path
            assert " style=" not in v.text and " on" + "click=" not in v.text, path
            data = ("Proof of solvency", "Terms of use")  # /admin/pages lists the English pages' own titles
            left = [m for m in english.findall(v.text) if m not in data]
            assert not left, (path, left)
