"""Market data: k-line alignment and carry-over like Peatio's, 24 h tickers, persistence across a
restart and catch-up from the trades table after a crash, and the REST endpoints' shapes."""

from __future__ import annotations

import asyncio
import calendar
import random
import time
from pathlib import Path

from node.bootstrap import start_exchange
from node.exchange import Exchange
from node.marketdata import PERIODS, MarketData, Series, align, fill
from node.marketdata.kline import window
from node.marketdata.ticker import Ticker24h
from node.web.api.marketdata import MARKETDATA
from tests.conftest import config_with
from tests.wsclient import serve


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> int:
    return calendar.timegm((y, mo, d, h, mi, s))


# -- pure functions -------------------------------------------------------------------------------------
def test_alignment_is_peatios() -> None:
    t = utc(2024, 1, 3, 13, 47, 29)  # a Wednesday
    assert align(t, 1) == utc(2024, 1, 3, 13, 47)
    assert align(t, 5) == utc(2024, 1, 3, 13, 45)
    assert align(t, 15) == utc(2024, 1, 3, 13, 45)
    assert align(t, 30) == utc(2024, 1, 3, 13, 30)
    assert align(t, 60) == utc(2024, 1, 3, 13)
    assert align(t, 120) == utc(2024, 1, 3, 12)
    assert align(t, 240) == utc(2024, 1, 3, 12)
    assert align(t, 360) == utc(2024, 1, 3, 12)
    assert align(t, 720) == utc(2024, 1, 3, 12)
    assert align(t, 1440) == utc(2024, 1, 3)
    assert align(t, 4320) == t - t % 259_200  # three days, counted from the epoch as Peatio did
    assert align(t, 10080) == utc(2024, 1, 1)  # weeks start on Monday 00:00 UTC (beginning_of_week)
    assert align(utc(2024, 1, 1), 10080) == utc(2024, 1, 1)
    assert align(utc(2023, 12, 31, 23, 59, 59), 10080) == utc(2023, 12, 25)
    for p in PERIODS:
        for ts in (0, 59, 86_399, t, t + 12_345_678):
            a = align(ts, p)
            assert a <= ts < a + p * 60 and align(a, p) == a


def test_fill_carries_the_previous_close_over_empty_periods() -> None:
    t0 = utc(2024, 1, 1)
    rows = [(t0, 10, 12, 9, 11, 5), (t0 + 180, 20, 20, 20, 20, 1)]
    out = list(fill(rows, t0 - 120, t0 + 300, 1, None))
    assert out == [
        (t0, 10, 12, 9, 11, 5),
        (t0 + 60, 11, 11, 11, 11, 0),
        (t0 + 120, 11, 11, 11, 11, 0),
        (t0 + 180, 20, 20, 20, 20, 1),
        (t0 + 240, 20, 20, 20, 20, 0),
        (t0 + 300, 20, 20, 20, 20, 0),
    ]  # nothing before the first trade, flat candles after the last one up to `end`
    assert list(fill([], t0, t0 + 60, 1, 7)) == [(t0, 7, 7, 7, 7, 0), (t0 + 60, 7, 7, 7, 7, 0)]


def test_window_follows_peatios_limit_and_timestamp() -> None:
    first = utc(2024, 1, 1)
    now = utc(2024, 1, 1, 1, 0, 30)
    assert window(None, now, 1, 30, None) is None
    assert window(first, now, 1, 30, None) == (now - 30 - 29 * 60, now - 30)
    assert window(first, now, 1, 1000, None) == (first, now - 30)
    assert window(first, now, 5, 3, first + 7 * 60) == (first + 5 * 60, first + 15 * 60)
    assert window(first, now, 60, 5, 0) == (first, now - 30)
    assert window(first, now, 1, 5, now + 3600) is None


