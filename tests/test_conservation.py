"""Conservation of money under random trading, on SQLite and PostgreSQL.

50 members trade 10,000 random orders and cancels (every order type and time-in-force) across 3
markets, many at once so that actors really batch. Afterwards, per currency, everything held equals
everything deposited; every account equals its ledger; locks equal open orders; nothing is negative;
and a book rebuilt from the store equals the live one.

Then the same with the members' account shards split between two owners (as in a cluster): the
books balance at every moment, with settlements in flight, and the outbox is empty once quiet.
"""

from __future__ import annotations

import asyncio
import random

from node.actors.account import AccountActor
from node.actors.lease import Leases
from node.actors.shards import lease_name
from node.audit import audit
from node.bootstrap import start_exchange
from node.errors import ExchangeError
from node.exchange import Exchange, OrderInput
from node.money import format_units
from tests.conftest import config_with

MEMBERS = 50
OPERATIONS = 10_000
CONCURRENCY = 25
FUNDS = {"btc": "50", "ltc": "5000", "doge": "10000000", "usd": "2000000"}
MIDS = {"btcusd": 3_000_000, "ltcbtc": 2_500, "dogebtc": 250}  # in each market's price ticks


def random_order(ex: Exchange, rng: random.Random) -> OrderInput:
    market = rng.choice(list(MIDS))
    m = ex.config.markets[market]
    mid = MIDS[market]
    side = rng.choice(("buy", "sell"))
    price = max(1, mid + rng.randint(-20, 20) * max(1, mid // 1000))
    lots = m.min_volume * rng.randint(1, 50)
    kind = rng.random()
    p = format_units(price, m.price_precision)
    v = format_units(lots, m.volume_precision)
    if kind < 0.06:
        return OrderInput(market, side, v, ord_type="market")
    if kind < 0.10:
        stop = format_units(max(1, price + rng.randint(-5, 5) * max(1, mid // 1000)), m.price_precision)
        return OrderInput(market, side, v, p, ord_type="stop_limit", stop_price=stop)
    tif = rng.choices(("gtc", "ioc", "fok", "post_only"), weights=(80, 8, 6, 6))[0]
    return OrderInput(market, side, v, p, tif=tif, client_id=f"c{rng.getrandbits(40)}" if rng.random() < 0.1 else None)


async def trade_randomly(ex: Exchange, members: list[int], seed: int, operations: int = OPERATIONS) -> dict[str, int]:
    stats = {"orders": 0, "refused": 0, "cancels": 0}
    live: dict[int, list[int]] = {m: [] for m in members}
    ops = iter(range(operations))

    async def worker(wid: int) -> None:
        rng = random.Random(seed * 1000 + wid)
        for _ in ops:
            member = rng.choice(members)
            try:
                r = rng.random()
                if r < 0.22 and live[member]:
                    oid = live[member].pop(rng.randrange(len(live[member])))
                    await ex.cancel_order(member, oid)
                    stats["cancels"] += 1
                elif r < 0.23:
                    await ex.cancel_all(member, rng.choice((None, "buy", "sell")))
                    stats["cancels"] += 1
                else:
                    o = await ex.submit_order(member, random_order(ex, rng))
                    live[member].append(o["id"])
                    stats["orders"] += 1
            except ExchangeError:
                stats["refused"] += 1  # insufficient funds, market not deep enough, already done…

    await asyncio.gather(*(worker(i) for i in range(CONCURRENCY)))
    await ex.quiesce()
    return stats


async def test_money_is_conserved_under_random_trading(database_url: str) -> None:
    cfg = config_with(database_url)
    ex = await start_exchange(cfg)
    try:
        members = []
        for i in range(MEMBERS):
            mid = await ex.create_member(f"m{i}@example.com")
            for cur, amount in FUNDS.items():
                await ex.deposit(mid, cur, amount)
            members.append(mid)
        stats = await trade_randomly(ex, members, seed=42)
        trades = await ex.store.fetchval("SELECT COUNT(*) FROM trades")
        assert stats["orders"] > 5_000 and trades > 1_000, (stats, trades)
        report = await audit(ex.store, ex.config.markets)
        assert report.ok, report.lines()
        for cur, amount in FUNDS.items():
            units = int(amount) * 10 ** ex.config.currencies[cur].precision
            assert report.totals[cur] == (MEMBERS * units, MEMBERS * units)
        assert await ex.store.fetchval("SELECT COUNT(*) FROM accounts WHERE balance < 0 OR locked < 0") == 0
        house: dict[str, int] = {}
        for hm in ex.house_members:
            for a in await ex.accounts_of(hm):
                house[a["currency"]] = house.get(a["currency"], 0) + a["balance"]
        assert house["btc"] > 0 and house["usd"] > 0  # fees were charged and kept
        assert all(a.restarts == 0 for a in [*ex.markets.values(), *ex.accounts]), ex.status()
        hashes = {mid: a.engine.state_hash() for mid, a in ex.markets.items()}
        for a in ex.markets.values():
            a.engine.check_consistency()
    finally:
        await ex.stop()
    ex = await start_exchange(cfg)
    try:
        assert {mid: a.engine.state_hash() for mid, a in ex.markets.items()} == hashes
        assert (await audit(ex.store, ex.config.markets)).ok
    finally:
        await ex.stop()


SHARDS = 4


async def test_money_is_conserved_with_account_shards_on_two_owners(database_url: str) -> None:
    """This node keeps shards 0 and 2 (leased) and settles their members inline; "another node"
    (a second lease owner here, its actors reached through the same mailboxes a bus would feed)
    runs 1 and 3, whose members' settlements go through the outbox."""
    cfg = config_with(database_url, actors={"account_shards": SHARDS, "sweep_after_ms": 200})
    ex = await start_exchange(cfg)
    others: list[AccountActor] = []
    try:
        assert ex.shards is not None
        members = []
        for i in range(MEMBERS):
            mid = await ex.create_member(f"m{i}@example.com")
            for cur, amount in FUNDS.items():
                await ex.deposit(mid, cur, amount)
            members.append(mid)
        other = Leases(ex.store, "other", cfg.actors.lease_ms, sole_process=True)
        ex.shards.map.leased = True
        ex.shards.map.epochs = {}
        for old in ex.shards.running():  # without a cluster one actor runs every shard
            await old.stop()
        ex.shards.actors.clear()
        for shard in range(SHARDS):
            if shard % 2 == 0:
                epoch = await ex.leases.acquire(lease_name(shard))
                ex.shards.map.epochs[shard] = epoch
            else:
                epoch = await other.acquire(lease_name(shard))
            actor = AccountActor(ex.store, ex.refs, cfg.currencies, shard, ex.tonces, epoch=epoch, sweep_after_ms=200,
                                 bus=ex.bus)
            await actor.start()
            ex.shards.actors[shard] = actor
            if shard % 2:
                others.append(actor)
        trading = asyncio.create_task(trade_randomly(ex, members, seed=7, operations=3_000))
        checks = 0
        while not trading.done():  # the books balance at any moment, settlements in flight included
            report = await audit(ex.store, ex.config.markets)
            assert report.ok, report.lines()
            checks += 1
            await asyncio.sleep(0.3)
        stats = await trading
        in_flight = await ex.store.fetchval("SELECT COUNT(*) FROM settlements")
        assert stats["orders"] > 1_000 and in_flight > 0, (stats, in_flight)
        for _ in range(100):
            await ex.quiesce()
            if await ex.store.fetchval("SELECT COUNT(*) FROM settlements WHERE applied_at IS NULL") == 0:
                break
            await asyncio.sleep(0.1)
        assert await ex.store.fetchval("SELECT COUNT(*) FROM settlements WHERE applied_at IS NULL") == 0
        # Every settlement of the other owner's members was applied by it, once: its shard, its rows.
        assert await ex.store.fetchval(
            f"SELECT COUNT(*) FROM settlements WHERE shard <> member_id % {SHARDS} OR shard % 2 = 0") == 0
        report = await audit(ex.store, ex.config.markets)
        assert report.ok, report.lines()
        for cur, amount in FUNDS.items():
            units = int(amount) * 10 ** ex.config.currencies[cur].precision
            assert report.totals[cur] == (MEMBERS * units, MEMBERS * units)
        assert checks > 0
        crashed = {a.name: a.last_error for a in [*ex.markets.values(), *ex.accounts] if a.restarts}
        assert not crashed, crashed
    finally:
        await ex.stop()
