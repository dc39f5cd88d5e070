"""Tests for the pricing engine (pure Python, no database)."""

from __future__ import annotations

from dataclasses import replace
from decimal import Context, Decimal, localcontext
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from billing_site.money import round_half_up
from catalog.pricing import (
    MAX_MINOR,
    BreakdownEntry,
    FixedAmount,
    PricingError,
    Quote,
    Tier,
    TieredAmount,
    amount_to_dict,
    generate_price_name,
    parse_amount,
    parse_quantity,
    quote,
    quote_to_dict,
    validate_amount,
)

D = Decimal


def fixed(unit: str | int, flat: int = 0, currency: str = "usd") -> FixedAmount:
    return FixedAmount(currency=currency, unit=D(unit), flat=flat)


def tiered(mode: str, *tiers: tuple[int | str | None, str | int, int], currency: str = "usd") -> TieredAmount:
    return TieredAmount(
        currency=currency,
        mode=mode,  # type: ignore[arg-type]
        tiers=tuple(Tier(up_to=None if u is None else D(u), unit=D(p), flat=f) for u, p, f in tiers),
    )


def summary(result: Quote) -> list[tuple[int, str, int]]:
    return [(e.tier, str(e.quantity), e.amount) for e in result.breakdown]


# The example from API.md: first 1000 units at half a cent, the rest at a tenth plus a $5 flat fee.
API_GRADUATED = tiered("graduated", (1000, "0.5", 0), (None, "0.1", 500))
VOLUME = tiered("total", (1000, "0.5", 0), (10000, "0.4", 100), (None, "0.1", 500))
GRADUATED_FLATS = tiered("graduated", (10, "100", 1000), (20, "50", 200), (None, "10", 0))


# Fixed


@pytest.mark.parametrize(
    ("amount", "quantity", "expected"),
    [
        (fixed("1000"), "1", 1000),
        (fixed("1000"), "0", 0),
        (fixed("0", flat=500), "0", 500),  # the flat fee is owed even with no usage
        (fixed("0", flat=500), "7", 500),
        (fixed("1", flat=500), "250", 750),
        (fixed("0.04"), "12", 0),  # 0.48 of a cent
        (fixed("0.04"), "12.5", 1),  # exactly half a cent rounds up
        (fixed("0.04"), "37", 1),  # 1.48
        (fixed("0.04"), "37.5", 2),  # 1.5
        (fixed("0.5"), "1", 1),
        (fixed("0.5"), "3", 2),
        (fixed("0.04"), "1000000000000", 40000000000),
        (fixed("1000"), "0.5", 500),
        (fixed("999"), "0.5", 500),  # 499.5
        (fixed("0.000000000001"), "999999999999999.999999999999", 1000),
        (fixed("1000", currency="jpy"), "3", 3000),
        (fixed("1500", currency="kwd"), "2", 3000),
        (fixed("0.5", currency="kwd"), "3", 2),
    ],
)
def test_fixed_examples(amount: FixedAmount, quantity: str, expected: int) -> None:
    result = quote(amount, D(quantity))
    assert result.amount == expected
    assert result.breakdown == (
        BreakdownEntry(tier=1, quantity=D(quantity), unit=amount.unit, flat=amount.flat, amount=expected),
    )


def test_fixed_huge_exact_product() -> None:
    # 10^15 with 12 decimals times a 9-digit unit with 12 decimals: would lose digits in a 28-digit
    # context, must be exact here.
    unit = D("123456789.123456789012")
    quantity = D("999999999999999.999999999999")
    expected = int(Fraction(unit) * Fraction(quantity) + Fraction(1, 2))
    assert quote(fixed(unit), quantity).amount == expected
    assert expected == 123456789123456789012000  # the exact product is that minus 0.000123...


# Graduated