def test_series_and_ticker_24h() -> None:
    s = Series(1, 5000)
    t = Ticker24h(s)
    base = utc(2024, 1, 1)
    s.add(base + 5, 100, 1, 100)
    s.add(base + 3600, 90, 2, 180)
    s.add(base + 86_400 + 10, 120, 3, 360)
    t.touched(base + 86_400)
    st = t.stats(base + 86_400 + 30)  # the first minute has left the window, the second not
    assert (st.low, st.high, st.open, st.volume) == (90, 120, 90, 5)
    s.add(base + 86_400 + 20, 80, 1, 80)
    t.touched(base + 86_400)
    st = t.stats(base + 86_400 + 30)
    assert (st.low, st.high, st.volume) == (80, 120, 6)
    assert t.stats(base + 3 * 86_400).volume == 0
    assert [c.row() for c in s.candles][-1] == (base + 86_400, 120, 120, 80, 80, 4)


# -- with a store ---------------------------------------------------------------------------------------
async def insert_trades(ex: Exchange, market: str, trades: list[tuple[int, int, int]], first_id: int = 1) -> None:
    """Trades as the market actor stores them: (price ticks, volume lots, created_at ms)."""
    async with ex.store.transaction() as tx:
        await tx.executemany(
            "INSERT INTO trades (id, market, price, volume, funds, ask_id, bid_id, ask_member_id, bid_member_id, "
            "taker_side, ask_fee, bid_fee, created_at) VALUES (?, ?, ?, ?, ?, 1, 2, 1, 2, 'buy', 0, 0, ?)",
            [(first_id + i, market, p, v, p * v, ts) for i, (p, v, ts) in enumerate(trades)])


