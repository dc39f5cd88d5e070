"""Tests for tax computation (pure Python, no database)."""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from invoicing.tax import (
    REVERSE_CHARGE_NOTE,
    LineTax,
    TaxAmount,
    TaxError,
    TaxRate,
    applicable_rates,
    line_tax,
    reverse_charge_note,
    taxes_for_customer,
)

D = Decimal


def rate(rate_id: str, pct: str, *, inclusive: bool = False, country: str = "US", state: str = "") -> TaxRate:
    return TaxRate(
        id=rate_id,
        display_name=f"{rate_id} {pct}%",
        percentage=D(pct),
        inclusive=inclusive,
        country=country,
        state=state,
    )


US = rate("txr_us", "0")
NY = rate("txr_ny", "4", state="NY")
NYC = rate("txr_nyc", "4.875", state="ny")  # a second, city-level rate filed under the same state
CA = rate("txr_ca", "7.25", state="CA")
DE_VAT = rate("txr_de", "19", inclusive=True, country="DE")
FR_VAT = rate("txr_fr", "20", inclusive=True, country="FR")
JP = rate("txr_jp", "10", country="JP")
CATALOG = [CA, NYC, DE_VAT, NY, US, FR_VAT, JP]


def taxes(result: LineTax) -> list[tuple[str, int]]:
    return [tuple(t) for t in result.taxes]  # type: ignore[misc]


# --------------------------------------------------------------------------------------------------
# Exclusive and inclusive worked examples


def test_exclusive_rate_rounds_half_up():
    result = line_tax(1000, [rate("nyc", "8.875")])
    assert result == LineTax(
        net=1000, taxes=(TaxAmount("nyc", 89),), total_with_tax=1089, inclusive_tax=0, exclusive_tax=89
    )  # 88.75 -> 89


def test_inclusive_rate_is_extracted_from_the_amount():
    result = line_tax(1200, [FR_VAT])
    assert result == LineTax(
        net=1000, taxes=(TaxAmount("txr_fr", 200),), total_with_tax=1200, inclusive_tax=200, exclusive_tax=0
    )


def test_inclusive_extraction_that_does_not_divide_evenly():
    # 999 * 19 / 119 = 159.50...: a little above the half, so up.
    assert line_tax(999, [DE_VAT]) == LineTax(
        net=839, taxes=(TaxAmount("txr_de", 160),), total_with_tax=999, inclusive_tax=160, exclusive_tax=0
    )
    # 1000 * 19 / 119 = 159.66 -> 160, net 840.
    assert line_tax(1000, [DE_VAT]).net == 840


def test_rounding_at_exactly_half():
    assert taxes(line_tax(4, [rate("r", "12.5")])) == [("r", 1)]  # 0.5 -> 1
    assert taxes(line_tax(-4, [rate("r", "12.5")])) == [("r", -1)]  # -0.5 -> -1
    assert taxes(line_tax(12, [rate("r", "12.5")])) == [("r", 2)]  # 1.5 -> 2 (not banker's 2)
    assert taxes(line_tax(20, [rate("r", "12.5")])) == [("r", 3)]  # 2.5 -> 3 (banker's would say 2)
    # Inclusive 100%: 3 * 100 / 200 = 1.5 -> 2 of tax, net 1.
    assert line_tax(3, [rate("r", "100", inclusive=True)]).net == 1


def test_several_inclusive_rates_share_one_extraction():
    gst = rate("gst", "5", inclusive=True, country="CA")
    qst = rate("qst", "10", inclusive=True, country="CA", state="QC")
    result = line_tax(1150, [gst, qst])
    assert taxes(result) == [("gst", 50), ("qst", 100)]  # 1150 * 5/115 and 1150 * 10/115
    assert result.net == 1000
    assert result.total_with_tax == 1150


def test_mixed_inclusive_and_exclusive_taxes_exclusive_on_the_net():
    levy = rate("levy", "5", country="FR")
    result = line_tax(1200, [levy, FR_VAT])
    assert result == LineTax(
        net=1000,
        taxes=(TaxAmount("levy", 50), TaxAmount("txr_fr", 200)),  # in the order the rates were given
        total_with_tax=1250,
        inclusive_tax=200,
        exclusive_tax=50,
    )


def test_negative_line_gets_mirrored_tax():
    assert line_tax(-1000, [rate("nyc", "8.875")]) == LineTax(
        net=-1000, taxes=(TaxAmount("nyc", -89),), total_with_tax=-1089, inclusive_tax=0, exclusive_tax=-89
    )
    assert line_tax(-1200, [FR_VAT]).net == -1000


