"""Billing periods in a customer's time zone (pure Python, no database).

New York: DST starts 2024-03-10 02:00 -> 03:00 and ends 2024-11-03 02:00 -> 01:00. Lord Howe Island
(Australia/Lord_Howe) moves by half an hour: +10:30, and +11:00 from the first Sunday of October 02:00
(-> 02:30) to the first Sunday of April 02:00 (-> 01:30): 2024-04-07, 2024-10-06, 2025-04-06.
"""

from __future__ import annotations

import calendar
import itertools
from datetime import UTC, datetime, timedelta, timezone
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
    resolve_timezone,
    start_of_local_day,
)

NY = "America/New_York"
LORD_HOWE = "Australia/Lord_Howe"
HOUR = 3600
DAY = 86400


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def local(zone: str, *args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(zone), fold=fold)  # type: ignore[misc]


def walls(values: list[datetime], zone: str) -> list[str]:
    return [v.astimezone(ZoneInfo(zone)).isoformat() for v in values]


# --------------------------------------------------------------------------------------------------
# New York


def test_monthly_at_local_midnight_in_new_york_over_both_dst_changes() -> None:
    anchor = local(NY, 2024, 1, 31)  # local midnight, the 31st
    values = [boundary(anchor, "month", 1, k, tz=NY) for k in range(12)]
    assert values == [
        utc(2024, 1, 31, 5),
        utc(2024, 2, 29, 5),  # clamped to the last day, leap year
        utc(2024, 3, 31, 4),  # EDT from Mar 10: midnight is an hour earlier in UTC
        utc(2024, 4, 30, 4),
        utc(2024, 5, 31, 4),
        utc(2024, 6, 30, 4),
        utc(2024, 7, 31, 4),
        utc(2024, 8, 31, 4),
        utc(2024, 9, 30, 4),
        utc(2024, 10, 31, 4),
        utc(2024, 11, 30, 5),  # EST again from Nov 3
        utc(2024, 12, 31, 5),
    ]
    assert all(v.tzinfo is UTC for v in values)
    assert all(v.astimezone(ZoneInfo(NY)).time().isoformat() == "00:00:00" for v in values)
    march = period_containing(anchor, "month", 1, utc(2024, 3, 15), tz=NY)
    assert march == Period(utc(2024, 2, 29, 5), utc(2024, 3, 31, 4))
    assert march.seconds == 31 * DAY - HOUR  # the spring-forward hour is not in it
    november = period_containing(anchor, "month", 1, utc(2024, 11, 15), tz=NY)
    assert november.seconds == 30 * DAY + HOUR  # the repeated hour is in it once more


def test_anchor_day_is_the_local_day_and_clamps_in_the_zone() -> None:
    # 2024-02-01T03:00Z is Jan 31, 22:00 in New York: a 31st anchor there, a 1st anchor in UTC.
    anchor = utc(2024, 2, 1, 3)
    in_ny = [boundary(anchor, "month", 1, k, tz=NY) for k in range(4)]
    assert walls(in_ny, NY) == [
        "2024-01-31T22:00:00-05:00",
        "2024-02-29T22:00:00-05:00",
        "2024-03-31T22:00:00-04:00",
        "2024-04-30T22:00:00-04:00",
    ]
    assert in_ny[1:] == [utc(2024, 3, 1, 3), utc(2024, 4, 1, 2), utc(2024, 5, 1, 2)]
    assert [boundary(anchor, "month", 1, k) for k in range(1, 4)] == [
        utc(2024, 3, 1, 3),
        utc(2024, 4, 1, 3),
        utc(2024, 5, 1, 3),
    ]


