"""The admin area's lock: `require_admin_unlock` (the check, with its sliding expiry) and
`unlock_admin` (the second factor, audited), used by the admin pages.
"""

from __future__ import annotations

from aiohttp import web
from yarl import URL

from node.clock import now_ms
from node.security import audit
from node.security.service import ADMIN_UNLOCK
from node.web.api import EXCHANGE
from node.web.pages.common import require_member, wants_json
from node.web.pages.security.common import UNLOCK_KEY, UNLOCK_REFRESH_MS, _sec
from node.web.session import safe_next, session_of


def admin_unlock_ms(app: web.Application) -> int:
    return int(app[EXCHANGE].config.security.admin_unlock_minutes) * 60_000


def require_admin_unlock(request: web.Request) -> int:
    """The member's id when this session unlocked the admin area recently; each call slides the expiry.

    Otherwise a GET is sent to `/admin/unlock?next=…` and anything else refused (403): a form posted
    from a locked session changes nothing. Roles are the admin area's to check."""
    member_id = require_member(request)
    s = session_of(request)
    until, now = s.data.get(UNLOCK_KEY), now_ms()
    if isinstance(until, int) and until > now:
        ttl = admin_unlock_ms(request.app)
        if now + ttl - until >= UNLOCK_REFRESH_MS:
            s.set(UNLOCK_KEY, now + ttl)
        return member_id
    if request.method == "GET" and not wants_json(request):
        raise web.HTTPSeeOther(str(URL("/admin/unlock").with_query(next=safe_next(request.path_qs, "/admin"))))
    raise web.HTTPForbidden(text="Unlock the admin area with your second factor first; nothing was changed.")


async def unlock_admin(request: web.Request, code: str) -> None:
    """Check the member's second factor for the admin area and unlock it for this session (audited);
    a SecondFactorFailed (for the code field) otherwise."""
    member_id = require_member(request)
    sec = _sec(request)
    await sec.verify(member_id, ADMIN_UNLOCK, code)
    session_of(request).set(UNLOCK_KEY, now_ms() + admin_unlock_ms(request.app))
    await audit.record(sec.store, audit.ADMIN_UNLOCK, member_id)
