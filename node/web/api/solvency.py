"""Proof-of-solvency API under `/api/v2/solvency`: public roots and assets, a member's own proofs.

Public (anyone, rate-limited per IP like the other public endpoints):

* `GET /solvency/snapshots` - published snapshots, newest first (`limit`, `page`);
* `GET /solvency/roots` - per currency both roots (Peatio's and v2), customer liabilities, house;
* `GET /solvency/root?currency=btc&scheme=maxwell|v2` - one bare root document, exactly the file
  the stand-alone verifier (`python -m node.solvency verify --root …`) reads;
* `GET /solvency/assets` - per currency the signed addresses (or the declared fiat figure with its
  evidence), the asset sum, liabilities and the ratio.

Signed (scope `profile`, the scope of `/members/me`: a proof reveals the member's balances):

* `GET /solvency/proof?currency=btc` - the member's Peatio partial tree, v2 proof and both roots;
  with `scheme=maxwell` the bare `{"partial_tree": …}` document Peatio's tools read, with
  `scheme=v2` the bare v2 proof;
* `GET /solvency/proofs` - all currencies in which the member was owed something.

Each takes an optional `snapshot` id; the default is the latest published snapshot.
"""

from __future__ import annotations

from aiohttp import web

from node.errors import InvalidParameter
from node.solvency.service import SolvencyService
from node.web import openapi
from node.web.api.common import _private, _public, json_response
from node.web.params import Params

SOLVENCY = web.AppKey("solvency", SolvencyService)
MAX_ID = 2**62
SCHEMES = ("maxwell", "v2")


def service(app: web.Application) -> SolvencyService:
    """The node's one solvency service (its proof cache is shared by the API and the pages)."""
    return app[SOLVENCY]


def _snapshot_id(params: Params) -> int | None:
    return params.get_int("snapshot", min_value=1, max_value=MAX_ID)


def _scheme(params: Params, default: str | None) -> str | None:
    raw = params.get_str("scheme", max_len=16) or default
    if raw is not None and raw not in SCHEMES:
        raise InvalidParameter("scheme does not have a valid value (maxwell or v2)", "scheme")
    return raw


async def snapshots(request: web.Request) -> web.Response:
    _, params = await _public(request)
    limit = params.get_int("limit", default=30, min_value=1, max_value=100)
    page = params.get_int("page", default=1, min_value=1, max_value=10_000)
    rows = await service(request.app).snapshots(limit, (page - 1) * limit)
    headers = {"X-Page": str(page), "X-Per-Page": str(limit)}
    if len(rows) == limit:
        headers["X-Next-Page"] = str(page + 1)
    return json_response(rows, headers=headers)


async def roots(request: web.Request) -> web.Response:
    _, params = await _public(request)
    return json_response(await service(request.app).roots(_snapshot_id(params)))


async def root(request: web.Request) -> web.Response:
    ex, params = await _public(request)
    currency = ex.currency(params.get_str("currency", required=True, max_len=16))
    scheme = _scheme(params, "v2")
    assert scheme is not None
    return json_response(await service(request.app).root(currency, scheme, _snapshot_id(params)))


async def assets(request: web.Request) -> web.Response:
    _, params = await _public(request)
    return json_response(await service(request.app).assets(_snapshot_id(params)))


async def proof(request: web.Request) -> web.Response:
    ex, params, token = await _private(request, "profile")
    currency = ex.currency(params.get_str("currency", required=True, max_len=16))
    scheme = _scheme(params, None)
    doc = await service(request.app).proof(token.member_id, currency, _snapshot_id(params))
    return json_response(doc[scheme] if scheme else doc)


async def proofs(request: web.Request) -> web.Response:
    _, params, token = await _private(request, "profile")
    return json_response(await service(request.app).proofs(token.member_id, _snapshot_id(params)))


# -- OpenAPI description (node/web/openapi.py serves it; its test checks every route is described) ----------
_HEX64 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
_SUM = {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?$", "example": "12.13",
        "description": "whole coins, Peatio's sum style (no trailing zeros)"}
