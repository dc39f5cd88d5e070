"""Tests for billing-period arithmetic (pure Python, no database)."""

from __future__ import annotations

import calendar
import itertools
from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from subscriptions.periods import (
    UNITS,
    Period,
    PeriodError,
    boundary,
    next_period,
    period_containing,
    periods_between,
    validate_interval,
)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def monthly_dates(anchor: datetime, ks: range, amount: int = 1) -> list[date]:
    return [boundary(anchor, "month", amount, k).date() for k in ks]


# --------------------------------------------------------------------------------------------------
# Monthly anchors at the end of the month


def test_31st_anchor_visits_every_month_end_for_a_whole_year():
    anchor = utc(2023, 1, 31, 9, 15, 30, 123456)
    expected = [
        date(2023, 1, 31),
        date(2023, 2, 28),
        date(2023, 3, 31),
        date(2023, 4, 30),
        date(2023, 5, 31),
        date(2023, 6, 30),
        date(2023, 7, 31),
        date(2023, 8, 31),
        date(2023, 9, 30),
        date(2023, 10, 31),
        date(2023, 11, 30),
        date(2023, 12, 31),
        date(2024, 1, 31),
        date(2024, 2, 29),  # leap year
        date(2024, 3, 31),
    ]
    assert monthly_dates(anchor, range(15)) == expected
    # The time of day, down to the microsecond, is kept on every boundary.
    for k in range(15):
        assert boundary(anchor, "month", 1, k).time() == anchor.time()
        assert boundary(anchor, "month", 1, k).tzinfo is UTC


def test_31st_anchor_returns_to_the_31st_instead_of_drifting():
    anchor = utc(2024, 1, 31)
    # Adding a month to the previous boundary would give Mar 29; counting from the anchor gives Mar 31.
    feb = boundary(anchor, "month", 1, 1)
    assert feb == utc(2024, 2, 29)
    assert boundary(anchor, "month", 1, 2) == utc(2024, 3, 31)
    assert next_period(anchor, "month", 1, Period(anchor, feb)) == Period(feb, utc(2024, 3, 31))


@pytest.mark.parametrize(
    ("anchor_day", "year", "feb", "mar"),
    [
        (30, 2023, 28, 30),
        (29, 2023, 28, 29),
        (30, 2024, 29, 30),
        (29, 2024, 29, 29),
        (28, 2023, 28, 28),
    ],
)
def test_30th_and_29th_anchors_clamp_in_february_only(anchor_day: int, year: int, feb: int, mar: int):
    anchor = utc(year, 1, anchor_day, 12)
    assert boundary(anchor, "month", 1, 1) == utc(year, 2, feb, 12)
    assert boundary(anchor, "month", 1, 2) == utc(year, 3, mar, 12)
    assert boundary(anchor, "month", 1, 3) == utc(year, 4, min(anchor_day, 30), 12)


@pytest.mark.parametrize(
    ("year", "feb_days"),
    [(2023, 28), (2024, 29), (2100, 28), (2000, 29), (1900, 28), (2400, 29)],
)
def test_leap_year_rules_for_a_31st_anchor(year: int, feb_days: int):
    anchor = utc(year, 1, 31)
    assert boundary(anchor, "month", 1, 1) == utc(year, 2, feb_days)
    assert period_containing(anchor, "month", 1, utc(year, 2, 15)).seconds == feb_days * 86400


def test_february_period_lengths():
    anchor = utc(2024, 1, 31)
    jan = period_containing(anchor, "month", 1, utc(2024, 2, 1))
    assert jan == Period(utc(2024, 1, 31), utc(2024, 2, 29))
    assert jan.seconds == 29 * 86400
    feb = next_period(anchor, "month", 1, jan)
    assert feb == Period(utc(2024, 2, 29), utc(2024, 3, 31))
    assert feb.seconds == 31 * 86400


# --------------------------------------------------------------------------------------------------
# Yearly, weekly, daily, multi-month


def test_feb_29_yearly_anchor():
    anchor = utc(2024, 2, 29, 6)
    assert [boundary(anchor, "year", 1, k) for k in range(-1, 6)] == [
        utc(2023, 2, 28, 6),
        utc(2024, 2, 29, 6),
        utc(2025, 2, 28, 6),
        utc(2026, 2, 28, 6),
        utc(2027, 2, 28, 6),
        utc(2028, 2, 29, 6),
        utc(2029, 2, 28, 6),
    ]
    # 2100 is not a leap year, 2000 is.
    assert boundary(anchor, "year", 1, 76) == utc(2100, 2, 28, 6)
    assert boundary(anchor, "year", 1, -24) == utc(2000, 2, 29, 6)
    assert boundary(anchor, "year", 4, 19) == utc(2100, 2, 28, 6)


