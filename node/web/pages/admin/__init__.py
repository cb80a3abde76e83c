"""The admin area: dashboard, members, balance corrections, markets, deposit and withdrawal queues,
identity reviews, support tickets, editable pages, roles and the audit log, under `/admin`.

Every route is declared with the permission it needs (`route(...)`, listed in `ROUTES`), and one
guard runs before each handler:

1. a visitor who is not logged in is sent to the log in page (a form post is refused with 403);
2. a member without a role gets 403, and the attempt is in the audit log;
3. a staff member whose admin session is not unlocked is sent to `/admin/unlock` (a form post is
   refused with 403): the unlock asks for the second factor and lasts `[security] admin_unlock_minutes`
   after the last admin request (a sliding expiry), so an unattended browser locks itself;
4. a role without the route's permission gets 403 (audited).

The unlock is the security module's: `require_admin_unlock` (the check, with its sliding expiry) and
`unlock_admin` (the second factor, counted and audited) from node/web/pages/security/unlock.py.
Staff must have a second factor; only where `[security] admin_requires_2fa = false` does a member
without one unlock with the password, asked again.

Handlers are thin: every change goes through `node.admin.service.Admin`, which checks the permission
again and writes the audit log. Pages work without JavaScript; admin.js only draws the charts (SVG,
no outside service) and asks before dangerous buttons.

One module per section (`unlock`, `dashboard`, `members`, `markets`, `funds`, `kyc`, `tickets`,
`cms`, `roles`, `auditlog`), each declaring its routes with `common.route`; importing them here,
in this order, registers the routes in the order `add_routes` adds them.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from node.admin.service import Admin
from node.kyc import Kyc
from node.tickets import Tickets

# the sections, imported for their routes in the order they are added (so not sorted)
# isort: off
from node.web.pages.admin import unlock, dashboard, members, markets, funds  # noqa: F401
from node.web.pages.admin import kyc, tickets, cms, roles, auditlog  # noqa: F401
# isort: on
from node.web.pages.admin.common import (
    _HANDLERS,
    ADMIN,
    KYC,
    ROUTES,
    TICKETS,
    UPLOADS,
    file_response,
)


def add_routes(app: web.Application, admin: Admin, kyc_service: Kyc, tickets_service: Tickets, uploads_root: Path) -> None:
    """The admin area, on the node's admin service (with the KYC and ticket services it works on)."""
    app[ADMIN] = admin
    app[KYC] = kyc_service
    app[TICKETS] = tickets_service
    app[UPLOADS] = uploads_root
    for method, path, handler in _HANDLERS:
        app.router.add_route(method, path, handler)


__all__ = ["ADMIN", "KYC", "ROUTES", "TICKETS", "UPLOADS", "add_routes",
           "file_response"]
