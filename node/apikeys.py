"""API tokens (access key / secret key pairs) of members, Peatio-style, with more safety.

A token has a label, scopes (profile, history, trade, or all), an optional expiry and IP whitelist,
can be disabled (one token, or every token of a member) and is soft-deleted. The secret is shown once
and stored encrypted (HMAC verification needs it in clear, so a hash cannot do; see secrets_box).

Lookups are cached for `cache_ttl` seconds (a minute by default): the signed-order hot path then
costs neither a database read nor a decryption per request. Changes made through this object take
effect at once on this node, and are announced to the others (node/auth_changes.py), which drop
them within about a second (`on_change`); a direct UPDATE of the database is seen within `cache_ttl`.

A secret that does not open with the server key (sealed under another one) answers SecretUnreadable
(3009) and is cached like a token, so the operator's log gets one line per key and cache period (and
a few a second at most), not one per request.
"""

from __future__ import annotations

import ipaddress
import logging
import secrets
import string
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from node import auth_changes
from node.errors import InvalidParameter, SecretUnreadable
from node.logs import Quiet
from node.secrets_box import SecretBox, WrongServerKey
from node.store import Store

KEY_LENGTH = 40
KEY_ALPHABET = string.ascii_letters + string.digits
SCOPES = ("profile", "history", "trade", "all")
CACHE_MAX = 10_000  # cached lookups kept at most (unknown keys included), then the cache starts over
_KEY_CHARS = frozenset(KEY_ALPHABET)
log = logging.getLogger(__name__)
_unreadable_quiet = Quiet(1.0)


def generate_key() -> str:
    """A 40-char ``[A-Za-z0-9]`` access or secret key (~238 bits) from the OS CSPRNG."""
    return "".join(secrets.choice(KEY_ALPHABET) for _ in range(KEY_LENGTH))


def well_formed_key(access_key: str) -> bool:
    """Whether `access_key` could be one of ours (40 × [A-Za-z0-9]): garbage never reaches the store."""
    return len(access_key) == KEY_LENGTH and all(c in _KEY_CHARS for c in access_key)


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

    def expired(self, now_ms: int) -> bool:
        return self.expires_at is not None and self.expires_at <= now_ms


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


class Unreadable:
    """The cached answer for a key whose secret does not open with this server key."""


UNREADABLE = Unreadable()


class ApiKeys:
    def __init__(self, store: Store, box: SecretBox, cache_ttl: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.box = box
        self.cache_ttl = cache_ttl
        self.clock = clock
        self._cache: dict[str, tuple[float, Token | Unreadable | None]] = {}
        self._gen = 0  # counts invalidations: a lookup that raced one is cached for a second only

    async def create(self, member_id: int, label: str = "", scopes: str = "all", ip_whitelist: str = "",
                     expires_at: int | None = None, now: int = 0) -> tuple[str, str]:
        """A new token; returns (access_key, secret_key). The secret is not kept in clear anywhere."""
        if len(label) > 64:
            raise InvalidParameter("label is too long (at most 64 characters)", "label")
        access, secret = generate_key(), generate_key()
        await self.store.execute(
            "INSERT INTO api_tokens (member_id, access_key, secret_enc, label, scopes, ip_whitelist, expires_at, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            member_id, access, self.box.seal(secret), label, parse_scopes(scopes), parse_ip_whitelist(ip_whitelist),
            expires_at, now,
        )
        self._cache.pop(access, None)
        return access, secret

    async def find(self, access_key: str) -> Token | None:
        """The token of `access_key` (deleted and disabled ones included: the caller tells them
        apart), or None; served from the cache when fresh. SecretUnreadable when its secret does not
        open with this server key."""
        now = self.clock()
        hit = self._cache.get(access_key)
        if hit is not None and hit[0] > now:
            found = hit[1]
        else:
            gen = self._gen
            found = await self._load(access_key) if well_formed_key(access_key) else None
            if len(self._cache) >= CACHE_MAX:
                self._cache.clear()
            self._cache[access_key] = (now + (self.cache_ttl if gen == self._gen else min(self.cache_ttl, 1.0)), found)
        if isinstance(found, Unreadable):
            raise SecretUnreadable(access_key)  # a fresh one: a cached exception would grow its traceback
        return found

    async def _load(self, access_key: str) -> Token | Unreadable | None:
        row = await self.store.fetchrow(
            "SELECT t.*, m.api_disabled AS member_api_disabled, m.disabled AS member_disabled "
            "FROM api_tokens t JOIN members m ON m.id = t.member_id WHERE t.access_key = ?",
            access_key,
        )
        if row is None:
            return None
        try:
            return self._token(row)
        except WrongServerKey:
            _unreadable_quiet.warn(
                log, "API key %s (token #%d of member #%d): its secret cannot be decrypted with this node's server "
                "key, so its requests are refused (3009); every node must run with the key that sealed it "
                "(docs/operations.md, \"Install a node\": the server key)", access_key, int(row["id"]), int(row["member_id"]))
            return UNREADABLE

    def forget(self, access_key: str | None = None) -> None:
        """Drop one cached lookup (or all of them) after a change."""
        self._gen += 1
        if access_key is None:
            self._cache.clear()
        else:
            self._cache.pop(access_key, None)

    def on_change(self, member_id: int, access_key: str | None) -> None:
        """A change announced by some node (node/auth_changes.py): one key, or all of a member's."""
        if access_key is not None:
            self.forget(access_key)
            return
        self._gen += 1
        for key, (_, token) in list(self._cache.items()):
            if isinstance(token, Token) and token.member_id == member_id:
                del self._cache[key]

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
        """A member's live tokens, without secrets."""
        rows = await self.store.fetch(
            "SELECT id, access_key, label, scopes, ip_whitelist, expires_at, disabled, created_at, last_used_at "
            "FROM api_tokens WHERE member_id = ? AND deleted_at IS NULL ORDER BY id", member_id)
        return [dict(r) for r in rows]

    async def _access_key(self, member_id: int, token_id: int) -> str | None:
        return await self.store.fetchval(  # type: ignore[no-any-return]
            "SELECT access_key FROM api_tokens WHERE id = ? AND member_id = ?", token_id, member_id)

    async def delete(self, member_id: int, token_id: int, now: int) -> bool:
        """Soft delete: the row stays (for the audit trail), the key stops working at once."""
        return await self._set_token(member_id, token_id, "deleted_at", now)

    async def set_disabled(self, member_id: int, token_id: int, disabled: bool) -> bool:
        """Disable (or enable again) one token: it answers 2009 while disabled."""
        return await self._set_token(member_id, token_id, "disabled", int(disabled))

    async def _set_token(self, member_id: int, token_id: int, column: str, value: int) -> bool:
        """Change one live token and announce it to every node (node/auth_changes.py)."""
        access = await self._access_key(member_id, token_id)
        async with self.store.transaction() as tx:
            n = await tx.execute(
                f"UPDATE api_tokens SET {column} = ? WHERE id = ? AND member_id = ? AND deleted_at IS NULL",
                value, token_id, member_id)
            if n:
                await auth_changes.record(tx, member_id, access)
        self.forget(access)
        return n > 0

    async def set_member_api_disabled(self, member_id: int, disabled: bool) -> bool:
        """Switch off the API for every token of a member (e.g. on suspicion of a leak), at once."""
        async with self.store.transaction() as tx:
            n = await tx.execute("UPDATE members SET api_disabled = ? WHERE id = ?", int(disabled), member_id)
            if n:
                await auth_changes.record(tx, member_id)
        self.on_change(member_id, None)  # drops every cached token of the member
        return n > 0