def test_a_wall_time_the_clock_skips_moves_forward_by_the_jump() -> None:
    anchor = local(NY, 2024, 3, 9, 2, 30)  # 07:30Z
    days = periods_between(anchor, "day", 1, anchor, utc(2024, 3, 12), tz=NY)
    assert [(p.start, p.end) for p in days] == [
        (utc(2024, 3, 9, 7, 30), utc(2024, 3, 10, 7, 30)),  # Mar 10 02:30 does not exist: 03:30 EDT
        (utc(2024, 3, 10, 7, 30), utc(2024, 3, 11, 6, 30)),
        (utc(2024, 3, 11, 6, 30), utc(2024, 3, 12, 6, 30)),
    ]
    assert walls([days[1].start], NY) == ["2024-03-10T03:30:00-04:00"]
    assert [p.seconds for p in days] == [24 * HOUR, 23 * HOUR, 24 * HOUR]


def test_a_repeated_wall_time_is_its_first_occurrence() -> None:
    anchor = local(NY, 2024, 11, 2, 1, 30)  # EDT, 05:30Z
    assert boundary(anchor, "day", 1, 1, tz=NY) == utc(2024, 11, 3, 5, 30)  # 01:30 EDT, not EST
    assert boundary(anchor, "day", 1, 2, tz=NY) == utc(2024, 11, 4, 6, 30)
    assert period_containing(anchor, "day", 1, utc(2024, 11, 4), tz=NY).seconds == 25 * HOUR


def test_an_anchor_in_the_repeated_hour_keeps_its_own_occurrence() -> None:
    anchor = local(NY, 2024, 11, 3, 1, 30, fold=1)  # the second 01:30: EST, 06:30Z
    assert anchor.astimezone(UTC) == utc(2024, 11, 3, 6, 30)
    assert boundary(anchor, "day", 1, 0, tz=NY) == utc(2024, 11, 3, 6, 30)  # boundary 0 is the anchor
    assert boundary(anchor, "day", 1, -1, tz=NY) == utc(2024, 11, 2, 5, 30)
    assert boundary(anchor, "day", 1, 1, tz=NY) == utc(2024, 11, 4, 6, 30)
    assert period_containing(anchor, "day", 1, utc(2024, 11, 3, 6), tz=NY) == Period(
        utc(2024, 11, 2, 5, 30), utc(2024, 11, 3, 6, 30)
    )


def test_weekly_and_yearly_in_new_york() -> None:
    sunday = local(NY, 2024, 3, 3)
    assert [boundary(sunday, "week", 1, k, tz=NY) for k in range(3)] == [
        utc(2024, 3, 3, 5),
        utc(2024, 3, 10, 5),  # midnight came before the 02:00 change
        utc(2024, 3, 17, 4),
    ]
    leap = local(NY, 2024, 2, 29)
    assert [boundary(leap, "year", 1, k, tz=NY) for k in (1, 4)] == [utc(2025, 2, 28, 5), utc(2028, 2, 29, 5)]


def test_half_open_at_local_midnight() -> None:
    anchor = local(NY, 2024, 1, 31)
    edge = utc(2024, 3, 31, 4)
    assert period_containing(anchor, "month", 1, edge, tz=NY).start == edge
    assert period_containing(anchor, "month", 1, edge - timedelta(microseconds=1), tz=NY).end == edge
    march = period_containing(anchor, "month", 1, edge - timedelta(microseconds=1), tz=NY)
    assert next_period(anchor, "month", 1, march, tz=NY) == Period(edge, utc(2024, 4, 30, 4))
    # A period of the New York calendar does not end on a boundary of the UTC calendar.
    with pytest.raises(PeriodError) as info:
        next_period(anchor, "month", 1, march)
    assert info.value.code == "not_on_boundary"


def test_catching_up_monthly_periods_across_dst() -> None:
    anchor = local(NY, 2024, 1, 15)
    periods = periods_between(anchor, "month", 1, utc(2024, 2, 1), utc(2024, 6, 1), tz=NY)
    assert [p.start for p in periods] == [
        utc(2024, 2, 15, 5),
        utc(2024, 3, 15, 4),
        utc(2024, 4, 15, 4),
        utc(2024, 5, 15, 4),
    ]
    assert periods[0].seconds == 29 * DAY - HOUR
    assert all(a.end == b.start for a, b in itertools.pairwise(periods))