@pytest.mark.parametrize(
    ("quantity", "expected", "breakdown"),
    [
        ("0", 0, []),
        ("0.5", 0, [(1, "0.5", 0)]),  # 0.25
        ("1", 1, [(1, "1", 1)]),  # 0.5 rounds up
        ("999", 500, [(1, "999", 500)]),  # 499.5
        ("1000", 500, [(1, "1000", 500)]),  # boundary: still the first tier
        ("1001", 1000, [(1, "1000", 500), (2, "1", 500)]),  # 500 + 0.1 + flat 500
        ("1000.5", 1000, [(1, "1000", 500), (2, "0.5", 500)]),  # a fraction is enough for the flat fee
        ("1500", 1050, [(1, "1000", 500), (2, "500", 550)]),
        ("1005", 1001, [(1, "1000", 500), (2, "5", 501)]),  # 1000.5 rounds up once, at the end
        ("1000000000000", 100000000900, [(1, "1000", 500), (2, "999999999000", 100000000400)]),
    ],
)
def test_graduated_examples(quantity: str, expected: int, breakdown: list[tuple[int, str, int]]) -> None:
    result = quote(API_GRADUATED, D(quantity))
    assert result.amount == expected
    assert summary(result) == breakdown
    assert sum(e.amount for e in result.breakdown) == result.amount


@pytest.mark.parametrize(
    ("quantity", "expected", "breakdown"),
    [
        ("1", 1100, [(1, "1", 1100)]),
        ("10", 2000, [(1, "10", 2000)]),
        ("11", 2250, [(1, "10", 2000), (2, "1", 250)]),
        ("20", 2700, [(1, "10", 2000), (2, "10", 700)]),
        ("21", 2710, [(1, "10", 2000), (2, "10", 700), (3, "1", 10)]),
        ("20.5", 2705, [(1, "10", 2000), (2, "10", 700), (3, "0.5", 5)]),
    ],
)
def test_graduated_flat_fee_once_per_tier_with_units(
    quantity: str, expected: int, breakdown: list[tuple[int, str, int]]
) -> None:
    result = quote(GRADUATED_FLATS, D(quantity))
    assert result.amount == expected
    assert summary(result) == breakdown


def test_graduated_rounds_once_and_allocates_the_breakdown() -> None:
    # Three half-minor-unit tiers: rounding per tier would give 1 + 1 + 1 = 3; the exact total is 1.5,
    # which rounds to 2, and the cumulative allocation hands out [1, 0, 1].
    amount = tiered("graduated", (1, "0.5", 0), (2, "0.5", 0), (None, "0.5", 0))
    result = quote(amount, D(3))
    assert result.amount == 2
    assert [e.amount for e in result.breakdown] == [1, 0, 1]


def test_graduated_fractional_bounds() -> None:
    amount = tiered("graduated", ("0.5", "10", 0), (None, "1", 0))
    assert quote(amount, D("0.5")).amount == 5
    assert summary(quote(amount, D("1.5"))) == [(1, "0.5", 5), (2, "1.0", 1)]


def test_graduated_jpy_and_kwd() -> None:
    jpy = tiered("graduated", (100, "10", 0), (None, "5", 100), currency="JPY")
    result = quote(jpy, D(150))
    assert (result.amount, result.currency) == (1000 + 250 + 100, "jpy")
    kwd = tiered("graduated", (1000, "1.5", 0), (None, "0.25", 0), currency="kwd")
    assert quote(kwd, D(1002)).amount == 1501  # 1500 + 0.5, half up
    assert quote(kwd, D(1001)).amount == 1500  # 1500.25


# Total (volume)


@pytest.mark.parametrize(
    ("quantity", "expected", "tier"),
    [
        ("0.5", 0, 1),  # 0.25
        ("1", 1, 1),
        ("1000", 500, 1),  # boundary stays in tier 1
        ("1000.5", 500, 2),  # 400.2 + 100
        ("1001", 500, 2),  # 400.4 + 100
        ("1002", 501, 2),  # 400.8 + 100
        ("10000", 4100, 2),
        ("10001", 1500, 3),  # 1000.1 + 500: the whole quantity moves to the cheap tier
        ("1000000000000", 100000000500, 3),
    ],
)
def test_total_examples(quantity: str, expected: int, tier: int) -> None:
    result = quote(VOLUME, D(quantity))
    chosen = VOLUME.tiers[tier - 1]
    assert result.amount == expected
    assert result.breakdown == (
        BreakdownEntry(tier=tier, quantity=D(quantity), unit=chosen.unit, flat=chosen.flat, amount=expected),
    )


