"""One node of the exchange, assembled: store, event bus, account and market actors.

The web layer and the CLI trade through this object only (the other services are node/services.py's).
It validates requests at the core boundary (markets, members, precisions, limits) so that nothing
invalid ever reaches an actor, then asks the actors. Reads go straight to the store or to the
in-memory books.

It is made of parts by job, each its own module: `core.py` (the shared state and lookups),
`boot.py` (start, stop, markets handed between nodes), `trading.py` (orders, cancels, halts, fees,
deposits) and `queries.py` (books, orders, accounts, status).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from node.errors import ExchangeError, InvalidParameter
from node.exchange.boot import Boot
from node.exchange.core import OrderInput
from node.exchange.trading import Trading
from node.market import GTC, LIMIT


class Exchange(Boot, Trading):
    """A node's exchange: boot and hand-over (`Boot`, with the reads of `Queries`) and trading."""


def inputs_from(params: Mapping[str, Any]) -> OrderInput:
    """Build an OrderInput from API/form params, with Peatio's names (and ours for what Peatio lacked)."""
    def opt(key: str) -> str | None:
        v = params.get(key)
        if v is None:
            return None
        if not isinstance(v, str):
            raise InvalidParameter(f"{key} must be a string", key)
        return v

    def req(key: str) -> str:
        v = opt(key)
        if v is None or v == "":
            raise InvalidParameter(f"{key} is missing", key)
        return v

    return OrderInput(
        market=req("market"),
        side=req("side"),
        volume=req("volume"),
        price=opt("price"),
        ord_type=opt("ord_type") or LIMIT,
        tif=opt("time_in_force") or GTC,
        stop_price=opt("stop_price"),
        client_id=opt("client_id"),
    )


__all__ = ["Exchange", "ExchangeError", "OrderInput", "inputs_from"]
