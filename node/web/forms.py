"""Form handling of the pages: what the member typed, errors next to each field, display formats.

A `Form` keeps every value the member sent (so a page with errors shows them again, passwords
excepted) and one error per field, already translated. Amounts are parsed here with messages made
for people ("at most 4 decimal places") before the core sees them; the core checks again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import segno

from node.config import Currency, Market
from node.errors import ExchangeError, InvalidParameter
from node.money import (
    MAX_DIGITS,
    TOO_LARGE,
    TOO_PRECISE,
    ZERO,
    DecimalRefused,
    decimal_units,
    format_plain,
    format_units,
)
from node.web.i18n import N_, FormError, FormErrors, Translator

MAX_FIELD = 1000  # no text field of ours needs more; longer values are refused, never truncated
GENERAL = ""  # the key of errors that belong to no single field


class Form:
    def __init__(self, data: Mapping[str, Any] | None = None, secret: tuple[str, ...] = ()) -> None:
        self.data: dict[str, str] = {}
        for k, v in (data or {}).items():
            if isinstance(v, str) and k not in secret and k != "csrf_token":
                self.data[k] = v
        self.lists: dict[str, list[str]] = {}
        if data is not None and hasattr(data, "getall"):
            for k in set(data.keys()):
                self.lists[k] = [v for v in data.getall(k) if isinstance(v, str)]
        self.errors: dict[str, str] = {}

    def value(self, name: str, default: str = "") -> str:
        return self.data.get(name, default)

    def values(self, name: str) -> list[str]:
        return self.lists.get(name, [self.data[name]] if name in self.data else [])

    def text(self, name: str, max_len: int, required: bool = False, strip: bool = True) -> str:
        v = self.value(name)
        if strip:
            v = v.strip()
        if len(v) > max_len:
            raise FormError(name, N_("Too long: at most {n} characters"), n=max_len)
        if required and not v:
            raise FormError(name, N_("This field is required"))
        return v

    def add(self, e: ExchangeError, _: Translator) -> None:
        """Put an error next to its field (or at the top of the form when it names none)."""
        if isinstance(e, FormErrors):
            for one in e.errors:
                self.add(one, _)
            return
        field = e.field if isinstance(e, InvalidParameter) and e.field else GENERAL
        self.errors.setdefault(field, _.error(e))

    def error(self, field: str, message: str) -> None:
        self.errors.setdefault(field, message)

    @property
    def ok(self) -> bool:
        return not self.errors


def parse_amount(text: str, decimals: int, field: str) -> int:
    """A positive decimal with at most `decimals` places, as integer units (node/money.py's parser);
    surrounding spaces forgiven, since people paste amounts, and errors made for people."""
    text = text.strip()
    if not text:
        raise FormError(field, N_("Please enter a number"))
    if len(text) > MAX_DIGITS:
        raise FormError(field, N_("Too long: at most {n} characters"), n=MAX_DIGITS)
    try:
        return decimal_units(text, decimals)
    except DecimalRefused as e:
        if e.kind == TOO_PRECISE:
            if decimals == 0:
                raise FormError(field, N_("Whole numbers only here")) from None
            raise FormError(field, N_("At most {n} decimal places"), n=decimals) from None
        if e.kind == ZERO:
            raise FormError(field, N_("Must be greater than zero")) from None
        if e.kind == TOO_LARGE:
            raise FormError(field, N_("This number is too large")) from None
        raise FormError(field, N_("Enter a positive number like 12.5 (digits and one dot)")) from None


# -- display formats ----------------------------------------------------------------------------------
def amount(units: int, cur: Currency) -> str:
    """A currency amount as every page shows it: always `cur.shown` decimals (columns line up and a
    dollar looks the same everywhere), cut toward zero, so a balance is never shown larger than it
    is. The exact values are in the CSV exports and the API."""
    cut = 10 ** (cur.precision - cur.shown)
    q = abs(units) // cut
    return ("-" if units < 0 and q else "") + format_plain(q, cur.shown)


def price(m: Market, ticks: int) -> str:
    return format_plain(ticks, m.price_precision)


def volume(m: Market, lots: int) -> str:
    return format_plain(lots, m.volume_precision)


def fee_percent(rate: int) -> str:
    """A fee rate (units of 1e-8) as a percentage: 100000 → "0.1"."""
    s = format_units(rate * 100, 8)
    return s[:-2] if s.endswith(".0") else s


def utc(ms: int | None) -> str:
    if ms is None:
        return ""
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def iso(ms: int | None) -> str:
    if ms is None:
        return ""
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def qr_data_uri(text: str) -> str:
    """A QR code as an SVG data URI: drawn here, no outside service sees the address."""
    return str(segno.make(text, error="m").svg_data_uri(scale=5, border=2, dark="#0b1118", light="#ffffff"))
