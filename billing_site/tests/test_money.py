"""Tests for the currency table and money helpers (pure Python, no database)."""

from __future__ import annotations

import decimal
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing_site.money import (
    CURRENCY_EXPONENTS,
    CURRENCY_SYMBOLS,
    MAX_UNIT_DECIMALS,
    UnknownCurrency,
    currency_exponent,
    currency_symbol,
    decimal_to_str,
    format_amount,
    is_currency,
    normalize_currency,
    round_half_up,
)

# --------------------------------------------------------------------------------------------------
# Currency table


def test_table_covers_the_active_iso_list() -> None:
    assert len(CURRENCY_EXPONENTS) >= 150
    for code, exponent in CURRENCY_EXPONENTS.items():
        assert len(code) == 3
        assert code == code.lower()
        assert code.isalpha()
        assert exponent in (0, 2, 3, 4)


@pytest.mark.parametrize(
    ("code", "exponent"),
    [
        ("usd", 2),
        ("eur", 2),
        ("gbp", 2),
        ("chf", 2),
        ("inr", 2),
        ("jpy", 0),
        ("krw", 0),
        ("vnd", 0),
        ("clp", 0),
        ("isk", 0),
        ("xaf", 0),
        ("xof", 0),
        ("xpf", 0),
        ("pyg", 0),
        ("ugx", 0),
        ("kwd", 3),
        ("bhd", 3),
        ("jod", 3),
        ("omr", 3),
        ("tnd", 3),
        ("lyd", 3),
        ("iqd", 3),
        ("clf", 4),
        ("uyw", 4),
    ],
)
def test_exponents(code: str, exponent: int) -> None:
    assert CURRENCY_EXPONENTS[code] == exponent
    assert currency_exponent(code) == exponent
    assert currency_exponent(code.upper()) == exponent


@pytest.mark.parametrize("code", ["xau", "xag", "xts", "xxx", "xdr", "hrk", "dem"])
def test_codes_without_a_minor_unit_or_withdrawn_are_absent(code: str) -> None:
    assert code not in CURRENCY_EXPONENTS
    assert not is_currency(code)


def test_every_symbol_belongs_to_a_known_currency() -> None:
    assert set(CURRENCY_SYMBOLS) <= set(CURRENCY_EXPONENTS)
    assert CURRENCY_SYMBOLS["usd"] == "$"
    assert CURRENCY_SYMBOLS["eur"] == "€"
    assert CURRENCY_SYMBOLS["gbp"] == "£"
    assert CURRENCY_SYMBOLS["jpy"] == "¥"


def test_table_is_read_only() -> None:
    with pytest.raises(TypeError):
        CURRENCY_EXPONENTS["abc"] = 2  # type: ignore[index]


def test_max_unit_decimals() -> None:
    assert MAX_UNIT_DECIMALS == 12


@pytest.mark.parametrize(("raw", "expected"), [("usd", "usd"), ("USD", "usd"), ("Jpy", "jpy"), ("kWd", "kwd")])
def test_normalize_currency(raw: str, expected: str) -> None:
    assert normalize_currency(raw) == expected
    assert is_currency(raw)


@pytest.mark.parametrize("raw", ["", "us", "usdd", "xyz", " usd", "usd ", "u$d", None, 840, b"usd"])
def test_normalize_currency_rejects_unknown(raw: object) -> None:
    with pytest.raises(UnknownCurrency):
        normalize_currency(raw)  # type: ignore[arg-type]
    assert not is_currency(raw)


def test_unknown_currency_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="Unknown currency"):
        currency_exponent("zzz")


def test_currency_symbol_fallback() -> None:
    assert currency_symbol("USD") == "$"
    assert currency_symbol("kwd") == "KWD "
    assert currency_symbol("chf") == "CHF "