def test_zero_decimal_currency_amounts_are_plain_integers():
    # JPY: 10% consumption tax on ¥1,234 is ¥123.4 -> ¥123; included in ¥1,100 it is ¥100.
    assert line_tax(1234, [JP]).total_with_tax == 1357
    assert line_tax(1100, [rate("jp_incl", "10", inclusive=True, country="JP")]).net == 1000
    assert line_tax(5, [JP]).total_with_tax == 6  # ¥0.5 of tax rounds up to ¥1


def test_no_rates_and_zero_rates():
    assert line_tax(1000, []) == LineTax(net=1000, taxes=(), total_with_tax=1000, inclusive_tax=0, exclusive_tax=0)
    assert taxes(line_tax(1000, [US])) == [("txr_us", 0)]  # a 0% rate is still listed
    assert line_tax(0, [NY, FR_VAT]).total_with_tax == 0


def test_us_new_york_stacking():
    rates = applicable_rates(CATALOG, country="US", state="NY")
    assert [r.id for r in rates] == ["txr_us", "txr_ny", "txr_nyc"]
    result = line_tax(10000, rates)
    assert taxes(result) == [("txr_us", 0), ("txr_ny", 400), ("txr_nyc", 488)]  # 487.5 -> 488
    assert result.total_with_tax == 10888


# --------------------------------------------------------------------------------------------------
# Which rates apply


def test_applicable_rates_country_then_state_case_insensitive():
    assert applicable_rates(CATALOG, country="us", state="ny") == [US, NY, NYC]
    assert applicable_rates(CATALOG, country="US", state="ca") == [US, CA]
    assert applicable_rates(CATALOG, country="US", state="") == [US]
    assert applicable_rates(CATALOG, country="US", state=None) == [US]
    assert applicable_rates(CATALOG, country="US", state="TX") == [US]
    assert applicable_rates(CATALOG, country="de", state="BY") == [DE_VAT]
    assert applicable_rates(CATALOG, country="GB", state="") == []


def test_no_country_means_no_rates():
    assert applicable_rates(CATALOG, country="", state="NY") == []
    assert applicable_rates(CATALOG, country=None, state="NY") == []


def test_state_rates_do_not_leak_to_other_countries():
    ny_elsewhere = rate("txr_xx_ny", "3", country="XX", state="NY")
    assert applicable_rates([ny_elsewhere, NY, US], country="US", state="NY") == [US, NY]


def test_order_is_stable_whatever_the_input_order():
    extra_country = rate("txr_us_a", "1")
    rates = [NYC, extra_country, NY, US]
    assert applicable_rates(rates, country="US", state="NY") == [US, extra_country, NY, NYC]
    assert applicable_rates(list(reversed(rates)), country="US", state="NY") == applicable_rates(
        rates, country="US", state="NY"
    )


def test_exempt_and_reverse_charge_customers_get_no_tax():
    assert taxes_for_customer(CATALOG, country="US", state="NY", tax_exempt="none") == [US, NY, NYC]
    assert taxes_for_customer(CATALOG, country="US", state="NY", tax_exempt="exempt") == []
    assert taxes_for_customer(CATALOG, country="DE", state="", tax_exempt="reverse") == []
    assert reverse_charge_note("reverse") == REVERSE_CHARGE_NOTE == "Tax to be paid on reverse charge basis"
    assert reverse_charge_note("exempt") is None
    assert reverse_charge_note("none") is None


def test_rate_fields_are_normalised():
    normalised = TaxRate(id="r", display_name="NY", percentage=D("4.0000"), inclusive=False, country="us", state=" ny ")
    assert (normalised.country, normalised.state) == ("US", "NY")
    assert TaxRate(id="r", display_name="x", percentage=8, inclusive=False, country="US").percentage == D(8)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# Validation