def brute_force(trades: list[tuple[int, int, int]], period: int) -> list[tuple[int, ...]]:
    """Candles straight from the trades, clamping time like the service (never backwards)."""
    out: dict[int, list[int]] = {}
    last = 0
    for price, vol, ts in trades:
        last = max(last, ts)
        t = align(last // 1000, period)
        c = out.get(t)
        if c is None:
            out[t] = [t, price, price, price, price, vol]
        else:
            c[2], c[3], c[4], c[5] = max(c[2], price), min(c[3], price), price, c[5] + vol
    return [tuple(c) for _, c in sorted(out.items())]


async def stored(ex: Exchange, market: str, period: int) -> list[tuple[int, ...]]:
    rows = await ex.store.fetch("SELECT ts, price_open, price_high, price_low, price_close, volume FROM klines "
                                "WHERE market = ? AND period = ? ORDER BY ts", market, period)
    return [tuple(int(x) for x in r) for r in rows]


async def test_klines_carry_and_align_from_stored_trades_and_rest_shapes(tmp_path: Path) -> None:
    ex = await start_exchange(config_with(f"sqlite:///{tmp_path}/exchange.db"))
    try:
        t0 = utc(2024, 1, 3, 10, 0)  # a Wednesday
        trades = [(100_000, 100, (t0 + 30) * 1000), (101_000, 50, (t0 + 45) * 1000),
                  (99_000, 10, (t0 + 3 * 60 + 1) * 1000), (102_000, 5, (t0 + 8 * 86_400) * 1000)]
        await insert_trades(ex, "ltcbtc", trades)
        async with serve(ex, tmp_path) as node:
            md = node.app[MARKETDATA]
            now = t0 + 5 * 60 + 5
            k1 = await md.klines("ltcbtc", 1, 7, timestamp=t0 - 600, now=now + 30 * 86_400)
            assert k1 == [(t0, 100_000, 101_000, 100_000, 101_000, 150), (t0 + 60, 101_000, 101_000, 101_000, 101_000, 0),
                          (t0 + 120, 101_000, 101_000, 101_000, 101_000, 0), (t0 + 180, 99_000, 99_000, 99_000, 99_000, 10),
                          (t0 + 240, 99_000, 99_000, 99_000, 99_000, 0), (t0 + 300, 99_000, 99_000, 99_000, 99_000, 0),
                          (t0 + 360, 99_000, 99_000, 99_000, 99_000, 0)]
            week = await md.klines("ltcbtc", 10080, 10, timestamp=t0, now=t0 + 30 * 86_400)
            monday = utc(2024, 1, 1)
            assert [r[0] for r in week][:3] == [monday, monday + 7 * 86_400, monday + 14 * 86_400]
            assert week[0][1:] == (100_000, 101_000, 99_000, 99_000, 160) and week[1][5] == 5
            assert all(r[1:5] == (102_000,) * 4 and r[5] == 0 for r in week[2:])  # carried up to this week
            # REST: Peatio's numbers, limit / period / timestamp rules, pending trades
            k = await node.get("/api/v2/k.json", market="ltcbtc", period="1", limit="2", timestamp=str(t0 + 100))
            assert k == [[t0 + 60, 0.101, 0.101, 0.101, 0.101, 0.0], [t0 + 120, 0.101, 0.101, 0.101, 0.101, 0.0]]
            last = await node.get("/api/v2/k", market="ltcbtc", period="10080", limit="1")
            assert len(last) == 1 and last[0][4] == 0.102
            kp = await node.get("/api/v2/k_with_pending_trades", market="ltcbtc", period="5", limit="1",
                                timestamp=str(t0), trade_id="3")  # trades of the last candle below id 3
            assert kp["k"] == [[t0, 0.1, 0.101, 0.099, 0.099, 1.6]] and kp["trades"] == [
                {"tid": 1, "type": "buy", "date": t0 + 30, "price": "0.1", "amount": "1.0"},
                {"tid": 2, "type": "buy", "date": t0 + 45, "price": "0.101", "amount": "0.5"}]
            kp = await node.get("/api/v2/k_with_pending_trades", market="ltcbtc", period="1", limit="1",
                                timestamp=str(t0 + 180), trade_id="4")
            assert kp["trades"] == [{"tid": 3, "type": "sell", "date": t0 + 181, "price": "0.099", "amount": "0.1"}]
            for bad in ({"period": "7"}, {"limit": "0"}, {"limit": "10001"}, {"market": "nosuch"}):
                async with node.session.get(node.base + "/api/v2/k", params={"market": "ltcbtc", **bad}) as r:
                    assert r.status == 400 and (await r.json())["error"]["code"] == 1001
            tick = await node.get("/api/v2/tickers/ltcbtc.json")
            assert tick["ticker"]["last"] == "0.102" and tick["ticker"]["vol"] == "0.0"  # last trade > 24 h ago
            both = await node.get("/api/v2/tickers")
            assert set(both) == set(ex.config.markets) and both["ltcbtc"]["ticker"] == tick["ticker"]
    finally:
        await ex.stop()


async def trade_randomly(ex: Exchange, members: list[int], rng: random.Random, n: int) -> None:
    from node.errors import ExchangeError
    from node.exchange import OrderInput

    for _ in range(n):
        try:
            await ex.submit_order(rng.choice(members), OrderInput(
                "btcusd", rng.choice(["buy", "sell"]), f"0.{rng.randint(1, 99):04d}", str(rng.randint(29_995, 30_005))))
        except ExchangeError:
            pass
    await ex.quiesce()


async def test_klines_survive_restart_and_catch_up_after_a_crash(database_url: str) -> None:
    config = config_with(database_url)
    rng = random.Random(7)
    ex = await start_exchange(config)
    md = MarketData(ex)
    try:
        await md.start()
        members = []
        for i in range(3):
            m = await ex.create_member(f"k{i}@example.com")
            await ex.deposit(m, "usd", "1000000")
            await ex.deposit(m, "btc", "100")
            members.append(m)
        await trade_randomly(ex, members, rng, 60)
        await asyncio.sleep(0)
        await md.stop()  # a clean stop flushes
        now = time.time()  # both reads end at the same moment: a minute begun between them adds no candle
        before = {p: await md.klines("btcusd", p, 100, now=now) for p in PERIODS}
        assert before[1] and sum(r[5] for r in before[1]) > 0
        md = MarketData(ex)
        await md.start()
        assert {p: await md.klines("btcusd", p, 100, now=now) for p in PERIODS} == before  # same after a restart
        # a crash: trades go on while the service's candles are not stored, and it never flushes
        await trade_randomly(ex, members, rng, 60)
        await asyncio.sleep(0)
        assert md._unsubscribe is not None and md._task is not None
        md._unsubscribe()
        md._task.cancel()
        await trade_randomly(ex, members, rng, 30)  # and some it never even saw
    finally:
        await ex.stop()
    ex = await start_exchange(config)
    try:
        md = MarketData(ex)
        await md.start()
        rows = await ex.store.fetch("SELECT price, volume, created_at FROM trades WHERE market = 'btcusd' ORDER BY id")
        trades = [(int(r["price"]), int(r["volume"]), int(r["created_at"])) for r in rows]
        assert len(trades) > 40
        for p in PERIODS:
            expected = brute_force(trades, p)
            assert await stored(ex, "btcusd", p) == expected  # caught up and stored at start
            got = [r for r in await md.klines("btcusd", p, 10_000) if r[5]]
            assert got == expected
        state = await ex.store.fetchrow("SELECT last_trade_id FROM kline_state WHERE market = 'btcusd'")
        assert int(state["last_trade_id"]) == await ex.store.fetchval("SELECT MAX(id) FROM trades WHERE market = 'btcusd'")
        t = await md.ticker("btcusd")
        assert t.vol == sum(v for _, v, _ in trades) and t.last == trades[-1][0]
        assert t.low == min(p for p, _, _ in trades) and t.high == max(p for p, _, _ in trades)
        await md.stop()
    finally:
        await ex.stop()


async def test_reads_older_than_memory_come_from_the_store(tmp_path: Path) -> None:
    ex = await start_exchange(config_with(f"sqlite:///{tmp_path}/exchange.db"))
    try:
        t0 = utc(2024, 2, 1)
        trades: list[tuple[int, int, int]] = [(1000 + i, 1, (t0 + 60 * i) * 1000) for i in range(50)]
        await insert_trades(ex, "ltcbtc", trades)
        md = MarketData(ex, keep=10)  # memory holds the last 10 candles of each period only
        await md.start()
        full = await md.klines("ltcbtc", 1, 60, timestamp=t0, now=t0 + 3600)
        assert [r[4] for r in full[:50]] == [1000 + i for i in range(50)] and len(full) == 60
        assert not md.feeds["ltcbtc"].series[1].complete
        await md.stop()
    finally:
        await ex.stop()



async def test_a_market_run_elsewhere_and_not_followed_is_read_from_the_store(tmp_path: Path) -> None:
    """Another process (`actors=False`: every market runs elsewhere) follows nothing, so no trade
    reaches its feeds; its tickers and k-lines reload from the store when older than `cold_ttl`,
    and then hold the owner's trades, those after its last candle flush included."""
    config = config_with(f"sqlite:///{tmp_path}/exchange.db")
    owner = await start_exchange(config)
    viewer = await start_exchange(config, actors=False)
    try:
        members = []
        for i in range(2):
            m = await owner.create_member(f"cold{i}@example.com")
            await owner.deposit(m, "usd", "10000000")
            await owner.deposit(m, "btc", "100")
            members.append(m)
        md_owner = MarketData(owner)
        await md_owner.start()
        md = MarketData(viewer, cold_ttl=0.0)
        await md.start()
        assert not md.live("btcusd")
        reloads = md.reloads
        await trade_randomly(owner, members, random.Random(3), 60)
        await md_owner.flush()
        await trade_randomly(owner, members, random.Random(4), 20)  # not in any stored candle yet
        await asyncio.sleep(0)
        for p in (1, 60):
            assert await md.klines("btcusd", p, 50) == await md_owner.klines("btcusd", p, 50)
        mine, theirs = await md.ticker("btcusd"), md_owner.ticker_now("btcusd")
        assert theirs is not None and (mine.last, mine.vol, mine.high, mine.low) == (theirs.last, theirs.vol, theirs.high, theirs.low)
        assert md.reloads > reloads
        md.cold_ttl = 60.0
        before = md.reloads
        await md.ticker("btcusd")
        assert md.reloads == before  # fresh enough: no store read
        await md.stop()
        await md_owner.stop()
    finally:
        await viewer.stop()
        await owner.stop()
