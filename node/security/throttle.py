"""Brute-force limits: failed log ins, wrong two-factor codes, public forms.

Counted in the database, not in a node's memory: a guesser spreading attempts over the nodes of a
cluster (or waiting for a restart) meets the same count. Each failure is one row.

Log ins are slowed down, never locked (OWASP ASVS 2.2.1: anti-automation that cannot itself be
used to deny service). Failures are counted per account *and client*: the client is the browser
when it carries the account's device cookie (`device_token`, given at each successful log in),
else its IP address. Past `limit` failures in the window, each further attempt of that pair waits
`delay` × 2^(failures − limit), at most `lockout` (`wait_until`). So a stranger guessing Ann's
password slows down only himself, and Ann, on her own browser, logs in as usual. Clients without
the device cookie are also counted per account (a botnet spreading guesses over many addresses)
and per IP address (one address trying many accounts), with higher limits; a member's own
browser is never held back by those, and an office behind one address is slowed down only for
browsers that have not logged in before. A successful log in clears its pair and the account.

Wrong two-factor codes (the member is known, the password was right) still lock the second factor
for the lockout time (`failure`): the rows are then cleared, so the count starts afresh.

Accounts are counted by the SHA-256 of the normalised e-mail address, whether or not an account
exists for it, so the lock cannot be used to find out who has an account, and the table holds no
list of addresses people typed.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass

from node.store import Store

LOGIN_PAIR = "login:pair"  # an account and a client (its device cookie, else its IP address)
LOGIN_ACCOUNT = "login:account"  # an account, from clients without its device cookie
LOGIN_IP = "login:ip"  # an IP address, for clients without the device cookie of the account they try
OTP = "otp"
FORM = "form:"  # + the form's name
PURGE_EVERY_MS = 60_000


def account_subject(email: str) -> str:
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()


def device_token(key: bytes, subject: str, device: str) -> str:
    """The device cookie of one browser for one account: a random id and its MAC (so a client
    cannot make one up to escape the per-account count)."""
    mac = hmac.new(key, f"{subject}|{device}".encode(), hashlib.sha256).hexdigest()[:32]
    return f"{device}.{mac}"


def device_of(key: bytes, subject: str, cookie: str | None) -> str | None:
    """The device id of a cookie that is valid for this account, else None."""
    if not cookie or len(cookie) > 100:
        return None
    device = cookie.partition(".")[0]
    return device if device and hmac.compare_digest(device_token(key, subject, device), cookie) else None


@dataclass(frozen=True)
class Rule:
    limit: int
    window_ms: int
    lockout_ms: int  # a lock's length; for growing delays, the longest delay
    delay_ms: int = 0  # the first delay once `limit` is reached (then doubled at each failure)


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

    async def record(self, scope: str, subject: str) -> None:
        """Count one failure (of a subject slowed down by `wait_until`, never locked)."""
        await self.store.execute("INSERT INTO security_attempts (scope, subject, created_at) VALUES (?, ?, ?)",
                                 scope, subject[:200], self.now())
        await self._purge()

    async def wait_until(self, scope: str, subject: str, rule: Rule) -> int | None:
        """Until when (epoch ms) the subject's next attempt must wait, or None: past `rule.limit`
        failures in the window, `delay_ms` doubled for each further failure, at most `lockout_ms`,
        counted from the last failure."""
        now = self.now()
        self._longest_window = max(self._longest_window, rule.window_ms)
        row = await self.store.fetchrow(
            "SELECT COUNT(*) AS n, MAX(created_at) AS last FROM security_attempts "
            "WHERE scope = ? AND subject = ? AND created_at > ?", scope, subject[:200], now - rule.window_ms)
        n = int(row["n"]) if row is not None else 0
        if row is None or n < rule.limit:
            return None
        until = int(row["last"]) + min(rule.lockout_ms, rule.delay_ms << min(n - rule.limit, 40))
        return until if until > now else None

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

    async def clear_account(self, subject: str) -> None:
        """Forget an account's failures from every client (a password reset by mail proved the owner)."""
        async with self.store.transaction() as tx:
            await tx.execute("DELETE FROM security_attempts WHERE scope = ? AND subject LIKE ?", LOGIN_PAIR, subject + "|%")
            await tx.execute("DELETE FROM security_attempts WHERE scope = ? AND subject = ?", LOGIN_ACCOUNT, subject)
            await tx.execute("DELETE FROM security_lockouts WHERE scope = ? AND subject = ?", LOGIN_ACCOUNT, subject)

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
