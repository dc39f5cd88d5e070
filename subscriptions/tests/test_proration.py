"""Tests for proration by the second (pure Python, no database)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from subscriptions.periods import UNITS, Period, period_containing
from subscriptions.proration import (
    ProrationError,
    ProrationItem,
    ProrationLine,
    prorate,
    proration_lines,
    remaining_fraction,
    truncate_to_second,
)

D = Decimal


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


# April has 30 days: 2,592,000 seconds.
APRIL = Period(utc(2024, 4, 1), utc(2024, 5, 1))
DAY10 = utc(2024, 4, 11)  # ten days used, twenty left

BASIC = ProrationItem(price_id="price_basic", description="Basic ($10.00 / month)", full_amount=1000, quantity=D(1))
PRO = ProrationItem(price_id="price_pro", description="Pro ($30.00 / month)", full_amount=3000, quantity=D(1))


def seats(quantity: int, unit_amount: int = 1000) -> ProrationItem:
    return ProrationItem(
        price_id="price_seat",
        description="Seat ($10.00 / month)",
        full_amount=unit_amount * quantity,
        quantity=D(quantity),
    )


def summary(lines: list[ProrationLine]) -> list[tuple[str, str, int]]:
    return [(line.description, str(line.quantity), line.amount) for line in lines]


# --------------------------------------------------------------------------------------------------
# remaining_fraction and prorate


def test_remaining_fraction_worked_examples():
    assert APRIL.seconds == 2_592_000
    assert remaining_fraction(APRIL, APRIL.start) == 1
    assert remaining_fraction(APRIL, DAY10) == Fraction(2, 3)
    assert remaining_fraction(APRIL, utc(2024, 4, 16)) == Fraction(1, 2)
    assert remaining_fraction(APRIL, APRIL.end - timedelta(seconds=1)) == Fraction(1, 2_592_000)


def test_at_is_truncated_to_the_second():
    assert remaining_fraction(APRIL, APRIL.start + timedelta(microseconds=999_999)) == 1
    late = DAY10 + timedelta(microseconds=999_999)
    assert remaining_fraction(APRIL, late) == Fraction(2, 3)
    assert truncate_to_second(APRIL, late) == DAY10
    # The last microsecond of the period still bills its last whole second.
    assert remaining_fraction(APRIL, APRIL.end - timedelta(microseconds=1)) == Fraction(1, 2_592_000)


def test_at_in_another_zone_is_the_same_instant():
    plus_nine = timezone(timedelta(hours=9))
    assert remaining_fraction(APRIL, datetime(2024, 4, 11, 9, tzinfo=plus_nine)) == Fraction(2, 3)


def test_prorate_rounds_once_half_away_from_zero():
    half_month = utc(2024, 4, 16)
    assert prorate(1000, APRIL, DAY10) == 667  # 666.666...
    assert prorate(3000, APRIL, DAY10) == 2000
    assert prorate(15, APRIL, half_month) == 8  # 7.5 -> 8
    assert prorate(-15, APRIL, half_month) == -8  # -7.5 -> -8, mirrored
    assert prorate(1, APRIL, half_month) == 1  # 0.5 -> 1
    assert prorate(13, APRIL, half_month) == 7  # 6.5 -> 7
    assert prorate(0, APRIL, half_month) == 0
    assert prorate(1000, APRIL, APRIL.start) == 1000


def test_prorate_stays_exact_for_huge_amounts():
    # 2**63 - 1 is the largest amount a BigIntegerField holds; a float would lose the last digits.
    big = 2**63 - 1
    expected = (big * 4 + 3) // 6  # floor(big * 2/3 + 1/2): half up, in integers
    assert prorate(big, APRIL, DAY10) == expected


# --------------------------------------------------------------------------------------------------
# proration_lines worked examples


def test_upgrade_mid_period():
    lines = proration_lines([BASIC], [PRO], APRIL, DAY10)
    assert summary(lines) == [
        ("Unused time on Basic ($10.00 / month)", "1", -667),  # -$6.67
        ("Remaining time on Pro ($30.00 / month)", "1", 2000),  # +$20.00
    ]
    assert [(line.price_id, line.period_start, line.period_end) for line in lines] == [
        ("price_basic", DAY10, APRIL.end),
        ("price_pro", DAY10, APRIL.end),
    ]
    assert sum(line.amount for line in lines) == 1333


def test_downgrade_mid_period():
    lines = proration_lines([PRO], [BASIC], APRIL, DAY10)
    assert summary(lines) == [
        ("Unused time on Pro ($30.00 / month)", "1", -2000),
        ("Remaining time on Basic ($10.00 / month)", "1", 667),
    ]
    assert sum(line.amount for line in lines) == -1333  # a credit for the customer


def test_quantity_change_credits_old_quantity_and_charges_new():
    half_month = utc(2024, 4, 16)
    lines = proration_lines([seats(2)], [seats(5)], APRIL, half_month)
    assert summary(lines) == [
        ("Unused time on Seat ($10.00 / month)", "2", -1000),
        ("Remaining time on Seat ($10.00 / month)", "5", 2500),
    ]
    assert summary(proration_lines([seats(5)], [seats(2)], APRIL, half_month)) == [
        ("Unused time on Seat ($10.00 / month)", "5", -2500),
        ("Remaining time on Seat ($10.00 / month)", "2", 1000),
    ]


def test_change_at_the_first_second_is_a_full_credit_and_a_full_charge():
    lines = proration_lines([BASIC], [PRO], APRIL, APRIL.start + timedelta(milliseconds=500))
    assert [line.amount for line in lines] == [-1000, 3000]
    assert lines[0].period_start == APRIL.start


def test_change_at_the_last_second_is_one_second_of_the_period():
    last = APRIL.end - timedelta(seconds=1)
    # 1000 / 2,592,000 rounds to 0: nothing worth a line.
    assert proration_lines([BASIC], [PRO], APRIL, last) == []
    # 3,888,000 / 2,592,000 = 1.5 -> 2; 7,776,000 / 2,592,000 = 3 exactly.
    old = ProrationItem(price_id="a", description="A", full_amount=3_888_000, quantity=D(1))
    new = ProrationItem(price_id="b", description="B", full_amount=7_776_000, quantity=D(1))
    lines = proration_lines([old], [new], APRIL, last)
    assert [(line.amount, line.period_start, line.period_end) for line in lines] == [
        (-2, last, APRIL.end),
        (3, last, APRIL.end),
    ]


def test_jpy_amounts_in_a_31_day_month():
    january = Period(utc(2024, 1, 1), utc(2024, 2, 1))
    at = utc(2024, 1, 11)  # 21 of 31 days left
    old = ProrationItem(
        price_id="price_jp_basic", description="Basic (¥1,000 / month)", full_amount=1000, quantity=D(1)
    )
    new = ProrationItem(price_id="price_jp_pro", description="Pro (¥3,000 / month)", full_amount=3000, quantity=D(1))
    lines = proration_lines([old], [new], january, at)
    assert [line.amount for line in lines] == [-677, 2032]  # 677.42 and 2032.26


def test_unchanged_added_and_removed_items():
    assert proration_lines([BASIC, seats(3)], [seats(3), BASIC], APRIL, DAY10) == []
    # Decimal equality: 3 and 3.000 are the same quantity.
    same = ProrationItem(price_id="price_seat", description="Seat", full_amount=3000, quantity=D("3.000"))
    assert proration_lines([seats(3)], [same], APRIL, DAY10) == []
    added = proration_lines([BASIC], [BASIC, seats(2)], APRIL, DAY10)
    assert summary(added) == [("Remaining time on Seat ($10.00 / month)", "2", 1333)]
    removed = proration_lines([BASIC, seats(2)], [BASIC], APRIL, DAY10)
    assert summary(removed) == [("Unused time on Seat ($10.00 / month)", "2", -1333)]
    assert summary(proration_lines([BASIC], [], APRIL, DAY10)) == [("Unused time on Basic ($10.00 / month)", "1", -667)]


def test_same_price_and_quantity_with_a_new_amount_prorates_the_difference():
    repriced = ProrationItem(price_id="price_basic", description="Basic", full_amount=1300, quantity=D(1))
    lines = proration_lines([BASIC], [repriced], APRIL, DAY10)
    assert [line.amount for line in lines] == [-667, 867]


def test_free_items_give_no_lines():
    free = ProrationItem(price_id="price_free", description="Free", full_amount=0, quantity=D(1))
    assert summary(proration_lines([free], [BASIC], APRIL, DAY10)) == [
        ("Remaining time on Basic ($10.00 / month)", "1", 667)
    ]


def test_credits_come_first_then_charges_in_input_order():
    a, b, c = (ProrationItem(price_id=p, description=p, full_amount=300, quantity=D(1)) for p in "abc")
    lines = proration_lines([b, a], [c, seats(1)], APRIL, DAY10)
    assert [(line.price_id, line.amount) for line in lines] == [
        ("b", -200),
        ("a", -200),
        ("c", 200),
        ("price_seat", 667),
    ]


# --------------------------------------------------------------------------------------------------
# Validation


@pytest.mark.parametrize(
    ("call", "code", "param"),
    [
        (lambda: remaining_fraction(APRIL, APRIL.end), "outside_period", "at"),
        (lambda: remaining_fraction(APRIL, APRIL.start - timedelta(microseconds=1)), "outside_period", "at"),
        (lambda: remaining_fraction(APRIL, datetime(2024, 4, 5)), "naive_datetime", "at"),
        (lambda: remaining_fraction(APRIL, "2024-04-05"), "invalid_type", "at"),
        (lambda: remaining_fraction((APRIL.start, APRIL.end), DAY10), "invalid_type", "period"),
        (lambda: prorate(10.0, APRIL, DAY10), "not_integer", "full_amount"),
        (lambda: prorate(True, APRIL, DAY10), "not_integer", "full_amount"),
        (lambda: proration_lines([BASIC, BASIC], [], APRIL, DAY10), "duplicate_price", "old[1].price_id"),
        (lambda: proration_lines([], [PRO, PRO], APRIL, DAY10), "duplicate_price", "new[1].price_id"),
        (lambda: proration_lines([], [object()], APRIL, DAY10), "invalid_type", "new[0]"),
        (lambda: proration_lines([BASIC], [PRO], APRIL, APRIL.end), "outside_period", "at"),
        (
            lambda: ProrationItem(price_id="", description="x", full_amount=1, quantity=D(1)),
            "invalid_price",
            "price_id",
        ),
        (
            lambda: ProrationItem(price_id="p", description="x", full_amount=-1, quantity=D(1)),
            "negative",
            "full_amount",
        ),
        (
            lambda: ProrationItem(price_id="p", description="x", full_amount=1, quantity=1.5),
            "invalid_number",
            "quantity",
        ),
        (
            lambda: ProrationItem(price_id="p", description="x", full_amount=1, quantity=D(-1)),
            "invalid_number",
            "quantity",
        ),
        (
            lambda: ProrationItem(price_id="p", description="x", full_amount=1, quantity=D("NaN")),
            "invalid_number",
            "quantity",
        ),
    ],
)
def test_invalid_input_is_refused_with_a_code(call, code: str, param: str):
    with pytest.raises(ProrationError) as err:
        call()
    assert err.value.code == code
    assert err.value.param == param


def test_int_quantity_is_stored_as_decimal():
    item = ProrationItem(price_id="p", description="x", full_amount=1, quantity=2)  # type: ignore[arg-type]
    assert item.quantity == D(2)
    assert isinstance(item.quantity, Decimal)


# --------------------------------------------------------------------------------------------------
# Properties

anchors = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2060, 1, 1), timezones=st.just(UTC))
intervals = st.tuples(st.sampled_from(UNITS), st.integers(min_value=1, max_value=12))
amounts = st.integers(min_value=0, max_value=10**15)


@st.composite
def period_and_instant(draw: st.DrawFn) -> tuple[Period, datetime]:
    unit, amount = draw(intervals)
    anchor = draw(anchors)
    period = period_containing(anchor, unit, amount, anchor)
    micros = period.duration // timedelta(microseconds=1)
    return period, period.start + timedelta(microseconds=draw(st.integers(min_value=0, max_value=micros - 1)))


def reference_round(value: Fraction) -> int:
    """Half away from zero, written differently from the module on purpose."""
    magnitude = math.floor(abs(value) + Fraction(1, 2))
    return -magnitude if value < 0 else magnitude


@settings(max_examples=200, deadline=None)
@given(case=period_and_instant())
def test_remaining_fraction_is_in_zero_one_and_counts_whole_seconds(case: tuple[Period, datetime]):
    period, at = case
    fraction = remaining_fraction(period, at)
    assert 0 < fraction <= 1
    start = truncate_to_second(period, at)
    assert start <= at < start + timedelta(seconds=1)
    assert start.microsecond == period.start.microsecond
    assert fraction == Fraction(Period(start, period.end).seconds, period.seconds)


@settings(max_examples=200, deadline=None)
@given(case=period_and_instant(), full=st.integers(min_value=-(10**15), max_value=10**15))
def test_prorate_is_bounded_and_matches_exact_rounding(case: tuple[Period, datetime], full: int):
    period, at = case
    result = prorate(full, period, at)
    assert abs(result) <= abs(full)
    assert result == reference_round(full * remaining_fraction(period, at))
    assert prorate(-full, period, at) == -result


@settings(max_examples=200, deadline=None)
@given(case=period_and_instant(), other=st.integers(min_value=0, max_value=10**12), full=amounts)
def test_prorate_is_monotone_non_increasing_in_at(case: tuple[Period, datetime], other: int, full: int):
    period, at = case
    later = min(at + timedelta(microseconds=other), period.end - timedelta(microseconds=1))
    assert prorate(full, period, later) <= prorate(full, period, at)


@settings(max_examples=200, deadline=None)
@given(
    case=period_and_instant(),
    old_amount=amounts,
    new_amount=amounts,
    old_qty=st.integers(min_value=0, max_value=1000),
    new_qty=st.integers(min_value=0, max_value=1000),
    same_price=st.booleans(),
)
def test_upgrade_then_immediate_downgrade_nets_to_zero(
    case: tuple[Period, datetime], old_amount: int, new_amount: int, old_qty: int, new_qty: int, same_price: bool
):
    period, at = case
    old = ProrationItem(price_id="a", description="A", full_amount=old_amount, quantity=D(old_qty))
    new = ProrationItem(
        price_id="a" if same_price else "b", description="B", full_amount=new_amount, quantity=D(new_qty)
    )
    there = proration_lines([old], [new], period, at)
    back = proration_lines([new], [old], period, at)
    assert sum(line.amount for line in there) + sum(line.amount for line in back) == 0
    assert all(line.amount != 0 for line in there + back)
    assert all(line.amount < 0 for line in there if line.description.startswith("Unused time on "))
    assert all(line.amount > 0 for line in there if line.description.startswith("Remaining time on "))
    assert all(line.period_end == period.end and line.period_start == truncate_to_second(period, at) for line in there)