def test_yearly_period_lengths():
    anchor = utc(2023, 3, 1)
    assert period_containing(anchor, "year", 1, utc(2023, 12, 31)).seconds == 366 * 86400  # spans Feb 29 2024
    assert period_containing(anchor, "year", 1, utc(2024, 6, 1)).seconds == 365 * 86400


def test_weekly_and_daily_are_exact_multiples():
    anchor = utc(2024, 2, 26, 23, 59, 59)
    assert boundary(anchor, "week", 1, 1) == utc(2024, 3, 4, 23, 59, 59)
    assert boundary(anchor, "week", 2, 3) == anchor + timedelta(weeks=6)
    assert boundary(anchor, "week", 1, -1) == utc(2024, 2, 19, 23, 59, 59)
    assert boundary(anchor, "day", 1, 3) == utc(2024, 2, 29, 23, 59, 59)
    assert boundary(anchor, "day", 1, 4) == utc(2024, 3, 1, 23, 59, 59)
    assert boundary(anchor, "day", 10, -2) == anchor - timedelta(days=20)
    assert period_containing(anchor, "week", 1, utc(2024, 3, 1)) == Period(anchor, utc(2024, 3, 4, 23, 59, 59))
    assert period_containing(anchor, "day", 1, utc(2024, 2, 27)).seconds == 86400


def test_quarterly_boundaries_from_a_31st_anchor():
    anchor = utc(2023, 8, 31)
    assert monthly_dates(anchor, range(-2, 5), amount=3) == [
        date(2023, 2, 28),
        date(2023, 5, 31),
        date(2023, 8, 31),
        date(2023, 11, 30),
        date(2024, 2, 29),
        date(2024, 5, 31),
        date(2024, 8, 31),
    ]
    q = period_containing(anchor, "month", 3, utc(2023, 12, 25))
    assert q == Period(utc(2023, 11, 30), utc(2024, 2, 29))
    assert q.seconds == (1 + 31 + 31 + 28) * 86400


def test_half_yearly_boundaries():
    anchor = utc(2023, 8, 31, 8)
    assert monthly_dates(anchor, range(4), amount=6) == [
        date(2023, 8, 31),
        date(2024, 2, 29),
        date(2024, 8, 31),
        date(2025, 2, 28),
    ]
    assert period_containing(anchor, "month", 6, utc(2024, 2, 29, 7, 59, 59)) == Period(
        utc(2023, 8, 31, 8), utc(2024, 2, 29, 8)
    )


# --------------------------------------------------------------------------------------------------
# Half-open membership, negative k, instants before the anchor


def test_boundary_instant_belongs_to_the_period_that_starts_there():
    anchor = utc(2024, 1, 15, 10)
    at_boundary = utc(2024, 2, 15, 10)
    period = period_containing(anchor, "month", 1, at_boundary)
    assert period == Period(utc(2024, 2, 15, 10), utc(2024, 3, 15, 10))
    assert period.contains(at_boundary)
    assert not period.contains(utc(2024, 3, 15, 10))  # end is excluded
    assert period.contains(utc(2024, 3, 15, 9, 59, 59, 999999))
    previous = period_containing(anchor, "month", 1, at_boundary - timedelta(microseconds=1))
    assert previous == Period(anchor, at_boundary)
    assert not previous.contains(at_boundary)
    assert period_containing(anchor, "month", 1, anchor) == Period(anchor, at_boundary)


def test_negative_k_and_instants_before_the_anchor():
    anchor = utc(2024, 3, 31)
    assert boundary(anchor, "month", 1, -1) == utc(2024, 2, 29)
    assert boundary(anchor, "month", 1, -2) == utc(2024, 1, 31)
    assert boundary(anchor, "month", 1, -13) == utc(2023, 2, 28)
    assert boundary(anchor, "month", 1, -4) == utc(2023, 11, 30)
    assert period_containing(anchor, "month", 1, utc(2024, 2, 1)) == Period(utc(2024, 1, 31), utc(2024, 2, 29))
    assert period_containing(anchor, "month", 1, utc(2023, 12, 31)) == Period(utc(2023, 12, 31), utc(2024, 1, 31))
    assert period_containing(anchor, "day", 7, utc(2024, 3, 30)) == Period(utc(2024, 3, 24), anchor)


