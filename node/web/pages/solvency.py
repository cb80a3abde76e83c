"""Proof-of-solvency pages: the public report (`/solvency`) and a member's own proofs (`/solvency/me`).

Both load `/static/solvency.js`, which verifies proofs in the browser (SHA-256 by
`crypto.subtle`, nothing fetched from anywhere else): on the public page from a root and a proof
the visitor pastes, on the member page from the proofs embedded in it. The server's word is not
needed: the point of the exercise is that members check it.

The member page needs to know who is signed in. It asks :func:`signed_in_member`, which reads
`request[MEMBER_ID_KEY]` when a middleware set it, else the pages' session (`request[SESSION_KEY]`,
whose `member_id` the session middleware fills in); nothing else of the sign-in machinery is used,
so the page works with any middleware that sets one of the two.
"""

from __future__ import annotations

from typing import Any

import aiohttp_jinja2
from aiohttp import web

from node.solvency.service import SnapshotNotFound
from node.web.api import EXCHANGE
from node.web.api.solvency import service
from node.web.session import SESSION_KEY, page_context

MEMBER_ID_KEY = web.RequestKey("member_id", int)


def signed_in_member(request: web.Request) -> int | None:
    """The signed-in member's id, or None for a visitor."""
    mid = request.get(MEMBER_ID_KEY)
    if mid is None:
        mid = getattr(request.get(SESSION_KEY), "member_id", None)
    return mid if isinstance(mid, int) and not isinstance(mid, bool) else None


async def public(request: web.Request) -> web.Response:
    """Latest roots, assets and ratios for everyone, and a box to check a pasted proof."""
    ex = request.app[EXCHANGE]
    svc = service(request.app)
    roots: dict[str, Any] | None
    assets: dict[str, Any] | None
    try:
        roots = await svc.roots()
        assets = await svc.assets()
    except SnapshotNotFound:
        roots = assets = None
    by_code = {a["currency"]: a for a in assets["currencies"]} if assets else {}
    rows = [{**by_code.get(r["currency"], {}), **r, "symbol": ex.config.currencies[r["currency"]].symbol}
            for r in (roots["currencies"] if roots else [])]
    ctx: dict[str, Any] = {
        "exchange": ex.config.name,
        "snapshot": roots["snapshot"] if roots else None,
        "rows": rows,
        "interval_hours": ex.config.solvency.interval_hours,
    }
    return aiohttp_jinja2.render_template("solvency.html", request, {**page_context(request), **ctx})


async def member(request: web.Request) -> web.Response:
    """The signed-in member's proofs with a verify button; visitors are asked to sign in (401)."""
    ex = request.app[EXCHANGE]
    mid = signed_in_member(request)
    ctx: dict[str, Any] = {"exchange": ex.config.name, "signed_in": mid is not None, "snapshot": None, "proofs": []}
    if mid is None:
        return aiohttp_jinja2.render_template("solvency_member.html", request, {**page_context(request), **ctx},
                                              status=401)
    try:
        doc = await service(request.app).proofs(mid)
        ctx.update(snapshot=doc["snapshot"], proofs=doc["proofs"])
    except SnapshotNotFound:
        pass
    resp = aiohttp_jinja2.render_template("solvency_member.html", request, {**page_context(request), **ctx})
    resp.headers["Cache-Control"] = "no-store"  # a member's balances: never kept by a shared cache
    return resp


def add_routes(app: web.Application) -> None:
    app.router.add_get("/solvency", public)
    app.router.add_get("/solvency/me", member)
