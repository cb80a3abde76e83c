"""Frames as bytes: the websocket header (server frames are unmasked, so one encoding serves every
client), close codes, and the JSON bodies of the streams.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import Any

import orjson

from node.config import Market
from node.events import Event
from node.marketdata import Ticker
from node.web.format import funds_str, iso, price_str, volume_str

CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_SLOW = 4001
CLOSE_IDLE = 4002
FULL_BOOK = 1 << 30


def ws_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """A complete, unmasked, unfragmented server frame (RFC 6455 §5.2)."""
    n = len(payload)
    if n < 126:
        return bytes((0x80 | opcode, n)) + payload
    if n < 65536:
        return struct.pack("!BBH", 0x80 | opcode, 126, n) + payload
    return struct.pack("!BBQ", 0x80 | opcode, 127, n) + payload


def frame(obj: Any) -> bytes:
    return ws_frame(orjson.dumps(obj))


PING = ws_frame(b"", 0x9)


class DepthDiff:
    """A market batch's depth diff, kept in a market's history; framed only when a client is sent it
    (a node with no depth subscriber keeps the history all the same, and never frames it)."""

    __slots__ = ("seq", "market", "at", "changes", "_data")

    def __init__(self, seq: int, market: Market, at: int, changes: Iterable[tuple[str, int, int]]) -> None:
        self.seq, self.market, self.at, self.changes = seq, market, at, changes
        self._data: bytes | None = None

    @property
    def data(self) -> bytes:
        if self._data is None:
            m = self.market
            asks: list[list[str]] = []
            bids: list[list[str]] = []
            for side, price, vol in self.changes:
                (bids if side == "buy" else asks).append([price_str(m, price), volume_str(m, vol)])
            self._data = frame({"depth": {"market": m.id, "sequence": self.seq, "asks": asks, "bids": bids,
                                          "at": self.at}})
        return self._data


def levels_json(m: Market, levels: Iterable[tuple[int, int]]) -> list[list[str]]:
    return [[price_str(m, p), volume_str(m, v)] for p, v in levels]


def ticker_body(m: Market, t: Ticker) -> dict[str, Any]:
    def p(v: int | None) -> str:
        return price_str(m, v) if v is not None else "0.0"

    return {"market": m.id, "at": t.at, "buy": p(t.buy), "sell": p(t.sell), "low": p(t.low), "high": p(t.high),
            "last": p(t.last), "open": p(t.open), "vol": volume_str(m, t.vol)}


def kline_row(m: Market, row: tuple[int, ...]) -> list[Any]:
    f = orjson.Fragment
    return [row[0], f(price_str(m, row[1])), f(price_str(m, row[2])), f(price_str(m, row[3])),
            f(price_str(m, row[4])), f(volume_str(m, row[5]))]


def public_trade(m: Market, ev: Event) -> dict[str, Any]:
    return {"id": ev["id"], "price": price_str(m, ev["price"]), "volume": volume_str(m, ev["volume"]),
            "funds": funds_str(m, ev["funds"]), "created_at": iso(ev["created_at"]), "at": ev["created_at"],
            "taker_type": ev["taker_side"]}


def legacy_order(m: Market, o: Event) -> dict[str, Any]:
    """An order in Peatio's `orderbook` frames (`volume` is what still rests)."""
    return {"id": o["id"], "timestamp": o["created_at"] // 1000, "type": "bid" if o["side"] == "buy" else "ask",
            "volume": volume_str(m, o["remaining"]), "price": price_str(m, o["price"]), "market": m.id,
            "ord_type": o["ord_type"]}

