"""K-lines (OHLCV candles) for every Peatio period, aligned the way Peatio aligned them.

Peatio's k-line worker started a series at the period holding the market's first trade, aligned
periods on the Unix epoch (`ts - ts % (period * 60)`) except the week, which starts on Monday 00:00
UTC (`beginning_of_week`), and filled every period without trades with a flat candle at the previous
close and zero volume. We keep exactly that, but store only candles that had trades: the flat ones
are a pure function of their neighbours, so they are made when a range is read (`fill`).

Everything here is integers: prices in ticks, volumes in lots, funds in quote units, times in
seconds for candles (Peatio's `/k` speaks seconds) and milliseconds for trades.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

PERIODS: tuple[int, ...] = (1, 5, 15, 30, 60, 120, 240, 360, 720, 1440, 4320, 10080)
"""Minutes per candle, Peatio's list: 1 minute to 1 week."""
WEEK = 10080
WEEK_OFFSET = 4 * 86_400
"""1970-01-01 was a Thursday: Mondays are 4 days after the epoch modulo a week."""


def align(ts: int, period: int) -> int:
    """Start (epoch seconds) of the `period`-minute candle that holds second `ts`."""
    span = period * 60
    if period == WEEK:
        return ts - (ts - WEEK_OFFSET) % span
    return ts - ts % span


@dataclass(slots=True)
class Candle:
    """One period with trades. `funds` (quote volume) and `count` are ours; Peatio had neither."""

    ts: int
    open: int
    high: int
    low: int
    close: int
    volume: int
    funds: int = 0
    count: int = 0

    def add(self, price: int, volume: int, funds: int) -> None:
        if price > self.high:
            self.high = price
        elif price < self.low:
            self.low = price
        self.close = price
        self.volume += volume
        self.funds += funds
        self.count += 1

    def row(self) -> tuple[int, int, int, int, int, int]:
        return (self.ts, self.open, self.high, self.low, self.close, self.volume)


class Series:
    """The recent candles of one market and period, newest last, plus where the series starts.

    Only the last `keep` candles with trades stay in memory (enough for the usual chart requests and,
    for the 1-minute series, the 24 h ticker); `complete` says whether memory still holds the whole
    history, so a read knows when it must ask the store for older candles.
    """

    __slots__ = ("period", "span", "candles", "first_ts", "complete")

    def __init__(self, period: int, keep: int) -> None:
        self.period = period
        self.span = period * 60
        self.candles: deque[Candle] = deque(maxlen=keep)
        self.first_ts: int | None = None
        self.complete = True

    def load(self, newest_first: Iterable[Candle], first_ts: int | None, total: int) -> None:
        """Take the newest stored candles (as read, newest first) and the series' first period."""
        self.candles.clear()
        for c in newest_first:
            self.candles.appendleft(c)
        self.first_ts = first_ts
        self.complete = total <= len(self.candles)

    def add(self, ts_s: int, price: int, volume: int, funds: int) -> Candle:
        """Fold one trade in; `ts_s` never goes back in time (the caller clamps it)."""
        t = align(ts_s, self.period)
        candles = self.candles
        if candles:
            last = candles[-1]
            if last.ts >= t:  # same period (an earlier one cannot happen: time is clamped)
                last.add(price, volume, funds)
                return last
        if candles.maxlen is not None and len(candles) == candles.maxlen:
            self.complete = False
        c = Candle(t, price, price, price, price, volume, funds, 1)
        candles.append(c)
        if self.first_ts is None:
            self.first_ts = t
        return c

    @property
    def last(self) -> Candle | None:
        return self.candles[-1] if self.candles else None

    def covers(self, ts: int) -> bool:
        """Whether memory holds every candle from `ts` on (and the one before, for the carry-in)."""
        if self.complete:
            return True
        return bool(self.candles) and self.candles[0].ts < ts

    def between(self, start: int, end: int) -> tuple[int | None, list[Candle]]:
        """(close before `start`, candles with start <= ts <= end) from memory; see `covers`."""
        prev: int | None = None
        out: list[Candle] = []
        for c in self.candles:
            if c.ts < start:
                prev = c.close
            elif c.ts <= end:
                out.append(c)
            else:
                break
        return prev, out


def fill(candles: Iterable[tuple[int, int, int, int, int, int]], start: int, end: int, period: int,
         prev_close: int | None) -> Iterator[tuple[int, int, int, int, int, int]]:
    """Every period from `start` to `end` (both aligned, inclusive): stored candles as they are,
    empty periods as a flat candle at the previous close with zero volume (Peatio's carry-over).
    Periods before the first known close are left out, as Peatio's series began at the first trade."""
    span = period * 60
    it = iter(candles)
    nxt = next(it, None)
    t = start
    while t <= end:
        while nxt is not None and nxt[0] < t:  # defensive: a row off the grid never stalls the walk
            nxt = next(it, None)
        if nxt is not None and nxt[0] == t:
            prev_close = nxt[4]
            yield nxt
            nxt = next(it, None)
        elif prev_close is not None:
            yield (t, prev_close, prev_close, prev_close, prev_close, 0)
        t += span


def window(series_first: int | None, now_s: int, period: int, limit: int,
           timestamp: int | None) -> tuple[int, int] | None:
    """The aligned [start, end] range `/k` returns, with Peatio's rules.

    Without `timestamp`: the last `limit` periods up to the current one. With it: `limit` periods
    from the one holding `timestamp` (never before the first trade, never after the current period).
    None when the market never traded or the range is empty.
    """
    if series_first is None:
        return None
    span = period * 60
    now_t = align(now_s, period)
    if timestamp is None:
        end = now_t
        start = max(series_first, end - (limit - 1) * span)
    else:
        start = max(series_first, align(max(timestamp, 0), period))
        end = min(now_t, start + (limit - 1) * span)
    if end < start:
        return None
    return start, end
