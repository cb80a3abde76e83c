"""The audit log: every security-relevant and privileged action, who did it, when, from where.

Append-only, and provably so: nothing in the exchange updates or deletes its rows, and each entry
carries `hash = SHA-256(previous hash ‖ the entry's fields)`, so an entry edited or deleted in the
database afterwards breaks the chain at that point (`verify_chain`). The single row of `audit_head`
holds the sequence number and the last hash; every writer updates it first, which on PostgreSQL
takes its row lock for the rest of the transaction and on SQLite happens inside the one writer's
transaction, so concurrent writers on any node form one chain, never a fork. Audit writes are rare
(log ins, key changes, withdrawals, admin actions), so this one hot row costs nothing measurable.

Who and from where come from the request: the pages' middleware (node/web/pages/security/gate.py) puts
the client's IP address, user agent and channel (`web`, `api`) into a context variable, so code
deep in the exchange (the funds facade, say) records the right origin without threading a request
through. Outside a request the origin is the `system` (or `cli`, set by the CLI).

Members read their own entries (`of_member`); admins search them all (`search`): the admin area
(node/admin) shows that, and writes its own actions here with `record(..., actor_id=admin, actor=...)`.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from node.clock import now_ms
from node.store import Store, Tx

MAX_DETAIL = 2000
MAX_PAGE = 500

# Actions (a dotted name; the admin area adds its own under "admin.").
LOGIN = "login"
LOGIN_FAILED = "login.failed"
LOGIN_LOCKED = "login.locked"
LOGOUT = "logout"
PASSWORD_CHANGE = "password.change"
PASSWORD_RESET = "password.reset"
TOTP_ENABLE = "2fa.totp.enable"
TOTP_DISABLE = "2fa.totp.disable"
SMS_ENABLE = "2fa.sms.enable"
SMS_DISABLE = "2fa.sms.disable"
RECOVERY_CODES = "2fa.recovery.new"
RECOVERY_USED = "2fa.recovery.used"
OTP_FAILED = "2fa.failed"
OTP_LOCKED = "2fa.locked"
TWO_FA_RESET = "2fa.reset"
API_KEY_CREATE = "api_key.create"
API_KEY_DELETE = "api_key.delete"
WITHDRAW_REQUEST = "withdraw.request"
WITHDRAW_CONFIRM = "withdraw.confirm"
WITHDRAW_CANCEL = "withdraw.cancel"
WITHDRAW_EXPIRED = "withdraw.expired"
ADDRESS_ADD = "address.add"
ADDRESS_DELETE = "address.delete"
ADMIN_UNLOCK = "admin.unlock"


@dataclass(frozen=True)
class Origin:
    """Where an action comes from: set per request by the web layer, per command by the CLI."""

    ip: str = ""
    user_agent: str = ""
    channel: str = "system"  # web | api | cli | system
    actor_id: int | None = None  # the member logged in (web), when known before the handler runs
    actor: str = ""  # a label for people reading the log (an admin's e-mail, "cli")
    lang: str = "en"  # the visitor's language, for mails sent on the way (a withdrawal's confirmation)


SYSTEM = Origin()
CLI = Origin(channel="cli", actor="cli")  # the operator's shell on the server
_ORIGIN: contextvars.ContextVar[Origin | None] = contextvars.ContextVar("audit_origin", default=None)


def origin() -> Origin:
    """The origin of the action being done now (the system's outside any request)."""
    return _ORIGIN.get() or SYSTEM


# The variable's own methods, not functions around them: every request sets and resets its origin.
set_origin = _ORIGIN.set
reset_origin = _ORIGIN.reset


def with_actor(actor_id: int | None, actor: str = "") -> None:
    """Name the member acting in this request once it is known (an API key's owner, a new log in)."""
    o = origin()
    _ORIGIN.set(replace(o, actor_id=actor_id, actor=actor or o.actor))


def _digest(prev: str, seq: int, fields: Mapping[str, Any]) -> str:
    body = json.dumps([seq, *(fields[k] for k in _CHAINED)], separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((prev + "|" + body).encode()).hexdigest()


_CHAINED = ("member_id", "actor_id", "actor", "channel", "action", "target", "ok", "detail", "ip", "user_agent",
            "created_at")


async def record_in(tx: Tx, action: str, member_id: int | None = None, detail: Mapping[str, Any] | None = None, *,
                    actor_id: int | None = None, actor: str | None = None, target: str = "", ok: bool = True,
                    source: Origin | None = None, now: int | None = None) -> int:
    """Append one entry inside the caller's transaction (so it commits, or not, with the action)."""
    o = source or origin()
    if actor_id is None:
        actor_id = o.actor_id if o.actor_id is not None else (member_id if o.channel in ("web", "api") else None)
    text = json.dumps(dict(detail or {}), separators=(",", ":"), ensure_ascii=False, default=str, sort_keys=True)
    if len(text) > MAX_DETAIL:
        text = json.dumps({"truncated": text[:MAX_DETAIL - 40]}, ensure_ascii=False)
    fields = {
        "member_id": member_id, "actor_id": actor_id, "actor": (actor if actor is not None else o.actor)[:254],
        "channel": o.channel[:16], "action": action[:64], "target": target[:200], "ok": int(ok), "detail": text,
        "ip": o.ip[:64], "user_agent": o.user_agent[:256], "created_at": now if now is not None else now_ms(),
    }
    head = await tx.fetchrow("UPDATE audit_head SET seq = seq + 1 WHERE id = 1 RETURNING seq, hash")
    assert head is not None, "audit_head has no row: migration 8 not applied"
    seq = int(head["seq"])
    digest = _digest(str(head["hash"]), seq, fields)
    await tx.execute(
        f"INSERT INTO audit_log (seq, {', '.join(_CHAINED)}, hash) VALUES ({', '.join('?' * (len(_CHAINED) + 2))})",
        seq, *(fields[k] for k in _CHAINED), digest)
    await tx.execute("UPDATE audit_head SET hash = ? WHERE id = 1", digest)
    return seq


async def record(store: Store, action: str, member_id: int | None = None, detail: Mapping[str, Any] | None = None,
                 **kw: Any) -> int:
    """Append one entry in a transaction of its own; returns its sequence number."""
    async with store.transaction() as tx:
        return await record_in(tx, action, member_id, detail, **kw)


def _rows(rows: list[Any]) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        d = dict(r)
        try:
            d["detail"] = json.loads(d["detail"] or "{}")
        except ValueError:
            d["detail"] = {"raw": d["detail"]}
        out.append(d)
    return out


async def of_member(store: Store, member_id: int, limit: int = 50, before: int | None = None) -> list[dict[str, Any]]:
    """A member's own entries, newest first (`before`: the sequence number to page back from).

    Only entries about this member: what an admin did to the account shows (a 2FA reset, say), with
    the admin's label, but never entries about anyone else."""
    sql = "SELECT * FROM audit_log WHERE member_id = ?"
    args: list[Any] = [member_id]
    if before is not None:
        sql += " AND seq < ?"
        args.append(before)
    return _rows(await store.fetch(sql + " ORDER BY seq DESC LIMIT ?", *args, max(1, min(limit, MAX_PAGE))))


async def search(store: Store, *, member_id: int | None = None, actor_id: int | None = None, action: str | None = None,
                 ip: str | None = None, since: int | None = None, until: int | None = None, ok: bool | None = None,
                 limit: int = 100, before: int | None = None) -> list[dict[str, Any]]:
    """For admins: every entry matching the filters, newest first. `action` ending in "." is a
    prefix ("admin." finds every admin action, "2fa." every two-factor event)."""
    sql, args = "SELECT * FROM audit_log WHERE 1 = 1", []
    for column, value in (("member_id", member_id), ("actor_id", actor_id), ("ip", ip)):
        if value is not None:
            sql += f" AND {column} = ?"
            args.append(value)
    if action:
        if action.endswith("."):
            sql += " AND action >= ? AND action < ?"
            args += [action, action[:-1] + "/"]  # "/" sorts right after "."
        else:
            sql += " AND action = ?"
            args.append(action)
    if since is not None:
        sql += " AND created_at >= ?"
        args.append(since)
    if until is not None:
        sql += " AND created_at < ?"
        args.append(until)
    if ok is not None:
        sql += " AND ok = ?"
        args.append(int(ok))
    if before is not None:
        sql += " AND seq < ?"
        args.append(before)
    return _rows(await store.fetch(sql + " ORDER BY seq DESC LIMIT ?", *args, max(1, min(limit, MAX_PAGE))))


@dataclass
class ChainReport:
    entries: int
    broken_at: int | None  # the first sequence number whose entry does not match the chain
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.broken_at is None


async def verify_chain(store: Store, batch: int = 5000) -> ChainReport:
    """Recompute every hash from the first entry: an edited, deleted or inserted entry (or a head that
    does not match the last entry) is reported with the sequence number where the chain breaks."""
    prev, expected, count = "", 1, 0
    while True:
        rows = await store.fetch("SELECT * FROM audit_log WHERE seq >= ? ORDER BY seq LIMIT ?", expected, batch)
        for r in rows:
            seq = int(r["seq"])
            if seq != expected:
                return ChainReport(count, expected, f"entry {expected} is missing")
            if _digest(prev, seq, r) != r["hash"]:
                return ChainReport(count, seq, f"entry {seq} was changed after it was written")
            prev, expected, count = str(r["hash"]), seq + 1, count + 1
        if len(rows) < batch:
            break
    head = await store.fetchrow("SELECT seq, hash FROM audit_head WHERE id = 1")
    if head is None or int(head["seq"]) != count or str(head["hash"]) != prev:
        return ChainReport(count, count + 1 if head is None else min(int(head["seq"]), count + 1),
                           "the newest entries were removed")
    return ChainReport(count, None)