def test_non_utc_inputs_are_converted_to_utc():
    plus_two = timezone(timedelta(hours=2))
    anchor = datetime(2024, 2, 1, 1, 0, tzinfo=plus_two)  # Jan 31 23:00 UTC
    assert boundary(anchor, "month", 1, 1) == utc(2024, 2, 29, 23)
    assert boundary(anchor, "month", 1, 1).tzinfo is UTC
    ny = ZoneInfo("America/New_York")
    # A DST change in the caller's zone cannot make a daily period shorter: days are UTC days.
    period = period_containing(utc(2024, 3, 9, 12), "day", 1, datetime(2024, 3, 10, 12, tzinfo=ny))
    assert period.seconds == 86400
    assert Period(datetime(2024, 1, 1, 2, tzinfo=plus_two), utc(2024, 1, 2)).start == utc(2024, 1, 1)


# --------------------------------------------------------------------------------------------------
# next_period and periods_between


def test_next_period_refuses_a_period_from_another_schedule():
    anchor = utc(2024, 1, 31)
    with pytest.raises(PeriodError) as err:
        next_period(anchor, "month", 1, Period(utc(2024, 1, 1), utc(2024, 2, 1)))
    assert err.value.code == "not_on_boundary"
    assert err.value.param == "period"


def test_next_period_accepts_a_stub_period_ending_on_a_boundary():
    anchor = utc(2024, 1, 31)
    stub = Period(utc(2024, 2, 10, 13, 37), utc(2024, 2, 29))
    assert next_period(anchor, "month", 1, stub) == Period(utc(2024, 2, 29), utc(2024, 3, 31))


def test_periods_between_catches_up_missed_periods_in_order():
    anchor = utc(2023, 10, 31)
    periods = periods_between(anchor, "month", 1, anchor, utc(2024, 3, 15))
    assert [(p.start.date(), p.end.date()) for p in periods] == [
        (date(2023, 10, 31), date(2023, 11, 30)),
        (date(2023, 11, 30), date(2023, 12, 31)),
        (date(2023, 12, 31), date(2024, 1, 31)),
        (date(2024, 1, 31), date(2024, 2, 29)),
        (date(2024, 2, 29), date(2024, 3, 31)),
    ]
    # A period that is already running at `start` is not included; one starting at `until` is not either.
    assert periods_between(anchor, "month", 1, utc(2023, 11, 1), utc(2024, 1, 31)) == periods[1:3]
    assert periods_between(anchor, "month", 1, utc(2023, 11, 30), utc(2023, 11, 30)) == []
    assert periods_between(anchor, "month", 1, utc(2024, 1, 1), utc(2023, 1, 1)) == []
    assert periods_between(anchor, "month", 1, anchor, utc(2024, 3, 15), limit=2) == periods[:2]
    assert periods_between(anchor, "month", 1, anchor, utc(2024, 3, 15), limit=0) == []


def test_periods_between_daily_backlog():
    anchor = utc(2024, 2, 27, 5)
    periods = periods_between(anchor, "day", 1, utc(2024, 2, 27), utc(2024, 3, 2))
    assert [p.start for p in periods] == [
        utc(2024, 2, 27, 5),
        utc(2024, 2, 28, 5),
        utc(2024, 2, 29, 5),
        utc(2024, 3, 1, 5),
    ]


# --------------------------------------------------------------------------------------------------
# Validation


@pytest.mark.parametrize(
    ("call", "code", "param"),
    [
        (lambda: boundary(datetime(2024, 1, 1), "month", 1, 0), "naive_datetime", "anchor"),
        (lambda: period_containing(utc(2024, 1, 1), "month", 1, datetime(2024, 2, 1)), "naive_datetime", "at"),
        (lambda: Period(datetime(2024, 1, 1), utc(2024, 2, 1)), "naive_datetime", "start"),
        (lambda: Period(utc(2024, 1, 1), utc(2024, 1, 1)), "empty_period", "end"),
        (lambda: Period(utc(2024, 2, 1), utc(2024, 1, 1)), "empty_period", "end"),
        (lambda: boundary(utc(2024, 1, 1), "fortnight", 1, 0), "invalid_choice", "unit"),
        (lambda: boundary(utc(2024, 1, 1), "Month", 1, 0), "invalid_choice", "unit"),
        (lambda: boundary(utc(2024, 1, 1), "month", 0, 0), "invalid_amount", "amount"),
        (lambda: boundary(utc(2024, 1, 1), "month", -1, 0), "invalid_amount", "amount"),
        (lambda: boundary(utc(2024, 1, 1), "month", True, 0), "invalid_type", "amount"),
        (lambda: boundary(utc(2024, 1, 1), "month", 1.0, 0), "invalid_type", "amount"),
        (lambda: boundary(utc(2024, 1, 1), "month", 1, 1.0), "invalid_type", "k"),
        (lambda: boundary(utc(9999, 6, 1), "month", 1, 12), "out_of_range", "anchor"),
        (lambda: boundary(utc(1, 6, 1), "day", 1, -365), "out_of_range", "anchor"),
        (lambda: Period(utc(2024, 1, 1), utc(2024, 2, 1)).contains(datetime(2024, 1, 5)), "naive_datetime", "at"),
        (
            lambda: periods_between(utc(2024, 1, 1), "day", 1, utc(2024, 1, 1), utc(2024, 2, 1), limit=-1),
            "invalid_limit",
            "limit",
        ),
    ],
)
def test_invalid_input_is_refused_with_a_code(call, code: str, param: str):
    with pytest.raises(PeriodError) as err:
        call()
    assert err.value.code == code
    assert err.value.param == param


