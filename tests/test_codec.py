"""Actor messages on the wire (node/cluster/codec.py): every message type comes back equal, alone
or in a list, and errors come back as their own class with their code and status."""

from __future__ import annotations

import orjson

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
from node.cluster.codec import (
    decode_message,
    decode_messages,
    decode_results,
    encode_message,
    encode_results,
    join_messages,
)
from node.errors import CreateOrderFailed, ExchangeError

MESSAGES = [
    NewOrder(1, 42, "buy", "limit", 3_000_000, 100, "gtc", 0, 0, 300_000_000, 1_700_000_000_000),
    CancelOrder(7, None),
    CancelAll(None, "sell"),
    SetHalted(True),
    SetFees(10, 20),
    QueryBook("depth", limit=5),
    ApplySettlements(3, (1, 2, 3)),
    SubmitOrders((OrderRequest(42, "btcusd", "sell", "limit", 1, 2, "gtc", 0, None, "btc", 2, 0),), ("key", 5)),
]


def test_every_message_comes_back_equal_alone_and_in_a_list() -> None:
    for msg in MESSAGES:
        body = encode_message(msg)
        assert orjson.loads(body)["t"] == type(msg).__name__
        assert decode_message(body) == msg
    assert decode_messages(join_messages([encode_message(m) for m in MESSAGES])) == MESSAGES


def test_errors_come_back_as_their_class() -> None:
    e = CreateOrderFailed("insufficient funds")
    out = decode_results(encode_results([e, {"id": 1}]))
    assert isinstance(out[0], CreateOrderFailed) and isinstance(out[0], ExchangeError)
    assert (out[0].code, out[0].status, out[0].message) == (e.code, e.status, e.message)
    assert out[1] == {"id": 1}


def test_an_order_from_another_node_is_never_direct() -> None:
    """`direct` holds for one in-process hand-over only: it is not sent, and not believed if it comes."""
    order = NewOrder(1, 42, "buy", "limit", 3_000_000, 100, "gtc", 0, 0, 300_000_000, 1_700_000_000_000, direct=True)
    body = encode_message(order)
    assert b"direct" not in body
    assert decode_message(body) == order._replace(direct=False)
    forged = orjson.dumps({**orjson.loads(body), "direct": True})
    assert decode_message(forged).direct is False