def test_total_quantity_zero_costs_nothing_even_with_a_flat_fee() -> None:
    amount = tiered("total", (10, "1", 700), (None, "1", 0))
    assert quote(amount, D(0)) == Quote(amount=0, currency="usd", breakdown=())
    assert quote(amount, D("0.0001")).amount == 700
    assert quote(tiered("total", (None, "0.5", 0), currency="kwd"), D(5)).amount == 3  # 2.5, half up


def test_quote_to_dict_matches_the_api_shape() -> None:
    assert quote_to_dict(quote(API_GRADUATED, D(1500))) == {
        "amount": 1050,
        "currency": "usd",
        "breakdown": [
            {"tier": 1, "quantity": "1000", "unit": "0.5", "flat": 0, "amount": 500},
            {"tier": 2, "quantity": "500", "unit": "0.1", "flat": 500, "amount": 550},
        ],
    }


# Quantities


@pytest.mark.parametrize("amount", [fixed("1"), API_GRADUATED, VOLUME])
@pytest.mark.parametrize(
    ("quantity", "code"),
    [(D("-1"), "negative_quantity"), (D("-0.5"), "negative_quantity")]
    + [(q, "invalid_number") for q in (1.0, True, "1", D("NaN"), D("Infinity"), None)],
)
def test_quote_refuses_bad_quantities(amount: FixedAmount | TieredAmount, quantity: object, code: str) -> None:
    with pytest.raises(PricingError) as info:
        quote(amount, quantity)  # type: ignore[arg-type]
    assert (info.value.code, info.value.param) == (code, "quantity")


def test_int_quantity_is_accepted_and_absurd_ones_fail_loudly_instead_of_rounding() -> None:
    assert quote(fixed("10"), 3).amount == 30  # type: ignore[arg-type]
    with pytest.raises(PricingError) as info:
        quote(fixed("0.5", flat=1), D("1E+300"))
    assert info.value.code == "quantity_out_of_range"


@pytest.mark.parametrize(
    ("raw", "expected"), [("1500", D(1500)), ("1.50", D("1.5")), (3, D(3)), (0.5, D("0.5")), ("0", D(0))]
)
def test_parse_quantity(raw: object, expected: Decimal) -> None:
    assert parse_quantity(raw) == expected


@pytest.mark.parametrize(
    ("raw", "code"),
    [("-1", "negative_quantity"), (True, "invalid_number"), ("abc", "invalid_number"), (0.1, "inexact_float")],
)
def test_parse_quantity_errors(raw: object, code: str) -> None:
    with pytest.raises(PricingError) as info:
        parse_quantity(raw)
    assert (info.value.code, info.value.param) == (code, "quantity")


# parse_amount / amount_to_dict


FIXED = {"model": "fixed", "currency": "usd", "unit": "1000", "flat": 0}
TIERED = {
    "model": "tiered",
    "currency": "usd",
    "mode": "graduated",
    "tiers": [{"up_to": 1000, "unit": "0.5", "flat": 0}, {"up_to": None, "unit": "0.1", "flat": 500}],
}


def test_parse_fixed_and_tiered() -> None:
    assert parse_amount({**FIXED, "currency": "USD"}) == FixedAmount(currency="usd", unit=D(1000), flat=0)
    amount = parse_amount(TIERED)
    assert amount == API_GRADUATED
    assert isinstance(amount, TieredAmount)
    assert isinstance(amount.tiers, tuple)


@pytest.mark.parametrize(
    ("data", "unit", "flat"),
    [
        ({}, D(0), 0),
        ({"unit": None, "flat": None}, D(0), 0),
        ({"unit": "0.04"}, D("0.04"), 0),
        ({"unit": ".5"}, D("0.5"), 0),
        ({"unit": 0.5}, D("0.5"), 0),  # exactly representable float
        ({"unit": 1000.0}, D(1000), 0),
        ({"unit": "0.000000000001"}, D("0.000000000001"), 0),  # 12 places is the limit
        ({"unit": "0.10000000000000"}, D("0.1"), 0),  # trailing zeros do not count
        ({"flat": "500.00"}, D(0), 500),
        ({"flat": 500.0}, D(0), 500),
        ({"unit": D("2.5"), "flat": 1}, D("2.5"), 1),
    ],
)
def test_parse_fixed_numbers(data: dict[str, Any], unit: Decimal, flat: int) -> None:
    amount = parse_amount({"model": "fixed", "currency": "usd", **data})
    assert isinstance(amount, FixedAmount)
    assert (amount.unit, amount.flat) == (unit, flat)
    assert type(amount.flat) is int


