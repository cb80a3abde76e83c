"""The `[admin]` table of cluster.toml: admins by configuration and withdrawal limits per KYC level.

    [admin]
    emails = ["boss@example.com"]          # admins from the start (others are granted roles by them)

    [admin.withdraw_limits]                # per verification level: daily limit per currency
    level0 = { btc = "0.1", usd = "1000" } # unverified (or verifying, or rejected)
    level1 = { btc = "10", usd = "50000" } # verified identity

A level that does not name a currency sets no limit for it; without the table nothing is limited, so
that an exchange without KYC keeps working as before. A wrong key stops start-up with its name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from node.config.read import ConfigError, _get, _units, known_keys

if TYPE_CHECKING:
    from node.config import Currency

_LEVEL = re.compile(r"level([0-9])")
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s.]+(\.[^@\s.]+)+")


@dataclass(frozen=True)
class AdminConf:
    """The members who are admins by configuration (by e-mail; they grant finer roles to others in
    the admin area), and the daily withdrawal limits per KYC verification level, as (level,
    ((currency, smallest units), ...)) pairs; a currency a level does not list has no limit at that level."""

    emails: tuple[str, ...] = ()
    withdraw_limits: tuple[tuple[int, tuple[tuple[str, int], ...]], ...] = ()


def parse_admin(data: dict[str, Any], currencies: dict[str, Currency]) -> AdminConf:
    t = _get(data, "admin", "", dict, {})
    known_keys(t, "admin", ("emails", "withdraw_limits"))
    emails: list[str] = []
    for i, e in enumerate(_get(t, "emails", "admin", list, [])):
        if not isinstance(e, str) or not _EMAIL.fullmatch(e.strip().lower()):
            raise ConfigError(f"admin.emails[{i}]: not an e-mail address")
        emails.append(e.strip().lower())
    limits: list[tuple[int, tuple[tuple[str, int], ...]]] = []
    for key, table in _get(t, "withdraw_limits", "admin", dict, {}).items():
        path = f"admin.withdraw_limits.{key}"
        m = _LEVEL.fullmatch(key)
        if m is None:
            raise ConfigError(f"{path}: levels are named level0, level1, … level9")
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: expected a table of currency = \"amount\"")
        per: list[tuple[str, int]] = []
        for code in table:
            if code not in currencies:
                raise ConfigError(f"{path}.{code}: unknown currency")
            per.append((code, _units(table, code, path, currencies[code].precision, "0", True)))
        limits.append((int(m.group(1)), tuple(sorted(per))))
    return AdminConf(emails=tuple(emails), withdraw_limits=tuple(sorted(limits)))