def test_start_of_local_day() -> None:
    assert start_of_local_day(utc(2024, 3, 10, 15), NY) == utc(2024, 3, 10, 5)  # midnight EST, before the change
    assert start_of_local_day(utc(2024, 3, 11, 3), NY) == utc(2024, 3, 10, 5)  # still Mar 10 in New York
    assert start_of_local_day(utc(2024, 11, 3, 12), NY) == utc(2024, 11, 3, 4)  # midnight EDT
    # Sao Paulo's DST began at midnight on 2018-11-04: that day started at 01:00 (-02).
    assert start_of_local_day(utc(2018, 11, 4, 12), "America/Sao_Paulo") == utc(2018, 11, 4, 3)
    assert start_of_local_day(utc(2024, 3, 10, 15, 30, 5, 7)) == utc(2024, 3, 10)


# --------------------------------------------------------------------------------------------------
# Lord Howe Island: half-hour DST


def test_monthly_at_local_midnight_on_lord_howe() -> None:
    anchor = local(LORD_HOWE, 2024, 9, 15)
    values = [boundary(anchor, "month", 1, k, tz=LORD_HOWE) for k in range(8)]
    assert values == [
        utc(2024, 9, 14, 13, 30),  # +10:30
        utc(2024, 10, 14, 13),  # +11:00 from Oct 6
        utc(2024, 11, 14, 13),
        utc(2024, 12, 14, 13),
        utc(2025, 1, 14, 13),
        utc(2025, 2, 14, 13),
        utc(2025, 3, 14, 13),
        utc(2025, 4, 14, 13, 30),  # +10:30 again from Apr 6
    ]
    assert Period(values[0], values[1]).seconds == 30 * DAY - HOUR // 2
    assert Period(values[6], values[7]).seconds == 31 * DAY + HOUR // 2
    assert all(v.astimezone(ZoneInfo(LORD_HOWE)).time().isoformat() == "00:00:00" for v in values)


def test_lord_howe_skipped_half_hour_moves_forward_by_half_an_hour() -> None:
    anchor = local(LORD_HOWE, 2024, 9, 6, 2, 15)  # 02:15 +10:30 = Sep 5 15:45Z
    october = boundary(anchor, "month", 1, 1, tz=LORD_HOWE)  # Oct 6 02:15 does not exist
    assert october == utc(2024, 10, 5, 15, 45)
    assert walls([october], LORD_HOWE) == ["2024-10-06T02:45:00+11:00"]
    assert boundary(anchor, "month", 1, 2, tz=LORD_HOWE) == utc(2024, 11, 5, 15, 15)  # 02:15 +11:00
    assert Period(october, boundary(anchor, "month", 1, 2, tz=LORD_HOWE)).seconds == 31 * DAY - HOUR // 2


def test_lord_howe_repeated_half_hour() -> None:
    anchor = local(LORD_HOWE, 2024, 3, 7, 1, 45)  # +11:00 = Mar 6 14:45Z
    assert [boundary(anchor, "month", 1, k, tz=LORD_HOWE) for k in range(3)] == [
        utc(2024, 3, 6, 14, 45),
        utc(2024, 4, 6, 14, 45),  # Apr 7 01:45 happens twice: the first time, at +11:00
        utc(2024, 5, 6, 15, 15),  # +10:30
    ]
    second = local(LORD_HOWE, 2024, 4, 7, 1, 45, fold=1)  # the second 01:45, +10:30 = Apr 6 15:15Z
    assert [boundary(second, "day", 1, k, tz=LORD_HOWE) for k in (-1, 0, 1)] == [
        utc(2024, 4, 5, 14, 45),
        utc(2024, 4, 6, 15, 15),
        utc(2024, 4, 7, 15, 15),
    ]
    assert period_containing(second, "day", 1, utc(2024, 4, 6, 15), tz=LORD_HOWE).seconds == 24 * HOUR + HOUR // 2


