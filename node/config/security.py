"""cluster.toml's `[security]` and `[sms]` tables, checked at start-up like every other table.

Both are optional: without them the defaults below apply, and they are the safe ones (a 24-hour
hold on new withdrawal addresses, an e-mail confirmation for every withdrawal, lockout after five
failed log ins). A wrong value stops start-up with a message naming the field. The daily withdrawal
limits per KYC level live in `[admin.withdraw_limits]` (node/config/admin.py: the KYC levels are the
admin area's); node/security/addresses.py enforces them.

```toml
[security]
login_max_failures = 5          # wrong passwords per account and client in the window before delays start
login_account_max_failures = 20 # the same per account, from clients without its device cookie
login_ip_max_failures = 50      # the same per IP address, for clients without the account's device cookie
login_delay_s = 15              # the first delay; doubled at each further failure
login_window_s = 900
lockout_s = 900                 # the longest delay of a log in; how long a second-factor lock lasts
otp_max_failures = 5            # wrong two-factor codes per member in the window before 2FA is locked
otp_lockout_s = 900
form_limit = 20                 # submissions of one public form (sign-up, log in, …) per IP per window
form_window_s = 600
withdraw_hold_hours = 24        # a new withdrawal address can be paid to after this long
withdraw_confirmation = true    # each withdrawal waits for a click on the link mailed to the member
withdraw_confirm_hours = 24     # an unconfirmed withdrawal is cancelled (funds back) after this long
withdraw_requires_2fa = false   # true: members must set up 2FA before they can withdraw at all
admin_unlock_minutes = 15       # the admin area stays unlocked this long after the last admin request
admin_requires_2fa = true       # staff unlock the admin area with a second factor only (false: password too)

[sms]
provider = "twilio"             # "log" (the default: the code is written to the log) or "twilio"
account_sid = "AC…"
auth_token_env = "TWILIO_AUTH_TOKEN"   # the NAME of the variable holding the token, never the token
from = "+15005550006"           # or messaging_service_sid = "MG…"
# base_url = "https://api.twilio.com"
```
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from node.config.read import ConfigError, _get, _int_range, known_keys

SMS_PROVIDERS = ("log", "twilio")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}")


@dataclass(frozen=True)
class SmsConf:
    """How SMS codes go out: `log` (development) or a Twilio-shaped HTTP API."""

    provider: str = "log"
    account_sid: str = ""
    auth_token_env: str = "TWILIO_AUTH_TOKEN"
    sender: str = ""  # `from` in the file: the sending number in E.164
    messaging_service_sid: str = ""
    base_url: str = "https://api.twilio.com"
    timeout: float = 10.0
    code_ttl_s: int = 300  # an SMS code is valid this long
    resend_interval_s: int = 60  # at most one code per member in this interval
    max_per_hour: int = 6  # and at most this many per member per hour


@dataclass(frozen=True)
class SecurityConf:
    """Throttling, lockouts and withdrawal protection; times in seconds, hours or minutes as named."""

    login_max_failures: int = 5
    login_account_max_failures: int = 20
    login_ip_max_failures: int = 50
    login_delay_s: int = 15
    login_window_s: int = 900
    lockout_s: int = 900
    otp_max_failures: int = 5
    otp_lockout_s: int = 900
    form_limit: int = 20
    form_window_s: int = 600
    withdraw_hold_hours: int = 24
    withdraw_confirmation: bool = True
    withdraw_confirm_hours: int = 24
    withdraw_requires_2fa: bool = False
    admin_unlock_minutes: int = 15
    admin_requires_2fa: bool = True


def parse_security(data: dict[str, Any]) -> SecurityConf:
    t = _get(data, "security", "", dict, {})
    d = SecurityConf()
    known_keys(t, "security", SecurityConf.__dataclass_fields__)

    def num(key: str, lo: int, hi: int) -> int:
        return _int_range(t, key, "security", lo, hi, getattr(d, key))

    return SecurityConf(
        login_max_failures=num("login_max_failures", 1, 1000),
        login_account_max_failures=num("login_account_max_failures", 1, 100_000),
        login_ip_max_failures=num("login_ip_max_failures", 1, 100_000),
        login_delay_s=num("login_delay_s", 1, 86_400),
        login_window_s=num("login_window_s", 10, 86_400),
        lockout_s=num("lockout_s", 10, 7 * 86_400),
        otp_max_failures=num("otp_max_failures", 1, 1000),
        otp_lockout_s=num("otp_lockout_s", 10, 7 * 86_400),
        form_limit=num("form_limit", 1, 100_000),
        form_window_s=num("form_window_s", 10, 86_400),
        withdraw_hold_hours=num("withdraw_hold_hours", 0, 24 * 90),
        withdraw_confirmation=_get(t, "withdraw_confirmation", "security", bool, d.withdraw_confirmation),
        withdraw_confirm_hours=num("withdraw_confirm_hours", 1, 24 * 30),
        withdraw_requires_2fa=_get(t, "withdraw_requires_2fa", "security", bool, d.withdraw_requires_2fa),
        admin_unlock_minutes=num("admin_unlock_minutes", 1, 24 * 60),
        admin_requires_2fa=_get(t, "admin_requires_2fa", "security", bool, d.admin_requires_2fa),
    )


def parse_sms(data: dict[str, Any]) -> SmsConf:
    t = _get(data, "sms", "", dict, {})
    d = SmsConf()
    known_keys(t, "sms", ("provider", "account_sid", "auth_token_env", "from", "messaging_service_sid", "base_url",
                      "timeout_ms", "code_ttl_s", "resend_interval_s", "max_per_hour"))
    provider = _get(t, "provider", "sms", str, d.provider)
    if provider not in SMS_PROVIDERS:
        raise ConfigError(f"sms.provider: must be one of {', '.join(SMS_PROVIDERS)}, got {provider!r}")
    conf = SmsConf(
        provider=provider,
        account_sid=_get(t, "account_sid", "sms", str, ""),
        auth_token_env=_get(t, "auth_token_env", "sms", str, d.auth_token_env),
        sender=_get(t, "from", "sms", str, ""),
        messaging_service_sid=_get(t, "messaging_service_sid", "sms", str, ""),
        base_url=_get(t, "base_url", "sms", str, d.base_url).rstrip("/"),
        timeout=float(_int_range(t, "timeout_ms", "sms", 100, 120_000, 10_000)) / 1000,
        code_ttl_s=_int_range(t, "code_ttl_s", "sms", 60, 1800, d.code_ttl_s),
        resend_interval_s=_int_range(t, "resend_interval_s", "sms", 10, 3600, d.resend_interval_s),
        max_per_hour=_int_range(t, "max_per_hour", "sms", 1, 100, d.max_per_hour),
    )
    if not _ENV_NAME.fullmatch(conf.auth_token_env):
        raise ConfigError("sms.auth_token_env: the name of an environment variable (the token itself never goes here)")
    if not conf.base_url.startswith(("https://", "http://")):
        raise ConfigError("sms.base_url: must start with https:// (or http:// for a local stand-in)")
    if provider == "twilio":
        if not re.fullmatch(r"AC[0-9A-Za-z]{8,64}", conf.account_sid):
            raise ConfigError("sms.account_sid: the account SID (AC followed by letters and digits) is needed")
        if not conf.sender and not conf.messaging_service_sid:
            raise ConfigError("sms.from: the sending number (E.164, like +15005550006) or messaging_service_sid is needed")
        if conf.sender and not re.fullmatch(r"\+[1-9][0-9]{6,14}", conf.sender):
            raise ConfigError(f"sms.from: {conf.sender!r} is not a phone number in E.164 form (+ and 7 to 15 digits)")
    return conf


def default_security() -> SecurityConf:
    return SecurityConf()


def default_sms() -> SmsConf:
    return SmsConf()
