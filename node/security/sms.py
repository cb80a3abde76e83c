"""SMS two-factor: phone numbers in E.164, six-digit codes, and the gateways that send them.

A phone number is parsed and validated with libphonenumber's data (the `phonenumbers` package: a
number must be a real, dialable number of its country) and stored in E.164 (`+447400123456`), the
one form every SMS provider takes. It becomes a second factor only once a code sent to it came back.

A code is six random digits, valid `code_ttl_s` (5 minutes), single use (spent by a conditional
UPDATE), voided by a newer one, and dead after five wrong tries. Only a keyed hash (HMAC with a key
derived from the server key) is stored: a copy of the database does not reveal live codes, and a
million guesses against a hash need that key. Sending is throttled per member (one per
`resend_interval_s`, at most `max_per_hour` an hour), so the page cannot be used to spam a phone or
run up the provider's bill.

Gateways (`SmsGateway`): `LogSmsGateway`, the development default, writes the message to the log;
`TwilioGateway` speaks Twilio's REST API (POST /2010-04-01/Accounts/{sid}/Messages.json, HTTP basic
auth with the account SID and auth token, form fields To/From/Body). Another provider is one class
with `send`. The auth token is read from the environment variable that `[sms] auth_token_env`
names, never from the file; message bodies carry codes, so no gateway ever logs one (the log
gateway being the deliberate development exception).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import secrets
import time
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import quote

import aiohttp
import phonenumbers

from node.config import ConfigError
from node.config.security import SmsConf
from node.errors import N_, FormError
from node.i18n import translator
from node.security.errors import SmsFailed
from node.store import Store

log = logging.getLogger(__name__)

VERIFY = "verify"  # proves the member holds the phone (set-up)
AUTH = "auth"  # a second factor for an action
MAX_TRIES = 5
PHONE_MAX = 32


class SmsError(Exception):
    """The provider could not be reached or refused the message; nothing was sent."""


class SmsGateway(Protocol):
    async def send(self, to: str, body: str) -> None: ...
    async def close(self) -> None: ...


def mask(phone: str) -> str:
    """+447400123456 → +44•••••••23: enough for the member to recognise, too little for anyone else."""
    if len(phone) < 6:
        return "•" * len(phone)
    return phone[:3] + "•" * (len(phone) - 5) + phone[-2:]


def normalise_phone(raw: str, region: str | None = None) -> str:
    """A phone number in E.164, or a FormError on the `phone` field saying what is wrong.

    International form (+ and country code) is expected; `region` (an ISO country code) allows a
    national number for that country."""
    text = raw.strip()
    if not text:
        raise FormError("phone", N_("Please enter your mobile phone number"))
    if len(text) > PHONE_MAX:
        raise FormError("phone", N_("Too long: at most {n} characters"), n=PHONE_MAX)
    if text.startswith("00"):
        text = "+" + text[2:]
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        raise FormError("phone", N_("Enter the number with its country code, like +44 7400 123456")) from None
    if not phonenumbers.is_valid_number(number):
        raise FormError("phone", N_("This is not a valid phone number"))
    kind = phonenumbers.number_type(number)
    if kind not in (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE):
        raise FormError("phone", N_("This number cannot receive text messages: please enter a mobile number"))
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


class LogSmsGateway:
    """Development default: the message goes to the log (so a developer can read the code)."""

    async def send(self, to: str, body: str) -> None:
        log.warning("SMS (no [sms] provider configured, printed instead) to %s: %s", mask(to), body)

    async def close(self) -> None:
        return None


class TwilioGateway:
    """Twilio's Programmable Messaging REST API, or any service with the same shape."""

    def __init__(self, account_sid: str, auth_token: str, sender: str = "", messaging_service_sid: str = "",
                 base_url: str = "https://api.twilio.com", timeout: float = 10.0) -> None:
        self.account_sid = account_sid
        # HTTP basic auth (RFC 7617), spelt out: aiohttp's BasicAuth helper is deprecated in 3.14+
        self._headers = {"Authorization": "Basic " + base64.b64encode(f"{account_sid}:{auth_token}".encode()).decode()}
        self.sender = sender
        self.messaging_service_sid = messaging_service_sid
        self.url = f"{base_url.rstrip('/')}/2010-04-01/Accounts/{quote(account_sid, safe='')}/Messages.json"
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def send(self, to: str, body: str) -> None:
        form = {"To": to, "Body": body}
        if self.messaging_service_sid:
            form["MessagingServiceSid"] = self.messaging_service_sid
        else:
            form["From"] = self.sender
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        try:
            async with self._session.post(self.url, data=form, headers=self._headers) as resp:
                data: Any = await resp.json(content_type=None) if resp.content_length != 0 else None
                if resp.status >= 300:
                    code = data.get("code") if isinstance(data, dict) else None
                    message = data.get("message") if isinstance(data, dict) else None
                    # Neither the body (it holds the code) nor the token is logged; the number masked.
                    log.error("SMS to %s refused by the provider: HTTP %d, code %s: %s", mask(to), resp.status, code,
                              str(message)[:200])
                    raise SmsError(f"the SMS provider refused the message (HTTP {resp.status}, code {code})")
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            log.error("SMS to %s could not be sent: %s", mask(to), type(e).__name__)
            raise SmsError("the SMS provider cannot be reached") from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def gateway_from(conf: SmsConf) -> SmsGateway:
    """The configured gateway; a missing credential stops start-up naming the variable."""
    if conf.provider == "log":
        return LogSmsGateway()
    token = os.environ.get(conf.auth_token_env, "")
    if not token:
        raise ConfigError(f"sms.auth_token_env: the environment variable {conf.auth_token_env} is not set")
    return TwilioGateway(conf.account_sid, token, conf.sender, conf.messaging_service_sid, conf.base_url, conf.timeout)


