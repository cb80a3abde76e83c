"""API v2 for the member: the profile and accounts, and orders (list, one, place, place several,
cancel, cancel all). Placing burns the tonce in the transaction that accepts the orders
(`_Submission`).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from node.apikeys import Token
from node.errors import (
    Busy,
    CancelOrderFailed,
    ExchangeError,
    InvalidParameter,
    OrderNotFound,
    Timeout,
    TonceReused,
    Unavailable,
)
from node.exchange import Exchange, OrderInput, inputs_from
from node.tonces import Tonce
from node.web.api.common import (
    AUTH,
    EXCHANGE,
    MAX_ID,
    _choice,
    _limit,
    _limiter,
    _market,
    _private,
    json_response,
    page_of,
    paged,
    request_params,
    verified,
)
from node.web.auth import require_scope
from node.web.format import account_json, order_json, trade_json
from node.web.params import Params


class _Submission:
    """A signed order submission whose tonce is burnt by the account actor, in the transaction that
    accepts the orders (one commit per request instead of two).

    Whatever is refused before that (scope, params, member, halted market), or never reaches it
    (busy, unavailable, timed out), burns the tonce on its own first, so a request is still
    answered 2006 when replayed and has an effect at most once.
    """

    def __init__(self, request: web.Request, token: Token, tonce: Tonce) -> None:
        self.request = request
        self.auth = request.app[AUTH]
        self.ex = request.app[EXCHANGE]
        self.token = token
        self.tonce = tonce

    async def refused(self, error: ExchangeError, outcome_known: bool = True) -> ExchangeError:
        """The error to answer with: 2006 if the tonce was used before, else `error`.

        When the outcome is not known (the account actor failed or timed out: its transaction may
        have committed, tonce included), the tonce is burnt all the same but `error` stands: a 2006
        would wrongly tell the client that its order was not placed.
        """
        try:
            await self.auth.burn(self.tonce)
        except TonceReused as replay:
            if not outcome_known:
                return error
            _limiter(self.request).hit_ip(self.request.remote)
            return replay
        except ExchangeError:
            pass  # the tonce actor is busy too: the request did nothing, the original error stands
        return error

    async def place(self, inputs: list[OrderInput]) -> list[dict[str, Any]]:
        try:
            reqs = await self.ex.prepare_orders(self.token.member_id, inputs)
        except ExchangeError as e:
            raise await self.refused(e) from None
        try:
            return await self.ex.place_orders(self.token.member_id, reqs, self.tonce)
        except TonceReused:  # the account actor found it used: a replay
            _limiter(self.request).hit_ip(self.request.remote)
            raise
        except Busy as e:  # never reached the account actor
            raise await self.refused(e) from None
        except (Unavailable, Timeout) as e:
            raise await self.refused(e, outcome_known=False) from None


async def _submission(request: web.Request, *scopes: str) -> tuple[_Submission, Params]:
    params = await request_params(request)
    token, tonce = await verified(request, params)
    sub = _Submission(request, token, tonce)
    try:
        require_scope(token, *scopes)
    except ExchangeError as e:
        raise await sub.refused(e) from None
    return sub, params


async def members_me(request: web.Request) -> web.Response:
    ex, _, token = await _private(request, "profile")
    member = await ex.member(token.member_id)
    accounts = await ex.accounts_of(token.member_id)
    cur = ex.config.currencies
    return json_response({
        "sn": member["sn"], "name": member["name"], "email": member["email"], "activated": bool(member["activated"]),
        "accounts": [account_json(cur[a["currency"]], a) for a in accounts],
    })


ORDER_STATES: dict[str, tuple[str, ...]] = {"wait": ("wait", "pending"), "done": ("done",), "cancel": ("cancel",)}


async def orders_get(request: web.Request) -> web.Response:
    ex, params, token = await _private(request, "history", "trade")
    m = _market(ex, params, required=False)
    state = _choice(params, "state", tuple(ORDER_STATES), "wait")
    assert state is not None
    states = ORDER_STATES[state]
    limit = _limit(params, "limit", 100, 1000)
    page, offset = page_of(params, limit)
    order_by = _choice(params, "order_by", ("asc", "desc"), "asc")
    mid = m.id if m else None
    rows = await ex.orders_of(token.member_id, mid, states, limit, offset, order_by == "asc")
    total = await ex.count_orders_of(token.member_id, mid, states)
    return paged([order_json(ex.market(o["market"]), o) for o in rows], page, limit, total)


def _order_id(params: Params) -> int:
    return params.get_int("id", required=True, min_value=1, max_value=MAX_ID)


async def order_get(request: web.Request) -> web.Response:
    ex, params, token = await _private(request, "history", "trade")
    oid = _order_id(params)
    o = await ex.order_row(oid)
    if o is None or o["member_id"] != token.member_id:
        raise OrderNotFound(f"Order#{oid} doesn't exist.")
    m = ex.market(o["market"])
    out = order_json(m, o)
    out["trades"] = [trade_json(m, t, token.member_id, order_side=True) for t in await ex.trades_of_order(oid)]
    return json_response(out)


async def orders_post(request: web.Request) -> web.Response:
    """One order; with `client_id`, a retry returns the order already created (idempotent)."""
    sub, params = await _submission(request, "trade")
    o = (await sub.place([inputs_from(params.to_dict())]))[0]  # a dict: fast .get
    return json_response(order_json(sub.ex.market(o["market"]), o), status=201)


async def orders_multi(request: web.Request) -> web.Response:
    """Several orders of one market, all or nothing (`orders[][side]=…&orders[][volume]=…`)."""
    sub, params = await _submission(request, "trade")
    try:
        inputs = await _multi_inputs(sub.ex, sub.token, params)
    except ExchangeError as e:
        raise await sub.refused(e) from None
    result = await sub.place(inputs)
    return json_response([order_json(sub.ex.market(o["market"]), o) for o in result], status=201)


async def _multi_inputs(ex: Exchange, token: Token, params: Params) -> list[OrderInput]:
    """The orders of `/orders/multi`, checked one by one first, so that an error says which is wrong."""
    m = _market(ex, params)
    assert m is not None
    items = params.get_dicts("orders", required=True, max_items=100)
    inputs = []
    for i, item in enumerate(items):
        try:
            o = inputs_from({**item, "market": m.id})
            await ex.prepare(token.member_id, o)
        except ExchangeError as e:
            field = getattr(e, "field", None)
            if isinstance(e, InvalidParameter):
                raise InvalidParameter(f"orders[{i}]: {e.message}", f"orders[][{field}]" if field else "orders") from None
            e.message = f"orders[{i}]: {e.message}"
            e.args = (e.message,)
            raise
        inputs.append(o)
    return inputs


async def order_delete(request: web.Request) -> web.Response:
    """Peatio's reply: the order as it stood when the cancel was accepted (state `wait`); the cancel
    itself is final by the time this answers. An unknown id, or another member's, is Peatio's
    400/2003 here (its 404/2004 is `GET /order`'s): ccxt and bots read a 404 as an outage."""
    ex, params, token = await _private(request, "trade")
    oid = _order_id(params)
    try:
        before = await ex.cancel_order(token.member_id, oid)
    except OrderNotFound:
        raise CancelOrderFailed(f"Failed to cancel order. Reason: Order#{oid} doesn't exist.") from None
    return json_response(order_json(ex.market(before["market"]), before, state="wait"), status=201)


async def orders_clear(request: web.Request) -> web.Response:
    ex, params, token = await _private(request, "trade")
    side = _choice(params, "side", ("buy", "sell"), None)
    m = _market(ex, params, required=False)
    cancelled = await ex.cancel_all(token.member_id, side, m.id if m else None)
    return json_response([order_json(ex.market(o["market"]), o, state="wait") for o in cancelled], status=201)
