"""Strict conversion between decimal strings at the edges and integers inside.

Money never touches a float: a decimal string is split into digits and checked by hand, so
`1e3`, `NaN`, `-1`, `0x10`, ` 1` and `1.123456789` (too precise) are refused instead of guessed.
"""

from __future__ import annotations

from node.errors import InvalidParameter

MAX_DIGITS = 30
FEE_DECIMALS = 8  # fee rates are integers in units of 1e-8 ("0.001" -> 100000)
FEE_SCALE: int = 10**FEE_DECIMALS


class DecimalRefused(ValueError):
    """Why `decimal_units` refused a string, for each edge to word in its own way (the API in English
    with the field name, the pages translated): `kind` is one of the constants below."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


NOT_DECIMAL = "not_decimal"
TOO_LONG = "too_long"
TOO_PRECISE = "too_precise"
ZERO = "zero"
TOO_LARGE = "too_large"
MAX_UNITS = 2**62  # below BIGINT's limit with room for a sum of two


def decimal_units(text: str, decimals: int, *, allow_zero: bool = False) -> int:
    """The one decimal parser: a plain positive decimal string into integer units of 10**-decimals.

    Refuses rather than rounds: a bot must never trade an amount it did not ask for.
    """
    whole, dot, frac = text.partition(".")
    # `[0-9]+(\.[0-9]+)?`, checked without a regex (this runs for every price and volume): ASCII
    # digits only (str.isdigit alone would take "١٢٣" or "²"), and a fraction only after a point
    if not (text.isascii() and whole.isdigit() and (frac.isdigit() if dot else True)):
        raise DecimalRefused(NOT_DECIMAL)
    if len(text) > MAX_DIGITS:
        raise DecimalRefused(TOO_LONG)
    stripped = frac.rstrip("0")
    if len(stripped) > decimals:
        raise DecimalRefused(TOO_PRECISE)
    units: int = int(whole) * 10**decimals + (int(stripped.ljust(decimals, "0")) if decimals else 0)
    if units == 0 and not allow_zero:
        raise DecimalRefused(ZERO)
    if units >= MAX_UNITS:
        raise DecimalRefused(TOO_LARGE)
    return units


def parse_units(
    text: object,
    decimals: int,
    field: str,
    *,
    allow_zero: bool = False,
) -> int:
    """`decimal_units` for the API and the configuration: a string (or an int) exactly as sent, the
    error naming the field."""
    if isinstance(text, bool) or not isinstance(text, (str, int)):
        raise InvalidParameter(f"{field} must be a decimal string", field)
    s = str(text)
    try:
        return decimal_units(s, decimals, allow_zero=allow_zero)
    except DecimalRefused as e:
        message = {
            TOO_PRECISE: f"{field} has too many decimal places (at most {decimals})",
            ZERO: f"{field} must be greater than zero",
            TOO_LARGE: f"{field} is too large",
        }.get(e.kind, f"{field} must be a positive decimal number, got {s[:40]!r}")
        raise InvalidParameter(message, field) from None


def format_units(units: int, decimals: int, *, min_places: int = 1) -> str:
    """The one unit formatter: units of 10**-decimals as a decimal string (never an exponent), trailing
    zeros dropped down to `min_places` fractional digits. The default 1 is Peatio's API style
    ("3100.0"); `format_plain` keeps every digit so that page columns line up; 0 is the liability
    proof's canonical form ("3100", node/solvency/maxwell.py), which is hashed and must not change."""
    sign = "-" if units < 0 else ""
    whole, frac = divmod(-units if sign else units, _POW10[decimals] if decimals < len(_POW10) else 10**decimals)
    if not frac:  # a whole number (every zero amount): no digits to strip
        return f"{sign}{whole}.{'0' * min_places}" if min_places else f"{sign}{whole}"
    digits = str(frac).rjust(decimals, "0").rstrip("0")
    if len(digits) < min_places:
        digits = digits.ljust(min_places, "0")
    return f"{sign}{whole}.{digits}"


_POW10 = tuple(10**i for i in range(40))  # format_units runs several times per order answered


def format_plain(units: int, decimals: int) -> str:
    """Fixed number of decimals, for pages where columns must line up."""
    return format_units(units, decimals, min_places=decimals)
