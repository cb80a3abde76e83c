"""Live market data from the market actors' events: k-lines, 24 h tickers, recent trades."""

from node.marketdata.kline import PERIODS, Candle, Series, align, fill
from node.marketdata.service import Item, MarketData, Ticker

__all__ = ["PERIODS", "Candle", "Item", "MarketData", "Series", "Ticker", "align", "fill"]
