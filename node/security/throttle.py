"""Brute-force limits: failed log ins per account and per IP, wrong two-factor codes, public forms.

Counted in the database, not in a node's memory: a guesser spreading attempts over the nodes of a
cluster (or waiting for a restart) meets the same count. Each failure is one row; a subject
(an account, an IP address, a member's second factor, an IP on one form) that reaches its limit
within the window is locked for the lockout time, and its rows are cleared, so the count starts
afresh afterwards. A successful log in clears the account's failures.

Accounts are counted by the SHA-256 of the normalised e-mail address, whether or not an account
exists for it, so the lock cannot be used to find out who has an account, and the table holds no
list of addresses people typed.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from node.store import Store

LOGIN_ACCOUNT = "login:account"
LOGIN_IP = "login:ip"
OTP = "otp"
FORM = "form:"  # + the form's name
PURGE_EVERY_MS = 60_000


def account_subject(email: str) -> str:
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()


@dataclass(frozen=True)
class Rule:
    limit: int
    window_ms: int
    lockout_ms: int


class Throttle:
    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock
        self._last_purge = 0
        self._longest_window = 0

    def now(self) -> int:
        return int(self.clock() * 1000)

    async def locked_until(self, scope: str, subject: str) -> int | None:
        """When the lock on `subject` ends (epoch ms), or None when it is not locked."""
        until = await self.store.fetchval(
            "SELECT locked_until FROM security_lockouts WHERE scope = ? AND subject = ?", scope, subject[:200])
        return int(until) if until is not None and int(until) > self.now() else None

    async def failure(self, scope: str, subject: str, rule: Rule) -> int | None:
        """Count one failure; when it reaches the limit, lock the subject. Returns the end of the
        lock this failure started (or of one already running), else None."""
        now, subject = self.now(), subject[:200]
        self._longest_window = max(self._longest_window, rule.window_ms)
        async with self.store.transaction() as tx:
            await tx.execute("INSERT INTO security_attempts (scope, subject, created_at) VALUES (?, ?, ?)",
                             scope, subject, now)
            n = int(await tx.fetchval(
                "SELECT COUNT(*) FROM security_attempts WHERE scope = ? AND subject = ? AND created_at > ?",
                scope, subject, now - rule.window_ms))
            if n < rule.limit:
                until = None
            else:
                until = now + rule.lockout_ms
                await tx.execute(
                    "INSERT INTO security_lockouts (scope, subject, locked_until) VALUES (?, ?, ?) "
                    "ON CONFLICT (scope, subject) DO UPDATE SET locked_until = excluded.locked_until",
                    scope, subject, until)
                await tx.execute("DELETE FROM security_attempts WHERE scope = ? AND subject = ?", scope, subject)
        await self._purge()
        return until

    async def failures(self, scope: str, subject: str, rule: Rule) -> int:
        """Failures counted in the current window."""
        return int(await self.store.fetchval(
            "SELECT COUNT(*) FROM security_attempts WHERE scope = ? AND subject = ? AND created_at > ?",
            scope, subject[:200], self.now() - rule.window_ms))

    async def clear(self, scope: str, subject: str) -> None:
        """Forget the failures and any lock (a successful log in, a password reset by mail)."""
        async with self.store.transaction() as tx:
            await tx.execute("DELETE FROM security_attempts WHERE scope = ? AND subject = ?", scope, subject[:200])
            await tx.execute("DELETE FROM security_lockouts WHERE scope = ? AND subject = ?", scope, subject[:200])

    async def hit(self, scope: str, subject: str, limit: int, window_ms: int) -> int | None:
        """Count one use of a rate-limited thing (a public form); the seconds to wait when this use
        is over the limit (it is then not counted), else None."""
        now, subject = self.now(), subject[:200]
        self._longest_window = max(self._longest_window, window_ms)
        async with self.store.transaction() as tx:
            rows = await tx.fetch(
                "SELECT created_at FROM security_attempts WHERE scope = ? AND subject = ? AND created_at > ? "
                "ORDER BY created_at LIMIT ?", scope, subject, now - window_ms, limit)
            if len(rows) >= limit:
                return max(1, (int(rows[0]["created_at"]) + window_ms - now + 999) // 1000)
            await tx.execute("INSERT INTO security_attempts (scope, subject, created_at) VALUES (?, ?, ?)",
                             scope, subject, now)
        await self._purge()
        return None

    async def _purge(self) -> None:
        now = self.now()
        if now - self._last_purge < PURGE_EVERY_MS:
            return
        self._last_purge = now
        keep = max(self._longest_window, 86_400_000)
        await self.store.execute("DELETE FROM security_attempts WHERE created_at < ?", now - keep)
        await self.store.execute("DELETE FROM security_lockouts WHERE locked_until < ?", now)
