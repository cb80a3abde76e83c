"""The trading core end to end, through the exchange facade, on SQLite and PostgreSQL.

Orders go web → account actor (lock) → market actor (match, settle) exactly as in production.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from node.actors.lease import Liveness, session_name
from node.actors.market_rows import ORDERS_UPDATE_BULK, created_at_of, intake_of, live_of, origin_locked_of
from node.audit import audit
from node.bootstrap import start_exchange
from node.errors import (
    CancelOrderFailed,
    CreateOrderFailed,
    ExchangeError,
    InvalidParameter,
    MarketHalted,
    MemberNotFound,
    OrderNotFound,
)
from node.exchange import Exchange, OrderInput
from tests.conftest import config_with, create_pg_database, drop_pg_database, need_service


async def balances(ex: Exchange, member: int) -> dict[str, tuple[int, int]]:
    return {a["currency"]: (a["balance"], a["locked"]) for a in await ex.accounts_of(member)}


async def snapshot(ex: Exchange) -> tuple[Any, ...]:
    """Everything that bad input must leave untouched."""
    accounts = [tuple(r) for r in await ex.store.fetch("SELECT * FROM accounts ORDER BY member_id, currency")]
    ledger = await ex.store.fetchval("SELECT COUNT(*) FROM ledger")
    orders = await ex.store.fetchval("SELECT COUNT(*) FROM orders")
    return accounts, ledger, orders


async def funded(ex: Exchange, usd: str = "100000", btc: str = "10") -> tuple[int, int]:
    buyer = await ex.create_member("buyer@example.com")
    seller = await ex.create_member("seller@example.com")
    await ex.deposit(buyer, "usd", usd)
    await ex.deposit(seller, "btc", btc)
    return buyer, seller


async def test_a_trade_settles_with_fees_to_the_house(exchange: Exchange) -> None:
    ex = exchange
    buyer, seller = await funded(ex)
    ask = await ex.submit_order(seller, OrderInput("btcusd", "sell", "1.5", "30000"))
    assert ask["state"] == "wait"
    await ex.submit_order(buyer, OrderInput("btcusd", "buy", "1", "31000"))
    await ex.quiesce()
    # taker buyer pays 0.2% of the BTC received; maker seller pays 0.1% of the USD received
    assert await balances(ex, buyer) == {"btc": (99_800_000, 0), "ltc": (0, 0), "doge": (0, 0), "usd": (70_000_000_000, 0)}
    assert (await balances(ex, seller))["btc"] == (850_000_000, 50_000_000)
    assert (await balances(ex, seller))["usd"] == (29_970_000_000, 0)
    house = await balances(ex, ex.market_fee_members["btcusd"])
    assert house["btc"] == (200_000, 0) and house["usd"] == (30_000_000, 0)
    trades = await ex.store.fetch("SELECT price, volume, funds, taker_side FROM trades")
    assert [tuple(t) for t in trades] == [(3_000_000, 10_000, 30_000_000_000, "buy")]
    assert (await audit(ex.store, ex.config.markets)).ok


async def test_cancel_unlocks_the_remainder(exchange: Exchange) -> None:
    ex = exchange
    buyer, seller = await funded(ex)
    o = await ex.submit_order(buyer, OrderInput("btcusd", "buy", "2", "100"))
    await ex.quiesce()
    assert (await balances(ex, buyer))["usd"] == (99_800_000_000, 200_000_000)
    before = await ex.cancel_order(buyer, o["id"])
    assert before["state"] == "wait"  # as it stood when the cancel was accepted (Peatio's shape)
    assert (await ex.order_row(o["id"]))["state"] == "cancel"  # final at once
    assert (await balances(ex, buyer))["usd"] == (100_000_000_000, 0)
    with pytest.raises(CancelOrderFailed):
        await ex.cancel_order(buyer, o["id"])
    assert (await audit(ex.store, ex.config.markets)).ok


async def test_market_orders_never_rest_and_return_unused_lock(exchange: Exchange) -> None:
    ex = exchange
    buyer, seller = await funded(ex)
    await ex.submit_order(seller, OrderInput("btcusd", "sell", "0.5", "30000"))
    await ex.submit_order(seller, OrderInput("btcusd", "sell", "0.5", "30100"))
    await ex.quiesce()
    with pytest.raises(CreateOrderFailed, match="not deep enough"):
        await ex.submit_order(buyer, OrderInput("btcusd", "buy", "2", ord_type="market"))
    o = await ex.submit_order(buyer, OrderInput("btcusd", "buy", "1", ord_type="market"))
    await ex.quiesce()
    assert (await ex.order_row(o["id"]))["state"] == "done"
    # paid exactly what it bought; the +10% safety margin locked at submit came back
    assert (await balances(ex, buyer))["usd"] == (100_000_000_000 - 15_000_000_000 - 15_050_000_000, 0)
    # a market sell larger than the bids: fills what it can, the rest is cancelled and unlocked
    await ex.submit_order(buyer, OrderInput("btcusd", "buy", "0.3", "29000"))
    await ex.quiesce()
    s = await ex.submit_order(seller, OrderInput("btcusd", "sell", "1", ord_type="market"))
    await ex.quiesce()
    row = await ex.order_row(s["id"])
    assert row["state"] == "cancel" and row["remaining"] == 7_000
    assert (await balances(ex, seller))["btc"] == (900_000_000 - 3_000_000_0, 0)
    assert len(ex.markets["btcusd"].engine) == 0
    assert (await audit(ex.store, ex.config.markets)).ok


async def test_insufficient_funds_changes_nothing(exchange: Exchange) -> None:
    ex = exchange
    buyer, _ = await funded(ex, usd="100")
    before = await snapshot(ex)
    with pytest.raises(CreateOrderFailed, match=r"cannot lock funds \(amount: 300.0\)"):
        await ex.submit_order(buyer, OrderInput("btcusd", "buy", "1", "300"))
    assert await snapshot(ex) == before


@pytest.mark.parametrize(
    ("order", "error", "field"),
    [
        (OrderInput("btcusd", "buy", "0", "100"), InvalidParameter, "volume"),
        (OrderInput("btcusd", "buy", "-1", "100"), InvalidParameter, "volume"),
        (OrderInput("btcusd", "buy", "0.00001", "100"), InvalidParameter, "volume"),  # 5 decimals, market has 4
        (OrderInput("btcusd", "buy", "1", "0"), InvalidParameter, "price"),
        (OrderInput("btcusd", "buy", "1", "-5"), InvalidParameter, "price"),
        (OrderInput("btcusd", "buy", "1", "100.001"), InvalidParameter, "price"),
        (OrderInput("btcusd", "buy", "1", "1e3"), InvalidParameter, "price"),
        (OrderInput("btcusd", "buy", "1", "NaN"), InvalidParameter, "price"),
        (OrderInput("btcusd", "buy", "1"), InvalidParameter, "price"),
        (OrderInput("btcusd", "buy", "1", "100", ord_type="market"), InvalidParameter, "price"),
        (OrderInput("btcusd", "hold", "1", "100"), InvalidParameter, "side"),
        (OrderInput("btcusd", "buy", "1", "100", ord_type="iceberg"), InvalidParameter, "ord_type"),
        (OrderInput("btcusd", "buy", "1", "100", tif="day"), InvalidParameter, "time_in_force"),
        (OrderInput("xxxusd", "buy", "1", "100"), InvalidParameter, "market"),
        (OrderInput("btcusd", "buy", "1", "100", ord_type="stop_limit"), InvalidParameter, "stop_price"),
        (OrderInput("btcusd", "buy", "1", "100", stop_price="90"), InvalidParameter, "stop_price"),
        (OrderInput("btcusd", "buy", "99999999999999", "99999999999"), InvalidParameter, "volume"),
        (OrderInput("btcusd", "buy", "1", "100", client_id="x" * 65), InvalidParameter, "client_id"),
    ],
)
async def test_bad_orders_are_refused_and_change_nothing(exchange: Exchange, order: OrderInput, error: type, field: str) -> None:
    ex = exchange
    buyer, _ = await funded(ex)
    before = await snapshot(ex)
    with pytest.raises(error) as info:
        await ex.submit_order(buyer, order)
    assert info.value.code == 1001
    assert info.value.field == field
    assert await snapshot(ex) == before


async def test_unknown_member_and_foreign_orders(exchange: Exchange) -> None:
    ex = exchange
    buyer, seller = await funded(ex)
    with pytest.raises(MemberNotFound):
        await ex.submit_order(999_999, OrderInput("btcusd", "buy", "1", "100"))
    o = await ex.submit_order(buyer, OrderInput("btcusd", "buy", "1", "100"))
    await ex.quiesce()
    before = await snapshot(ex)
    with pytest.raises(OrderNotFound):  # someone else's order: indistinguishable from none
        await ex.cancel_order(seller, o["id"])
    with pytest.raises(OrderNotFound):
        await ex.cancel_order(buyer, 123_456_789)
    assert await snapshot(ex) == before
    with pytest.raises(CreateOrderFailed):  # the house account never trades
        await ex.submit_order(ex.fee_member, OrderInput("btcusd", "buy", "1", "100"))


async def test_client_id_makes_retries_idempotent(exchange: Exchange) -> None:
    ex = exchange
    buyer, _ = await funded(ex)
    a = await ex.submit_order(buyer, OrderInput("btcusd", "buy", "1", "100", client_id="bot-1"))
    b = await ex.submit_order(buyer, OrderInput("btcusd", "buy", "1", "100", client_id="bot-1"))
    assert a["id"] == b["id"]
    await ex.quiesce()
    assert (await balances(ex, buyer))["usd"][1] == 100_000_000  # locked once


async def test_multi_is_all_or_nothing(exchange: Exchange) -> None:
    ex = exchange
    buyer, _ = await funded(ex, usd="1000")
    before = await snapshot(ex)
    with pytest.raises(CreateOrderFailed):
        await ex.submit_orders(buyer, [OrderInput("btcusd", "buy", "1", "600"), OrderInput("btcusd", "buy", "1", "600")])
    assert await snapshot(ex) == before
    done = await ex.submit_orders(buyer, [OrderInput("btcusd", "buy", "1", "400"), OrderInput("btcusd", "buy", "1", "500")])
    assert len(done) == 2


async def test_cancel_all_of_a_member(exchange: Exchange) -> None:
    ex = exchange
    buyer, seller = await funded(ex)
    for p in ("100", "101", "102"):
        await ex.submit_order(buyer, OrderInput("btcusd", "buy", "1", p))
    await ex.submit_order(seller, OrderInput("btcusd", "sell", "1", "500"))
    await ex.quiesce()
    cancelled = await ex.cancel_all(buyer)
    assert len(cancelled) == 3
    assert await balances(ex, buyer) == {"btc": (0, 0), "ltc": (0, 0), "doge": (0, 0), "usd": (100_000_000_000, 0)}
    assert len(ex.markets["btcusd"].engine) == 1


async def test_halted_market_refuses_orders(exchange: Exchange) -> None:
    ex = exchange
    buyer, _ = await funded(ex)
    await ex.set_halted("btcusd", True)
    with pytest.raises(MarketHalted) as info:
        await ex.submit_order(buyer, OrderInput("btcusd", "buy", "1", "100"))
    assert info.value.code == 3002
    await ex.set_halted("btcusd", False)
    await ex.submit_order(buyer, OrderInput("btcusd", "buy", "1", "100"))


async def test_restart_rebuilds_the_same_book(database_url: str) -> None:
    cfg = config_with(database_url)
    ex = await start_exchange(cfg)
    buyer, seller = await funded(ex)
    for i in range(20):
        await ex.submit_order(buyer, OrderInput("btcusd", "buy", "0.1", str(100 + i % 5)))
        await ex.submit_order(seller, OrderInput("btcusd", "sell", "0.1", str(103 + i % 4)))
    await ex.submit_order(buyer, OrderInput("btcusd", "buy", "1", "150", ord_type="stop_limit", stop_price="120"))
    await ex.quiesce()
    live = ex.markets["btcusd"].engine.state_hash()
    trades = await ex.store.fetchval("SELECT COUNT(*) FROM trades")
    await ex.stop()
    ex2 = await start_exchange(cfg)
    try:
        assert ex2.markets["btcusd"].engine.state_hash() == live
        ex2.markets["btcusd"].engine.check_consistency()
        assert await ex2.store.fetchval("SELECT COUNT(*) FROM trades") == trades
        assert (await audit(ex2.store, ex2.config.markets)).ok
    finally:
        await ex2.stop()


async def test_pending_orders_are_matched_after_a_crash(database_url: str) -> None:
    """An order accepted (locked, stored `pending`) but never matched is matched at the next start."""
    from node.actors.messages import SubmitOrders

    cfg = config_with(database_url)
    ex = await start_exchange(cfg)
    buyer, seller = await funded(ex)
    await ex.submit_order(seller, OrderInput("btcusd", "sell", "1", "100"))
    await ex.quiesce()
    # Simulate a crash between the account commit and the market: stop the market first.
    market = ex.markets["btcusd"]
    await market.stop()
    req = await ex.prepare(buyer, OrderInput("btcusd", "buy", "1", "100"))
    market._stopping = False  # let the hand-off land in the dead actor's mailbox, where it is lost
    [view] = await ex.accounts[0].ask(SubmitOrders((req,)))
    assert (await ex.order_row(view["id"]))["state"] == "pending"
    await ex.accounts[0].stop()
    if ex.ownership is not None and ex.ownership._task is not None:  # what the death of the process ends
        ex.ownership._task.cancel()
    if ex.leases.liveness is not None:
        await ex.leases.liveness.close()
    await ex.store.close()
    if ex._process_lock is not None:
        ex._process_lock.release()
    ex2 = await start_exchange(cfg)
    try:
        assert (await ex2.order_row(view["id"]))["state"] == "done"
        assert await ex2.store.fetchval("SELECT COUNT(*) FROM trades") == 1
        assert (await audit(ex2.store, ex2.config.markets)).ok
    finally:
        await ex2.stop()


async def test_deposit_is_idempotent_by_txid(exchange: Exchange) -> None:
    ex = exchange
    m = await ex.create_member("d@example.com")
    a = await ex.deposit(m, "btc", "1.5", txid="tx-1")
    b = await ex.deposit(m, "btc", "1.5", txid="tx-1")
    assert a == b
    assert (await balances(ex, m))["btc"] == (150_000_000, 0)
    with pytest.raises(ExchangeError):
        await ex.deposit(m, "xyz", "1")
    with pytest.raises(InvalidParameter):
        await ex.deposit(m, "btc", "0.000000001")


async def test_a_second_node_cannot_run_the_same_markets(database_url: str) -> None:
    """Exactly one live market actor per market: a second node whose own cluster.toml claims every
    market is refused, clearly (placement is the store's); once made a member it still runs none of
    the markets placed on the first."""
    from node import placement
    from node.actors.lease import LeaseHeld
    from node.config import ConfigError

    cfg = config_with(database_url)
    # A misconfigured second node that also claims every market.
    other = config_with(database_url, nodes={"other": {"host": "127.0.0.1", "port": 8081, "markets": list(cfg.markets)}})
    ex = await start_exchange(cfg)
    try:
        admin = await start_exchange(cfg, actors=False)  # admin commands beside a live node are fine
        await admin.stop()
        if not database_url.startswith("postgres"):  # SQLite: one process per database file, whatever it claims
            with pytest.raises(LeaseHeld, match="already running"):
                await start_exchange(other)
            return
        with pytest.raises(ConfigError, match="not a member"):
            await start_exchange(other)
        await placement.add_node(ex.store, "other", "127.0.0.1:8081")
        second = await start_exchange(other)
        try:
            assert second.markets == {} and set(ex.markets) == set(cfg.markets)
        finally:
            await second.stop()
    finally:
        await ex.stop()


async def test_fee_change_applies_to_new_trades_and_survives_restart(database_url: str) -> None:
    cfg = config_with(database_url)
    ex = await start_exchange(cfg)
    buyer, seller = await funded(ex)
    await ex.set_fees("btcusd", "0", "0.005")
    await ex.submit_order(seller, OrderInput("btcusd", "sell", "1", "100"))
    await ex.submit_order(buyer, OrderInput("btcusd", "buy", "1", "100"))
    await ex.quiesce()
    assert (await balances(ex, buyer))["btc"] == (100_000_000 - 500_000, 0)  # taker 0.5%
    assert (await balances(ex, seller))["usd"] == (100_000_000, 0)  # maker 0%
    with pytest.raises(InvalidParameter):
        await ex.set_fees("btcusd", "0.2", "0")
    await ex.stop()
    ex = await start_exchange(cfg)
    try:
        assert ex.markets["btcusd"].fees == (0, 500_000)
        assert (await audit(ex.store, ex.config.markets)).ok
    finally:
        await ex.stop()


@pytest.fixture
async def pg_exchange() -> AsyncIterator[Exchange]:
    """A node on a fresh PostgreSQL database (the liveness lock is PostgreSQL's)."""
    need_service("PostgreSQL", "127.0.0.1", 5432)
    url = await create_pg_database()
    try:
        ex = await start_exchange(config_with(url))
        try:
            yield ex
        finally:
            await ex.stop()
    finally:
        await drop_pg_database(url)


async def test_a_node_takes_its_liveness_lock_again_after_its_sessions_were_ended(pg_exchange: Exchange) -> None:
    """A market's new owner ends every session of the process it took the market from, when that
    process was only paused or cut off; awake again, the node must take its liveness lock back at
    its next tick, or the other nodes would read it as dead and take any market it runs at once."""
    exchange = pg_exchange
    assert exchange.leases.liveness is not None and exchange.ownership is not None
    probe = Liveness(exchange.config.direct_database, "probe", 5.0)
    try:
        assert not await probe.gone(exchange.leases.owner)
        await probe.hold()
        await probe._conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
                                  session_name(exchange.leases.owner))
        deadline = asyncio.get_running_loop().time() + 5
        while not await probe.gone(exchange.leases.owner):  # the server has not freed it yet
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)  # the node's side notices its connection is gone
        async with exchange.ownership.lock:
            await exchange.ownership.tick()
        assert not await probe.gone(exchange.leases.owner)
    finally:
        await probe.close()


