"""The audit log of admin actions: who did what to whom, when, from where, and whether it was allowed.

Append-only: nothing in the exchange updates or deletes these rows. Every action of the admin area
and of the admin CLI is written here, refused attempts included (a support agent trying a money
action is worth knowing about), as are reads of personal data (a member's page, identity documents).

Issue 6 builds the exchange-wide security audit log (node/security/audit.py). Until it exists this
table holds the admin part; `record` is the single place that writes, so switching it over is one
change, and the table's columns (actor, action, target, detail, ip, time) are meant to merge into it.
"""

from __future__ import annotations

from typing import Any

from node.admin.roles import Actor, now_ms
from node.store import Store

MAX_DETAIL = 2000
PAGE = 100


async def record(store: Store, actor: Actor, action: str, target: str = "", detail: str = "", ok: bool = True) -> None:
    await store.execute(
        "INSERT INTO admin_audit (actor_id, actor, action, target, detail, ok, ip, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        actor.member_id, actor.label[:254], action[:64], target[:200], detail[:MAX_DETAIL], int(ok), actor.ip[:64], now_ms())


async def entries(store: Store, *, action: str | None = None, actor_id: int | None = None, target: str | None = None,
                  limit: int = PAGE, offset: int = 0) -> list[dict[str, Any]]:
    """Newest first; `action` matches a prefix ("market." finds every market action)."""
    sql = "SELECT * FROM admin_audit WHERE 1 = 1"
    args: list[Any] = []
    if action:
        sql += " AND action LIKE ?"
        args.append(action.replace("%", "").replace("_", "\\_") + "%")
        sql += " ESCAPE '\\'"
    if actor_id is not None:
        sql += " AND actor_id = ?"
        args.append(actor_id)
    if target:
        sql += " AND target = ?"
        args.append(target)
    rows = await store.fetch(sql + " ORDER BY id DESC LIMIT ? OFFSET ?", *args, max(1, min(limit, 500)), max(0, offset))
    return [dict(r) for r in rows]
