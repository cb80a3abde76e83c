"""Decimal strings at the edges, integers inside (node.money).

parse_units refuses anything that is not a plain positive decimal with at most `decimals` places,
rather than rounding or guessing; format_units writes Peatio's style ("3100.0").
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.errors import FormError, InvalidParameter
from node.money import (
    NOT_DECIMAL,
    TOO_LARGE,
    TOO_LONG,
    TOO_PRECISE,
    ZERO,
    DecimalRefused,
    decimal_units,
    format_plain,
    format_units,
    parse_units,
)
from node.web.forms import parse_amount

# -- parse_units: what is accepted ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "decimals", "units"),
    [
        ("1", 8, 100_000_000),
        ("0.00000001", 8, 1),
        ("12.13", 2, 1213),
        ("3100", 2, 310_000),
        ("3100.0", 2, 310_000),
        ("007", 0, 7),  # leading zeros are harmless
        ("1.10", 1, 11),  # trailing zeros do not count as decimals
        ("1.000000000000", 2, 100),
        ("5", 0, 5),
        ("5.0", 0, 5),
        ("0.5", 1, 5),
        ("4611686018427387903", 0, 2**62 - 1),  # the largest amount
    ],
)
def test_parse_valid(text: str, decimals: int, units: int) -> None:
    assert parse_units(text, decimals, "volume") == units


def test_plain_int_is_accepted() -> None:
    """Integers (e.g. from JSON bodies) are whole amounts."""
    assert parse_units(3, 2, "price") == 300


def test_zero_only_when_allowed() -> None:
    assert parse_units("0", 8, "fee", allow_zero=True) == 0
    assert parse_units("0.000", 8, "fee", allow_zero=True) == 0
    for zero in ("0", "0.0", "0.00000000", "000"):
        with pytest.raises(InvalidParameter, match="volume must be greater than zero"):
            parse_units(zero, 8, "volume")


# -- parse_units: what is refused -----------------------------------------------------------------

NOT_DECIMALS = [
    "",
    " 1",
    "1 ",
    "1\n",
    "1e3",
    "1E3",
    "NaN",
    "nan",
    "inf",
    "Infinity",
    "-1",
    "-0",
    "+1",
    "0x10",
    "0b1",
    "1_000",
    "1.",
    ".5",
    "1,5",
    "1.2.3",
    "１",  # full-width digit one: int() would accept it
    "١",  # Arabic-Indic digit one
    "1.５",
    "²",
    "abc",
]


@pytest.mark.parametrize("text", NOT_DECIMALS)
def test_refuses_anything_but_plain_decimals(text: str) -> None:
    with pytest.raises(InvalidParameter, match="price must be a positive decimal number") as info:
        parse_units(text, 8, "price")
    assert info.value.code == 1001
    assert info.value.status == 400
    assert info.value.field == "price"


@pytest.mark.parametrize(
    ("text", "decimals"),
    [("1.123456789", 8), ("0.001", 2), ("1.5", 0), ("1.11", 1), ("0.0000000000000000001", 18)],
)
def test_refuses_too_many_decimals(text: str, decimals: int) -> None:
    with pytest.raises(
        InvalidParameter, match=rf"volume has too many decimal places \(at most {decimals}\)"
    ) as info:
        parse_units(text, decimals, "volume")
    assert info.value.field == "volume"


@pytest.mark.parametrize(
    "text",
    [
        "4611686018427387904",  # 2**62 units
        "99999999999999999999",
        "1" + "0" * 29,  # 30 digits: within the length limit, still too large
        "1" + "0" * 30,  # over the length limit
        "9" * 1000,
    ],
)
def test_refuses_huge_amounts(text: str) -> None:
    with pytest.raises(InvalidParameter) as info:
        parse_units(text, 0, "amount")
    assert info.value.code == 1001
    assert info.value.field == "amount"


def test_refuses_amounts_that_overflow_only_once_scaled() -> None:
    """10 BTC is fine; 10**11 BTC in satoshis is not."""
    assert parse_units("10", 8, "amount") == 10**9
    with pytest.raises(InvalidParameter, match="amount is too large"):
        parse_units("100000000000", 8, "amount")


def test_huge_input_is_not_echoed_whole() -> None:
    with pytest.raises(InvalidParameter) as info:
        parse_units("x" * 10_000, 8, "price")
    assert len(info.value.message) < 100


@pytest.mark.parametrize("value", [1.5, 1.0, True, False, None, b"1", ["1"], {"v": "1"}], ids=repr)
def test_refuses_non_strings(value: object) -> None:
    """A float has already lost precision, and a boolean is not an amount."""
    with pytest.raises(InvalidParameter, match="^price must be a decimal string$") as info:
        parse_units(value, 2, "price")
    assert info.value.code == 1001
    assert info.value.field == "price"


def test_refuses_negative_int() -> None:
    with pytest.raises(InvalidParameter) as info:
        parse_units(-1, 2, "price")
    assert info.value.field == "price"


def test_error_answer_is_peatio_shaped() -> None:
    with pytest.raises(InvalidParameter) as info:
        parse_units("1e3", 2, "price")
    assert info.value.to_dict() == {
        "error": {"code": 1001, "message": "price must be a positive decimal number, got '1e3'"}
    }


# -- format_units: Peatio's style -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("units", "decimals", "text"),
    [
        (310_000, 2, "3100.0"),
        (0, 8, "0.0"),
        (1213, 2, "12.13"),
        (5, 0, "5.0"),
        (0, 0, "0.0"),
        (1, 8, "0.00000001"),
        (100_000_000, 8, "1.0"),
        (123_450_000, 8, "1.2345"),
        (-1213, 2, "-12.13"),
        (-5, 8, "-0.00000005"),
    ],
)
def test_format_units(units: int, decimals: int, text: str) -> None:
    assert format_units(units, decimals) == text


@pytest.mark.parametrize(
    ("units", "decimals", "text"),
    [(310_000, 2, "3100.00"), (0, 8, "0.00000000"), (5, 0, "5"), (-1, 2, "-0.01")],
)
def test_format_plain_keeps_columns_aligned(units: int, decimals: int, text: str) -> None:
    assert format_plain(units, decimals) == text


@pytest.mark.parametrize(
    ("units", "decimals", "text"),
    [(0, 8, "0"), (1_000_000, 2, "10000"), (1213, 2, "12.13"), (120, 2, "1.2"), (7, 0, "7")],
)
def test_format_units_without_a_point_is_the_liability_proofs_form(units: int, decimals: int, text: str) -> None:
    assert format_units(units, decimals, min_places=0) == text


@pytest.mark.parametrize(
    ("text", "kind"),
    [("1e3", NOT_DECIMAL), (" 1", NOT_DECIMAL), ("0" * 31, TOO_LONG), ("1.001", TOO_PRECISE), ("0.00", ZERO),
     ("46116860184.27387904", TOO_LARGE)],
)
def test_the_one_parser_says_why_it_refuses(text: str, kind: str) -> None:
    with pytest.raises(DecimalRefused) as e:
        decimal_units(text, 8 if kind == TOO_LARGE else 2)
    assert e.value.kind == kind


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "Please enter a number"), ("1" * 31, "Too long: at most {n} characters"),
     ("1.5x", "Enter a positive number like 12.5 (digits and one dot)"), ("1.5", "Whole numbers only here"),
     ("0", "Must be greater than zero"), ("9" * 19, "This number is too large")],
)
def test_the_pages_word_the_same_refusals_for_people(text: str, message: str) -> None:
    with pytest.raises(FormError) as e:
        parse_amount(text, 0, "volume")
    assert e.value.msgid == message


def test_the_pages_forgive_surrounding_spaces_the_api_does_not() -> None:
    assert parse_amount(" 1.5 ", 2, "volume") == 150
    with pytest.raises(InvalidParameter):
        parse_units(" 1.5 ", 2, "volume")


@settings(max_examples=300, deadline=None)
@given(n=st.integers(min_value=1, max_value=2**62 - 1), d=st.integers(min_value=0, max_value=18))
def test_round_trip(n: int, d: int) -> None:
    assert parse_units(format_units(n, d), d, "amount") == n


@settings(max_examples=200, deadline=None)
@given(n=st.integers(min_value=0, max_value=2**62 - 1), d=st.integers(min_value=0, max_value=18))
def test_round_trip_plain(n: int, d: int) -> None:
    assert parse_units(format_plain(n, d), d, "amount", allow_zero=True) == n