_UNITS = {"type": "string", "pattern": "^(0|[1-9][0-9]*)$", "description": "smallest units"}
_SNAPSHOT = {"type": "object", "required": ["id", "name", "taken_at", "taken_at_ms", "build_ms"], "properties": {
    "id": {"type": "integer"}, "name": {"type": "string"}, "taken_at": openapi.TIME,
    "taken_at_ms": {"type": "integer"}, "build_ms": {"type": "integer"}}}
_MAXWELL_ROOT = {"type": "object", "nullable": True, "required": ["root", "currency", "timestamp"],
                 "description": "Peatio's root.json; null when nobody is owed anything in the currency",
                 "properties": {"root": {"type": "object", "required": ["hash", "sum"],
                                         "properties": {"hash": _HEX64, "sum": _SUM}},
                                "currency": {"type": "string"}, "timestamp": {"type": "string"}}}
_V2_ROOT = {"type": "object", "required": ["scheme", "currency", "precision", "snapshot", "timestamp", "height", "root"],
            "description": "docs/solvency-v2.md §5.1", "properties": {
                "scheme": {"type": "string", "enum": ["pos-v2"]}, "currency": {"type": "string"},
                "precision": {"type": "integer"}, "snapshot": {"type": "string"}, "timestamp": openapi.TIME,
                "height": {"type": "integer"}, "root": {"type": "object", "required": ["hash", "value"],
                                                        "properties": {"hash": _HEX64, "value": _UNITS}}}}
_NULLABLE_SUM = {**_SUM, "nullable": True}
_PROOF = {"type": "object", "required": ["currency", "snapshot", "user", "balance", "maxwell", "maxwell_root", "v2",
                                         "v2_root"], "properties": {
    "currency": {"type": "string"}, "snapshot": _SNAPSHOT, "user": {"type": "string"}, "balance": _SUM,
    "maxwell": {"type": "object", "description": 'Peatio\'s {"partial_tree": …}'}, "maxwell_root": _MAXWELL_ROOT,
    "v2": {"type": "object", "description": "docs/solvency-v2.md §5.2"}, "v2_root": _V2_ROOT}}
_404 = {"description": "no published snapshot, or not that one (3301); nothing owed to you in that currency (3302)",
        "content": {"application/json": {"schema": openapi.ref("Error")}}}
_SNAPSHOT_Q = openapi.param("snapshot", openapi.integer(1, MAX_ID), "snapshot id (default: the latest published)")
_SCHEME_Q = openapi.param("scheme", openapi.enum(SCHEMES))


def _ok(schema: dict[str, object], errors: tuple[str, ...] = ("400", "401", "429"), paged: bool = False) -> dict[str, object]:
    out = openapi.ok(schema, errors=errors, paged=paged)
    out["404"] = _404
    return out


