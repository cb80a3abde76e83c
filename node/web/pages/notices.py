"""The member's new notices as JSON, for the pages' toasts."""

from __future__ import annotations

from aiohttp import web

from node.notices import text as notice_text
from node.web.api import json_response
from node.web.pages.common import NOTICES, require_member
from node.web.session import translator_of


async def notices_json(request: web.Request) -> web.Response:
    """The member's new notices (credited deposits, withdrawal states, KYC decisions) for the pages'
    toasts; without `after`, only the newest id (a page does not replay old news)."""
    member_id = require_member(request)
    svc = request.app[NOTICES]
    _ = translator_of(request)
    try:
        after = max(0, min(int(request.query.get("after", "-1")), 2**62))
    except ValueError:
        after = -1
    if after < 0 or "after" not in request.query:
        return json_response({"last": await svc.last_id(member_id), "notices": []}, headers={"Cache-Control": "no-store"})
    rows = await svc.of_member(member_id, after)
    out = [{"id": int(n["id"]), "kind": n["kind"], "state": n["state"].split(":")[0], "text": notice_text(n, _)}
           for n in rows]
    return json_response({"last": out[-1]["id"] if out else after, "notices": out}, headers={"Cache-Control": "no-store"})