def make(**overrides: object) -> TaxRate:
    fields: dict[str, object] = {
        "id": "r",
        "display_name": "VAT",
        "percentage": D("20"),
        "inclusive": True,
        "country": "FR",
        "state": "",
    }
    fields.update(overrides)
    return TaxRate(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("call", "code", "param"),
    [
        (lambda: make(percentage=D("100.0001")), "out_of_range", "percentage"),
        (lambda: make(percentage=D("-1")), "out_of_range", "percentage"),
        (lambda: make(percentage=D("8.87501")), "too_many_decimals", "percentage"),
        (lambda: make(percentage=8.875), "invalid_number", "percentage"),
        (lambda: make(percentage="8.875"), "invalid_number", "percentage"),
        (lambda: make(percentage=True), "invalid_number", "percentage"),
        (lambda: make(percentage=D("NaN")), "invalid_number", "percentage"),
        (lambda: make(percentage=D("Infinity")), "invalid_number", "percentage"),
        (lambda: make(country="FRA"), "invalid_country", "country"),
        (lambda: make(country="F1"), "invalid_country", "country"),
        (lambda: make(country=None), "invalid_country", "country"),
        (lambda: make(id=""), "invalid_id", "id"),
        (lambda: make(inclusive=1), "invalid_type", "inclusive"),
        (lambda: line_tax(10.5, [FR_VAT]), "not_integer", "amount"),
        (lambda: line_tax(True, [FR_VAT]), "not_integer", "amount"),
        (lambda: line_tax(100, [FR_VAT, FR_VAT]), "duplicate_rate", "tax_rates[1]"),
        (lambda: line_tax(100, [object()]), "invalid_type", "tax_rates[0]"),
        (lambda: applicable_rates(CATALOG, country="USA", state=""), "invalid_country", "country"),
        (lambda: taxes_for_customer(CATALOG, country="US", state="", tax_exempt="yes"), "invalid_choice", "tax_exempt"),
        (lambda: reverse_charge_note("Reverse"), "invalid_choice", "tax_exempt"),
    ],
)
def test_invalid_input_is_refused_with_a_code(call, code: str, param: str):
    with pytest.raises(TaxError) as err:
        call()
    assert err.value.code == code
    assert err.value.param == param


def test_boundary_percentages_are_accepted():
    assert make(percentage=D("0")).percentage == 0
    assert make(percentage=D("100")).percentage == 100
    assert make(percentage=D("8.8750")).percentage == D("8.875")


# --------------------------------------------------------------------------------------------------
# Properties

percentages = st.decimals(min_value=0, max_value=100, places=4, allow_nan=False, allow_infinity=False)
line_amounts = st.integers(min_value=-(10**15), max_value=10**15)


@st.composite
def rate_lists(draw: st.DrawFn, *, inclusive: bool | None = None) -> list[TaxRate]:
    count = draw(st.integers(min_value=0, max_value=4))
    flags = [draw(st.booleans()) if inclusive is None else inclusive for _ in range(count)]
    return [
        TaxRate(id=f"r{i}", display_name=f"r{i}", percentage=draw(percentages), inclusive=flag, country="US")
        for i, flag in enumerate(flags)
    ]


def exact_half_up(value: Fraction) -> int:
    magnitude = math.floor(abs(value) + Fraction(1, 2))
    return -magnitude if value < 0 else magnitude


@settings(max_examples=200, deadline=None)
@given(amount=line_amounts, rates=rate_lists(inclusive=True))
def test_inclusive_net_plus_tax_is_the_amount(amount: int, rates: list[TaxRate]):
    result = line_tax(amount, rates)
    assert result.net + sum(t.amount for t in result.taxes) == amount
    assert result.total_with_tax == amount
    assert result.exclusive_tax == 0
    total_pct = sum((Fraction(r.percentage) for r in rates), Fraction(0))
    for r, t in zip(rates, result.taxes, strict=True):
        assert t.amount == exact_half_up(amount * Fraction(r.percentage) / (100 + total_pct))


@settings(max_examples=200, deadline=None)
@given(amount=line_amounts, rates=rate_lists(inclusive=False))
def test_exclusive_total_is_amount_plus_taxes(amount: int, rates: list[TaxRate]):
    result = line_tax(amount, rates)
    assert result.net == amount
    assert result.total_with_tax == amount + sum(t.amount for t in result.taxes)
    for r, t in zip(rates, result.taxes, strict=True):
        assert abs(Fraction(t.amount) - amount * Fraction(r.percentage) / 100) <= Fraction(1, 2)
        assert t.amount == exact_half_up(amount * Fraction(r.percentage) / 100)


@settings(max_examples=200, deadline=None)
@given(amount=line_amounts, rates=rate_lists())
def test_tax_of_a_credit_mirrors_the_charge(amount: int, rates: list[TaxRate]):
    charge = line_tax(amount, rates)
    credit = line_tax(-amount, rates)
    assert credit.net == -charge.net
    assert credit.taxes == tuple(TaxAmount(t.rate_id, -t.amount) for t in charge.taxes)
    assert credit.total_with_tax == -charge.total_with_tax
    # Mixed lines keep both identities.
    assert charge.net + charge.inclusive_tax == amount
    assert charge.total_with_tax == amount + charge.exclusive_tax
    assert charge.inclusive_tax + charge.exclusive_tax == sum(t.amount for t in charge.taxes)


@settings(max_examples=100, deadline=None)
@given(amount=line_amounts, rates=rate_lists())
def test_tax_does_not_depend_on_rate_order(amount: int, rates: list[TaxRate]):
    forward = line_tax(amount, rates)
    backward = line_tax(amount, list(reversed(rates)))
    assert dict(forward.taxes) == dict(backward.taxes)
    assert forward.net == backward.net
