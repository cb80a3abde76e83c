"""Actor messages and answers on the wire: small JSON documents with a type tag.

Errors travel as their code, class and message, and become the same ExchangeError subclass on the
asking node, so an API client cannot tell whether its market is local or remote.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson

from node import errors
from node.actors.messages import (
    ApplySettlements,
    CancelAll,
    CancelOrder,
    NewOrder,
    OrderRequest,
    QueryBook,
    SetFees,
    SetHalted,
    SubmitOrders,
)

MESSAGES: dict[str, type] = {c.__name__: c for c in (NewOrder, CancelOrder, CancelAll, SetHalted, SetFees, QueryBook,
                                                     SubmitOrders, ApplySettlements)}
ERRORS: dict[str, type[errors.ExchangeError]] = {
    name: obj for name, obj in vars(errors).items()
    if isinstance(obj, type) and issubclass(obj, errors.ExchangeError)
}


def encode_message(msg: Any) -> bytes:
    name = type(msg).__name__
    if name not in MESSAGES:
        raise TypeError(f"{name} cannot be sent to another node")
    return orjson.dumps({"t": name, **dataclasses.asdict(msg)})


def decode_message(body: bytes) -> Any:
    data = orjson.loads(body)
    cls = MESSAGES[data.pop("t")]
    if cls is SubmitOrders:  # the one message that nests others
        data["orders"] = [OrderRequest(**o) for o in data["orders"]]
    for f in dataclasses.fields(cls):
        if isinstance(data.get(f.name), list):
            data[f.name] = tuple(data[f.name])
    return cls(**data)


def encode_result(result: Any) -> bytes:
    if isinstance(result, errors.ExchangeError):
        return orjson.dumps({"error": {"type": type(result).__name__, "code": result.code, "message": result.message,
                                       "status": result.status}})
    return orjson.dumps({"ok": result})


def decode_result(body: bytes) -> Any:
    data = orjson.loads(body)
    if "error" in data:
        e = data["error"]
        cls = ERRORS.get(e.get("type", ""), errors.ExchangeError)
        try:
            err = cls(e["message"])
        except TypeError:  # an error class with a richer constructor: keep code and status
            err = errors.ExchangeError(e["message"])
        err.code, err.status = int(e["code"]), int(e["status"])
        return err
    return data["ok"]
