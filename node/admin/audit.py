"""Admin actions in the exchange's audit log (node/security/audit.py).

Every action of the admin area and of the admin CLI is appended there as `admin.<action>`: who (the
admin's member id and e-mail, or `cli:<user>`), what, on which target (`market:btcusd`,
`withdraw:12`, …), about which member (so the member sees what was done to their account in their
own security log), whether it was allowed, and from which IP address (the request's origin, set by
the security middleware). Refused attempts are written too (a support agent trying a money action is
worth knowing about), as are reads of personal data (a member's page, identity documents).

The log is append-only and hash-chained there; this module only adapts the admin area's vocabulary
to it, so there is one log to search, not two.
"""

from __future__ import annotations

from typing import Any

from node.admin.roles import Actor
from node.security import audit as log
from node.store import Store

PREFIX = "admin."
PAGE = 100


def _source(actor: Actor) -> log.Origin | None:
    """Inside a web request the security middleware knows the origin; the CLI has none: say so."""
    if log.origin().channel != "system":
        return None
    return log.Origin(ip=actor.ip if actor.ip != "cli" else "", channel="cli" if actor.member_id is None else "web",
                      actor_id=actor.member_id, actor=actor.label)


async def record(store: Store, actor: Actor, action: str, target: str = "", detail: str = "", ok: bool = True,
                 member_id: int | None = None) -> None:
    await log.record(store, PREFIX + action, member_id, {"detail": detail} if detail else {}, actor_id=actor.member_id,
                     actor=actor.label, target=target, ok=ok, source=_source(actor))


def _view(row: dict[str, Any]) -> dict[str, Any]:
    d = row.get("detail")
    if isinstance(d, dict):
        text = str(d["detail"]) if set(d) == {"detail"} else ", ".join(f"{k}: {v}" for k, v in sorted(d.items()))
    else:
        text = str(d or "")
    return {**row, "detail": text, "ok": bool(row["ok"])}


async def entries(store: Store, *, action: str | None = None, member_id: int | None = None, actor_id: int | None = None,
                  before: int | None = None, limit: int = PAGE) -> list[dict[str, Any]]:
    """Newest first. `action` ending in "." is a prefix ("admin.market." finds every market action);
    without one, the whole log (log ins, two-factor changes and withdrawals included)."""
    rows = await log.search(store, action=action or None, member_id=member_id, actor_id=actor_id, before=before,
                            limit=limit)
    return [_view(r) for r in rows]
