"""The 24 h ticker (low, high, open, volume) of a market, read from its 1-minute candles.

Peatio kept every trade of the last 24 h in memory to compute its ticker; at our trade rates that is
millions of objects. The 1-minute series already holds the same information at one-minute grain, so
the ticker is an aggregate over the 1 440 minutes ending with the current one. The closed minutes
change only when the window moves (once a minute) and are aggregated then; the current minute is
combined on each read, so a read costs O(1).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from node.marketdata.kline import Candle, Series, align

WINDOW_MINUTES = 1440


@dataclass(frozen=True, slots=True)
class Stats:
    low: int | None
    high: int | None
    open: int | None
    volume: int
    funds: int


EMPTY = Stats(None, None, None, 0, 0)


class Ticker24h:
    """24 h aggregates over a 1-minute `Series`; call `touched(ts)` whenever a candle changes."""

    __slots__ = ("series", "_key", "_closed")

    def __init__(self, series: Series) -> None:
        assert series.period == 1
        self.series = series
        self._key: tuple[int, int] | None = None
        self._closed = EMPTY

    def touched(self, candle_ts: int) -> None:
        """A candle changed: if it is one the cached aggregate covers, forget the aggregate."""
        if self._key is not None and candle_ts < self._key[1]:
            self._key = None

    def stats(self, now_s: int) -> Stats:
        current = align(now_s, 1)
        start = current - (WINDOW_MINUTES - 1) * 60
        if self._key != (start, current):
            self._closed = _aggregate(c for c in self.series.candles if start <= c.ts < current)
            self._key = (start, current)
        live = _newest(self.series, current)
        if not live:
            return self._closed
        agg = self._closed
        low, high, opn, vol, funds = agg.low, agg.high, agg.open, agg.volume, agg.funds
        for c in live:
            low = c.low if low is None or c.low < low else low
            high = c.high if high is None or c.high > high else high
            if opn is None:
                opn = c.open
            vol += c.volume
            funds += c.funds
        return Stats(low, high, opn, vol, funds)


def _newest(series: Series, current: int) -> list[Candle]:
    """Candles at or after the current minute, oldest first (normally zero or one)."""
    out: list[Candle] = []
    for c in reversed(series.candles):
        if c.ts < current:
            break
        out.append(c)
    out.reverse()
    return out


def _aggregate(candles: Iterable[Candle]) -> Stats:
    low: int | None = None
    high: int | None = None
    opn: int | None = None
    vol = funds = 0
    for c in candles:
        if opn is None:
            opn = c.open
        low = c.low if low is None or c.low < low else low
        high = c.high if high is None or c.high > high else high
        vol += c.volume
        funds += c.funds
    return Stats(low, high, opn, vol, funds)