def test_lord_howe_anchor_on_the_31st_clamps_in_the_zone() -> None:
    anchor = local(LORD_HOWE, 2024, 1, 31)  # +11:00 = Jan 30 13:00Z
    assert walls([boundary(anchor, "month", 1, k, tz=LORD_HOWE) for k in range(4)], LORD_HOWE) == [
        "2024-01-31T00:00:00+11:00",
        "2024-02-29T00:00:00+11:00",
        "2024-03-31T00:00:00+11:00",
        "2024-04-30T00:00:00+10:30",
    ]


# --------------------------------------------------------------------------------------------------
# A skipped day, defaults, validation


def test_a_local_day_the_zone_skipped_gives_no_empty_period() -> None:
    # Samoa went from Dec 29 to Dec 31 2011 (UTC-10 to UTC+14): Dec 30 has no wall time at all.
    apia = "Pacific/Apia"
    anchor = local(apia, 2011, 12, 28, 10)
    days = periods_between(anchor, "day", 1, anchor, utc(2011, 12, 31, 20), tz=apia)
    assert [(p.start, p.end) for p in days] == [
        (utc(2011, 12, 28, 20), utc(2011, 12, 29, 20)),
        (utc(2011, 12, 29, 20), utc(2011, 12, 30, 20)),  # Dec 29 10:00 -> Dec 31 10:00 local
        (utc(2011, 12, 30, 20), utc(2011, 12, 31, 20)),
    ]
    assert period_containing(anchor, "day", 1, utc(2011, 12, 30, 20), tz=apia) == days[2]
    assert next_period(anchor, "day", 1, days[1], tz=apia) == days[2]


def test_utc_is_the_default_and_every_spelling_of_it_agrees() -> None:
    anchor = utc(2024, 1, 31, 9, 15)
    expected = boundary(anchor, "month", 1, 1)
    assert expected == utc(2024, 2, 29, 9, 15)
    for tz in ("UTC", None, UTC, ZoneInfo("UTC"), "Etc/UTC"):
        assert boundary(anchor, "month", 1, 1, tz=tz) == expected
    assert resolve_timezone(None) is UTC and resolve_timezone("UTC") is UTC
    assert resolve_timezone(NY) == ZoneInfo(NY)
    plus_two = timezone(timedelta(hours=2))
    assert boundary(utc(2024, 1, 31, 23), "month", 1, 1, tz=plus_two) == utc(2024, 2, 29, 23)  # Feb 1 01:00 +2


@pytest.mark.parametrize("name", ["America/Nowhere", "america/new_york", "../../etc/passwd", "", "EST5EDT "])
def test_unknown_zones_are_refused(name: str) -> None:
    with pytest.raises(PeriodError) as info:
        boundary(utc(2024, 1, 1), "month", 1, 1, tz=name)
    assert (info.value.code, info.value.param) == ("unknown_timezone", "timezone")


def test_non_zone_values_are_refused() -> None:
    for value in (5, 1.5, object()):
        with pytest.raises(PeriodError) as info:
            resolve_timezone(value)
        assert (info.value.code, info.value.param) == ("invalid_type", "timezone")
    with pytest.raises(PeriodError) as info:
        boundary(local(NY, 9999, 12, 1), "month", 1, 1, tz=NY)
    assert info.value.code == "out_of_range"


# --------------------------------------------------------------------------------------------------
# Properties, in zones with whole-hour, half-hour and 45-minute offsets and DST at 02:00 and 00:00

ZONES = [NY, LORD_HOWE, "America/Sao_Paulo", "Asia/Kathmandu", "Europe/London", "UTC"]
instants = st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC))
intervals = st.tuples(st.sampled_from(UNITS), st.integers(min_value=1, max_value=13))
zones = st.sampled_from(ZONES)


