"""Slice arithmetic (pure): UTC-aligned hours and days, provider intervals clipped to a slice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metering.push.slices import clip, next_provider_time, slice_ceil, slice_floor, slice_length, slices_between

HOUR, DAY = slice_length("hour"), slice_length("day")
T = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def test_floors_and_ceilings_are_utc_aligned():
    local = datetime(2026, 3, 2, 11, 30, tzinfo=timezone(timedelta(hours=2)))  # 09:30 UTC
    assert slice_floor(local, HOUR) == datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    assert slice_floor(local, DAY) == datetime(2026, 3, 2, tzinfo=UTC)
    assert slice_ceil(T, HOUR) == T and slice_ceil(T + timedelta(seconds=1), HOUR) == T + HOUR
    assert list(slices_between(T + timedelta(minutes=5), T + 2 * HOUR, HOUR)) == [
        (T, T + HOUR),
        (T + HOUR, T + 2 * HOUR),
    ]
    with pytest.raises(ValueError, match="hour, day"):
        slice_length("week")


def test_intervals_clip_to_the_slice_and_find_the_next_provider_time():
    intervals = [(T - HOUR, T + timedelta(minutes=20)), (T + timedelta(minutes=40), None)]
    assert clip(intervals, T, T + HOUR) == [(T, T + timedelta(minutes=20)), (T + timedelta(minutes=40), T + HOUR)]
    assert clip([], T, T + HOUR) == []
    assert next_provider_time(intervals, T + timedelta(minutes=30)) == T + timedelta(minutes=40)
    assert next_provider_time([(T - HOUR, T)], T) is None


@given(st.integers(min_value=0, max_value=10**8), st.sampled_from(["hour", "day"]))
def test_a_moment_lies_in_its_slice(seconds, name):
    length = slice_length(name)
    moment = T + timedelta(seconds=seconds)
    start = slice_floor(moment, length)
    assert start <= moment < start + length
    assert slice_floor(start, length) == start