class Sms:
    """Members' phones and the codes sent to them."""

    def __init__(self, store: Store, gateway: SmsGateway, conf: SmsConf, pepper: bytes, site: str,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.gateway = gateway
        self.conf = conf
        self.pepper = pepper
        self.site = site
        self.clock = clock

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def _hash(self, member_id: int, purpose: str, code: str) -> str:
        return hmac.new(self.pepper, f"sms:{member_id}:{purpose}:{code}".encode(), hashlib.sha256).hexdigest()

    async def phone(self, member_id: int) -> dict[str, Any] | None:
        """{phone, verified} of the member, or None."""
        row = await self.store.fetchrow("SELECT phone, verified_at FROM security_phones WHERE member_id = ?", member_id)
        return None if row is None else {"phone": row["phone"], "verified": row["verified_at"] is not None}

    async def enabled(self, member_id: int) -> bool:
        p = await self.phone(member_id)
        return p is not None and p["verified"]

    async def start(self, member_id: int, raw_phone: str, lang: str = "en") -> str:
        """Take a new (unverified) number and send it a set-up code. An already verified number stays
        the second factor until the new one is verified (`confirm`)."""
        phone = normalise_phone(raw_phone)
        await self._throttle(member_id)
        now = self.now_ms()
        async with self.store.transaction() as tx:
            current = await tx.fetchrow("SELECT verified_at FROM security_phones WHERE member_id = ?", member_id)
            if current is None:
                await tx.execute("INSERT INTO security_phones (member_id, phone, created_at) VALUES (?, ?, ?)",
                                 member_id, phone, now)
            elif current["verified_at"] is None:
                await tx.execute("UPDATE security_phones SET phone = ?, created_at = ? WHERE member_id = ?",
                                 phone, now, member_id)
        await self._send(member_id, phone, VERIFY, lang)
        return phone

    async def pending_phone(self, member_id: int) -> str | None:
        """The number waiting for its set-up code: the newest one a VERIFY code went to."""
        row = await self.store.fetchrow(
            "SELECT phone FROM security_sms_codes WHERE member_id = ? AND purpose = ? ORDER BY id DESC LIMIT 1",
            member_id, VERIFY)
        return None if row is None else str(row["phone"])

    async def confirm(self, member_id: int, code: str) -> str:
        """The set-up code came back: its number is now the member's verified second factor."""
        phone = await self.check(member_id, VERIFY, code)
        if phone is None:
            raise FormError("code", N_("This code is wrong or has expired. Ask for a new one."))
        now = self.now_ms()
        await self.store.execute(
            "INSERT INTO security_phones (member_id, phone, verified_at, created_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (member_id) DO UPDATE SET phone = excluded.phone, verified_at = excluded.verified_at",
            member_id, phone, now, now)
        return phone

    async def disable(self, member_id: int) -> bool:
        async with self.store.transaction() as tx:
            n = await tx.execute("DELETE FROM security_phones WHERE member_id = ?", member_id)
            await tx.execute("UPDATE security_sms_codes SET used_at = ? WHERE member_id = ? AND used_at IS NULL",
                             self.now_ms(), member_id)
        return n > 0

    async def send_auth_code(self, member_id: int, lang: str = "en") -> str:
        """A code for a protected action, to the verified number; returns the masked number."""
        row = await self.store.fetchrow(
            "SELECT phone FROM security_phones WHERE member_id = ? AND verified_at IS NOT NULL", member_id)
        if row is None:
            raise SmsFailed(None, N_("SMS codes are not set up for this account"))
        await self._throttle(member_id)
        await self._send(member_id, str(row["phone"]), AUTH, lang)
        return mask(str(row["phone"]))

    async def _throttle(self, member_id: int) -> None:
        now = self.now_ms()
        rows = await self.store.fetch(
            "SELECT created_at FROM security_sms_codes WHERE member_id = ? AND created_at > ? ORDER BY id DESC",
            member_id, now - 3_600_000)
        if rows and now - int(rows[0]["created_at"]) < self.conf.resend_interval_s * 1000:
            wait = (int(rows[0]["created_at"]) + self.conf.resend_interval_s * 1000 - now + 999) // 1000
            raise SmsFailed(None, N_("A code was sent a moment ago. You can ask for another in {n} seconds."), n=wait)
        if len(rows) >= self.conf.max_per_hour:
            raise SmsFailed(None, N_("Too many codes were sent to this account in the last hour. Please try again later."))

    async def _send(self, member_id: int, phone: str, purpose: str, lang: str) -> None:
        code = f"{secrets.randbelow(10**6):06d}"
        now = self.now_ms()
        async with self.store.transaction() as tx:
            await tx.execute("UPDATE security_sms_codes SET used_at = ? WHERE member_id = ? AND purpose = ? "
                             "AND used_at IS NULL", now, member_id, purpose)
            await tx.execute(
                "INSERT INTO security_sms_codes (member_id, phone, purpose, code_hash, created_at, expires_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                member_id, phone, purpose, self._hash(member_id, purpose, code), now, now + self.conf.code_ttl_s * 1000)
        _ = translator(lang)
        body = _("{code} is your {site} security code. It is valid for {n} minutes. Never tell it to anyone.",
                 code=code, site=self.site, n=self.conf.code_ttl_s // 60)
        try:
            await self.gateway.send(phone, body)
        except SmsError:
            await self.store.execute("UPDATE security_sms_codes SET used_at = ? WHERE member_id = ? AND purpose = ? "
                                     "AND used_at IS NULL", now, member_id, purpose)
            raise SmsFailed(None, N_("The text message could not be sent right now. Please try again in a few minutes.")) from None

    async def check(self, member_id: int, purpose: str, code: str) -> str | None:
        """Spend the member's live code of `purpose` if `code` is it; the number it went to, else None.
        A wrong try counts against the code (dead after five)."""
        code = code.strip().replace(" ", "")
        row = await self.store.fetchrow(
            "SELECT id, phone, code_hash, attempts FROM security_sms_codes WHERE member_id = ? AND purpose = ? "
            "AND used_at IS NULL AND expires_at > ? ORDER BY id DESC LIMIT 1", member_id, purpose, self.now_ms())
        if row is None:
            return None
        good = len(code) == 6 and code.isascii() and code.isdigit() and hmac.compare_digest(
            self._hash(member_id, purpose, code), str(row["code_hash"]))
        if not good:
            await self.store.execute(
                "UPDATE security_sms_codes SET attempts = attempts + 1, used_at = CASE WHEN attempts + 1 >= ? THEN ? "
                "ELSE used_at END WHERE id = ?", MAX_TRIES, self.now_ms(), int(row["id"]))
            return None
        n = await self.store.execute("UPDATE security_sms_codes SET used_at = ? WHERE id = ? AND used_at IS NULL",
                                     self.now_ms(), int(row["id"]))
        return str(row["phone"]) if n == 1 else None