openapi.OPERATIONS.update({
    ("GET", "/solvency/snapshots"): {
        "summary": "Published proof-of-solvency snapshots, newest first (ours)", "tags": ["public"],
        "security": openapi.PUBLIC_SIGNED,
        "parameters": [openapi.param("limit", openapi.integer(1, 100, 30)), openapi.param("page", openapi.integer(1, 10_000, 1))],
        "responses": openapi.ok({"type": "array", "items": _SNAPSHOT}, paged=True)},
    ("GET", "/solvency/roots"): {
        "summary": "Liability roots of a snapshot, both schemes, per currency (ours)", "tags": ["public"],
        "security": openapi.PUBLIC_SIGNED,
        "description": "`liabilities` is what customers are owed (the tree's total); `house` the fee account, "
                       "which is the exchange's own income and not in the trees.",
        "parameters": [_SNAPSHOT_Q],
        "responses": _ok({"type": "object", "required": ["snapshot", "currencies"], "properties": {
            "snapshot": _SNAPSHOT, "currencies": {"type": "array", "items": {
                "type": "object", "required": ["currency", "liabilities", "house", "maxwell", "v2"], "properties": {
                    "currency": {"type": "string"}, "liabilities": _SUM, "house": _SUM, "maxwell": _MAXWELL_ROOT,
                    "v2": _V2_ROOT}}}}})},
    ("GET", "/solvency/root"): {
        "summary": "One root document, as the stand-alone verifier reads it (ours)", "tags": ["public"],
        "security": openapi.PUBLIC_SIGNED,
        "parameters": [openapi.param("currency", {"$currency": True}, required=True),
                       openapi.param("scheme", openapi.enum(SCHEMES, "v2")), _SNAPSHOT_Q],
        "responses": _ok({"type": "object", "nullable": True,
                          "description": "Peatio's root.json (null: nobody owed anything) or the v2 root"})},
    ("GET", "/solvency/assets"): {
        "summary": "Proof of assets and solvency ratio per currency (ours)", "tags": ["public"],
        "security": openapi.PUBLIC_SIGNED,
        "description": "Coins: every funded address of the exchange with its signature (`signmessage`) of a "
                       "message naming the snapshot; fiat: the figure declared by an admin with its evidence. "
                       "`ratio` = assets / liabilities, rounded down to 8 decimals (null when not proven or "
                       "nothing is owed).",
        "parameters": [_SNAPSHOT_Q],
        "responses": _ok({"type": "object", "required": ["snapshot", "currencies"], "properties": {
            "snapshot": _SNAPSHOT, "currencies": {"type": "array", "items": {
                "type": "object", "required": ["currency", "kind", "status", "liabilities", "assets", "ratio"],
                "properties": {
                    "currency": {"type": "string"}, "kind": openapi.enum(("coin", "fiat")),
                    "status": openapi.enum(("proven", "declared", "failed", "no_wallet", "missing", "pending")),
                    "detail": {"type": "string"}, "liabilities": _SUM, "house": _SUM, "assets": _NULLABLE_SUM,
                    "ratio": {"type": "string", "nullable": True, "pattern": r"^[0-9]+\.[0-9]{8}$"},
                    "solvent": {"type": "boolean", "nullable": True},
                    "evidence": {"type": "string", "nullable": True},
                    "addresses": {"type": "array", "items": {
                        "type": "object", "required": ["address", "balance", "message", "signature"],
                        "properties": {"address": {"type": "string"}, "balance": _SUM, "message": {"type": "string"},
                                       "signature": {"type": "string"}}}}}}}}})},
    ("GET", "/solvency/proof"): {
        "summary": "Your proof that a balance is in the published liabilities (ours)", "tags": ["private"],
        "security": openapi.SIGNED,
        "description": "Scope: profile. Peatio's partial tree, the v2 proof and both roots; `scheme=maxwell` "
                       "answers the bare `{\"partial_tree\": …}` document, `scheme=v2` the bare v2 proof.",
        "parameters": [openapi.param("currency", {"$currency": True}, required=True), _SCHEME_Q, _SNAPSHOT_Q],
        "responses": _ok({"type": "object", "description": "a proof document (see the description)"})},
    ("GET", "/solvency/proofs"): {
        "summary": "Your proofs in every currency you were owed something in (ours)", "tags": ["private"],
        "security": openapi.SIGNED, "description": "Scope: profile.", "parameters": [_SNAPSHOT_Q],
        "responses": _ok({"type": "object", "required": ["snapshot", "proofs"], "properties": {
            "snapshot": _SNAPSHOT, "proofs": {"type": "array", "items": _PROOF}}})},
})


ROUTES = [
    ("/solvency/snapshots", snapshots),
    ("/solvency/roots", roots),
    ("/solvency/root", root),
    ("/solvency/assets", assets),
    ("/solvency/proof", proof),
    ("/solvency/proofs", proofs),
]


def add_routes(app: web.Application, svc: SolvencyService, prefix: str = "/api/v2") -> None:
    """The routes (with and without `.json`, like every API v2 path) of the node's solvency service."""
    app[SOLVENCY] = svc
    for path, handler in ROUTES:
        app.router.add_get(prefix + path + ".json", handler)
        app.router.add_get(prefix + path, handler)