async def test_the_market_batchs_order_update_finds_rows_by_key_however_the_table_grows(pg_exchange: Exchange) -> None:
    """PostgreSQL keeps a statement's generic plan for the life of its connection. A plan made while
    `orders` was empty must still find each row of a batch by its key once the table holds 20,000:
    a join of the batch's arrays with the table became a scan of every order for every batch."""
    assert ORDERS_UPDATE_BULK.arrays is not None
    empty = ", ".join(["'{}'"] * 11)
    async with pg_exchange.store.pool.acquire() as conn:  # type: ignore[attr-defined]
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        await conn.execute(f"PREPARE batch_update AS {ORDERS_UPDATE_BULK.arrays}")
        await conn.execute(f"EXPLAIN EXECUTE batch_update({empty})")  # the plan, made on an empty table
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO orders (id, member_id, market, side, ord_type, tif, price, stop_price, volume, remaining, "
                "funds, origin_locked, locked, funds_used, trades_count, state, seq, triggered, created_at, updated_at) "
                "SELECT g, 1, 'btcusd', 'buy', 'limit', 'gtc', 100, 0, 10, 10, 0, 100, 100, 0, 0, 'done', g, 0, g, g "
                "FROM generate_series(1, 20000) g")
            plan = "\n".join(r[0] for r in await conn.fetch(f"EXPLAIN EXECUTE batch_update({empty})"))
            await conn.execute("DELETE FROM orders")
        await conn.execute("DEALLOCATE batch_update")
        await conn.execute("RESET plan_cache_mode")
    assert "Seq Scan on orders" not in plan, plan
    assert "Index Scan using orders_pkey on orders" in plan, plan


def test_what_the_market_actor_keeps_per_order_packs_and_unpacks() -> None:
    """Lock, birth time and intake number live in one int per order (node/actors/market.py)."""
    for locked, born, intake in [(0, 0, 0), (10**18, 1_765_000_000_000, 1), ((1 << 63) - 1, (1 << 48) - 1, (1 << 48) - 1)]:
        v = live_of(locked, born, intake)
        assert (origin_locked_of(v), created_at_of(v), intake_of(v)) == (locked, born, intake)
    for bad in [(-1, 0, 0), (0, 1 << 48, 0), (0, 0, -1)]:
        with pytest.raises(ValueError):
            live_of(*bad)