def test_validate_interval_accepts_every_unit():
    for unit in UNITS:
        validate_interval(unit, 1)
        validate_interval(unit, 12)


# --------------------------------------------------------------------------------------------------
# Properties

instants = st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2110, 1, 1), timezones=st.just(UTC))
intervals = st.tuples(st.sampled_from(UNITS), st.integers(min_value=1, max_value=13))


@settings(max_examples=200, deadline=None)
@given(anchor=instants, interval=intervals, k=st.integers(min_value=-40, max_value=40))
def test_periods_are_contiguous_and_strictly_increasing(anchor: datetime, interval: tuple[str, int], k: int):
    unit, amount = interval
    first = Period(boundary(anchor, unit, amount, k), boundary(anchor, unit, amount, k + 1))
    second = next_period(anchor, unit, amount, first)
    assert first.start < first.end == second.start < second.end
    assert second.end == boundary(anchor, unit, amount, k + 2)


@settings(max_examples=200, deadline=None)
@given(anchor=instants, interval=intervals, at=instants)
def test_period_containing_contains_the_instant(anchor: datetime, interval: tuple[str, int], at: datetime):
    unit, amount = interval
    period = period_containing(anchor, unit, amount, at)
    assert period.contains(at)
    assert period.start <= at < period.end
    # Its ends are boundaries of the schedule: both are fixed points of period_containing.
    assert period_containing(anchor, unit, amount, period.start) == period
    assert period_containing(anchor, unit, amount, period.end).start == period.end


@settings(max_examples=100, deadline=None)
@given(anchor=instants, interval=intervals, steps=st.integers(min_value=0, max_value=30))
def test_boundary_equals_walking_with_next_period(anchor: datetime, interval: tuple[str, int], steps: int):
    unit, amount = interval
    period = period_containing(anchor, unit, amount, anchor)
    for _ in range(steps):
        period = next_period(anchor, unit, amount, period)
    assert period.start == boundary(anchor, unit, amount, steps)
    assert period.end == boundary(anchor, unit, amount, steps + 1)


@settings(max_examples=200, deadline=None)
@given(anchor=instants, amount=st.integers(min_value=1, max_value=24), k=st.integers(min_value=-60, max_value=60))
def test_monthly_day_of_month_is_anchor_day_clamped(anchor: datetime, amount: int, k: int):
    value = boundary(anchor, "month", amount, k)
    days_in_month = calendar.monthrange(value.year, value.month)[1]
    assert value.day == min(anchor.day, days_in_month)
    assert (value.year * 12 + value.month) - (anchor.year * 12 + anchor.month) == amount * k
    assert value.time() == anchor.time()


@settings(max_examples=100, deadline=None)
@given(anchor=instants, interval=intervals, a=instants, b=instants)
def test_periods_between_tiles_the_range(anchor: datetime, interval: tuple[str, int], a: datetime, b: datetime):
    unit, amount = interval
    start, until = min(a, b), max(a, b)
    if unit == "day" and (until - start).days > 3000:
        until = start + timedelta(days=3000)  # keep the example fast
    periods = periods_between(anchor, unit, amount, start, until)
    assert all(start <= p.start < until for p in periods)
    for before, after in itertools.pairwise(periods):
        assert before.end == after.start
    # Nothing is missed: the first period is the first one starting at or after `start`, and the one
    # after the last starts at or after `until`.
    containing = period_containing(anchor, unit, amount, start)
    first = containing if containing.start == start else next_period(anchor, unit, amount, containing)
    if periods:
        assert periods[0] == first
        assert next_period(anchor, unit, amount, periods[-1]).start >= until
    else:
        assert first.start >= until
