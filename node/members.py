"""Members' own accounts: sign-up, e-mail activation, log in, password change and reset, login history.

Passwords are hashed with argon2id (argon2-cffi's defaults, RFC 9106's second recommended profile),
in a worker thread so that a hash (tens of milliseconds by design) never stalls the event loop that
matches orders. A hash made with weaker parameters is upgraded at the next successful log in.

E-mail links carry a random token of 256 bits; only its SHA-256 is stored, so a copy of the database
cannot be used to take over accounts. A token is single use (consumed by a conditional UPDATE, so
two clicks racing each other cannot both win) and short-lived: a password reset link 30 minutes, an
activation link 48 hours. Asking for a new link voids the older ones.

Nothing here tells a stranger whether an e-mail address has an account: sign-up with a taken
address, a reset for an unknown one and a resend for an activated one all answer exactly like the
normal case (the owner of a taken address gets a mail saying someone tried), and a log in with an
unknown address costs the same argon2 verification as a wrong password.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from node.errors import N_, FormError, FormErrors, InvalidParameter
from node.exchange import Exchange
from node.i18n import translator
from node.mail import Mail, Mailer, MailError

log = logging.getLogger(__name__)

ACTIVATE = "activate"
RESET = "reset"
NOTICE = "notice"  # a row that only records when an "already registered" mail went out (the throttle)
TOKEN_TTL_MS = {ACTIVATE: 48 * 3_600_000, RESET: 30 * 60_000, NOTICE: 0}
RESEND_INTERVAL_MS = 60_000  # at most one mail of a kind per member per minute: no mail bombing
EMAIL_MAX = 254
PASSWORD_MIN = 8
PASSWORD_MAX = 128  # long enough for any passphrase, short enough that hashing stays cheap
HISTORY_MAX = 100
# Why a log in failed, as the login history shows it (translated on the page).
WRONG_PASSWORD, DISABLED, INACTIVE, WRONG_CODE = N_("wrong password"), N_("disabled"), N_("not activated"), N_("wrong code")
NOT_ACTIVATED = N_("This account is not activated yet: please open the link we mailed you, or ask for a new one.")
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s.]+(\.[^@\s.]+)+")
COMMON_PASSWORDS = frozenset({
    "password", "password1", "12345678", "123456789", "1234567890", "qwertyui", "qwerty123", "11111111",
    "00000000", "abc12345", "iloveyou", "1q2w3e4r", "sunshine", "princess", "football", "baseball",
    "welcome1", "admin123", "letmein1", "passw0rd", "88888888", "66666666", "bitcoin1", "a1234567",
})


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_email(email: str) -> str:
    """The address normalised (trimmed, lower case), or a FormError on the `email` field."""
    email = email.strip().lower()
    if not email:
        raise FormError("email", N_("Please enter your e-mail address"))
    if len(email) > EMAIL_MAX:
        raise FormError("email", N_("The e-mail address is too long (at most {n} characters)"), n=EMAIL_MAX)
    if not _EMAIL.fullmatch(email):
        raise FormError("email", N_("This is not a valid e-mail address"))
    return email


def check_new_password(password: str, email: str = "", field: str = "password") -> str:
    """A new password is long enough and not one of the first a thief would try."""
    if not password:
        raise FormError(field, N_("Please choose a password"))
    if len(password) < PASSWORD_MIN:
        raise FormError(field, N_("The password is too short (at least {n} characters)"), n=PASSWORD_MIN)
    if len(password) > PASSWORD_MAX:
        raise FormError(field, N_("The password is too long (at most {n} characters)"), n=PASSWORD_MAX)
    local = email.split("@")[0]
    if password.lower() in COMMON_PASSWORDS or len(set(password)) < 4 or (len(local) >= 4 and local in password.lower()):
        raise FormError(field, N_("This password is too easy to guess"))
    return password


def check_confirmation(password: str, confirmation: str, field: str = "password_confirmation") -> None:
    if not confirmation:
        raise FormError(field, N_("Please repeat the password"))
    if not secrets.compare_digest(password.encode(), confirmation.encode()):
        raise FormError(field, N_("The two passwords are not the same"))


@dataclass(frozen=True)
class LoginAttempt:
    ip: str = ""
    user_agent: str = ""


class Members:
    def __init__(self, exchange: Exchange, mailer: Mailer, base_url: str, site: str = "",
                 clock: Callable[[], float] = time.time, hasher: PasswordHasher | None = None) -> None:
        self.ex = exchange
        self.store = exchange.store
        self.mailer = mailer
        self.base_url = base_url.rstrip("/")
        self.site = site or exchange.config.name
        self.clock = clock
        self.hasher = hasher or PasswordHasher()
        self._dummy_hash: str | None = None

    def now(self) -> int:
        return int(self.clock() * 1000)

    # -- passwords --------------------------------------------------------------------------------
    async def hash_password(self, password: str) -> str:
        return await asyncio.to_thread(self.hasher.hash, password)

    async def _verify(self, stored: str | None, password: str) -> bool:
        """Constant work whether or not there is a hash: an unknown e-mail is verified against a dummy."""
        if not stored:
            if self._dummy_hash is None:
                self._dummy_hash = await self.hash_password(secrets.token_hex(16))
            stored = self._dummy_hash
            password = password + "\0never"
        try:
            return await asyncio.to_thread(self.hasher.verify, stored, password)
        except (VerificationError, InvalidHashError):
            return False

    # -- mail ---------------------------------------------------------------------------------------
    async def _mail(self, to: str, lang: str, subject: str, body: str, **params: Any) -> bool:
        """Send a translated mail; False (logged) when the server refused or could not be reached."""
        _ = translator(lang)
        try:
            await self.mailer.send(Mail(to, _(subject, site=self.site), _(body, site=self.site, **params)))
            return True
        except MailError:
            return False

    def link(self, path: str) -> str:
        return self.base_url + path

    # -- tokens ---------------------------------------------------------------------------------------
    async def _issue(self, member_id: int, purpose: str) -> str | None:
        """A fresh token that voids the earlier ones; None when one was sent less than a minute ago."""
        now = self.now()
        token = secrets.token_urlsafe(32)
        async with self.store.transaction() as tx:
            last = await tx.fetchval(
                "SELECT MAX(created_at) FROM member_tokens WHERE member_id = ? AND purpose = ?", member_id, purpose)
            if last is not None and now - int(last) < RESEND_INTERVAL_MS:
                return None
            await tx.execute(
                "UPDATE member_tokens SET used_at = ? WHERE member_id = ? AND purpose = ? AND used_at IS NULL",
                now, member_id, purpose)
            await tx.execute(
                "INSERT INTO member_tokens (member_id, purpose, token_hash, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
                member_id, purpose, token_hash(token), now, now + TOKEN_TTL_MS[purpose])
        return token

    async def _token_row(self, tx: Any, token: str, purpose: str) -> Any:
        """The token's row if it can still be used, else a FormError saying why not."""
        if not token or len(token) > 100:
            raise FormError(None, N_("This link is not valid. Please ask for a new one."))
        row = await tx.fetchrow(
            "SELECT id, member_id, expires_at, used_at FROM member_tokens WHERE token_hash = ? AND purpose = ?",
            token_hash(token), purpose)
        if row is None:
            raise FormError(None, N_("This link is not valid. Please ask for a new one."))
        if row["used_at"] is not None:
            raise FormError(None, N_("This link has already been used. Please ask for a new one."))
        if int(row["expires_at"]) <= self.now():
            raise FormError(None, N_("This link has expired. Please ask for a new one."))
        return row

    async def check_token(self, token: str, purpose: str) -> int:
        """The member a token belongs to, without using it up (a reset form is shown first)."""
        async with self.store.transaction() as tx:
            row = await self._token_row(tx, token, purpose)
        return int(row["member_id"])

    async def _consume(self, tx: Any, token: str, purpose: str) -> int:
        row = await self._token_row(tx, token, purpose)
        n = await tx.execute("UPDATE member_tokens SET used_at = ? WHERE id = ? AND used_at IS NULL", self.now(), row["id"])
        if n != 1:
            raise FormError(None, N_("This link has already been used. Please ask for a new one."))
        return int(row["member_id"])

    # -- sign-up and activation -------------------------------------------------------------------
    async def sign_up(self, email: str, password: str, confirmation: str, lang: str = "en") -> int | None:
        """Create an inactive member and mail the activation link. Returns the new member's id, or
        None when the address was taken (its owner is told by mail; the page says the same as for a
        new member, so sign-up cannot be used to find out who has an account)."""
        email = self.check_sign_up(email, password, confirmation)
        existing = await self.store.fetchrow("SELECT id, activated FROM members WHERE email = ?", email)
        if existing is not None:
            if await self._issue(int(existing["id"]), NOTICE) is not None:
                await self._mail(email, lang, N_("Your {site} account"), N_(
                    "Hello,\n\nSomeone, perhaps you, tried to sign up at {site} with this e-mail address, "
                    "which already has an account.\n\nIf you forgot your password, you can choose a new "
                    "one here:\n\n{link}\n\nIf it was not you, you can ignore this mail.\n"),
                    link=self.link("/password/forgot"))
            return None
        hashed = await self.hash_password(password)
        try:
            member_id = await self.ex.create_member(email, name="", password_hash=hashed, activated=False)
        except InvalidParameter as e:  # a sign-up racing another with the same address
            if "already registered" in e.message:
                return None
            raise
        await self.send_activation(member_id, email, lang)
        return member_id

    @staticmethod
    def check_sign_up(email: str, password: str, confirmation: str) -> str:
        """Every field of the sign-up form checked at once (FormErrors); the address normalised."""
        errors: list[FormError] = []
        try:
            email = check_email(email)
        except FormError as e:
            errors.append(e)
        try:
            check_new_password(password, email)
        except FormError as e:
            errors.append(e)
        if not any(e.field == "password" for e in errors):
            try:
                check_confirmation(password, confirmation)
            except FormError as e:
                errors.append(e)
        if errors:
            raise FormErrors(errors)
        return email

    async def send_activation(self, member_id: int, email: str, lang: str = "en") -> bool:
        token = await self._issue(member_id, ACTIVATE)
        if token is None:
            return False
        return await self._mail(email, lang, N_("Activate your {site} account"), N_(
            "Hello,\n\nWelcome to {site}. Please open this link to activate your account:\n\n{link}\n\n"
            "The link is valid for 48 hours and can be used once. If you did not sign up, you can ignore "
            "this mail.\n"), link=self.link(f"/activate/{token}"))

    async def resend_activation(self, email: str, lang: str = "en") -> None:
        """Send a new activation link if the address has an inactive account (no answer either way)."""
        email = check_email(email)
        row = await self.store.fetchrow("SELECT id, activated FROM members WHERE email = ?", email)
        if row is not None and not row["activated"]:
            await self.send_activation(int(row["id"]), email, lang)

    async def activate(self, token: str) -> int:
        async with self.store.transaction() as tx:
            member_id = await self._consume(tx, token, ACTIVATE)
            await tx.execute("UPDATE members SET activated = 1 WHERE id = ?", member_id)
        return member_id

    # -- log in -----------------------------------------------------------------------------------------
    async def authenticate(self, email: str, password: str, attempt: LoginAttempt = LoginAttempt()) -> dict[str, Any]:
        """The member whose e-mail and password these are; a failure is recorded in their history.

        A success is recorded by the caller (`record_login`) once the session is open, after a second
        factor where one is asked for."""
        errors: list[FormError] = []
        email = email.strip().lower()
        if not email:
            errors.append(FormError("email", N_("Please enter your e-mail address")))
        elif len(email) > EMAIL_MAX:
            errors.append(FormError("email", N_("The e-mail address is too long (at most {n} characters)"), n=EMAIL_MAX))
        if not password:
            errors.append(FormError("password", N_("Please enter your password")))
        elif len(password) > PASSWORD_MAX:
            errors.append(FormError("password", N_("The password is too long (at most {n} characters)"), n=PASSWORD_MAX))
        if errors:
            raise FormErrors(errors)
        row = await self.store.fetchrow(
            "SELECT id, email, password_hash, activated, disabled FROM members WHERE email = ?", email)
        stored = row["password_hash"] if row is not None else None
        if not await self._verify(stored, password) or row is None:
            if row is not None:
                await self.record_login(int(row["id"]), False, WRONG_PASSWORD, attempt)
            raise FormError(None, N_("Wrong e-mail address or password"))
        member_id = int(row["id"])
        if row["disabled"]:
            await self.record_login(member_id, False, DISABLED, attempt)
            raise FormError(None, N_("This account is disabled. Please contact support."))
        if not row["activated"]:
            await self.record_login(member_id, False, INACTIVE, attempt)
            raise FormError("email", NOT_ACTIVATED)
        if stored and self.hasher.check_needs_rehash(stored):
            await self.store.execute("UPDATE members SET password_hash = ? WHERE id = ?",
                                     await self.hash_password(password), member_id)
        return dict(await self.ex.member(member_id))

    async def record_login(self, member_id: int, ok: bool, reason: str, attempt: LoginAttempt) -> None:
        await self.store.execute(
            "INSERT INTO login_history (member_id, ok, reason, ip, user_agent, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            member_id, int(ok), reason[:64], attempt.ip[:64], attempt.user_agent[:256], self.now())

    async def login_history(self, member_id: int, limit: int = 50) -> list[dict[str, Any]]:
        rows = await self.store.fetch(
            "SELECT ok, reason, ip, user_agent, created_at FROM login_history WHERE member_id = ? ORDER BY id DESC LIMIT ?",
            member_id, min(max(limit, 1), HISTORY_MAX))
        return [dict(r) for r in rows]

    # -- passwords: change and reset --------------------------------------------------------------------
    async def change_password(self, member_id: int, current: str, new: str, confirmation: str, lang: str = "en") -> None:
        """Change a password knowing the current one; the member is told by mail (a thief with a
        stolen session cannot change it silently)."""
        member = await self.ex.member(member_id)
        errors: list[FormError] = []
        if not current:
            errors.append(FormError("current_password", N_("Please enter your current password")))
        elif len(current) > PASSWORD_MAX or not await self._verify(member["password_hash"], current):
            errors.append(FormError("current_password", N_("The current password is wrong")))
        try:
            check_new_password(new, member["email"])
            if current and new == current:
                raise FormError("password", N_("The new password must differ from the current one"))
            check_confirmation(new, confirmation)
        except FormError as e:
            errors.append(e)
        if errors:
            raise FormErrors(errors)
        await self.store.execute("UPDATE members SET password_hash = ? WHERE id = ?", await self.hash_password(new), member_id)
        await self._mail(member["email"], lang, N_("Your {site} password was changed"), N_(
            "Hello,\n\nThe password of your {site} account was just changed. If it was not you, reset it "
            "at once here and check your API keys:\n\n{link}\n"), link=self.link("/password/forgot"))

    async def request_reset(self, email: str, lang: str = "en") -> None:
        """Mail a reset link if the address has an account; the answer is the same when it has none."""
        email = check_email(email)
        row = await self.store.fetchrow("SELECT id, disabled FROM members WHERE email = ?", email)
        if row is None or row["disabled"]:
            return
        token = await self._issue(int(row["id"]), RESET)
        if token is None:
            return
        await self._mail(email, lang, N_("Reset your {site} password"), N_(
            "Hello,\n\nSomeone, hopefully you, asked to reset the password of your {site} account. Open this "
            "link to choose a new one:\n\n{link}\n\nThe link is valid for 30 minutes and can be used once. "
            "If you did not ask for it, ignore this mail: your password stays as it is.\n"),
            link=self.link(f"/password/reset/{token}"))

    async def reset_password(self, token: str, new: str, confirmation: str) -> int:
        """Set a new password with a reset link; it also activates the account (the link proves the
        address). The new password is checked before the token is used, so a typo does not burn it."""
        member_id = await self.check_token(token, RESET)
        member = await self.ex.member(member_id)
        errors: list[FormError] = []
        try:
            check_new_password(new, member["email"])
            check_confirmation(new, confirmation)
        except FormError as e:
            errors.append(e)
        if errors:
            raise FormErrors(errors)
        hashed = await self.hash_password(new)
        async with self.store.transaction() as tx:
            consumed = await self._consume(tx, token, RESET)
            await tx.execute("UPDATE members SET password_hash = ?, activated = 1 WHERE id = ?", hashed, consumed)
        return member_id
