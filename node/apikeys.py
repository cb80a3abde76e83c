"""API tokens (access key / secret key pairs) of members, Peatio-style, with more safety.

A token has a label, scopes (profile, history, trade, or all), an optional expiry and IP whitelist,
can be disabled and is soft-deleted. The secret is shown once and stored encrypted.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from node.errors import InvalidParameter
from node.secrets_box import SecretBox
from node.store import Store
from node.web.signature import generate_key

SCOPES = ("profile", "history", "trade", "all")


@dataclass(frozen=True)
class Token:
    id: int
    member_id: int
    access_key: str
    secret_key: str
    label: str
    scopes: frozenset[str]
    ip_whitelist: tuple[str, ...]
    expires_at: int | None
    disabled: bool
    deleted: bool

    def allows(self, scope: str) -> bool:
        return "all" in self.scopes or scope in self.scopes

    def ip_allowed(self, ip: str | None) -> bool:
        if not self.ip_whitelist:
            return True
        if ip is None:
            return False
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(addr in ipaddress.ip_network(net, strict=False) for net in self.ip_whitelist)


def parse_scopes(raw: str | None) -> str:
    items = [s for s in (raw or "all").replace(",", " ").split() if s]
    bad = [s for s in items if s not in SCOPES]
    if bad or not items:
        raise InvalidParameter(f"scopes must be among {', '.join(SCOPES)}", "scopes")
    return " ".join(sorted(set(items)))


def parse_ip_whitelist(raw: str | None) -> str:
    items = [s for s in (raw or "").replace(",", " ").split() if s]
    for s in items:
        try:
            ipaddress.ip_network(s, strict=False)
        except ValueError:
            raise InvalidParameter(f"ip_whitelist: {s!r} is not an IP address or network", "ip_whitelist") from None
    return " ".join(items)


class ApiKeys:
    def __init__(self, store: Store, box: SecretBox) -> None:
        self.store = store
        self.box = box

    async def create(self, member_id: int, label: str = "", scopes: str = "all", ip_whitelist: str = "",
                     expires_at: int | None = None, now: int = 0) -> tuple[str, str]:
        if len(label) > 64:
            raise InvalidParameter("label is too long (at most 64 characters)", "label")
        access, secret = generate_key(), generate_key()
        await self.store.execute(
            "INSERT INTO api_tokens (member_id, access_key, secret_enc, label, scopes, ip_whitelist, expires_at, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            member_id, access, self.box.seal(secret), label, parse_scopes(scopes), parse_ip_whitelist(ip_whitelist),
            expires_at, now,
        )
        return access, secret

    async def find(self, access_key: str) -> Token | None:
        row = await self.store.fetchrow(
            "SELECT t.*, m.api_disabled AS member_api_disabled, m.disabled AS member_disabled "
            "FROM api_tokens t JOIN members m ON m.id = t.member_id WHERE t.access_key = ?",
            access_key,
        )
        return None if row is None else self._token(row)

    def _token(self, row: Any) -> Token:
        return Token(
            id=int(row["id"]),
            member_id=int(row["member_id"]),
            access_key=row["access_key"],
            secret_key=self.box.open(row["secret_enc"]),
            label=row["label"],
            scopes=frozenset(row["scopes"].split()),
            ip_whitelist=tuple(row["ip_whitelist"].split()),
            expires_at=row["expires_at"],
            disabled=bool(row["disabled"] or row["member_api_disabled"] or row["member_disabled"]),
            deleted=row["deleted_at"] is not None,
        )

    async def list(self, member_id: int) -> list[dict[str, Any]]:
        rows = await self.store.fetch(
            "SELECT id, access_key, label, scopes, ip_whitelist, expires_at, disabled, created_at, last_used_at "
            "FROM api_tokens WHERE member_id = ? AND deleted_at IS NULL ORDER BY id", member_id)
        return [dict(r) for r in rows]

    async def delete(self, member_id: int, token_id: int, now: int) -> bool:
        n = await self.store.execute(
            "UPDATE api_tokens SET deleted_at = ? WHERE id = ? AND member_id = ? AND deleted_at IS NULL",
            now, token_id, member_id)
        return n > 0