@settings(max_examples=200, deadline=None)
@given(anchor=instants, interval=intervals, at=instants, tz=zones)
def test_period_containing_contains_the_instant_in_every_zone(
    anchor: datetime, interval: tuple[str, int], at: datetime, tz: str
) -> None:
    unit, amount = interval
    if unit == "day" and abs((at - anchor).days) > 5000:
        at = anchor + timedelta(days=(at - anchor).days % 5000)  # keep the example fast
    period = period_containing(anchor, unit, amount, at, tz=tz)
    assert period.start <= at < period.end
    assert period_containing(anchor, unit, amount, period.start, tz=tz) == period
    assert next_period(anchor, unit, amount, period, tz=tz).start == period.end


@settings(max_examples=200, deadline=None)
@given(
    anchor=instants, amount=st.integers(min_value=1, max_value=24), k=st.integers(min_value=-60, max_value=60), tz=zones
)
def test_monthly_boundaries_keep_the_local_wall_time_and_clamp_the_local_day(
    anchor: datetime, amount: int, k: int, tz: str
) -> None:
    zone = ZoneInfo(tz)
    wall = anchor.astimezone(zone)
    year, month0 = divmod(wall.year * 12 + wall.month - 1 + amount * k, 12)
    target = wall.replace(
        tzinfo=None, year=year, month=month0 + 1, day=min(wall.day, calendar.monthrange(year, month0 + 1)[1])
    )
    value = boundary(anchor, "month", amount, k, tz=tz)
    assert value.tzinfo is UTC
    shown = value.astimezone(zone).replace(tzinfo=None)
    if shown != target:
        # Only a wall time the clock jumped over moves, and then forward, by the jump.
        assert target.replace(tzinfo=zone).astimezone(UTC).astimezone(zone).replace(tzinfo=None) != target
        assert value == target.replace(tzinfo=zone, fold=0).astimezone(UTC)
        assert timedelta(0) < shown - target <= timedelta(hours=2)


@settings(max_examples=100, deadline=None)
@given(anchor=instants, interval=intervals, steps=st.integers(min_value=0, max_value=30), tz=zones)
def test_boundaries_equal_walking_with_next_period_in_every_zone(
    anchor: datetime, interval: tuple[str, int], steps: int, tz: str
) -> None:
    unit, amount = interval
    period = period_containing(anchor, unit, amount, anchor, tz=tz)
    assert period.start == anchor.astimezone(UTC)
    for _ in range(steps):
        period = next_period(anchor, unit, amount, period, tz=tz)
    assert (period.start, period.end) == (
        boundary(anchor, unit, amount, steps, tz=tz),
        boundary(anchor, unit, amount, steps + 1, tz=tz),
    )


@settings(max_examples=100, deadline=None)
@given(anchor=instants, interval=intervals, a=instants, b=instants, tz=zones)
def test_periods_between_tiles_the_range_in_every_zone(
    anchor: datetime, interval: tuple[str, int], a: datetime, b: datetime, tz: str
) -> None:
    unit, amount = interval
    start, until = min(a, b), max(a, b)
    if unit == "day" and (until - start).days > 2000:
        until = start + timedelta(days=2000)  # keep the example fast
    periods = periods_between(anchor, unit, amount, start, until, tz=tz)
    assert all(start <= p.start < until for p in periods)
    assert all(x.end == y.start for x, y in itertools.pairwise(periods))
    containing = period_containing(anchor, unit, amount, start, tz=tz)
    first = containing if containing.start == start else next_period(anchor, unit, amount, containing, tz=tz)
    if periods:
        assert periods[0] == first
        assert next_period(anchor, unit, amount, periods[-1], tz=tz).start >= until
    else:
        assert first.start >= until


@settings(max_examples=100, deadline=None)
@given(at=instants, tz=zones)
def test_start_of_local_day_is_the_first_instant_of_the_local_date(at: datetime, tz: str) -> None:
    zone = ZoneInfo(tz)
    start = start_of_local_day(at, tz)
    assert start <= at
    assert start.astimezone(zone).date() == at.astimezone(zone).date()
    assert (start - timedelta(microseconds=1)).astimezone(zone).date() < at.astimezone(zone).date()
