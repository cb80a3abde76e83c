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
    """Build an OrderInput from API/form params, with Peatio's names (and ours for what Peatio lacked).

    The usual params are all strings: they are taken in one pass (this runs for every order);
    anything else goes through `_field`, which names what is wrong."""
    get = params.get
    market, side, volume = get("market"), get("side"), get("volume")
    price, ord_type, tif = get("price"), get("ord_type"), get("time_in_force")
    stop_price, client_id = get("stop_price"), get("client_id")
    if not (market and side and volume and _strs(market, side, volume) and _strs(price, ord_type, tif, stop_price, client_id)):
        market, side, volume = _field(params, "market", True), _field(params, "side", True), _field(params, "volume", True)
        price, ord_type, tif = _field(params, "price"), _field(params, "ord_type"), _field(params, "time_in_force")
        stop_price, client_id = _field(params, "stop_price"), _field(params, "client_id")
    return OrderInput(market, side, volume, price, ord_type or LIMIT, tif or GTC, stop_price, client_id)


def _strs(*values: Any) -> bool:
    """Every value a string, or None."""
    for v in values:
        if v is not None and v.__class__ is not str:
            return False
    return True


def _field(params: Mapping[str, Any], key: str, required: bool = False) -> Any:
    """One param: a string, or None when absent; a required one must be there and not empty."""
    v = params.get(key)
    if v is not None and not isinstance(v, str):
        raise InvalidParameter(f"{key} must be a string", key)
    if required and (v is None or v == ""):
        raise InvalidParameter(f"{key} is missing", key)
    return v


__all__ = ["Exchange", "ExchangeError", "OrderInput", "inputs_from"]
