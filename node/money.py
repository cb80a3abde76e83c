"""Strict conversion between decimal strings at the edges and integers inside.

Money never touches a float: a decimal string is split into digits and checked by hand, so
`1e3`, `NaN`, `-1`, `0x10`, ` 1` and `1.123456789` (too precise) are refused instead of guessed.
"""

from __future__ import annotations

import re

from node.errors import InvalidParameter

_DECIMAL = re.compile(r"(?P<int>[0-9]+)(?:\.(?P<frac>[0-9]+))?")
MAX_DIGITS = 30
FEE_DECIMALS = 8  # fee rates are integers in units of 1e-8 ("0.001" -> 100000)
FEE_SCALE: int = 10**FEE_DECIMALS


def parse_units(
    text: object,
    decimals: int,
    field: str,
    *,
    allow_zero: bool = False,
) -> int:
    """Parse a plain positive decimal string into integer units of 10**-decimals.

    Refuses rather than rounds: a bot must never trade an amount it did not ask for.
    """
    if isinstance(text, bool) or not isinstance(text, (str, int)):
        raise InvalidParameter(f"{field} must be a decimal string", field)
    s = str(text)
    m = _DECIMAL.fullmatch(s)
    if m is None or len(s) > MAX_DIGITS:
        raise InvalidParameter(f"{field} must be a positive decimal number, got {s[:40]!r}", field)
    frac = m.group("frac") or ""
    stripped = frac.rstrip("0")
    if len(stripped) > decimals:
        raise InvalidParameter(f"{field} has too many decimal places (at most {decimals})", field)
    units: int = int(m.group("int")) * 10**decimals + (int(stripped.ljust(decimals, "0")) if decimals else 0)
    if units == 0 and not allow_zero:
        raise InvalidParameter(f"{field} must be greater than zero", field)
    if units >= 2**62:
        raise InvalidParameter(f"{field} is too large", field)
    return units


def format_units(units: int, decimals: int) -> str:
    """Peatio's decimal style: at least one fractional digit, trailing zeros dropped ("3100.0")."""
    sign = "-" if units < 0 else ""
    units = abs(units)
    if decimals == 0:
        return f"{sign}{units}.0"
    whole, frac = divmod(units, 10**decimals)
    frac_s = str(frac).rjust(decimals, "0").rstrip("0") or "0"
    return f"{sign}{whole}.{frac_s}"


def format_plain(units: int, decimals: int) -> str:
    """Fixed number of decimals, for pages where columns must line up."""
    sign = "-" if units < 0 else ""
    units = abs(units)
    if decimals == 0:
        return f"{sign}{units}"
    whole, frac = divmod(units, 10**decimals)
    return f"{sign}{whole}.{str(frac).rjust(decimals, '0')}"
