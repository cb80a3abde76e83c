"""Who may do what in the admin area.

Three roles. `admin` may do everything; the admins named in cluster.toml (`[admin] emails`) hold it
from the start and cannot lose it from inside the exchange (a compromised admin session cannot lock
the operators out). Admins grant roles to other members:

- `support` answers tickets, reviews identity documents, edits the pages, and reads members' data;
  it can never move money, change a market or grant roles.
- `finance` works the deposit and withdrawal queues and proposes or approves balance corrections.

Each admin route names one permission (`PERMISSIONS`); a test walks every route with every role.
"""

from __future__ import annotations

from dataclasses import dataclass

from node.clock import now_ms
from node.config import Config
from node.errors import ExchangeError, InvalidParameter
from node.store import Store

ADMIN, SUPPORT, FINANCE = "admin", "support", "finance"
ROLES = (ADMIN, SUPPORT, FINANCE)
ALL = frozenset(ROLES)

PERMISSIONS: dict[str, frozenset[str]] = {
    "dashboard": ALL,
    "members.read": ALL,  # search, member view, ledger: support needs it to answer tickets
    "members.write": frozenset({ADMIN}),  # disable log in or API, reset 2FA
    "adjust": frozenset({ADMIN, FINANCE}),  # balance corrections (reason `fix`, two people)
    "funds": frozenset({ADMIN, FINANCE}),  # deposit and withdrawal queues, bank deposits, wallet alerts
    "markets": frozenset({ADMIN}),  # halt, resume, cancel all, fees
    "kyc": frozenset({ADMIN, SUPPORT}),
    "tickets": frozenset({ADMIN, SUPPORT}),
    "cms": frozenset({ADMIN, SUPPORT}),
    "roles": frozenset({ADMIN}),
    "audit": frozenset({ADMIN}),
}
MONEY = frozenset({"adjust", "funds", "markets"})
"""Permissions that move money or change trading: never given to support (a test checks it)."""


class Forbidden(ExchangeError):
    """The admin's roles do not allow this action; nothing was done."""

    code = 3011
    status = 403


@dataclass(frozen=True)
class Actor:
    """Who performs an admin action: a member with roles (web), or the operator's shell (CLI).

    The CLI runs with the database's credentials on the server itself, so it acts as `admin`; it has
    no member id, which is why it cannot be the second person of a two-person approval."""

    member_id: int | None
    email: str
    roles: frozenset[str]
    ip: str = ""

    @property
    def label(self) -> str:
        return self.email or (f"member {self.member_id}" if self.member_id is not None else "cli")

    def can(self, permission: str) -> bool:
        return bool(self.roles & PERMISSIONS[permission])


CLI_ACTOR = Actor(None, "cli", frozenset({ADMIN}))


def check(actor: Actor, permission: str) -> None:
    if permission not in PERMISSIONS:
        raise KeyError(permission)
    if not actor.can(permission):
        roles = ", ".join(sorted(actor.roles)) or "none"
        raise Forbidden(f"your role ({roles}) does not allow this ({permission})")


async def roles_of(store: Store, config: Config, member_id: int, email: str) -> frozenset[str]:
    """The member's roles: `admin` by configuration, plus those granted (a disabled member has none)."""
    rows = await store.fetch(
        "SELECT r.role FROM admin_roles r JOIN members m ON m.id = r.member_id WHERE r.member_id = ? AND m.disabled = 0",
        member_id)
    roles = {str(r["role"]) for r in rows if r["role"] in ROLES}
    if email.strip().lower() in config.admin.emails:
        disabled = await store.fetchval("SELECT disabled FROM members WHERE id = ?", member_id)
        if not disabled:
            roles.add(ADMIN)
    return frozenset(roles)


def check_role(role: str) -> str:
    if role not in ROLES:
        raise InvalidParameter(f"role must be one of {', '.join(ROLES)}", "role")
    return role


async def grant(store: Store, member_id: int, role: str, granted_by: str) -> bool:
    """Give a role; False when the member already had it."""
    n = await store.execute(
        "INSERT INTO admin_roles (member_id, role, granted_by, granted_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (member_id, role) DO NOTHING", member_id, check_role(role), granted_by[:200], now_ms())
    return n == 1


async def revoke(store: Store, member_id: int, role: str) -> bool:
    n = await store.execute("DELETE FROM admin_roles WHERE member_id = ? AND role = ?", member_id, check_role(role))
    return n == 1


async def staff(store: Store, config: Config) -> list[dict[str, object]]:
    """Everyone with a role: granted ones from the table, configured admins by e-mail."""
    rows = await store.fetch(
        "SELECT r.member_id, r.role, r.granted_by, r.granted_at, m.email FROM admin_roles r "
        "JOIN members m ON m.id = r.member_id ORDER BY m.email, r.role")
    out: list[dict[str, object]] = [dict(r) | {"configured": False} for r in rows]
    for email in config.admin.emails:
        mid = await store.fetchval("SELECT id FROM members WHERE email = ?", email)
        out.append({"member_id": mid, "role": ADMIN, "granted_by": "cluster.toml", "granted_at": None, "email": email,
                    "configured": True})
    return out
