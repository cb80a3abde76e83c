"""Peatio's JSON shapes: integers inside become decimal strings and ISO times at the edge."""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any

from node.config import Currency, Market
from node.money import format_units


def iso(ms: int) -> str:
    """Peatio's ISO-8601 UTC time, to the second."""
    return _iso_seconds(ms // 1000)


@functools.lru_cache(maxsize=4096)
def _iso_seconds(seconds: int) -> str:
    """Cached: a busy API formats the same few seconds over and over (strftime is slow)."""
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def price_str(m: Market, ticks: int) -> str:
    return format_units(ticks, m.price_precision)


def volume_str(m: Market, lots: int) -> str:
    return format_units(lots, m.volume_precision)


def funds_str(m: Market, quote_units: int) -> str:
    return format_units(quote_units, m.quote.precision)


def order_json(m: Market, o: dict[str, Any], state: str | None = None) -> dict[str, Any]:
    executed = o["volume"] - o["remaining"]
    # Average price in ticks, with volume_precision extra digits so it is exact enough to read.
    avg = (o["funds_used"] * 10**m.volume_precision // executed) if executed else 0
    st = state or ("wait" if o["state"] == "pending" else o["state"])
    out: dict[str, Any] = {
        "id": o["id"],
        "side": o["side"],
        "ord_type": o["ord_type"],
        "price": price_str(m, o["price"]) if o["ord_type"] != "market" else None,
        "avg_price": format_units(avg, m.price_precision + m.volume_precision),
        "state": st,
        "market": m.id,
        "created_at": iso(o["created_at"]),
        "volume": volume_str(m, o["volume"]),
        "remaining_volume": volume_str(m, o["remaining"]),
        "executed_volume": volume_str(m, executed),
        "trades_count": o["trades_count"],
        "time_in_force": o.get("tif", "gtc"),
    }
    if o.get("stop_price"):
        out["stop_price"] = price_str(m, o["stop_price"])
    if o.get("client_id"):
        out["client_id"] = o["client_id"]
    return out


def trade_json(m: Market, t: dict[str, Any], member_id: int | None = None, order_side: bool = False) -> dict[str, Any]:
    """A trade; `side` is null in public lists, ask/bid for the member (buy/sell inside an order)."""
    side: str | None = None
    order_id: int | None = None
    if member_id is not None:
        if t["bid_member_id"] == member_id and t["ask_member_id"] == member_id:
            side, order_id = ("bid", t["bid_id"])
        elif t["bid_member_id"] == member_id:
            side, order_id = "bid", t["bid_id"]
        else:
            side, order_id = "ask", t["ask_id"]
        if order_side:
            side = "buy" if side == "bid" else "sell"
    out: dict[str, Any] = {
        "id": t["id"],
        "price": price_str(m, t["price"]),
        "volume": volume_str(m, t["volume"]),
        "funds": funds_str(m, t["funds"]),
        "market": m.id,
        "created_at": iso(t["created_at"]),
        "side": side,
    }
    if member_id is not None:
        out["order_id"] = order_id
    return out


def deposit_json(cur: Currency, d: dict[str, Any]) -> dict[str, Any]:
    """Peatio's Deposit entity; `done_at` is null until the deposit is credited."""
    return {
        "id": int(d["id"]),
        "currency": d["currency"],
        "amount": format_units(int(d["amount"]), cur.precision),
        "fee": format_units(int(d["fee"]), cur.precision),
        "txid": d["txid"],
        "created_at": iso(int(d["created_at"])),
        "confirmations": int(d["confirmations"]),
        "done_at": iso(int(d["done_at"])) if d.get("done_at") is not None else None,
        "state": d["state"],
        "note": d.get("note") or "",  # why a deposit was not credited or was taken back, for the member
    }


def account_json(cur: Currency, a: dict[str, Any]) -> dict[str, Any]:
    """Peatio's Account entity: `balance` is what is available, `locked` what open orders hold."""
    return {
        "currency": a["currency"],
        "balance": format_units(int(a["balance"]), cur.precision),
        "locked": format_units(int(a["locked"]), cur.precision),
    }
