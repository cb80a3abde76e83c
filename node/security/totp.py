"""TOTP (RFC 6238) two-factor authentication with pyotp, and its recovery codes.

`match_step` is the one place a code is checked: it tries the time steps within ±`window` of now
(clocks of phones drift; ±1 step of 30 s is what RFC 6238 §5.2 recommends at most), compares in
constant time, and answers *which* step matched. The store then accepts a step only if it is newer
than the last step this member used (`UPDATE … WHERE last_step < ?`, one conditional statement, so
two requests racing with the same code cannot both win, on any node): a code is never accepted
twice, and neither is an older one after a newer one was used (RFC 6238 §5.2: "the verifier MUST
NOT accept the second attempt of the same OTP after the successful validation").

A secret is created on the setup page and stays inactive until the member proves their app has it
by entering a first valid code; only then is 2FA on. Secrets are sealed with the server key (a
copy of the database alone cannot produce codes). Recovery codes (ten, 50 bits each) are shown
once when 2FA is switched on or renewed; only a keyed hash of each is kept, and each works once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from enum import Enum

import pyotp

from node.secrets_box import SecretBox
from node.store import Store, Tx

INTERVAL = 30
DIGITS = 6
WINDOW = 1
RECOVERY_COUNT = 10
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i: codes are read off paper
RECOVERY_LENGTH = 10


def match_step(secret_b32: str, code: str, at: float, *, digits: int = DIGITS, digest: str = "sha1",
               interval: int = INTERVAL, window: int = WINDOW) -> int | None:
    """The time step (counter) whose code `code` is, within ±`window` steps of time `at`, or None.

    Every candidate is computed and compared in constant time, whether or not one matched earlier,
    so the time taken tells nothing about the code."""
    code = code.strip().replace(" ", "")
    if len(code) != digits or not code.isascii() or not code.isdigit():
        return None
    otp = pyotp.TOTP(secret_b32, digits=digits, digest=getattr(hashlib, digest), interval=interval)
    now_step = int(at // interval)
    found: int | None = None
    for step in range(now_step - window, now_step + window + 1):
        if step >= 0 and hmac.compare_digest(otp.generate_otp(step).encode(), code.encode()):
            found = step
    return found


def new_secret() -> str:
    """160 random bits in base32, the length RFC 4226 recommends and every authenticator app reads."""
    return pyotp.random_base32(32)


def provisioning_uri(secret_b32: str, account: str, issuer: str) -> str:
    """The otpauth:// URI an authenticator app reads from the QR code; the issuer names the exchange
    both as a label prefix and as the `issuer` parameter, so apps group and name it right."""
    return pyotp.TOTP(secret_b32, interval=INTERVAL, digits=DIGITS).provisioning_uri(name=account, issuer_name=issuer)


def new_recovery_code() -> str:
    raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(RECOVERY_LENGTH))
    return f"{raw[:5]}-{raw[5:]}"


def normalise_recovery_code(code: str) -> str | None:
    raw = code.strip().lower().replace("-", "").replace(" ", "")
    if len(raw) != RECOVERY_LENGTH or any(c not in _RECOVERY_ALPHABET for c in raw):
        return None
    return raw


class Check(Enum):
    OK = "ok"
    WRONG = "wrong"
    REPLAYED = "replayed"


class Totp:
    """A member's TOTP secret, replay memory and recovery codes in the store."""

    def __init__(self, store: Store, box: SecretBox, pepper: bytes, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.box = box
        self.pepper = pepper
        self.clock = clock

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def _code_hash(self, member_id: int, raw: str) -> str:
        """Keyed with the server key: a database copy alone cannot even brute-force the 50 bits."""
        return hmac.new(self.pepper, f"recovery:{member_id}:{raw}".encode(), hashlib.sha256).hexdigest()

    async def enabled(self, member_id: int) -> bool:
        return await self.store.fetchval(
            "SELECT enabled_at FROM security_totp WHERE member_id = ?", member_id) is not None

    async def pending_secret(self, member_id: int, restart: bool = False) -> str:
        """The secret being set up (created on first call, the same one on a reload so the QR code
        the member scanned stays right); `restart` makes a new one. Never for an enabled member."""
        row = await self.store.fetchrow("SELECT secret_enc, enabled_at FROM security_totp WHERE member_id = ?", member_id)
        if row is not None and row["enabled_at"] is not None:
            raise ValueError("two-factor authentication is already on")
        if row is not None and not restart:
            return self.box.open(row["secret_enc"])
        secret = new_secret()
        sealed = self.box.seal(secret)
        if row is None:
            await self.store.execute(
                "INSERT INTO security_totp (member_id, secret_enc, created_at) VALUES (?, ?, ?) "
                "ON CONFLICT (member_id) DO NOTHING", member_id, sealed, self.now_ms())
            return await self.pending_secret(member_id)  # a racing tab may have inserted first: use its secret
        await self.store.execute(
            "UPDATE security_totp SET secret_enc = ?, last_step = -1, created_at = ? WHERE member_id = ? "
            "AND enabled_at IS NULL", sealed, self.now_ms(), member_id)
        return secret

    async def check(self, member_id: int, code: str, *, pending: bool = False) -> Check:
        """Check a code against the member's secret (the pending one when `pending`) and burn its
        time step: the same code, or an older one, is never accepted again."""
        row = await self.store.fetchrow("SELECT secret_enc, enabled_at FROM security_totp WHERE member_id = ?", member_id)
        if row is None or (row["enabled_at"] is None) != pending:
            return Check.WRONG
        step = match_step(self.box.open(row["secret_enc"]), code, self.clock())
        if step is None:
            return Check.WRONG
        n = await self.store.execute(
            "UPDATE security_totp SET last_step = ? WHERE member_id = ? AND last_step < ?", step, member_id, step)
        return Check.OK if n == 1 else Check.REPLAYED

    async def activate(self, member_id: int) -> list[str]:
        """Switch on the pending secret (after `check(…, pending=True)` said OK); new recovery codes."""
        async with self.store.transaction() as tx:
            n = await tx.execute("UPDATE security_totp SET enabled_at = ? WHERE member_id = ? AND enabled_at IS NULL",
                                 self.now_ms(), member_id)
            if n != 1:
                raise ValueError("no two-factor set-up is waiting for activation")
            return await self._new_codes(tx, member_id)

    async def disable(self, member_id: int) -> bool:
        async with self.store.transaction() as tx:
            n = await tx.execute("DELETE FROM security_totp WHERE member_id = ?", member_id)
            await tx.execute("DELETE FROM security_recovery_codes WHERE member_id = ?", member_id)
        return n > 0

    async def new_recovery_codes(self, member_id: int) -> list[str]:
        async with self.store.transaction() as tx:
            return await self._new_codes(tx, member_id)

    async def _new_codes(self, tx: Tx, member_id: int) -> list[str]:
        codes = [new_recovery_code() for _ in range(RECOVERY_COUNT)]
        now = self.now_ms()
        await tx.execute("DELETE FROM security_recovery_codes WHERE member_id = ?", member_id)
        for c in codes:
            await tx.execute(
                "INSERT INTO security_recovery_codes (member_id, code_hash, created_at) VALUES (?, ?, ?)",
                member_id, self._code_hash(member_id, normalise_recovery_code(c) or ""), now)
        return codes

    async def use_recovery_code(self, member_id: int, code: str) -> bool:
        """Spend one recovery code (a conditional UPDATE: two requests cannot both use it)."""
        raw = normalise_recovery_code(code)
        if raw is None:
            return False
        n = await self.store.execute(
            "UPDATE security_recovery_codes SET used_at = ? WHERE member_id = ? AND code_hash = ? AND used_at IS NULL",
            self.now_ms(), member_id, self._code_hash(member_id, raw))
        return n == 1

    async def recovery_left(self, member_id: int) -> int:
        return int(await self.store.fetchval(
            "SELECT COUNT(*) FROM security_recovery_codes WHERE member_id = ? AND used_at IS NULL", member_id))
