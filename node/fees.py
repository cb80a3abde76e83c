"""The fee rates in force: one answer for settlement's neighbours, the API, the pages and the admin.

A market's maker and taker rates start as configured (`markets.<id>.maker_fee / taker_fee`); an
admin may change them at run time, and the market actor then stores the new pair in its
`markets_state` row before it settles with them. So the row, where it has rates, is what trades
are charged now, and the configuration only where it has none. Everything that shows or checks a
rate asks here instead of reading the configuration (which would show a rate no longer charged).
Rates are integers in units of 1e-8 (`node.config.FEE_SCALE`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from node.config import Market


def rates_from(row: Any, market: Market) -> tuple[int, int]:
    """(maker, taker) from a `markets_state` row (or None: no row yet), falling back to the configuration."""
    maker = int(row["maker_fee"]) if row is not None and row["maker_fee"] is not None else market.maker_fee
    taker = int(row["taker_fee"]) if row is not None and row["taker_fee"] is not None else market.taker_fee
    return maker, taker


async def rates_in_force(db: Any, markets: Mapping[str, Market]) -> dict[str, tuple[int, int]]:
    """(maker, taker) of every market, read in one query (`db`: a store or a transaction)."""
    rows = {r["market"]: r for r in await db.fetch("SELECT market, maker_fee, taker_fee FROM markets_state")}
    return {mid: rates_from(rows.get(mid), m) for mid, m in markets.items()}


async def rate_in_force(db: Any, market: Market) -> tuple[int, int]:
    row = await db.fetchrow("SELECT maker_fee, taker_fee FROM markets_state WHERE market = ?", market.id)
    return rates_from(row, market)
