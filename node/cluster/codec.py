"""Actor messages and answers on the wire: small JSON documents with a type tag.

Errors travel as their code, class and message, and become the same ExchangeError subclass on the
asking node, so an API client cannot tell whether its market is local or remote.

Several messages for one queue travel as one body, a JSON list (`join_messages`, `decode_messages`):
one broker message, publish and acknowledgement for what one batch sent there. Their answers come
back as one list too (`encode_results`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
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


def _fields(cls: Any) -> tuple[str, ...]:
    """A message's fields: a named tuple's (the messages every order makes) or a dataclass's."""
    if issubclass(cls, tuple):
        return tuple(cls._fields)
    return tuple(f.name for f in dataclasses.fields(cls))


FIELDS: dict[str, tuple[str, ...]] = {name: _fields(cls) for name, cls in MESSAGES.items()}


def _as_dict(msg: Any) -> dict[str, Any]:
    """A message's fields as a JSON object, whichever kind it is (a named tuple would be an array)."""
    if isinstance(msg, SubmitOrders):  # the one message that nests others
        return {"orders": [o._asdict() for o in msg.orders], "tonce": msg.tonce}
    if isinstance(msg, NewOrder):  # `direct` holds only for the in-process hand-over it was set for
        d = msg._asdict()
        del d["direct"]
        return d
    if isinstance(msg, tuple):
        return msg._asdict()  # type: ignore[attr-defined,no-any-return]
    return dataclasses.asdict(msg)


def encode_message(msg: Any) -> bytes:
    name = type(msg).__name__
    if name not in MESSAGES:
        raise TypeError(f"{name} cannot be sent to another node")
    return orjson.dumps({"t": name, **_as_dict(msg)})


def join_messages(bodies: Sequence[bytes]) -> bytes:
    """Encoded messages as one body, a list (each body from `encode_message`)."""
    return b"[" + b",".join(bodies) + b"]"


def decode_message(body: bytes) -> Any:
    return _message(orjson.loads(body))


def decode_messages(body: bytes) -> list[Any]:
    """The messages of a body: one (`encode_message`) or a list (`join_messages`)."""
    data = orjson.loads(body)
    return [_message(d) for d in data] if isinstance(data, list) else [_message(data)]


def _message(data: dict[str, Any]) -> Any:
    cls = MESSAGES[data.pop("t")]
    if cls is NewOrder:
        data.pop("direct", None)  # see `_as_dict`: an order from another node is never direct
    if cls is SubmitOrders:  # the one message that nests others
        data["orders"] = [OrderRequest(**o) for o in data["orders"]]
    for name in FIELDS[cls.__name__]:
        if isinstance(data.get(name), list):
            data[name] = tuple(data[name])
    return cls(**data)


def encode_result(result: Any) -> bytes:
    return orjson.dumps(_result(result))


def encode_results(results: Sequence[Any]) -> bytes:
    """The answers to a list of requests, in their order."""
    return orjson.dumps({"many": [_result(r) for r in results]})


def _result(result: Any) -> dict[str, Any]:
    if isinstance(result, errors.ExchangeError):
        return {"error": {"type": type(result).__name__, "code": result.code, "message": result.message,
                          "status": result.status}}
    return {"ok": result}


def decode_result(body: bytes) -> Any:
    return _from(orjson.loads(body))


def decode_results(body: bytes) -> list[Any]:
    """The answers of `encode_results`, in their requests' order."""
    return [_from(d) for d in orjson.loads(body)["many"]]


def _from(data: dict[str, Any]) -> Any:
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