# --------------------------------------------------------------------------------------------------
# round_half_up


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0),
        ("0.4", 0),
        ("0.5", 1),
        ("1.4999999999999", 1),
        ("1.5", 2),
        ("2.5", 3),
        ("-0.5", -1),
        ("-2.5", -3),
        ("-2.4", -2),
        ("-0.4", 0),
        ("1000.000000000001", 1000),
        ("999.5", 1000),
        ("1E+3", 1000),
        ("123456789012345678901234567890123456789.5", 123456789012345678901234567890123456790),
    ],
)
def test_round_half_up(value: str, expected: int) -> None:
    result = round_half_up(Decimal(value))
    assert result == expected
    assert type(result) is int


def test_round_half_up_accepts_int() -> None:
    assert round_half_up(7) == 7  # type: ignore[arg-type]


def test_round_half_up_ignores_the_callers_context() -> None:
    # A caller with a tiny precision and Inexact trapped must neither change nor break the rounding.
    with decimal.localcontext() as ctx:
        ctx.prec = 3
        ctx.rounding = decimal.ROUND_DOWN
        ctx.traps[decimal.Inexact] = True
        assert round_half_up(Decimal("123456.5")) == 123457


@pytest.mark.parametrize("value", [0.5, True, "1", None])
def test_round_half_up_refuses_non_decimals(value: object) -> None:
    with pytest.raises(TypeError):
        round_half_up(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "sNaN"])
def test_round_half_up_refuses_non_finite(value: str) -> None:
    with pytest.raises(ValueError, match="finite"):
        round_half_up(Decimal(value))


@given(st.decimals(allow_nan=False, allow_infinity=False, min_value=-(10**20), max_value=10**20))
def test_round_half_up_matches_exact_fraction_rounding(value: Decimal) -> None:
    exact = Fraction(value)
    magnitude = abs(exact)
    # Half away from zero, computed on rationals so it shares no code with the Decimal version.
    rounded = int(magnitude + Fraction(1, 2))  # int() floors a non-negative Fraction
    expected = rounded if exact >= 0 else -rounded
    assert round_half_up(value) == expected


@given(st.decimals(allow_nan=False, allow_infinity=False, min_value=0, max_value=10**20))
def test_round_half_up_is_symmetric(value: Decimal) -> None:
    assert round_half_up(-value) == -round_half_up(value)


# --------------------------------------------------------------------------------------------------
# decimal_to_str


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Decimal("0.5"), "0.5"),
        (Decimal("0.500"), "0.5"),
        (Decimal("1000"), "1000"),
        (Decimal("1E+3"), "1000"),
        (Decimal("5E-13"), "0.0000000000005"),
        (Decimal("-0"), "0"),
        (Decimal("0.000"), "0"),
        (Decimal("-1.50"), "-1.5"),
        (12, "12"),
        (
            Decimal("123456789012345678901234567890.000000000001"),
            "123456789012345678901234567890.000000000001",
        ),
    ],
)
def test_decimal_to_str(value: Decimal, expected: str) -> None:
    assert decimal_to_str(value) == expected


# --------------------------------------------------------------------------------------------------
# format_amount


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        (1000, "usd", "$10.00"),
        (1000, "USD", "$10.00"),
        (0, "usd", "$0.00"),
        (1, "usd", "$0.01"),
        (-500, "usd", "-$5.00"),
        (123456789, "usd", "$1,234,567.89"),
        (100000000, "eur", "€1,000,000.00"),
        (999, "gbp", "£9.99"),
        (1000, "jpy", "¥1,000"),
        (0, "jpy", "¥0"),
        (-1234567, "jpy", "-¥1,234,567"),
        (1500, "kwd", "KWD 1.500"),
        (1, "kwd", "KWD 0.001"),
        (1234567, "kwd", "KWD 1,234.567"),
        (12345, "clf", "CLF 1.2345"),
        (1000, "chf", "CHF 10.00"),
        (Decimal("0.04"), "usd", "$0.0004"),
        (Decimal("0.0400"), "usd", "$0.0004"),
        (Decimal("1050"), "usd", "$10.50"),
        (Decimal("1000.5"), "usd", "$10.005"),
        (Decimal("1E+3"), "usd", "$10.00"),
        (Decimal("-0"), "usd", "$0.00"),
        (Decimal("-0.04"), "usd", "-$0.0004"),
        (Decimal("0.5"), "jpy", "¥0.5"),
        (Decimal("1500.25"), "kwd", "KWD 1.50025"),
        (Decimal("0.000000000001"), "usd", "$0.00000000000001"),
    ],
)
def test_format_amount(amount: int | Decimal, currency: str, expected: str) -> None:
    assert format_amount(amount, currency) == expected


