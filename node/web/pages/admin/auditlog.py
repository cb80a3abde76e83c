"""The exchange's audit log for the staff, filtered and paged."""

from __future__ import annotations

from aiohttp import web

from node.admin import audit
from node.admin.roles import Actor
from node.web.api import EXCHANGE
from node.web.pages.admin.common import _context, route
from node.web.session import render


@route("GET", "/admin/audit", "audit")
async def audit_page(request: web.Request, actor: Actor) -> web.StreamResponse:
    """The exchange's whole audit log (admin actions, log ins, two-factor changes, withdrawals), newest
    first, filtered by action (a prefix when it ends in ".") and member, paged by sequence number."""
    action = request.query.get("action", "")[:64].strip()
    member = request.query.get("member", "").strip()
    member_id = int(member) if member.isdigit() and len(member) < 19 else None
    try:
        before = int(request.query.get("before", "")) or None
    except ValueError:
        before = None
    rows = await audit.entries(request.app[EXCHANGE].store, action=action or None, member_id=member_id, before=before,
                               limit=audit.PAGE + 1)
    return render(request, "admin/audit.html", await _context(
        request, actor, "audit", rows=rows[:audit.PAGE], more=len(rows) > audit.PAGE, action=action,
        member=member if member_id is not None else "", first=before is None,
        next_before=rows[audit.PAGE - 1]["seq"] if len(rows) > audit.PAGE else None))
