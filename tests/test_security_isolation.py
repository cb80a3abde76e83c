"""One member can never read or change another's orders, balances, keys, withdrawals, addresses,
tickets or security log: every private page and API v2 endpoint is tried as Ann with Bob's ids.

A tripwire keeps this complete: every member route of the app that takes an id must be listed here,
so a new one (say, a future `/support/...{id}`) fails this test until it is covered."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from node.admin.uploads import Incoming
from node.web.app import KEYS
from node.web.pages.admin import TICKETS
from tests.apiclient import ApiClient, ApiError
from tests.security_site import Site, security_site
from tests.test_pages import Visitor

BOB_ADDRESS = "ext-bob-private-address"
BOB_TITLE = "bob private ticket"
BOB_NOTE = b"bob's private attachment"

# (method, route) of every member page route with an id, and how it is tried below
ID_ROUTES = {
    ("POST", "/orders/{id}/cancel"), ("POST", "/api_keys/{id}/delete"), ("POST", "/funds/withdraws/{id}/cancel"),
    ("POST", "/security/addresses/{id}/delete"), ("GET", "/support/tickets/{id}"),
    ("POST", "/support/tickets/{id}/comments"), ("POST", "/support/tickets/{id}/close"),
    ("POST", "/support/tickets/{id}/reopen"), ("GET", "/support/files/{id}"),
}


async def bob_state(site: Site, bob: int) -> dict[str, Any]:
    s = site.ex.store
    return {
        "orders": [dict(r) for r in await s.fetch("SELECT id, state, remaining FROM orders WHERE member_id = ? ORDER BY id", bob)],
        "accounts": [dict(r) for r in await s.fetch("SELECT * FROM accounts WHERE member_id = ? ORDER BY currency", bob)],
        "keys": [dict(r) for r in await s.fetch("SELECT id, deleted_at, disabled FROM api_tokens WHERE member_id = ?", bob)],
        "withdraws": [dict(r) for r in await s.fetch("SELECT id, state FROM withdraws WHERE member_id = ?", bob)],
        "addresses": [dict(r) for r in await s.fetch("SELECT id, deleted_at FROM withdraw_addresses WHERE member_id = ?", bob)],
        "tickets": [dict(r) for r in await s.fetch("SELECT id, state, updated_at FROM tickets WHERE member_id = ?", bob)],
        "comments": await s.fetchval("SELECT COUNT(*) FROM ticket_comments"),
    }


def leaks(text: str, markers: list[str]) -> list[str]:
    return [m for m in markers if m in text]


async def test_a_member_never_reaches_another_members_things(tmp_path: Path) -> None:
    async with security_site(tmp_path, security={"withdraw_hold_hours": 0}) as (site, _):
        app = site.server.app
        ann_v = await site.member("ann@example.com", usd="1000", btc="1")
        bob_v = await site.member("bob@example.com", usd="777.77", btc="3.3333")
        ann, bob = await site.mid("ann@example.com"), await site.mid("bob@example.com")
        # Bob's things: a resting order, an API key, a held withdrawal and its address, a ticket with a file
        await bob_v.post("/markets/btcusd/orders", {"side": "buy", "ord_type": "limit", "price": "123.45", "volume": "1.2345"})
        await bob_v.post("/api_keys", [("label", "bob-bot"), ("scopes", "trade"), ("expiry", "30")])
        await bob_v.post("/funds/btc/withdraw", {"address": BOB_ADDRESS, "amount": "0.5"})
        tid = await app[TICKETS].open(bob, BOB_TITLE, "my account number is 12345", Incoming("note.txt", BOB_NOTE))
        s = site.ex.store
        ids = {
            "order": int(await s.fetchval("SELECT id FROM orders WHERE member_id = ?", bob)),
            "key": int(await s.fetchval("SELECT id FROM api_tokens WHERE member_id = ?", bob)),
            "withdraw": int(await s.fetchval("SELECT id FROM withdraws WHERE member_id = ?", bob)),
            "address": int(await s.fetchval("SELECT id FROM withdraw_addresses WHERE member_id = ?", bob)),
            "ticket": tid,
            "file": int(await s.fetchval("SELECT id FROM uploads WHERE member_id = ?", bob)),
        }
        bob_key = str(await s.fetchval("SELECT access_key FROM api_tokens WHERE member_id = ?", bob))
        bob_txid = str(await s.fetchval("SELECT txid FROM deposits WHERE member_id = ? AND currency = 'btc'", bob))
        markers = ["bob@example.com", bob_key, BOB_ADDRESS, BOB_TITLE, "bob-bot", "777.77", "3.3333", bob_txid]  # (his order is in the public book: not a secret)
        # Ann has some of her own, so that her lists are not trivially empty
        await ann_v.post("/markets/btcusd/orders", {"side": "buy", "ord_type": "limit", "price": "100", "volume": "1"})
        before = await bob_state(site, bob)

        # pages with Bob's ids: not found (or "does not exist"), nothing changed
        tried: set[tuple[str, str]] = set()

        async def post(route: str, path: str, data: dict[str, Any] | None = None) -> str:
            tried.add(("POST", route))
            status, text = await ann_v.post(path, data or {})
            assert status in (200, 400, 404), (path, status)
            assert not leaks(text, markers), (path, leaks(text, markers))
            return text

        async def get(route: str, path: str) -> int:
            tried.add(("GET", route))
            status = await ann_v.get(path)
            assert not leaks(ann_v.text, markers), (path, leaks(ann_v.text, markers))
            return status

        assert "This order does not exist" in await post("/orders/{id}/cancel", f"/orders/{ids['order']}/cancel")
        assert "This API key does not exist" in await post("/api_keys/{id}/delete", f"/api_keys/{ids['key']}/delete")
        await post("/funds/withdraws/{id}/cancel", f"/funds/withdraws/{ids['withdraw']}/cancel")
        assert "This address does not exist" in await post("/security/addresses/{id}/delete",
                                                            f"/security/addresses/{ids['address']}/delete")
        assert await get("/support/tickets/{id}", f"/support/tickets/{tid}") == 404
        await post("/support/tickets/{id}/comments", f"/support/tickets/{tid}/comments", {"body": "ann was here"})
        await post("/support/tickets/{id}/close", f"/support/tickets/{tid}/close")
        await post("/support/tickets/{id}/reopen", f"/support/tickets/{tid}/reopen")
        assert await get("/support/files/{id}", f"/support/files/{ids['file']}") == 404
        assert BOB_NOTE.decode() not in ann_v.text
        await post("/markets/{market}/orders/cancel_all", "/markets/btcusd/orders/cancel_all")
        # every private page of Ann's shows nothing of Bob's
        for path in ("/funds", "/funds?currency=btc", "/funds?currency=usd", "/funds/balances.json",
                     "/markets/btcusd", "/markets/btcusd/me.json", "/api_keys", "/account", "/security",
                     "/security/audit", "/security/addresses", "/security/sms", "/support/tickets", "/kyc", "/solvency/me"):
            assert await get(path, path) in (200, 404), path

        # API v2 with Ann's key and Bob's ids
        access, secret = await app[KEYS].create(ann, "t", "all", now=int(time.time() * 1000))
        api = ApiClient(f"http://127.0.0.1:{site.server.port}", access, secret)
        try:
            for verb, path, params, status, code in (
                    ("GET", "/order", {"id": ids["order"]}, 404, 2004),
                    ("POST", "/order/delete", {"id": ids["order"]}, 400, 2003),  # Peatio: 2004 is GET /order's
                    ("GET", "/withdraw", {"id": ids["withdraw"]}, 404, 3103),
                    ("POST", "/withdraw/cancel", {"id": ids["withdraw"]}, 404, 3103),
                    ("GET", "/deposit", {"txid": bob_txid}, 404, 2012)):
                with pytest.raises(ApiError) as e:
                    await api.request(verb, path, {k: str(v) for k, v in params.items()})
                assert (e.value.status, e.value.code) == (status, code), (path, e.value.body)
                assert not leaks(str(e.value.body), [m for m in markers if m != bob_txid])  # (Ann's own input echoed)
            for path, params in (("/orders", {"market": "btcusd"}), ("/orders", {"market": "btcusd", "state": "cancel"}),
                                 ("/trades/my", {"market": "btcusd"}), ("/members/me", {}), ("/deposits", {"limit": "100"}),
                                 ("/withdraws", {"limit": "100"}), ("/deposit_address", {"currency": "btc"})):
                body = await api.get(path, **params)
                assert not leaks(str(body), markers), (path, body)
            me = await api.get("/members/me")
            assert me["email"] == "ann@example.com"
            cleared = await api.post("/orders/clear")
            assert all(o["id"] != ids["order"] for o in cleared)
        finally:
            await api.close()

        assert await bob_state(site, bob) == before  # nothing of Bob's changed
        # the tripwire: every member route with an id of the app is covered above
        with_ids = {(r.method, r.resource.canonical) for r in app.router.routes()
                    if r.resource is not None and "{id}" in r.resource.canonical and r.method != "HEAD"
                    and not r.resource.canonical.startswith(("/admin/", "/api/"))}
        assert with_ids <= ID_ROUTES, f"new member routes with ids, add them to this test: {with_ids - ID_ROUTES}"
        assert ID_ROUTES <= tried


async def test_bob_still_sees_his_own(tmp_path: Path) -> None:
    """The other side of the coin: the same pages do show a member's own things (the test above is
    not passing because the pages show nothing at all)."""
    async with security_site(tmp_path, security={"withdraw_hold_hours": 0}) as (site, _):
        bob_v: Visitor = await site.member("bob@example.com", usd="777.77", btc="3.3333")
        await bob_v.post("/api_keys", [("label", "bob-bot"), ("scopes", "trade"), ("expiry", "30")])
        await bob_v.post("/funds/btc/withdraw", {"address": BOB_ADDRESS, "amount": "0.5"})
        assert await bob_v.get("/api_keys") == 200 and "bob-bot" in bob_v.text
        assert await bob_v.get("/funds?currency=btc") == 200 and BOB_ADDRESS in bob_v.text
        assert await bob_v.get("/security/addresses") == 200 and BOB_ADDRESS in bob_v.text
        assert await bob_v.get("/funds?currency=usd") == 200 and "777.77" in bob_v.text
