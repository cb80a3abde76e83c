"""API v2 for funds: deposits, deposit addresses and withdrawals, in Peatio's shapes (signed calls).

| endpoint | params | answer |
|---|---|---|
| `GET /deposits` | currency, state, limit (1..100, 3), page | `[Deposit]` newest first |
| `GET /deposit` | txid | Deposit, or 404 / 2012 |
| `GET /deposit_address` | currency | `{currency, address}` (+ `bank` details for fiat: `address` is the reference code) |
| `POST /withdraws` | currency, amount, address (or Peatio's `rid` / `fund_uid`), otp | Withdraw, 201 |
| `GET /withdraws` | currency, state, limit (1..100, 3), page | `[Withdraw]` newest first |
| `GET /withdraw` | id | Withdraw, or 404 / 3103 |
| `POST /withdraw/cancel` | id | Withdraw (state `canceled`) while not yet being paid |

`amount` is what arrives at the address; the currency's withdrawal fee comes on top and both are
locked until the withdrawal is done or ends otherwise. Making a withdrawal needs a key with the
`all` scope (there is no narrower withdraw scope), reads need none, like Peatio's deposits.

`otp` is the hook for the withdrawal second factor: it is passed to `Funds.request_withdraw`, which
checks it through `WithdrawPolicies.second_factor` (node/bootstrap.py gives it); without it it is not
checked, and this says so rather than pretending.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from node.config import Currency
from node.errors import DepositNotFound, InvalidParameter
from node.money import format_units
from node.wallet.records import DEPOSIT_STATES, WITHDRAW_STATES
from node.web.api.common import _private, json_response, page_of, paged
from node.web.auth import require_scope
from node.web.format import deposit_json, iso
from node.web.params import Params


def withdraw_json(cur: Currency, w: dict[str, Any]) -> dict[str, Any]:
    """Peatio's Withdraw: `amount` arrives at `address`, `fee` goes to the house, `sum` is locked."""
    return {
        "id": int(w["id"]),
        "sn": w["sn"],
        "currency": w["currency"],
        "type": cur.kind,
        "amount": format_units(int(w["amount"]), cur.precision),
        "fee": format_units(int(w["fee"]), cur.precision),
        "sum": format_units(int(w["total"]), cur.precision),
        "address": w["address"],
        "rid": w["address"],
        "txid": w["txid"],
        "state": w["state"],
        "note": w["note"],
        "created_at": iso(int(w["created_at"])),
        "updated_at": iso(int(w["updated_at"])),
        "done_at": iso(int(w["done_at"])) if w.get("done_at") is not None and w["state"] == "done" else None,
    }


def _currency(ex: Any, params: Params, required: bool) -> Currency | None:
    raw = params.get_str("currency", required=required, max_len=16)
    if not raw:
        return None
    cur: Currency | None = ex.config.currencies.get(raw)
    if cur is None:
        raise InvalidParameter("currency does not have a valid value", "currency")
    return cur


def _state(params: Params, states: tuple[str, ...]) -> str | None:
    raw = params.get_str("state", max_len=32)
    if not raw:
        return None
    if raw not in states:
        raise InvalidParameter(f"state does not have a valid value (one of {', '.join(states)})", "state")
    return raw


def _paging(params: Params) -> tuple[int, int, int]:
    """Peatio's funds lists: 3 rows by default."""
    limit = params.get_int("limit", default=3, min_value=1, max_value=100)
    assert limit is not None
    return (limit, *page_of(params, limit))


async def deposits(request: web.Request) -> web.Response:
    ex, params, token = await _private(request)
    cur = _currency(ex, params, False)
    state = _state(params, DEPOSIT_STATES)
    limit, page, offset = _paging(params)
    rows = await ex.funds.deposits_of(token.member_id, cur.code if cur else None, state, limit, offset)
    cs = ex.config.currencies
    return paged([deposit_json(cs[d["currency"]], d) for d in rows if d["currency"] in cs], page, limit)


async def deposit(request: web.Request) -> web.Response:
    ex, params, token = await _private(request)
    txid = params.get_str("txid", required=True, max_len=200)
    d = await ex.funds.deposit_by_txid(token.member_id, txid)
    if d is None or d["currency"] not in ex.config.currencies:
        raise DepositNotFound(f"Deposit#txid={txid[:100]} doesn't exist.")
    return json_response(deposit_json(ex.config.currencies[d["currency"]], d))


async def deposit_address(request: web.Request) -> web.Response:
    ex, params, token = await _private(request)
    cur = _currency(ex, params, True)
    assert cur is not None
    return json_response(await ex.funds.deposit_address(token.member_id, cur.code))


async def withdraws_post(request: web.Request) -> web.Response:
    ex, params, token = await _private(request)
    require_scope(token, "withdraw")
    cur = _currency(ex, params, True)
    assert cur is not None
    address = params.get_str("address", max_len=200) or params.get_str("rid", max_len=200) \
        or params.get_str("fund_uid", max_len=200)
    if not address:
        raise InvalidParameter("address is missing", "address")
    amount = params.get_str("amount", max_len=40) or params.get_str("sum", max_len=40)
    if not amount:
        raise InvalidParameter("amount is missing", "amount")
    w = await ex.funds.request_withdraw(token.member_id, cur.code, amount, address,
                                        otp=params.get_str("otp", max_len=16))
    return json_response(withdraw_json(cur, w), status=201)


async def withdraws_get(request: web.Request) -> web.Response:
    ex, params, token = await _private(request)
    cur = _currency(ex, params, False)
    state = _state(params, WITHDRAW_STATES)
    limit, page, offset = _paging(params)
    rows = await ex.funds.withdraws_of(token.member_id, cur.code if cur else None, state, limit, offset)
    cs = ex.config.currencies
    return paged([withdraw_json(cs[w["currency"]], w) for w in rows if w["currency"] in cs], page, limit)


def _id(params: Params) -> int:
    wid = params.get_int("id", required=True, min_value=1, max_value=2**62)
    assert wid is not None
    return wid


async def withdraw_get(request: web.Request) -> web.Response:
    ex, params, token = await _private(request)
    w = await ex.funds.withdraw(_id(params), token.member_id)
    return json_response(withdraw_json(ex.config.currencies[w["currency"]], w))


async def withdraw_cancel(request: web.Request) -> web.Response:
    ex, params, token = await _private(request)
    require_scope(token, "withdraw")
    w = await ex.funds.cancel_withdraw(token.member_id, _id(params))
    return json_response(withdraw_json(ex.config.currencies[w["currency"]], w))


ROUTES = [
    ("GET", "/deposits", deposits),
    ("GET", "/deposit", deposit),
    ("GET", "/deposit_address", deposit_address),
    ("POST", "/withdraws", withdraws_post),
    ("GET", "/withdraws", withdraws_get),
    ("GET", "/withdraw", withdraw_get),
    ("POST", "/withdraw/cancel", withdraw_cancel),
]
PATHS = frozenset(path for _, path, _ in ROUTES)


def add_routes(app: web.Application, prefix: str = "/api/v2") -> None:
    """Register before `api.add_routes`: for a path both define, the first registered answers."""
    for method, path, handler in ROUTES:
        app.router.add_route(method, prefix + path + ".json", handler)
        app.router.add_route(method, prefix + path, handler)
