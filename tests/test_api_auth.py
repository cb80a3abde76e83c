"""Signed requests and API tokens: every Peatio auth code (2001, 2005-2011), the order of checks
(signature before the tonce is burnt), replay memory in the store (it survives a restart), tokens
(format, scopes, expiry, IP whitelist, soft delete, per-token and per-member disable), and secrets
encrypted at rest.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from node.apikeys import ApiKeys, parse_ip_whitelist, parse_scopes, well_formed_key
from node.errors import InvalidParameter, SecretUnreadable
from node.secrets_box import SecretBox
from node.web.signature import payload, sign, to_query
from tests.apiclient import ApiClient, ApiError
from tests.test_api_support import ApiServer, api_server


@pytest.fixture
async def srv(tmp_path: Path) -> Any:
    async with api_server(f"sqlite:///{tmp_path}/exchange.db", tmp_path) as s:
        yield s


def now_ms() -> int:
    return time.time_ns() // 1_000_000


async def raw(srv: ApiServer, verb: str, path: str, params: dict[str, Any]) -> tuple[int, Any]:
    """Send params exactly as given (already signed or not), in the query string."""
    async with aiohttp.ClientSession() as s, s.request(verb, f"{srv.base}/api/v2{path}?{to_query(params)}") as r:
        return r.status, await r.json()


def signed(access: str, secret: str, verb: str, path: str, params: dict[str, Any] | None = None,
           tonce: int | None = None) -> dict[str, Any]:
    p = dict(params or {}, access_key=access, tonce=str(tonce if tonce is not None else now_ms()))
    p["signature"] = sign(secret, payload(verb, "/api/v2" + path, p))
    return p


async def expect(srv: ApiServer, verb: str, path: str, params: dict[str, Any], status: int, code: int) -> str:
    got_status, body = await raw(srv, verb, path, params)
    assert (got_status, body["error"]["code"]) == (status, code), body
    message: str = body["error"]["message"]
    return message


async def test_missing_auth_params_2001(srv: ApiServer) -> None:
    _, access, secret = await srv.member("a@example.com")
    full = signed(access, secret, "GET", "/members/me")
    for drop in ("access_key", "tonce", "signature"):
        partial = {k: v for k, v in full.items() if k != drop}
        await expect(srv, "GET", "/members/me", partial, 401, 2001)


async def test_bad_signature_2005_does_not_burn_the_tonce(srv: ApiServer) -> None:
    _, access, secret = await srv.member("a@example.com")
    tonce = now_ms()
    forged = signed(access, "not-the-secret", "GET", "/members/me", tonce=tonce)
    await expect(srv, "GET", "/members/me", forged, 401, 2005)
    tampered = signed(access, secret, "GET", "/orders", {"market": "btcusd"}, tonce=tonce)
    tampered["market"] = "ltcbtc"
    await expect(srv, "GET", "/orders", tampered, 401, 2005)
    # the forged requests did not use the tonce up: the real client's request with it goes through
    status, body = await raw(srv, "GET", "/members/me", signed(access, secret, "GET", "/members/me", tonce=tonce))
    assert status == 200, body
    # uppercase hex is not Peatio's signature
    p = signed(access, secret, "GET", "/members/me")
    p["signature"] = p["signature"].upper()
    await expect(srv, "GET", "/members/me", p, 401, 2005)


async def test_replayed_tonce_2006_even_after_a_restart(database_url: str, tmp_path: Path) -> None:
    """On both backends: the replay memory is in the store, so a new node process refuses it too."""
    db = database_url
    async with api_server(db, tmp_path) as srv:
        _, access, secret = await srv.member("a@example.com")
        p = signed(access, secret, "GET", "/members/me")
        assert (await raw(srv, "GET", "/members/me", p))[0] == 200
        message = await expect(srv, "GET", "/members/me", p, 401, 2006)
        assert p["tonce"] in message
        # the same tonce on another endpoint is a replay too (the tonce is per key, not per path)
        await expect(srv, "GET", "/orders", signed(access, secret, "GET", "/orders", tonce=int(p["tonce"])), 401, 2006)
    async with api_server(db, tmp_path) as srv:  # a new node process on the same store
        await expect(srv, "GET", "/members/me", p, 401, 2006)


async def test_concurrent_replays_only_one_wins(srv: ApiServer) -> None:
    import asyncio

    _, access, secret = await srv.member("a@example.com")
    p = signed(access, secret, "GET", "/members/me")
    results = await asyncio.gather(*(raw(srv, "GET", "/members/me", p) for _ in range(10)))
    assert sorted(s for s, _ in results) == [200] + [401] * 9
    assert all(b["error"]["code"] == 2006 for s, b in results if s == 401)


ORDER = {"market": "btcusd", "side": "buy", "volume": "0.01", "price": "100"}


async def order_count(srv: ApiServer, member_id: int) -> int:
    return int(await srv.ex.store.fetchval("SELECT COUNT(*) FROM orders WHERE member_id = ?", member_id))


async def test_replayed_order_2006_places_nothing(database_url: str, tmp_path: Path) -> None:
    """An order's tonce is burnt in the transaction that accepts it: a replay, sequential or
    concurrent, is refused and places no second order; on both backends."""
    import asyncio

    async with api_server(database_url, tmp_path) as srv:
        mid, access, secret = await srv.member("a@example.com", {"usd": "1000"})
        p = signed(access, secret, "POST", "/orders", ORDER)
        assert (await raw(srv, "POST", "/orders", p))[0] == 201
        message = await expect(srv, "POST", "/orders", p, 401, 2006)
        assert p["tonce"] in message
        # the same tonce on another endpoint is refused as well
        await expect(srv, "GET", "/members/me", signed(access, secret, "GET", "/members/me", tonce=int(p["tonce"])),
                     401, 2006)
        q = signed(access, secret, "POST", "/orders", ORDER)
        results = await asyncio.gather(*(raw(srv, "POST", "/orders", q) for _ in range(10)))
        assert sorted(s for s, _ in results) == [201] + [401] * 9
        assert all(b["error"]["code"] == 2006 for s, b in results if s == 401)
        assert await order_count(srv, mid) == 2
        # and the orders' two tonces are remembered by the store, for every node
        assert await srv.ex.store.fetchval("SELECT COUNT(*) FROM tonces WHERE access_key = ?", access) == 2


async def test_a_refused_order_uses_its_tonce_up(srv: ApiServer) -> None:
    """Whatever refuses an order (bad params, too little money, the wrong scope) the request's tonce
    is burnt all the same: replaying it answers 2006, as Peatio, which checked the tonce first."""
    mid, access, secret = await srv.member("a@example.com", {"usd": "1"})
    bad = signed(access, secret, "POST", "/orders", {**ORDER, "volume": "-1"})
    await expect(srv, "POST", "/orders", bad, 400, 1001)
    await expect(srv, "POST", "/orders", bad, 401, 2006)
    poor = signed(access, secret, "POST", "/orders", {**ORDER, "volume": "1"})  # needs 100 USD, has 1
    await expect(srv, "POST", "/orders", poor, 400, 2002)
    await expect(srv, "POST", "/orders", poor, 401, 2006)
    _, r_access, r_secret = await srv.member("b@example.com", {"usd": "1000"}, scopes="profile")
    scoped = signed(r_access, r_secret, "POST", "/orders", ORDER)
    await expect(srv, "POST", "/orders", scoped, 401, 2011)
    await expect(srv, "POST", "/orders", scoped, 401, 2006)
    multi = signed(access, secret, "POST", "/orders/multi",
                   {"market": "btcusd", "orders[][side]": "buy", "orders[][volume]": "x", "orders[][price]": "1"})
    status, _ = await raw(srv, "POST", "/orders/multi", multi)
    assert status == 400
    await expect(srv, "POST", "/orders/multi", multi, 401, 2006)
    assert await order_count(srv, mid) == 0


async def test_stale_and_future_tonce_2007(srv: ApiServer) -> None:
    _, access, secret = await srv.member("a@example.com")
    for delta in (-31_000, 31_000, -10**9):
        tonce = now_ms() + delta
        message = await expect(srv, "GET", "/members/me", signed(access, secret, "GET", "/members/me", tonce=tonce),
                               401, 2007)
        # Peatio's wording, which bots parse: "The tonce <t> is invalid, current timestamp is <ms>."
        words = message.rstrip(".").split()
        assert words[2] == str(tonce) and abs(int(words[-1]) - now_ms()) < 5_000
    for delta in (-29_000, 29_000):  # inside the window: fine
        p = signed(access, secret, "GET", "/members/me", tonce=now_ms() + delta)
        assert (await raw(srv, "GET", "/members/me", p))[0] == 200
    garbage = signed(access, secret, "GET", "/members/me")
    garbage["tonce"] = "12a"
    message = await expect(srv, "GET", "/members/me", garbage, 400, 1001)
    assert "tonce" in message


async def test_unknown_deleted_disabled_expired_keys(srv: ApiServer) -> None:
    mid, access, secret = await srv.member("a@example.com")
    await expect(srv, "GET", "/members/me", signed("x" * 40, secret, "GET", "/members/me"), 401, 2008)
    await expect(srv, "GET", "/members/me", signed("<script>", secret, "GET", "/members/me"), 401, 2008)

    token_id = int(await srv.ex.store.fetchval("SELECT id FROM api_tokens WHERE access_key = ?", access))
    assert await srv.keys.set_disabled(mid, token_id, True)
    await expect(srv, "GET", "/members/me", signed(access, secret, "GET", "/members/me"), 401, 2009)
    assert await srv.keys.set_disabled(mid, token_id, False)
    assert (await raw(srv, "GET", "/members/me", signed(access, secret, "GET", "/members/me")))[0] == 200

    # per member: every token of the member stops at once
    _, access2, secret2 = await srv.member("a2@example.com")
    mid2 = int(await srv.ex.store.fetchval("SELECT member_id FROM api_tokens WHERE access_key = ?", access2))
    second_access, second_secret = await srv.keys.create(mid2, "second", now=now_ms())
    assert await srv.keys.set_member_api_disabled(mid2, True)
    for a, s in ((access2, secret2), (second_access, second_secret)):
        await expect(srv, "GET", "/members/me", signed(a, s, "GET", "/members/me"), 401, 2009)
    await srv.keys.set_member_api_disabled(mid2, False)
    assert (await raw(srv, "GET", "/members/me", signed(access2, secret2, "GET", "/members/me")))[0] == 200

    # expiry
    exp_access, exp_secret = await srv.keys.create(mid, "short", expires_at=now_ms() - 1, now=now_ms())
    await expect(srv, "GET", "/members/me", signed(exp_access, exp_secret, "GET", "/members/me"), 401, 2010)

    # soft delete: the row stays, the key is gone for the API
    assert await srv.keys.delete(mid, token_id, now_ms())
    await expect(srv, "GET", "/members/me", signed(access, secret, "GET", "/members/me"), 401, 2008)
    assert await srv.ex.store.fetchval("SELECT deleted_at FROM api_tokens WHERE id = ?", token_id) is not None
    assert [t["label"] for t in await srv.keys.list(mid)] == ["short"]


async def test_changes_made_elsewhere_apply_within_the_cache_ttl(srv: ApiServer) -> None:
    """Another node (or the admin CLI) disables a key in the store: refused within cache_ttl."""
    srv.keys.cache_ttl = 0.2
    _, access, secret = await srv.member("a@example.com")
    assert (await raw(srv, "GET", "/members/me", signed(access, secret, "GET", "/members/me")))[0] == 200
    await srv.ex.store.execute("UPDATE api_tokens SET disabled = 1 WHERE access_key = ?", access)
    import asyncio

    await asyncio.sleep(0.25)
    await expect(srv, "GET", "/members/me", signed(access, secret, "GET", "/members/me"), 401, 2009)


async def test_scopes_2011(srv: ApiServer) -> None:
    _, access, secret = await srv.member("a@example.com", {"usd": "100"}, scopes="profile")
    assert (await raw(srv, "GET", "/members/me", signed(access, secret, "GET", "/members/me")))[0] == 200
    for verb, path, params in (("GET", "/orders", {}), ("GET", "/order", {"id": "1"}), ("GET", "/trades/my", {"market": "btcusd"}),
                               ("POST", "/orders", {"market": "btcusd", "side": "buy", "volume": "1", "price": "1"}),
                               ("POST", "/orders/clear", {}), ("POST", "/order/delete", {"id": "1"})):
        await expect(srv, verb, path, signed(access, secret, verb, path, params), 401, 2011)
    _, access, secret = await srv.member("b@example.com", {"usd": "100"}, scopes="history")
    assert (await raw(srv, "GET", "/orders", signed(access, secret, "GET", "/orders")))[0] == 200
    await expect(srv, "GET", "/members/me", signed(access, secret, "GET", "/members/me"), 401, 2011)
    p = signed(access, secret, "POST", "/orders", {"market": "btcusd", "side": "buy", "volume": "1", "price": "1"})
    await expect(srv, "POST", "/orders", p, 401, 2011)
    assert int(await srv.ex.store.fetchval("SELECT COUNT(*) FROM orders")) == 0
    _, access, secret = await srv.member("c@example.com", {"usd": "100"}, scopes="trade")
    p = signed(access, secret, "POST", "/orders", {"market": "btcusd", "side": "buy", "volume": "1", "price": "1"})
    assert (await raw(srv, "POST", "/orders", p))[0] == 201
    assert (await raw(srv, "GET", "/orders", signed(access, secret, "GET", "/orders")))[0] == 200
    await expect(srv, "GET", "/trades/my", signed(access, secret, "GET", "/trades/my", {"market": "btcusd"}), 401, 2011)


async def test_ip_whitelist(srv: ApiServer) -> None:
    _, access, secret = await srv.member("a@example.com", ip_whitelist="10.0.0.0/8, 192.168.1.7")
    message = await expect(srv, "GET", "/members/me", signed(access, secret, "GET", "/members/me"), 401, 2001)
    assert "IP" in message
    _, access, secret = await srv.member("b@example.com", ip_whitelist="127.0.0.1")
    assert (await raw(srv, "GET", "/members/me", signed(access, secret, "GET", "/members/me")))[0] == 200
    with pytest.raises(InvalidParameter) as e:
        parse_ip_whitelist("10.0.0.300")
    assert e.value.field == "ip_whitelist"


async def test_signed_public_requests_are_checked(srv: ApiServer) -> None:
    _, access, secret = await srv.member("a@example.com")
    assert (await raw(srv, "GET", "/markets", signed(access, secret, "GET", "/markets")))[0] == 200
    await expect(srv, "GET", "/markets", signed(access, "wrong", "GET", "/markets"), 401, 2005)


async def test_tokens_and_secrets_at_rest(srv: ApiServer, tmp_path: Path) -> None:
    mid, access, secret = await srv.member("a@example.com")
    for key in (access, secret):
        assert len(key) == 40 and key.isascii() and key.isalnum()
        assert well_formed_key(key)
    assert access != secret
    row = await srv.ex.store.fetchrow("SELECT * FROM api_tokens WHERE access_key = ?", access)
    dump = " ".join(str(v) for v in tuple(row))
    assert secret not in dump  # a database leak alone does not give the secret away
    # another server key cannot open it
    other = ApiKeys(srv.ex.store, SecretBox(b"another-server-key", "api-secret"))
    with pytest.raises(SecretUnreadable):
        await other.find(access)
    # the right one can
    token = await srv.keys.find(access)
    assert token is not None and token.secret_key == secret and token.member_id == mid
    assert parse_scopes("history, trade") == "history trade"
    with pytest.raises(InvalidParameter):
        parse_scopes("admin")
    # the last use of a key is recorded (in the tonce batch)
    c = ApiClient(srv.base, access, secret)
    await c.get("/members/me")
    await c.close()
    assert await srv.ex.store.fetchval("SELECT last_used_at FROM api_tokens WHERE access_key = ?", access) is not None


async def test_admin_cli_key(tmp_path: Path, free_port: int) -> None:
    """`python -m node apikey create` prints a working pair; the secret is only in its output."""
    from tests.nodeproc import NodeProcess, cli, write_config

    config = write_config(tmp_path, f"sqlite:///{tmp_path}/exchange.db", free_port)
    key_file = tmp_path / "secret.key"
    cli(config, "member", "create", "cli@example.com")
    out = cli(config, "apikey", "create", "cli@example.com", "--scopes", "profile", key_file=key_file)
    kv = dict(line.split("=", 1) for line in out.strip().splitlines())
    node = NodeProcess(config, free_port, key_file, tmp_path / "node.log")
    await node.start()
    try:
        c = ApiClient(node.base, kv["access_key"], kv["secret_key"])
        assert (await c.get("/members/me"))["email"] == "cli@example.com"
        with pytest.raises(ApiError) as e:
            await c.get("/orders")
        assert e.value.code == 2011
        await c.close()
    finally:
        node.terminate()
