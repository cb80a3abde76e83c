"""The security facade of a node: which second factors a member has, when one is asked, checking it.

`Security` is what the pages' `SECOND_FACTOR` hook (node/web/session.py) and the funds facade's
withdrawal policies (node/wallet/funds.py `WithdrawPolicies`: `second_factor`, `address_book`) are
made of, by the composition root (node/bootstrap.py). One `verify` serves every
protected action, so the rules are the same everywhere: a code of the authenticator app (TOTP), a
code sent by SMS, or a recovery code; wrong codes counted per member and locked out after
`otp_max_failures`; every failure and every use of a recovery code in the audit log.

Protected actions (`ACTIONS`): log in, creating an API key, withdrawing, adding a withdrawal
address, changing two-factor settings, unlocking the admin area. A member without any second factor
is asked for none, except to unlock the admin area (staff must have 2FA, unless `[security]
admin_requires_2fa = false`) and, when `[security] withdraw_requires_2fa` is on, to withdraw.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from node.errors import N_
from node.secrets_box import SecretBox
from node.security import audit
from node.security.addresses import Addresses
from node.security.errors import SecondFactorFailed, SecondFactorLocked
from node.security.sms import AUTH, Sms, SmsGateway, gateway_from, mask
from node.security.throttle import OTP, Rule, Throttle
from node.security.totp import Check, Totp

if TYPE_CHECKING:
    from node.exchange import Exchange
    from node.members import Members

log = logging.getLogger(__name__)

LOGIN = "login"
API_KEY_CREATE = "api_key.create"
WITHDRAW = "withdraw"
ADDRESS_ADD = "address.add"
CHANGE_2FA = "2fa.change"
ADMIN_UNLOCK = "admin.unlock"
ACTIONS = (LOGIN, API_KEY_CREATE, WITHDRAW, ADDRESS_ADD, CHANGE_2FA, ADMIN_UNLOCK)
ALIASES = {"admin": ADMIN_UNLOCK}  # the admin area (node/web/pages/admin) asks for "admin"
SWEEP_EVERY_S = 5.0


@dataclass(frozen=True)
class Methods:
    totp: bool
    sms: bool
    phone: str | None  # masked
    recovery_left: int

    @property
    def any(self) -> bool:
        return self.totp or self.sms


class Security:
    def __init__(self, ex: Exchange, members: Members | None, master_key: bytes, gateway: SmsGateway | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.ex = ex
        self.store = ex.store
        self.conf = ex.config.security
        self.clock = clock
        pepper = hashlib.sha256(b"pyexchange:security-codes:" + master_key).digest()
        self.totp = Totp(ex.store, SecretBox(master_key, "totp-secret"), pepper, clock)
        self.sms = Sms(ex.store, gateway or gateway_from(ex.config.sms), ex.config.sms, pepper, ex.config.name, clock)
        self.throttle = Throttle(ex.store, clock)
        self.device_key = hashlib.sha256(b"pyexchange:device-cookie:" + master_key).digest()
        self.addresses = Addresses(ex, self.conf, members, clock)
        self._sweeper: asyncio.Task[None] | None = None

    # -- rules ----------------------------------------------------------------------------------------
    @property
    def otp_rule(self) -> Rule:
        c = self.conf
        return Rule(c.otp_max_failures, c.otp_lockout_s * 1000, c.otp_lockout_s * 1000)

    @property
    def login_rule(self) -> Rule:
        """Per account and client (node/security/throttle.py): growing delays, never a lock."""
        c = self.conf
        return Rule(c.login_max_failures, c.login_window_s * 1000, c.lockout_s * 1000, c.login_delay_s * 1000)

    @property
    def login_account_rule(self) -> Rule:
        """Per account, from clients without its device cookie."""
        c = self.conf
        return Rule(c.login_account_max_failures, c.login_window_s * 1000, c.lockout_s * 1000, c.login_delay_s * 1000)

    @property
    def login_ip_rule(self) -> Rule:
        """Per IP address, for clients without the device cookie of the account they try."""
        c = self.conf
        return Rule(c.login_ip_max_failures, c.login_window_s * 1000, c.lockout_s * 1000, c.login_delay_s * 1000)

    # -- the funds facade's policies (node/wallet/funds.py `WithdrawPolicies`, given by node/bootstrap.py)
    async def withdraw_code(self, member_id: int, otp: str | None) -> None:
        if await self.required(member_id, WITHDRAW):
            await self.verify(member_id, WITHDRAW, otp or "")

    # -- second factor ------------------------------------------------------------------------------
    async def methods(self, member_id: int) -> Methods:
        row = await self.store.fetchrow(
            "SELECT (SELECT enabled_at FROM security_totp WHERE member_id = ?) AS totp, "
            "(SELECT phone FROM security_phones WHERE member_id = ? AND verified_at IS NOT NULL) AS phone, "
            "(SELECT COUNT(*) FROM security_recovery_codes WHERE member_id = ? AND used_at IS NULL) AS left_codes",
            member_id, member_id, member_id)
        phone = row["phone"] if row is not None else None
        return Methods(totp=row is not None and row["totp"] is not None, sms=phone is not None,
                       phone=mask(str(phone)) if phone else None, recovery_left=int(row["left_codes"]) if row else 0)

    async def required(self, member_id: int, action: str) -> bool:
        """Whether `action` needs a code from this member (the pages show the field when it does)."""
        action = ALIASES.get(action, action)
        if (await self.methods(member_id)).any:
            return True
        if action == ADMIN_UNLOCK:
            return self.conf.admin_requires_2fa
        return action == WITHDRAW and self.conf.withdraw_requires_2fa

    async def verify(self, member_id: int, action: str, code: str) -> None:
        """Accept the member's code for `action`, or raise SecondFactorFailed (the field's message)
        having changed nothing but the failure count. A good code is spent: never accepted again."""
        action = ALIASES.get(action, action)
        key = str(member_id)
        until = await self.throttle.locked_until(OTP, key)
        if until is not None:
            raise self._locked(until)
        m = await self.methods(member_id)
        if not m.any:
            if await self.required(member_id, action):
                raise SecondFactorFailed(N_("Set up two-factor authentication first (Account and security → Security)"))
            return
        code = (code or "").strip()
        if not code:
            raise SecondFactorFailed(N_("Please enter the two-factor code"))
        how, replayed = "", False
        digits = code.replace(" ", "")
        if len(code) <= 32 and len(digits) == 6 and digits.isascii() and digits.isdigit():
            if m.totp:
                result = await self.totp.check(member_id, digits)
                how, replayed = ("totp" if result is Check.OK else ""), result is Check.REPLAYED
            if not how and m.sms and await self.sms.check(member_id, AUTH, digits) is not None:
                how = "sms"
        elif len(code) <= 32 and m.totp and await self.totp.use_recovery_code(member_id, code):
            how = "recovery"
        if how:
            await self.throttle.clear(OTP, key)
            if how == "recovery":
                await audit.record(self.store, audit.RECOVERY_USED, member_id,
                                   {"action": action, "left": await self.totp.recovery_left(member_id)})
            return
        locked = await self.throttle.failure(OTP, key, self.otp_rule)
        await audit.record(self.store, audit.OTP_FAILED, member_id, {"action": action, "replayed": replayed}, ok=False)
        if locked is not None:
            await audit.record(self.store, audit.OTP_LOCKED, member_id, {"action": action, "until": locked}, ok=False)
            raise self._locked(locked)
        if replayed:
            raise SecondFactorFailed(N_("This code was already used. Please wait for the next code of your app."))
        raise SecondFactorFailed(N_("The two-factor code is wrong"))

    def _locked(self, until: int) -> SecondFactorLocked:
        at = dt.datetime.fromtimestamp(until / 1000, dt.UTC).strftime("%H:%M")
        wait = max(1, (until - int(self.clock() * 1000) + 999) // 1000)
        return SecondFactorLocked(N_("Too many wrong codes. For your safety two-factor checks are locked until {time} "
                                     "UTC; please try again then."), wait, time=at)

    # -- admin ---------------------------------------------------------------------------------------------
    async def reset_2fa(self, member_id: int, admin_id: int | None, admin: str, reason: str) -> bool:
        """Switch off every second factor of a member (who lost their phone and recovery codes), for
        the admin area: audited with the admin and the reason. False when there was none."""
        reason = reason.strip()
        if not reason:
            raise SecondFactorFailed(N_("Please give a reason"), field="reason")
        had_totp = await self.totp.disable(member_id)
        had_sms = await self.sms.disable(member_id)
        await audit.record(self.store, audit.TWO_FA_RESET, member_id, {"totp": had_totp, "sms": had_sms,
                                                                     "reason": reason[:500]},
                           actor_id=admin_id, actor=admin)
        return had_totp or had_sms

    # -- life cycle -----------------------------------------------------------------------------------------
    async def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="security-sweeper")

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            try:
                await self._sweeper
            except asyncio.CancelledError:
                pass
        await self.sms.gateway.close()

    async def _sweep_forever(self) -> None:
        """Release confirmed withdrawals whose hold is over, cancel unconfirmed ones (every node does
        this; the conditional updates make it safe)."""
        while True:
            await asyncio.sleep(SWEEP_EVERY_S)
            try:
                await self.addresses.sweep()
            except Exception:
                log.exception("withdrawal hold sweep failed; retrying")
