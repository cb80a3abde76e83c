"""Live market data of a node: k-lines, 24 h tickers and recent trades, fed by the market actors.

The service subscribes to the node's event bus. Its callback only appends to an in-memory inbox and
schedules one drain on the next loop turn, so publishing costs the market actor next to nothing
whatever happens downstream. The drain folds trades into candles and tickers, then hands the whole
batch of events to listeners (the websocket hub) in publish order, so every listener sees market
data that already includes the trades it is about to announce.

K-lines are persisted in batches (every `flush_interval` seconds) together with the id of the last
trade folded in, in one transaction. At start the service loads the newest candles and folds every
trade stored after that id, so nothing is lost or counted twice after a crash: the trades table is
the truth, the candles a cache of it. Only the node that runs a market stores its candles.

A market run by another node is live here only while something on this node follows it (`follow`:
a websocket client's ticker, trades or k-lines): the node then receives that market's batches
(node/events.py), reloads the candles from the store and folds the trades that come. Otherwise its
feed is cold, and the reads that await (`ticker`, `klines`: the API and the pages) reload it from
the store when it is older than `cold_ttl` seconds, which is what the owner's flush lags behind.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from node.config import Market
from node.errors import ExchangeError
from node.events import Event
from node.marketdata.kline import PERIODS, Candle, Series, align, fill, window
from node.marketdata.ticker import WINDOW_MINUTES, Ticker24h

log = logging.getLogger(__name__)

KLINE_UPSERT_SQL = (
    "INSERT INTO klines (market, period, ts, price_open, price_high, price_low, price_close, volume, funds, trades) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (market, period, ts) DO UPDATE SET "
    "price_open = excluded.price_open, price_high = excluded.price_high, price_low = excluded.price_low, "
    "price_close = excluded.price_close, volume = excluded.volume, funds = excluded.funds, trades = excluded.trades"
)
STATE_UPSERT_SQL = (
    "INSERT INTO kline_state (market, last_trade_id, last_ts) VALUES (?, ?, ?) ON CONFLICT (market) DO UPDATE SET "
    "last_trade_id = excluded.last_trade_id, last_ts = excluded.last_ts"
)
KLINE_COLUMNS = "ts, price_open, price_high, price_low, price_close, volume, funds, trades"
CATCH_UP_CHUNK = 5000

Item = tuple[str, Event]
"""(kind, envelope): kind is `market` (a batch's trades, book diff and orders) or `member` (one
member's orders, trades and balance deltas of a batch); see node/events.py."""
Listener = Callable[[list[Item]], None]


@dataclass(frozen=True, slots=True)
class Ticker:
    """A ticker in integers (ticks, lots, quote units); None where there is nothing to show."""

    at: int
    buy: int | None
    sell: int | None
    low: int | None
    high: int | None
    last: int | None
    open: int | None
    vol: int
    funds: int


class Feed:
    """Everything the service keeps about one market run by this node."""

    __slots__ = ("market", "persist", "series", "series_list", "ticker", "recent", "last_trade_id", "last_ts",
                 "last_price", "state_dirty", "loaded_at", "periods")

    def __init__(self, market: Market, keep: int, recent: int, persist: bool) -> None:
        self.market = market
        self.persist = persist  # this node runs the market, so it stores the market's candles
        self.series = {p: Series(p, keep) for p in PERIODS}
        self.series_list = list(self.series.values())
        self.ticker = Ticker24h(self.series[1])
        self.recent: deque[Event] = deque(maxlen=recent)
        self.last_trade_id = 0
        self.last_ts = 0  # ms; trade times are clamped to never go back (a clock step must not reopen a candle)
        self.last_price: int | None = None
        self.state_dirty = False
        self.loaded_at = 0.0  # monotonic time of the load from the store
        self.periods: frozenset[int] = frozenset(PERIODS)  # the series that load read (the others are partial)


class MarketData:
    def __init__(self, ex: Any, *, flush_interval: float = 1.0, keep: int = WINDOW_MINUTES + 560,
                 recent: int = 50, coalesce: float = 0.002, cold_ttl: float = 2.0) -> None:
        self.ex = ex
        self.coalesce = coalesce
        """Seconds events wait to be drained together: under load, the websocket hub then writes
        several batches' frames in one write per client instead of one write per batch."""
        self.store = ex.store
        self.flush_interval = flush_interval
        self.keep = keep
        self.recent_size = recent
        self.feeds: dict[str, Feed] = {}
        self.listeners: list[Listener] = []
        self._inbox: deque[Item] = deque()
        self._dirty: dict[tuple[str, int, int], Candle] = {}
        self._scheduled = False
        self._ready = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._task: asyncio.Task[None] | None = None
        self.flushes = 0
        self.cold_ttl = cold_ttl
        self.follows: dict[str, int] = {}  # remote market -> local followers (its feed is live while > 0)
        self._warming: dict[str, list[Event]] = {}  # market -> trades that came while its feed was loading
        self._locks: dict[str, asyncio.Lock] = {}
        self.reloads = 0

    # -- life cycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        """Subscribe first, then catch up from the store: events that arrive meanwhile wait in the
        inbox and those already folded from the store are skipped by trade id."""
        self._loop = asyncio.get_running_loop()
        self._unsubscribe = self.ex.bus.subscribe(self._on_event)
        for mid, market in self.ex.config.markets.items():
            feed = Feed(market, self.keep, self.recent_size, persist=mid in self.ex.markets)
            await self._load(feed)
            self.feeds[mid] = feed
        self._ready = True
        self._drain()
        await self.flush()
        self._task = asyncio.create_task(self._flush_loop(), name="marketdata-flush")

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if self._ready:
            self._drain()
            await self.flush()

    async def _load(self, feed: Feed, periods: frozenset[int] = frozenset(PERIODS)) -> None:
        mid = feed.market.id
        feed.periods = periods
        feed.loaded_at = time.monotonic()
        st = await self.store.fetchrow("SELECT last_trade_id, last_ts FROM kline_state WHERE market = ?", mid)
        if st is not None:
            feed.last_trade_id, feed.last_ts = int(st["last_trade_id"]), int(st["last_ts"])
        for p, series in feed.series.items():
            if p not in periods:
                continue
            rows = await self.store.fetch(
                f"SELECT {KLINE_COLUMNS} FROM klines WHERE market = ? AND period = ? ORDER BY ts DESC LIMIT ?",
                mid, p, self.keep + 1)
            first = await self.store.fetchval("SELECT MIN(ts) FROM klines WHERE market = ? AND period = ?", mid, p)
            candles = [_candle(r) for r in rows[: self.keep]]
            series.load(candles, None if first is None else int(first), len(rows))
        if feed.series[1].last is not None:
            feed.last_price = feed.series[1].candles[-1].close
        caught_up = 0
        while True:
            rows = await self.store.fetch(
                "SELECT id, price, volume, funds, created_at FROM trades WHERE market = ? AND id > ? ORDER BY id LIMIT ?",
                mid, feed.last_trade_id, CATCH_UP_CHUNK)
            for r in rows:
                self._fold(feed, int(r["id"]), int(r["price"]), int(r["volume"]), int(r["funds"]), int(r["created_at"]))
            caught_up += len(rows)
            if len(rows) < CATCH_UP_CHUNK:
                break
        recent = await self.store.fetch("SELECT * FROM trades WHERE market = ? ORDER BY id DESC LIMIT ?", mid,
                                        self.recent_size)
        feed.recent.extend(_trade_event(r) for r in reversed(recent))
        if caught_up and feed.persist:
            log.info("market data %s: folded %d trades stored since the last flush", mid, caught_up)

    # -- events -------------------------------------------------------------------------------------
    def _on_event(self, topic: str, event: Event) -> None:
        """Bus callback, run inside the publisher's call: append, schedule, return."""
        if topic.startswith("market."):
            if topic.endswith(".status"):
                return
            self._inbox.append(("market", event))
        elif topic.startswith("member."):
            self._inbox.append(("member", event))
        else:
            return
        if not self._scheduled and self._loop is not None:
            self._scheduled = True
            if self.coalesce > 0:
                self._loop.call_later(self.coalesce, self._drain)
            else:
                self._loop.call_soon(self._drain)

    def _drain(self) -> None:
        self._scheduled = False
        if not self._ready or not self._inbox:
            return
        items = list(self._inbox)
        self._inbox.clear()
        feeds = self.feeds
        for kind, env in items:
            if kind != "market" or not env["trades"]:
                continue
            mid = env["market"]
            waiting = self._warming.get(mid)
            if waiting is not None:
                waiting.extend(env["trades"])
                continue
            feed = feeds.get(mid)
            if feed is None or not self.live(mid):
                continue
            for ev in env["trades"]:
                if ev["id"] > feed.last_trade_id:
                    self._fold(feed, ev["id"], ev["price"], ev["volume"], ev["funds"], ev["created_at"])
                    feed.recent.append(ev)
        for fn in list(self.listeners):
            try:
                fn(items)
            except Exception:  # one broken listener must not starve the others
                log.exception("market data listener failed")

    def live(self, mid: str) -> bool:
        """Every trade of the market comes here: it runs here, or something here follows it."""
        return mid in self.ex.markets or self.follows.get(mid, 0) > 0

    async def follow(self, mid: str) -> None:
        """A local follower of a market (a websocket stream): for a market run elsewhere, receive its
        batches, then reload the feed from the store. Trades that come during the load wait and are
        folded after it (those the load already folded are skipped by trade id)."""
        n = self.follows.get(mid, 0)
        self.follows[mid] = n + 1
        await self.ex.bus.follow(f"market.{mid}")
        if n == 0 and mid not in self.ex.markets and mid in self.feeds:
            await self._reload(mid, frozenset(PERIODS), warm=True)

    async def unfollow(self, mid: str) -> None:
        n = self.follows.get(mid, 0) - 1
        if n > 0:
            self.follows[mid] = n
        else:
            self.follows.pop(mid, None)
        await self.ex.bus.unfollow(f"market.{mid}")

    async def _reload(self, mid: str, periods: frozenset[int], warm: bool = False) -> None:
        lock = self._locks.setdefault(mid, asyncio.Lock())
        async with lock:
            feed = Feed(self.ex.config.markets[mid], self.keep, self.recent_size, persist=False)
            if warm:
                self._warming[mid] = []
            try:
                await self._load(feed, periods)
            finally:
                waiting = self._warming.pop(mid, None) if warm else None
            for ev in waiting or ():
                if ev["id"] > feed.last_trade_id:
                    self._fold(feed, ev["id"], ev["price"], ev["volume"], ev["funds"], ev["created_at"])
                    feed.recent.append(ev)
            self.feeds[mid] = feed
            self.reloads += 1

    async def _fresh(self, mid: str, period: int = 1) -> None:
        """Before a read of a cold feed (a market run elsewhere that nothing here follows): reload it
        from the store once it is older than `cold_ttl`, or when it lacks the series asked for."""
        feed = self.feeds.get(mid)
        if feed is None or self.live(mid):
            return
        if time.monotonic() - feed.loaded_at < self.cold_ttl and period in feed.periods:
            return
        try:
            await self._reload(mid, frozenset((1, period)))
        except Exception as e:  # the store is away: the older numbers still stand
            log.warning("market data %s: could not reload from the store: %r", mid, e)

    def _fold(self, feed: Feed, tid: int, price: int, volume: int, funds: int, created_at: int) -> None:
        ts = created_at if created_at > feed.last_ts else feed.last_ts
        feed.last_ts = ts
        feed.last_trade_id = tid
        feed.last_price = price
        s = ts // 1000
        if feed.persist:
            feed.state_dirty = True
            mid = feed.market.id
            dirty = self._dirty
            for series in feed.series_list:
                c = series.add(s, price, volume, funds)
                dirty[(mid, series.period, c.ts)] = c
        else:
            for series in feed.series_list:
                series.add(s, price, volume, funds)
        feed.ticker.touched(s - s % 60)

    # -- persistence --------------------------------------------------------------------------------
    async def flush(self) -> None:
        """Write changed candles and each market's last folded trade id in one transaction.

        Values are taken in one synchronous step, so the stored candles are exactly the fold of the
        trades up to the stored id; on failure everything is kept for the next attempt."""
        feeds = [f for f in self.feeds.values() if f.state_dirty]
        if not self._dirty and not feeds:
            return
        dirty, self._dirty = self._dirty, {}
        rows = [(m, p, c.ts, c.open, c.high, c.low, c.close, c.volume, c.funds, c.count) for (m, p, _), c in dirty.items()]
        states = [(f.market.id, f.last_trade_id, f.last_ts) for f in feeds]
        for f in feeds:
            f.state_dirty = False
        try:
            async with self.store.transaction() as tx:
                await tx.executemany(KLINE_UPSERT_SQL, rows)
                await tx.executemany(STATE_UPSERT_SQL, states)
        except BaseException:
            for k, c in dirty.items():
                self._dirty.setdefault(k, c)
            for f in feeds:
                f.state_dirty = True
            raise
        self.flushes += 1

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval)
            try:
                await self.flush()
            except Exception:
                log.exception("could not store k-lines; keeping them for the next try")

    # -- reads --------------------------------------------------------------------------------------
    def ticker_now(self, market_id: str, now: float | None = None) -> Ticker | None:
        """The 24 h ticker from memory, without awaiting (the websocket hub builds frames with it).
        `buy`/`sell` come from the book when this node runs the market, else they are None."""
        feed = self.feeds.get(market_id)
        if feed is None:
            return None
        now_s = int(time.time() if now is None else now)
        actor = self.ex.markets.get(market_id)
        buy = actor.engine.best_bid() if actor is not None else None
        sell = actor.engine.best_ask() if actor is not None else None
        st = feed.ticker.stats(now_s)
        return Ticker(now_s, buy, sell, st.low, st.high, feed.last_price, st.open, st.volume, st.funds)

    async def ticker(self, market_id: str, now: float | None = None) -> Ticker:
        """The 24 h ticker; the best bid and ask of a market run elsewhere are asked of its node."""
        await self._fresh(market_id)
        t = self.ticker_now(market_id, now)
        if t is None:
            raise KeyError(market_id)
        if market_id not in self.ex.markets:
            try:
                st = await self.ex.market_status(market_id)
            except ExchangeError as e:  # its node is unreachable: the rest of the ticker still holds
                log.debug("no book status for %s: %s", market_id, e)
            else:
                t = replace(t, buy=st.get("best_bid"), sell=st.get("best_ask"))
        return t

    def recent_trades(self, market_id: str) -> list[Event]:
        feed = self.feeds.get(market_id)
        return list(feed.recent) if feed is not None else []

    def current_candle(self, market_id: str, period: int, now: float | None = None) -> tuple[int, ...] | None:
        """The candle of the current period (flat at the last close when it has no trade yet)."""
        feed = self.feeds.get(market_id)
        if feed is None:
            return None
        series = feed.series[period]
        last = series.last
        if last is None:
            return None
        t = align(max(int(time.time() if now is None else now), feed.last_ts // 1000), period)
        if last.ts >= t:
            return last.row()
        return (t, last.close, last.close, last.close, last.close, 0)

    async def klines(self, market_id: str, period: int, limit: int, timestamp: int | None = None,
                     now: float | None = None) -> list[tuple[int, int, int, int, int, int]]:
        """`/k`: candles [ts, open, high, low, close, volume], empty periods carried (see kline.fill)."""
        now_s = int(time.time() if now is None else now)
        await self._fresh(market_id, period)
        feed = self.feeds.get(market_id)
        if feed is None:
            return []
        series = feed.series[period]
        now_s = max(now_s, feed.last_ts // 1000)
        rng = window(series.first_ts, now_s, period, limit, timestamp)
        if rng is None:
            return []
        start, end = rng
        prev, mem = series.between(start, end)
        if series.covers(start):
            return list(fill((c.row() for c in mem), start, end, period, prev))
        # Older than memory: the store has them (evicted candles were flushed long ago); memory
        # still wins for the newest ones, which may not be stored yet.
        rows = await self._stored(market_id, period, start, end)
        merged = {r[0]: r for r in rows}
        merged.update((c.ts, c.row()) for c in mem)
        prev = await self._stored_close_before(market_id, period, start)
        return list(fill((merged[t] for t in sorted(merged)), start, end, period, prev))

    async def _stored(self, mid: str, period: int, start: int, end: int) -> list[tuple[int, int, int, int, int, int]]:
        rows = await self.store.fetch(
            f"SELECT {KLINE_COLUMNS} FROM klines WHERE market = ? AND period = ? AND ts >= ? AND ts <= ? ORDER BY ts",
            mid, period, start, end)
        return [_candle(r).row() for r in rows]

    async def _stored_close_before(self, mid: str, period: int, start: int) -> int | None:
        v = await self.store.fetchval(
            "SELECT price_close FROM klines WHERE market = ? AND period = ? AND ts < ? ORDER BY ts DESC LIMIT 1",
            mid, period, start)
        return None if v is None else int(v)


def _candle(r: Any) -> Candle:
    return Candle(int(r["ts"]), int(r["price_open"]), int(r["price_high"]), int(r["price_low"]), int(r["price_close"]),
                  int(r["volume"]), int(r["funds"]), int(r["trades"]))


def _trade_event(r: Any) -> Event:
    """A stored trade in the shape the market actor publishes."""
    return {
        "id": int(r["id"]), "market": r["market"], "price": int(r["price"]), "volume": int(r["volume"]),
        "funds": int(r["funds"]), "ask_id": int(r["ask_id"]), "bid_id": int(r["bid_id"]),
        "ask_member_id": int(r["ask_member_id"]), "bid_member_id": int(r["bid_member_id"]),
        "taker_side": r["taker_side"], "created_at": int(r["created_at"]),
    }