def test_parse_tiered_defaults_and_fractional_bounds() -> None:
    amount = parse_amount(
        {"model": "tiered", "currency": "kwd", "mode": "total", "tiers": [{"up_to": "2.5"}, {"unit": "3"}]}
    )
    assert amount == TieredAmount(
        currency="kwd", mode="total", tiers=(Tier(up_to=D("2.5"), unit=D(0), flat=0), Tier(None, D(3), 0))
    )


def with_tiers(*tiers: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {**TIERED, "tiers": list(tiers), **top}


@pytest.mark.parametrize(
    ("data", "code", "param"),
    [
        ("fixed", "invalid_type", "amount"),
        ({k: v for k, v in FIXED.items() if k != "model"}, "missing", "amount.model"),
        ({**FIXED, "model": "flat"}, "invalid_choice", "amount.model"),
        ({**FIXED, "model": "Fixed"}, "invalid_choice", "amount.model"),
        ({k: v for k, v in FIXED.items() if k != "currency"}, "missing", "amount.currency"),
        ({**FIXED, "currency": "xyz"}, "unknown_currency", "amount.currency"),
        ({**FIXED, "currency": 840}, "unknown_currency", "amount.currency"),
        # tiers
        ({k: v for k, v in TIERED.items() if k != "tiers"}, "missing", "amount.tiers"),
        (with_tiers(), "tiers_empty", "amount.tiers"),
        ({**TIERED, "tiers": "1000"}, "invalid_type", "amount.tiers"),
        ({**TIERED, "tiers": {"up_to": None}}, "invalid_type", "amount.tiers"),
        (with_tiers({"up_to": None}, "x"), "invalid_type", "amount.tiers[1]"),
        (with_tiers({"up_to": 10}), "last_tier_bounded", "amount.tiers[0].up_to"),
        (with_tiers({"up_to": 10}, {"up_to": 20}), "last_tier_bounded", "amount.tiers[1].up_to"),
        (with_tiers({"up_to": None}, {"up_to": None}), "unbounded_tier_not_last", "amount.tiers[0].up_to"),
        (with_tiers({}, {"up_to": 10}, {}), "unbounded_tier_not_last", "amount.tiers[0].up_to"),
        (with_tiers({"up_to": 10}, {"up_to": 10}, {}), "up_to_not_increasing", "amount.tiers[1].up_to"),
        (with_tiers({"up_to": 10}, {"up_to": "9.5"}, {}), "up_to_not_increasing", "amount.tiers[1].up_to"),
        (with_tiers({"up_to": 0}, {}), "up_to_not_positive", "amount.tiers[0].up_to"),
        (with_tiers({"up_to": -5}, {}), "up_to_not_positive", "amount.tiers[0].up_to"),
        (with_tiers({"up_to": "abc"}, {}), "invalid_number", "amount.tiers[0].up_to"),
        (with_tiers({"up_to": True}, {}), "invalid_number", "amount.tiers[0].up_to"),
        (with_tiers({"up_to": "0.0000000000001"}, {}), "too_many_decimals", "amount.tiers[0].up_to"),
        (with_tiers({"upTo": 10}, {}), "unknown_field", "amount.tiers[0].upTo"),
        # negative / precision / integrality
        ({**FIXED, "unit": "-1"}, "negative", "amount.unit"),
        ({**FIXED, "flat": -1}, "negative", "amount.flat"),
        (with_tiers({"up_to": None, "unit": "-0.5"}), "negative", "amount.tiers[0].unit"),
        (with_tiers({"up_to": 5}, {"up_to": None, "flat": -3}), "negative", "amount.tiers[1].flat"),
        ({**FIXED, "unit": "0.0000000000001"}, "too_many_decimals", "amount.unit"),
        (with_tiers({"unit": "1.1234567890123"}), "too_many_decimals", "amount.tiers[0].unit"),
        ({**FIXED, "flat": "1.5"}, "not_integer", "amount.flat"),
        ({**FIXED, "flat": 1.5}, "not_integer", "amount.flat"),
        (with_tiers({"flat": "0.1"}), "not_integer", "amount.tiers[0].flat"),
        ({**FIXED, "flat": MAX_MINOR + 1}, "too_large", "amount.flat"),
        ({**FIXED, "unit": str(MAX_MINOR + 1)}, "too_large", "amount.unit"),
        # shape
        ({**TIERED, "unit": "1"}, "price_on_both_levels", "amount.unit"),
        ({**TIERED, "flat": 100}, "price_on_both_levels", "amount.flat"),
        ({**FIXED, "tiers": TIERED["tiers"]}, "tiers_on_fixed", "amount.tiers"),
        ({**FIXED, "tiers": []}, "tiers_on_fixed", "amount.tiers"),
        ({**FIXED, "mode": "graduated"}, "mode_on_fixed", "amount.mode"),
        ({k: v for k, v in TIERED.items() if k != "mode"}, "missing", "amount.mode"),
        ({**TIERED, "mode": "Volume"}, "invalid_choice", "amount.mode"),
        ({**TIERED, "mode": 1}, "invalid_choice", "amount.mode"),
        ({**TIERED, "mode": "GRADUATED"}, "invalid_choice", "amount.mode"),
        ({**FIXED, "amount": 5}, "unknown_field", "amount.amount"),
        # numbers
        ({**FIXED, "unit": "abc"}, "invalid_number", "amount.unit"),
        ({**FIXED, "unit": " 1"}, "invalid_number", "amount.unit"),
        ({**FIXED, "unit": "1e3"}, "invalid_number", "amount.unit"),
        ({**FIXED, "unit": "+1"}, "invalid_number", "amount.unit"),
        ({**FIXED, "unit": True}, "invalid_number", "amount.unit"),
        ({**FIXED, "flat": False}, "invalid_number", "amount.flat"),
        ({**FIXED, "unit": "NaN"}, "invalid_number", "amount.unit"),
        ({**FIXED, "unit": "Infinity"}, "invalid_number", "amount.unit"),
        ({**FIXED, "unit": float("nan")}, "invalid_number", "amount.unit"),
        ({**FIXED, "flat": D("NaN")}, "invalid_number", "amount.flat"),
        ({**FIXED, "unit": [1]}, "invalid_number", "amount.unit"),
        ({**FIXED, "unit": 0.1}, "inexact_float", "amount.unit"),
        (with_tiers({"up_to": "NaN"}, {}), "invalid_number", "amount.tiers[0].up_to"),
        (with_tiers({"up_to": None, "unit": "Infinity"}), "invalid_number", "amount.tiers[0].unit"),
    ],
)
def test_parse_amount_errors(data: Any, code: str, param: str) -> None:
    with pytest.raises(PricingError) as info:
        parse_amount(data)
    assert (info.value.code, info.value.param) == (code, param)
    assert info.value.message
    assert str(info.value) == info.value.message
    assert isinstance(info.value, ValueError)


def test_param_prefix_is_configurable() -> None:
    with pytest.raises(PricingError) as info:
        parse_amount({**FIXED, "unit": "-1"}, param="items[2].amount")
    assert info.value.param == "items[2].amount.unit"


@pytest.mark.parametrize(
    ("amount", "code", "param"),
    [
        (tiered("graduated", (10, "1", 0)), "last_tier_bounded", "amount.tiers[0].up_to"),
        (tiered("graduated"), "tiers_empty", "amount.tiers"),
        (tiered("volume", (None, "1", 0)), "invalid_choice", "amount.mode"),
        (fixed("-1"), "negative", "amount.unit"),
        (fixed("1", flat=-1), "negative", "amount.flat"),
        (FixedAmount(currency="usd", unit=D(1), flat=1.5), "not_integer", "amount.flat"),  # type: ignore[arg-type]
        (FixedAmount(currency="usd", unit=0.5, flat=0), "invalid_number", "amount.unit"),  # type: ignore[arg-type]
        (fixed("1", currency="abc"), "unknown_currency", "amount.currency"),
        ("fixed", "invalid_type", "amount"),
    ],
)
def test_quote_validates_hand_built_amounts(amount: Any, code: str, param: str) -> None:
    with pytest.raises(PricingError) as info:
        validate_amount(amount)
    assert (info.value.code, info.value.param) == (code, param)
    with pytest.raises(PricingError):
        quote(amount, D(1))


def test_tiered_amount_stores_tiers_as_a_tuple() -> None:
    amount = TieredAmount(currency="usd", mode="total", tiers=[Tier(None, D(1), 0)])  # type: ignore[arg-type]
    assert amount.tiers == (Tier(None, D(1), 0),)
    assert hash(amount) == hash(TieredAmount(currency="usd", mode="total", tiers=(Tier(None, D(1), 0),)))


def test_amount_to_dict() -> None:
    assert amount_to_dict(parse_amount(FIXED)) == FIXED
    # up_to is a decimal string on output, like every other decimal (integers are accepted on input).
    canonical_tiered = {**TIERED, "tiers": [{**TIERED["tiers"][0], "up_to": "1000"}, TIERED["tiers"][1]]}
    assert amount_to_dict(parse_amount(TIERED)) == canonical_tiered
    assert amount_to_dict(parse_amount(canonical_tiered)) == canonical_tiered
    assert amount_to_dict(fixed("1E+3", currency="USD")) == FIXED
    rendered = amount_to_dict(tiered("total", ("2.50", "1E-12", 3), ("1E+3", "5", 0), (None, "0", 0)))
    assert rendered["mode"] == "total"
    assert rendered["tiers"][0] == {"up_to": "2.5", "unit": "0.000000000001", "flat": 3}
    assert rendered["tiers"][1] == {"up_to": "1000", "unit": "5", "flat": 0}
    assert rendered["tiers"][2] == {"up_to": None, "unit": "0", "flat": 0}


def test_volume_is_accepted_as_the_common_name_of_total_mode() -> None:
    amount = parse_amount({**TIERED, "mode": "volume"})
    assert amount == replace(API_GRADUATED, mode="total")
    assert amount_to_dict(amount)["mode"] == "total"
    assert quote(amount, D(1500)).amount == 650  # 1500 x 0.1 + 500: the whole quantity in tier 2


# Names


@pytest.mark.parametrize(
    ("amount", "duration_amount", "duration_unit", "expected"),
    [
        (fixed("1000"), 1, "month", "$10.00 / month"),
        (fixed("0", flat=1000), 1, "month", "$10.00 / month"),
        (fixed("0.04"), 1, "month", "$0.0004 per unit / month"),
        (fixed("1050.5"), 1, "month", "$10.505 per unit / month"),
        (fixed("1", flat=500), 1, "month", "$5.00 + $0.01 per unit / month"),
        (fixed("0.04", flat=500), 1, "month", "$5.00 + $0.0004 per unit / month"),
        (fixed("1000", currency="jpy"), 1, "year", "¥1,000 / year"),
        (fixed("1500", currency="KWD"), 1, "month", "KWD 1.500 / month"),
        (fixed("1000"), 3, "month", "$10.00 / 3 months"),
        (fixed("1000"), 2, "week", "$10.00 / 2 weeks"),
        (fixed("1000"), 1, "day", "$10.00 / day"),
        (fixed("0"), 1, "month", "$0.00 / month"),
        (API_GRADUATED, 1, "month", "Graduated, USD / month"),
        (VOLUME, 1, "year", "Volume, USD / year"),
        (tiered("total", (None, "1", 0), currency="jpy"), 6, "month", "Volume, JPY / 6 months"),
    ],
)
def test_generate_price_name(
    amount: FixedAmount | TieredAmount, duration_amount: int, duration_unit: str, expected: str
) -> None:
    assert generate_price_name(amount, duration_amount, duration_unit) == expected


@pytest.mark.parametrize(
    ("duration_amount", "duration_unit", "code", "param"),
    [
        (0, "month", "invalid_duration", "duration.amount"),
        (True, "month", "invalid_duration", "duration.amount"),
        (1, "months", "invalid_choice", "duration.unit"),
    ],
)
def test_generate_price_name_refuses_bad_durations(
    duration_amount: Any, duration_unit: str, code: str, param: str
) -> None:
    with pytest.raises(PricingError) as info:
        generate_price_name(fixed("1000"), duration_amount, duration_unit)
    assert (info.value.code, info.value.param) == (code, param)


# Properties

units = st.one_of(
    st.integers(min_value=0, max_value=10**6).map(D),
    st.decimals(min_value=0, max_value=10**4, places=12, allow_nan=False, allow_infinity=False),
)
flats = st.integers(min_value=0, max_value=10**6)
quantities = st.one_of(
    st.just(D(0)),
    st.integers(min_value=0, max_value=10**15).map(D),
    st.decimals(min_value=0, max_value=10**7, places=12, allow_nan=False, allow_infinity=False),
    st.decimals(min_value=0, max_value=10**15, places=3, allow_nan=False, allow_infinity=False),
)
bounds = st.one_of(
    st.integers(min_value=1, max_value=10**7).map(D),
    st.decimals(min_value=D("0.001"), max_value=10**7, places=3, allow_nan=False, allow_infinity=False),
)
currencies = st.sampled_from(["usd", "jpy", "kwd", "clf", "EUR"])


@st.composite
def tiered_amounts(draw: st.DrawFn, mode: str | None = None) -> TieredAmount:
    upper_bounds = sorted(draw(st.sets(bounds, max_size=4)))
    prices = [(draw(units), draw(flats)) for _ in range(len(upper_bounds) + 1)]
    limits: list[Decimal | None] = [*upper_bounds, None]
    return TieredAmount(
        currency=draw(currencies),
        mode=draw(st.sampled_from(["graduated", "total"])) if mode is None else mode,  # type: ignore[arg-type]
        tiers=tuple(Tier(up_to=u, unit=p, flat=f) for u, (p, f) in zip(limits, prices, strict=True)),
    )


fixed_amounts = st.builds(FixedAmount, currency=currencies, unit=units, flat=flats)
any_amounts = st.one_of(fixed_amounts, tiered_amounts())


@st.composite
def quantity_for(draw: st.DrawFn, amount: FixedAmount | TieredAmount) -> Decimal:
    # Boundaries are where tier bugs live: draw quantities at, just above and just below an up_to
    # as often as arbitrary ones.
    edges = [t.up_to for t in getattr(amount, "tiers", ()) if t.up_to is not None]
    if not edges or draw(st.booleans()):
        return draw(quantities)
    delta = draw(st.sampled_from([D(0), D(1), D(-1), D("1E-12"), D("-1E-12")]))
    return max(D(0), draw(st.sampled_from(edges)) + delta)


def fraction_half_up(value: Fraction) -> int:
    assert value >= 0
    return int(value + Fraction(1, 2))


def oracle_exact(amount: FixedAmount | TieredAmount, quantity: Decimal) -> Fraction:
    """The exact price on rationals, written independently of the engine's Decimal code."""
    q = Fraction(quantity)
    if isinstance(amount, FixedAmount):
        return amount.flat + Fraction(amount.unit) * q
    if q == 0:
        return Fraction(0)
    if amount.mode == "total":
        tier = next(t for t in amount.tiers if t.up_to is None or q <= Fraction(t.up_to))
        return tier.flat + Fraction(tier.unit) * q
    total, lower = Fraction(0), Fraction(0)
    for tier in amount.tiers:
        upper = q if tier.up_to is None else min(q, Fraction(tier.up_to))
        held = max(Fraction(0), upper - lower)
        if held > 0:
            total += tier.flat + Fraction(tier.unit) * held
        if tier.up_to is not None:
            lower = Fraction(tier.up_to)
    return total


@given(st.data())
@settings(deadline=None)
def test_amount_is_the_rounded_exact_price(data: st.DataObject) -> None:
    amount = data.draw(any_amounts)
    quantity = data.draw(quantity_for(amount))
    result = quote(amount, quantity)
    assert result.amount == fraction_half_up(oracle_exact(amount, quantity))
    # Ints, deterministic, and independent of how the quantity is spelled.
    assert quote(amount, D(str(quantity)) + D("0E-20")) == result
    assert type(result.amount) is int
    assert all(type(e.amount) is int and type(e.flat) is int for e in result.breakdown)
    assert result.currency == amount.currency.lower()


@given(st.data())
@settings(deadline=None)
def test_breakdown_sums_to_the_amount_in_every_mode(data: st.DataObject) -> None:
    amount = data.draw(any_amounts)
    quantity = data.draw(quantity_for(amount))
    result = quote(amount, quantity)
    assert sum(e.amount for e in result.breakdown) == result.amount
    assert sum(e.quantity for e in result.breakdown) == (quantity if result.breakdown else 0)
    tiers = getattr(amount, "tiers", None)
    for entry in result.breakdown:
        exact = entry.flat + Fraction(entry.unit) * Fraction(entry.quantity)
        assert entry.amount >= 0
        assert abs(entry.amount - exact) < 1  # the allocation never moves a tier by a whole unit
        assert entry.quantity > 0 or isinstance(amount, FixedAmount)
        if tiers is not None:
            assert (entry.unit, entry.flat) == (tiers[entry.tier - 1].unit, tiers[entry.tier - 1].flat)
    assert [e.tier for e in result.breakdown] == sorted({e.tier for e in result.breakdown})
    if isinstance(amount, TieredAmount) and amount.mode == "graduated":
        # Tiers fill from the bottom: tiers 1..n are listed, and all but the last are full.
        assert [e.tier for e in result.breakdown] == list(range(1, len(result.breakdown) + 1))
        lower = D(0)
        for entry in result.breakdown[:-1]:
            assert entry.quantity == amount.tiers[entry.tier - 1].up_to - lower  # type: ignore[operator]
            lower = amount.tiers[entry.tier - 1].up_to  # type: ignore[assignment]


@given(st.data())
@settings(deadline=None)
def test_graduated_is_non_decreasing_in_quantity(data: st.DataObject) -> None:
    amount = data.draw(tiered_amounts(mode="graduated"))
    first = data.draw(quantity_for(amount))
    second = data.draw(quantity_for(amount))
    low, high = sorted((first, second))
    assert quote(amount, low).amount <= quote(amount, high).amount


@given(st.data())
@settings(deadline=None)
def test_total_mode_prices_everything_at_the_chosen_tier(data: st.DataObject) -> None:
    amount = data.draw(tiered_amounts(mode="total"))
    quantity = data.draw(quantity_for(amount))
    assume(quantity > 0)
    result = quote(amount, quantity)
    index = next(i for i, t in enumerate(amount.tiers) if t.up_to is None or quantity <= t.up_to)
    chosen = amount.tiers[index]
    with localcontext(Context(prec=100)):
        assert result.amount == round_half_up(quantity * chosen.unit + chosen.flat)
    assert len(result.breakdown) == 1
    assert result.breakdown[0].tier == index + 1
    assert result.breakdown[0].quantity == quantity


@given(amount=fixed_amounts, quantity=quantities)
@settings(deadline=None)
def test_fixed_is_affine(amount: FixedAmount, quantity: Decimal) -> None:
    exact = Fraction(amount.flat) + Fraction(amount.unit) * Fraction(quantity)
    assert quote(amount, quantity).amount == fraction_half_up(exact)


@given(
    unit=st.integers(min_value=0, max_value=10**9),
    flat=flats,
    a=quantities,
    b=st.integers(min_value=0, max_value=10**12),
)
@settings(deadline=None)
def test_fixed_with_integer_unit_adds_exactly(unit: int, flat: int, a: Decimal, b: int) -> None:
    amount = FixedAmount(currency="usd", unit=D(unit), flat=flat)
    assert quote(amount, a + b).amount - quote(amount, a).amount == unit * b


@given(any_amounts)
def test_amount_to_dict_round_trips(amount: FixedAmount | TieredAmount) -> None:
    rendered = amount_to_dict(amount)
    assert parse_amount(rendered) == replace(amount, currency=amount.currency.lower())
    assert amount_to_dict(parse_amount(rendered)) == rendered
    assert rendered["currency"] == amount.currency.lower()