@pytest.mark.parametrize(
    ("amount", "currency", "min_decimals", "expected"),
    [
        (1000, "usd", 0, "$10"),
        (1050, "usd", 0, "$10.5"),
        (1000, "usd", 4, "$10.0000"),
        (1000, "jpy", 2, "¥1,000.00"),
        (Decimal("0.04"), "usd", 2, "$0.0004"),
    ],
)
def test_format_amount_min_decimals(amount: int | Decimal, currency: str, min_decimals: int, expected: str) -> None:
    assert format_amount(amount, currency, min_decimals=min_decimals) == expected


def test_format_amount_refuses_bad_input() -> None:
    with pytest.raises(UnknownCurrency):
        format_amount(100, "xyz")
    with pytest.raises(TypeError):
        format_amount(10.0, "usd")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        format_amount(True, "usd")
    with pytest.raises(ValueError, match="finite"):
        format_amount(Decimal("NaN"), "usd")
    with pytest.raises(ValueError, match="min_decimals"):
        format_amount(100, "usd", min_decimals=-1)


@given(
    amount=st.one_of(
        st.integers(min_value=-(10**18), max_value=10**18),
        st.decimals(min_value=-(10**12), max_value=10**12, places=12, allow_nan=False, allow_infinity=False),
    ),
    currency=st.sampled_from(sorted(CURRENCY_EXPONENTS)),
)
def test_format_amount_round_trips_to_the_exact_value(amount: int | Decimal, currency: str) -> None:
    text = format_amount(amount, currency)
    symbol = currency_symbol(currency)
    negative = text.startswith("-")
    body = text[1:] if negative else text
    assert body.startswith(symbol)
    number = body[len(symbol) :]
    whole, _, fraction = number.partition(".")
    # Thousands separators are in the right places, and nothing is lost or rounded.
    assert whole == f"{int(whole.replace(',', '')):,}"
    assert len(fraction) >= CURRENCY_EXPONENTS[currency]
    value = Decimal(number.replace(",", "")).scaleb(CURRENCY_EXPONENTS[currency], decimal.Context(prec=100))
    assert (-value if negative else value) == Decimal(amount)
    assert negative == (Decimal(amount) < 0)


class TestRoundFraction:
    @pytest.mark.parametrize(
        ("numerator", "denominator", "expected"),
        [
            (5, 2, 3),
            (-5, 2, -3),
            (7, 3, 2),
            (-7, 3, -2),
            (8, 3, 3),
            (-8, 3, -3),
            (1, 2, 1),
            (-1, 2, -1),
            (0, 5, 0),
            (4, 1, 4),
            (10**30 + 1, 2, 10**30 // 2 + 1),
        ],
    )
    def test_half_away_from_zero(self, numerator, denominator, expected):
        from billing_site.money import round_fraction

        assert round_fraction(Fraction(numerator, denominator)) == expected

    @given(st.integers(-(10**20), 10**20), st.integers(1, 10**9))
    def test_nearest_integer_with_ties_away_from_zero(self, numerator, denominator):
        from billing_site.money import round_fraction

        exact = Fraction(numerator, denominator)
        result = round_fraction(exact)
        distance = abs(Fraction(result) - exact)
        assert distance <= Fraction(1, 2)
        if distance == Fraction(1, 2):
            assert abs(result) > abs(exact)
