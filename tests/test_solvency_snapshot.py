"""Proof-of-solvency snapshots of a live exchange, on SQLite and PostgreSQL.

Members trade concurrently while snapshots are taken; deposits are the only inflow, so at every
instant Σ(balance + locked) per currency equals the deposits: a snapshot that read the ledger at one
instant has root sum + house = deposits, whatever the trades did meanwhile. Then every member's
proofs, fetched through the signed API, verify against the roots published by the public API.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from node.audit import audit
from node.bootstrap import start_exchange, web_app
from node.errors import ExchangeError
from node.exchange import Exchange, OrderInput
from node.money import format_units
from node.solvency import maxwell, v2, verify
from node.solvency.assets import ratio_str
from node.solvency.service import ProofNotFound, SnapshotNotFound, SolvencyService, next_due
from node.solvency.trees import (
    CurrencyProofs,
    MaxwellIndex,
    V2Index,
    build_off_loop,
    decode_leaves,
    encode_leaves,
    maxwell_nonce,
)
from node.web.api.solvency import service
from node.web.pages.solvency import MEMBER_ID_KEY
from tests.apiclient import ApiClient, ApiError
from tests.conftest import config_with
from tests.test_api_support import ApiServer, api_server

FUNDS = {"btc": "50", "ltc": "5000", "doge": "1000000", "usd": "2000000"}
MIDS = {"btcusd": 3_000_000, "ltcbtc": 2_500, "dogebtc": 250}  # price ticks


@pytest.fixture
async def srv(database_url: str, tmp_path: Path) -> Any:
    async with api_server(database_url, tmp_path) as s:
        yield s


async def deposits_total(ex: Exchange) -> dict[str, int]:
    rows = await ex.store.fetch("SELECT currency, SUM(amount) AS s FROM deposits WHERE state = 'accepted' GROUP BY currency")
    return {r["currency"]: int(r["s"]) for r in rows}


async def trade(ex: Exchange, members: list[int], stop: asyncio.Event, seed: int) -> int:
    """Crossing limit orders (and now and then a cancel-all) until told to stop; returns orders placed."""
    rng = random.Random(seed)
    placed = 0
    while not stop.is_set():
        member = rng.choice(members)
        market = rng.choice(list(MIDS))
        m = ex.config.markets[market]
        price = MIDS[market] + rng.randint(-3, 3) * max(1, MIDS[market] // 1000)
        lots = m.min_volume * rng.randint(1, 20)
        side = rng.choice(("buy", "sell"))
        try:
            if rng.random() < 0.05:
                await ex.cancel_all(member)
            else:
                await ex.submit_order(member, OrderInput(market, side, format_units(lots, m.volume_precision),
                                                         format_units(price, m.price_precision)))
                placed += 1
        except ExchangeError:
            pass
        await asyncio.sleep(0)
    return placed


def check_consistent(info_totals: dict[str, int], house: dict[str, int], funded: dict[str, int]) -> None:
    for code, total in info_totals.items():
        assert total + house[code] == funded.get(code, 0), (code, total, house[code], funded.get(code))


async def test_snapshot_while_trading_and_every_proof_verifies(srv: ApiServer) -> None:
    ex = srv.ex
    members: list[tuple[int, str, ApiClient]] = []
    for i in range(12):
        email = f"trader{i}@example.com"
        mid, access, secret = await srv.member(email, FUNDS, scopes="profile")
        members.append((mid, email, ApiClient(srv.base, access, secret)))
    ids = [m[0] for m in members]
    funded = await deposits_total(ex)
    svc = service(srv.app)

    stop = asyncio.Event()
    traders = [asyncio.create_task(trade(ex, ids, stop, seed)) for seed in range(4)]
    try:
        await asyncio.sleep(0.3)
        infos = []
        for _ in range(2):  # inline builds, on the event loop
            infos.append(await svc.take_snapshot(assets=False))
            await asyncio.sleep(0.1)
        # a build in a worker process: trading must go on meanwhile
        trades_before = int(await ex.store.fetchval("SELECT COUNT(*) FROM trades"))
        started = time.monotonic()
        worker = SolvencyService(ex, reserves={}, inline_below=0)
        infos.append(await worker.take_snapshot(assets=False))
        took = time.monotonic() - started
        trades_during = int(await ex.store.fetchval("SELECT COUNT(*) FROM trades")) - trades_before
    finally:
        stop.set()
        placed = sum(await asyncio.gather(*traders))
    await ex.quiesce()
    assert placed > 50
    assert trades_during > 0, f"no trade during a {took:.2f} s snapshot: trading was stopped"
    for info in infos:
        check_consistent(info.totals, info.house, funded)
        assert info.accounts > 0
    # the trades really interleaved with the snapshots: some before, some after the first instant
    first = infos[0].taken_at
    assert await ex.store.fetchval("SELECT COUNT(*) FROM trades WHERE created_at < ?", first) > 0
    assert await ex.store.fetchval("SELECT COUNT(*) FROM trades WHERE created_at > ?", first) > 0
    assert (await audit(ex.store, ex.config.markets)).ok

    # A quiet snapshot: leaves equal the accounts exactly, and proofs verify through the API.
    final = await svc.take_snapshot(assets=False)
    check_consistent(final.totals, final.house, funded)
    public = ApiClient(srv.base)
    roots = await public.public("/solvency/roots")
    assert roots["snapshot"]["id"] == final.id
    for code in ex.config.currencies:
        entry = next(c for c in roots["currencies"] if c["currency"] == code)
        prec = ex.config.currencies[code].precision
        assert maxwell.to_units(entry["liabilities"], prec) == final.totals[code]
        assert maxwell.to_units(entry["house"], prec) == final.house[code]
        assert int(entry["v2"]["root"]["value"]) == final.totals[code]
        if final.totals[code]:
            assert maxwell.to_units(entry["maxwell"]["root"]["sum"], prec) == final.totals[code]
    published = {
        (code, scheme): await public.public("/solvency/root", currency=code, scheme=scheme)
        for code in ex.config.currencies for scheme in ("maxwell", "v2")
    }
    checked = 0
    for mid, email, client in members:
        accounts = {a["currency"]: a for a in await ex.accounts_of(mid)}
        doc = await client.get("/solvency/proofs")
        assert doc["snapshot"]["id"] == final.id
        owed = {c for c, a in accounts.items() if a["balance"] + a["locked"] > 0}
        assert {p["currency"] for p in doc["proofs"]} == owed
        for p in doc["proofs"]:
            code = p["currency"]
            a = accounts[code]
            balance = maxwell.format_units(a["balance"] + a["locked"], ex.config.currencies[code].precision)
            assert p["balance"] == balance and p["user"] == email
            r1 = verify(p["maxwell"], published[(code, "maxwell")], user=email, balance=balance)
            r2 = verify(p["v2"], published[(code, "v2")], user=email, balance=balance)
            assert r1.ok and r1.scheme == "maxwell", r1
            assert r2.ok and r2.scheme == "pos-v2", r2
            # the bare documents for old tools are the same proofs
            assert await client.get("/solvency/proof", currency=code, scheme="maxwell") == p["maxwell"]
            assert await client.get("/solvency/proof.json", currency=code, scheme="v2") == p["v2"]
            checked += 1
    assert checked >= len(members)
    # a fresh service (restart: empty cache) re-derives identical proofs from the store
    fresh = SolvencyService(ex, reserves={}, inline_below=0)
    mid, email, client = members[0]
    again = await fresh.proof(mid, "btc")
    assert again == await client.get("/solvency/proof", currency="btc")
    for c in (public, *(m[2] for m in members)):
        await c.close()


async def test_store_snapshot_sees_one_instant(exchange: Exchange) -> None:
    """The helper under the snapshot: reads inside it do not see what commits meanwhile."""
    ex = exchange
    mid = await ex.create_member("a@example.com")
    await ex.deposit(mid, "btc", "1")
    sql = "SELECT balance FROM accounts WHERE member_id = ? AND currency = 'btc'"
    async with ex.store.snapshot() as tx:
        assert await tx.fetchval(sql, mid) == 10**8
        await ex.deposit(mid, "btc", "2")  # commits while the snapshot is open: the writer is not blocked
        assert await ex.store.fetchval(sql, mid) == 3 * 10**8
        assert await tx.fetchval(sql, mid) == 10**8
        assert await tx.fetchval("SELECT COUNT(*) FROM deposits") == 1
    assert await ex.store.fetchval(sql, mid) == 3 * 10**8


async def test_house_is_reported_not_a_leaf(exchange: Exchange) -> None:
    ex = exchange
    buyer = await ex.create_member("buyer@example.com")
    seller = await ex.create_member("seller@example.com")
    await ex.deposit(buyer, "usd", "100000")
    await ex.deposit(seller, "btc", "2")
    await ex.submit_order(seller, OrderInput("btcusd", "sell", "1", "30000"))
    await ex.submit_order(buyer, OrderInput("btcusd", "buy", "1", "30000"))
    await ex.quiesce()
    svc = SolvencyService(ex, reserves={})
    info = await svc.take_snapshot()
    assert info.house["btc"] == 200_000 and info.house["usd"] == 30_000_000  # the fees
    assert info.totals["btc"] == 2 * 10**8 - 200_000
    with pytest.raises(ProofNotFound):
        await svc.proof(ex.fee_member, "btc")
    with pytest.raises(ProofNotFound):  # zero balances are owed nothing: no leaf
        await svc.proof(buyer, "ltc")
    doc = await svc.proofs(buyer)
    assert [p["currency"] for p in doc["proofs"]] == ["btc", "usd"]
    roots = await svc.roots()
    ltc = next(c for c in roots["currencies"] if c["currency"] == "ltc")
    assert ltc["maxwell"] is None and ltc["liabilities"] == "0" and ltc["v2"]["root"]["value"] == "0"


async def test_fiat_declaration_and_coin_assets(exchange: Exchange) -> None:
    """Assets through the ReserveWallet interface (an in-memory wallet here; bitcoind in the regtest test)."""
    ex = exchange
    mid = await ex.create_member("a@example.com")
    await ex.deposit(mid, "btc", "3")
    await ex.deposit(mid, "usd", "1000")

    class Wallet:
        signed: list[tuple[str, str]] = []

        async def holdings(self, min_confirmations: int) -> list[tuple[str, int]]:
            return [("addr1", 2 * 10**8), ("addr2", 10**8 + 1)]

        async def sign_message(self, address: str, message: str) -> str:
            self.signed.append((address, message))
            return f"sig:{address}"

        async def close(self) -> None:
            pass

    class Down(Wallet):
        async def holdings(self, min_confirmations: int) -> list[tuple[str, int]]:
            raise ConnectionError("daemon unreachable")

    svc = SolvencyService(ex, reserves={"btc": Wallet(), "ltc": Down()})
    with pytest.raises(SnapshotNotFound):
        await svc.assets()
    info = await svc.take_snapshot()
    assert info.assets == {"btc": "proven", "ltc": "failed", "doge": "no_wallet", "usd": "missing"}
    doc = await svc.assets()
    by = {c["currency"]: c for c in doc["currencies"]}
    btc = by["btc"]
    assert btc["assets"] == "3.00000001" and btc["liabilities"] == "3" and btc["ratio"] == "1.00000000"
    assert btc["solvent"] is True
    assert [a["address"] for a in btc["addresses"]] == ["addr1", "addr2"]
    assert all(f"snapshot {info.name} " in a["message"] and a["signature"] == f"sig:{a['address']}" for a in btc["addresses"])
    assert by["ltc"]["status"] == "failed" and "unreachable" in by["ltc"]["detail"] and by["ltc"]["ratio"] is None
    assert by["usd"]["status"] == "missing" and by["usd"]["assets"] is None
    # an admin declares the bank balance: it applies to the latest snapshot, and is carried forward
    with pytest.raises(ExchangeError):
        await svc.declare_fiat("btc", "1", "not fiat")
    with pytest.raises(ExchangeError):
        await svc.declare_fiat("usd", "999", "   ")
    await svc.declare_fiat("usd", "999.5", "Bank X statement 2026-11-01", "ops")
    usd = {c["currency"]: c for c in (await svc.assets())["currencies"]}["usd"]
    assert usd["status"] == "declared" and usd["assets"] == "999.5" and usd["evidence"] == "Bank X statement 2026-11-01"
    assert usd["ratio"] == "0.99950000" and usd["solvent"] is False
    second = await svc.take_snapshot(assets=False)
    assert {c["currency"]: c for c in (await svc.assets(second.id))["currencies"]}["usd"]["assets"] == "999.5"


async def test_prune_keeps_the_latest(exchange: Exchange) -> None:
    ex = exchange
    mid = await ex.create_member("a@example.com")
    await ex.deposit(mid, "btc", "1")
    svc = SolvencyService(ex, reserves={})
    a = await svc.take_snapshot()
    b = await svc.take_snapshot()
    far = int(time.time() * 1000) + 400 * 86_400_000  # beyond keep_days (365)
    assert await svc.prune(far) == 1
    assert [s["id"] for s in await svc.snapshots()] == [b.id]
    with pytest.raises(SnapshotNotFound):
        await svc.roots(a.id)
    assert (await svc.proof(mid, "btc"))["snapshot"]["id"] == b.id
    assert await svc.prune() == 0


async def test_tampered_leaves_are_refused(tmp_path: Path) -> None:
    """Proofs re-derived from stored leaves are checked against the published roots."""
    ex = await start_exchange(config_with(f"sqlite:///{tmp_path}/x.db"), actors=False)
    try:
        mid = await ex.create_member("a@example.com")
        other = await ex.create_member("b@example.com")
        await ex.deposit(mid, "btc", "1")
        await ex.deposit(other, "btc", "2")
        info = await SolvencyService(ex, reserves={}).take_snapshot()
        text = await ex.store.fetchval(
            "SELECT leaves FROM solvency_liabilities WHERE snapshot_id = ? AND currency = 'btc'", info.id)
        ids, keys, values = decode_leaves(text)
        values[1] -= 1  # someone lowers a balance after publication
        await ex.store.execute("UPDATE solvency_liabilities SET leaves = ? WHERE snapshot_id = ? AND currency = 'btc'",
                               encode_leaves(ids, keys, values), info.id)
        with pytest.raises(RuntimeError, match="differ from the published roots"):
            await SolvencyService(ex, reserves={}).proof(mid, "btc")
    finally:
        await ex.stop()


def test_compact_indexes_cut_the_reference_proofs() -> None:
    rng = random.Random(5)
    for n in (1, 2, 3, 7, 8, 33):
        accounts = [(f"u{i}@x", rng.randrange(1, 10**12)) for i in range(n)]
        secret = bytes(range(32))
        nonces = {u: maxwell_nonce(secret, "BTC", "S#1", u) for u, _ in accounts}
        mtree = maxwell.build_tree(accounts, precision=8, currency="BTC", timestamp="t", nonces=nonces)
        vtree = v2.build_tree(accounts, precision=8, currency="BTC", snapshot="S#1", timestamp="t", secret=secret)
        mi, vi = MaxwellIndex(mtree), V2Index(vtree)
        assert maxwell.dumps(mi.root_json()) == maxwell.dumps(mtree.root_json())
        assert vi.root_json() == vtree.root_json()
        for user, _ in accounts:
            mpos, vpos = mtree.index[user], vtree.index[user]
            assert maxwell.dumps(mi.partial_tree(mpos, user)) == maxwell.dumps(mtree.partial_tree(user))
            assert orjson.dumps(vi.proof(vpos, user)) == orjson.dumps(vtree.proof(user))
            assert len(nonces[user]) == 32 and int(nonces[user], 16) >= 0


async def test_worker_process_builds_the_same_trees() -> None:
    from node.solvency.trees import BuildJob

    keys = [f"m{i}@x" for i in range(50)]
    job = BuildJob("BTC", 8, "S#9", 1_700_000_000_000, b"k" * 32, 0, list(range(50)), keys, list(range(1, 51)))
    inline: list[CurrencyProofs] = await build_off_loop([job], inline_below=10**9)
    spawned: list[CurrencyProofs] = await build_off_loop([job], inline_below=0)
    assert inline[0].v2_root == spawned[0].v2_root and inline[0].maxwell_root == spawned[0].maxwell_root
    assert inline[0].total == sum(range(1, 51))
    assert inline[0].maxwell_root is not None and inline[0].maxwell_root["timestamp"].endswith("+0000")


def test_ratio_and_schedule_arithmetic() -> None:
    assert ratio_str(3, 3) == "1.00000000"
    assert ratio_str(2, 3) == "0.66666666"  # rounded down, never up to a better-looking figure
    assert ratio_str(10**30 + 1, 10**30) == "1.00000000"
    assert ratio_str(5, 0) is None
    day = 86_400_000
    now = 10 * day + 5_000
    assert next_due(None, now, day) == 11 * day  # first one at the next 00:00 UTC
    assert next_due(10 * day + 1, now, day) == 11 * day  # today's is done
    assert next_due(9 * day, now, day) == now  # yesterday's boundary was missed: at once


# ------------------------------------------------------------------------------------------- API
async def test_api_errors_and_scopes(tmp_path: Path) -> None:
    async with api_server(f"sqlite:///{tmp_path}/x.db", tmp_path) as s:
        public = ApiClient(s.base)
        with pytest.raises(ApiError) as e:
            await public.public("/solvency/roots")
        assert e.value.status == 404 and e.value.code == 3301
        mid, access, secret = await s.member("a@example.com", {"btc": "1"}, scopes="history")
        rich = await s.client("b@example.com", {"usd": "5"}, scopes="profile")
        await service(s.app).take_snapshot(assets=False)
        assert (await public.public("/solvency/snapshots"))[0]["name"].endswith("#1")
        with pytest.raises(ApiError) as e:
            await public.public("/solvency/root", currency="btc", scheme="x")
        assert e.value.status == 400
        with pytest.raises(ApiError) as e:
            await public.public("/solvency/root", currency="xyz")
        assert e.value.status == 400
        with pytest.raises(ApiError) as e:
            await public.public("/solvency/roots", snapshot="99")
        assert e.value.status == 404
        with pytest.raises(ApiError) as e:  # unsigned
            await public.public("/solvency/proof", currency="btc")
        assert e.value.status == 401
        with pytest.raises(ApiError) as e:  # a key without the profile scope
            await ApiClient(s.base, access, secret).get("/solvency/proof", currency="btc")
        assert e.value.status == 401 and e.value.code == 2011
        with pytest.raises(ApiError) as e:  # nothing owed in btc
            await rich.get("/solvency/proof", currency="btc")
        assert e.value.status == 404 and e.value.code == 3302
        assert (await rich.get("/solvency/proof", currency="usd"))["balance"] == "5"
        assets = await public.public("/solvency/assets")
        assert {c["currency"] for c in assets["currencies"]} == set(s.ex.config.currencies)
        for c in (public, rich):
            await c.close()


# ------------------------------------------------------------------------------------------- pages
@web.middleware
async def as_member(request: web.Request, handler: Any) -> web.StreamResponse:
    """Stands in for the sign-in session: the member id the session middleware would set."""
    mid = request.headers.get("X-Test-Member")
    if mid:
        request[MEMBER_ID_KEY] = int(mid)
    return await handler(request)


async def test_pages_render(tmp_path: Path) -> None:
    ex = await start_exchange(config_with(f"sqlite:///{tmp_path}/x.db"))
    app = web_app(ex, key_file=tmp_path / "secret.key")
    app.middlewares.append(as_member)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    client = ApiClient(f"http://127.0.0.1:{server.port}")
    try:
        async with client.session.get(client.base + "/solvency") as r:
            assert r.status == 200
            text = await r.text()
            assert 'id="no-snapshot"' in text and 'id="verify-paste"' in text and "/static/solvency.js" in text
        mid = await ex.create_member("alice@example.com")
        await ex.deposit(mid, "btc", "1.25")
        await service(app).declare_fiat("usd", "10", "Bank statement")
        info = await service(app).take_snapshot()
        async with client.session.get(client.base + "/solvency") as r:
            text = await r.text()
            assert r.status == 200 and info.name in text and 'id="row-btc"' in text
            roots = await service(app).roots()
            assert roots["currencies"][0]["v2"]["root"]["hash"] in text
        async with client.session.get(client.base + "/solvency/me") as r:
            assert r.status == 401 and 'id="sign-in"' in await r.text()
        async with client.session.get(client.base + "/solvency/me", headers={"X-Test-Member": str(mid)}) as r:
            text = await r.text()
            assert r.status == 200 and r.headers["Cache-Control"] == "no-store"
            assert 'id="solvency-proofs"' in text and "verify-member" in text and "alice@example.com" in text
        zh = {"X-Test-Member": str(mid), "Accept-Language": "zh-CN"}
        async with client.session.get(client.base + "/solvency/me", headers=zh) as r:
            text = await r.text()  # translated like every member page, the verifier's texts too
            assert "我的余额是否计入？" in text and "在我的浏览器中核验" in text and info.name in text
            assert "Is my balance counted?" not in text
            block = re.search(r'<script type="application/json" id="i18n">(.*?)</script>', text, re.S)
            assert block and json.loads(block.group(1))["checking…"] == "核验中…"
        other = await ex.create_member("bob@example.com")
        async with client.session.get(client.base + "/solvency/me", headers={"X-Test-Member": str(other)}) as r:
            assert r.status == 200 and 'id="no-proofs"' in await r.text()
        async with client.session.get(client.base + "/static/solvency.js") as r:
            assert r.status == 200 and "crypto.subtle" in await r.text()
    finally:
        await client.close()
        await server.close()
        await ex.stop()


# ------------------------------------------------------------------------------------------- CLI
def test_cli_snapshot_fiat_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from node.__main__ import main

    cfg = (Path(__file__).resolve().parents[1] / "cluster.toml").read_text()
    cfg = cfg.replace('database = "sqlite:///var/exchange.db"', f'database = "sqlite:///{tmp_path}/x.db"')
    cfg += "\n[solvency]\ninterval_hours = 12\nkeep_days = 30\n"
    path = tmp_path / "cluster.toml"
    path.write_text(cfg)
    base = ["--config", str(path), "--key-file", str(tmp_path / "k")]
    assert main([*base, "member", "create", "alice@example.com"]) == 0
    assert main([*base, "deposit", "alice@example.com", "btc", "2.5"]) == 0
    capsys.readouterr()
    assert main([*base, "solvency", "show"]) == 1
    assert "no proof-of-solvency snapshot" in capsys.readouterr().err
    assert main([*base, "solvency", "snapshot", "--prune"]) == 0
    out = capsys.readouterr().out
    assert "snapshot 1 (PyExchange#1)" in out and "btc: owed 2.5" in out and "pruned 0" in out
    assert main([*base, "solvency", "fiat", "usd", "1000", "--evidence", "Bank A, statement of 2026-11-24"]) == 0
    assert main([*base, "solvency", "fiat", "btc", "1", "--evidence", "x"]) == 1
    assert main([*base, "solvency", "assets"]) == 0
    assert "btc: no_wallet" in capsys.readouterr().out
    assert main([*base, "solvency", "show"]) == 0
    out = capsys.readouterr().out
    assert "usd: owed 0, assets 1000 (declared)" in out and "btc: owed 2.5, assets - (no_wallet)" in out


def test_solvency_config() -> None:
    from node.config import ConfigError

    c = config_with("sqlite:///x.db")
    assert (c.solvency.interval_hours, c.solvency.keep_days, c.solvency.node, c.solvency.enabled) == (24, 365, "main", True)
    c = config_with("sqlite:///x.db", solvency={"interval_hours": 6, "keep_days": 0, "min_height": 20, "enabled": False})
    assert (c.solvency.interval_hours, c.solvency.keep_days, c.solvency.min_height, c.solvency.enabled) == (6, 0, 20, False)
    for bad, field in (({"node": "nope"}, "solvency.node"), ({"interval_hours": 0}, "solvency.interval_hours"),
                       ({"enabled": "yes"}, "solvency.enabled")):
        with pytest.raises(ConfigError, match=field):
            config_with("sqlite:///x.db", solvency=bad)


async def test_scheduler_runs_on_its_node_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import node.solvency.service as service_mod

    due: list[int] = []

    def soon(last: int | None, now: int, interval: int) -> int:
        due.append(interval)
        return now if len(due) == 1 else now + 3_600_000  # the first one at once, the next in an hour

    monkeypatch.setattr(service_mod, "next_due", soon)
    nodes = {"main": {"markets": ["btcusd", "ltcbtc", "dogebtc"]}, "other": {"markets": []}}
    cases = (({"enabled": False}, False), ({"node": "other"}, False), ({"interval_hours": 6}, True))
    for i, (conf, runs) in enumerate(cases):
        ex = await start_exchange(config_with(f"sqlite:///{tmp_path}/{i}.db", solvency=conf, nodes=nodes),
                                  actors=False)
        try:
            await ex.deposit(await ex.create_member("a@example.com"), "btc", "1")
            task = asyncio.create_task(SolvencyService(ex, reserves={}).run_schedule())
            if not runs:
                await asyncio.wait_for(task, 5)  # returns at once: not this node's job
                continue
            for _ in range(200):
                if await ex.store.fetchval("SELECT COUNT(*) FROM solvency_snapshots WHERE state = 'ready'"):
                    break
                await asyncio.sleep(0.02)
            assert await ex.store.fetchval("SELECT COUNT(*) FROM solvency_snapshots WHERE state = 'ready'") == 1
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert due[0] == 6 * 3_600_000
        finally:
            await ex.stop()


async def test_concurrent_proof_requests_share_one_rebuild(exchange: Exchange, monkeypatch: pytest.MonkeyPatch) -> None:
    import node.solvency.service as service_mod

    ex = exchange
    ids = []
    for i in range(8):
        ids.append(await ex.create_member(f"m{i}@example.com"))
        await ex.deposit(ids[-1], "btc", f"{i + 1}")
    await SolvencyService(ex, reserves={}).take_snapshot()
    builds: list[int] = []
    real = service_mod.build_off_loop

    async def counting(jobs: Any, *args: Any, **kw: Any) -> Any:
        builds.append(len(jobs))
        await asyncio.sleep(0.05)  # long enough for every request to arrive while it runs
        return await real(jobs, *args, **kw)

    monkeypatch.setattr(service_mod, "build_off_loop", counting)
    fresh = SolvencyService(ex, reserves={})  # as after a restart: nothing in memory
    first = asyncio.create_task(fresh.proof(ids[0], "btc"))
    await asyncio.sleep(0.01)
    first.cancel()  # the request that started the rebuild goes away: the others still get it
    docs = await asyncio.gather(*(fresh.proof(mid, "btc") for mid in ids))
    assert builds == [1]
    assert [d["balance"] for d in docs] == [str(i + 1) for i in range(8)]
    assert all(verify(d["v2"], d["v2_root"]).ok and verify(d["maxwell"], d["maxwell_root"]).ok for d in docs)


def test_member_page_takes_the_member_from_either_request_key() -> None:
    from types import SimpleNamespace

    from aiohttp.test_utils import make_mocked_request

    from node.web.pages.solvency import signed_in_member
    from node.web.session import SESSION_KEY

    r = make_mocked_request("GET", "/solvency/me")
    assert signed_in_member(r) is None
    r[SESSION_KEY] = SimpleNamespace(member_id=None)  # type: ignore[assignment]  # an anonymous session
    assert signed_in_member(r) is None
    r[SESSION_KEY] = SimpleNamespace(member_id=7)  # type: ignore[assignment]  # the session middleware, signed in
    assert signed_in_member(r) == 7
    r[MEMBER_ID_KEY] = 9  # a middleware that sets the id directly wins
    assert signed_in_member(r) == 9
