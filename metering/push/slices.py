"""Slice arithmetic for the usage push: UTC-aligned hours or days, half-open, intersected with the
stretches of time a customer was billed in provider mode. No Django here, so it is tested on its own."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta

SLICE_LENGTHS = {"hour": timedelta(hours=1), "day": timedelta(days=1)}

Interval = tuple[datetime, datetime | None]


def slice_length(name: str) -> timedelta:
    try:
        return SLICE_LENGTHS[name]
    except KeyError:
        raise ValueError(f"slice must be one of {', '.join(SLICE_LENGTHS)}, got {name!r}") from None


def slice_floor(moment: datetime, length: timedelta) -> datetime:
    """The start of the slice holding `moment` (slices are aligned to UTC hours or UTC days)."""
    moment = moment.astimezone(UTC)
    if length == SLICE_LENGTHS["day"]:
        return moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if length == SLICE_LENGTHS["hour"]:
        return moment.replace(minute=0, second=0, microsecond=0)
    raise ValueError(f"unsupported slice length {length}")


def slice_ceil(moment: datetime, length: timedelta) -> datetime:
    floor = slice_floor(moment, length)
    return floor if floor == moment else floor + length


def slices_between(start: datetime, end: datetime, length: timedelta) -> Iterator[tuple[datetime, datetime]]:
    """Every whole slice overlapping [start, end)."""
    lo = slice_floor(start, length)
    while lo < end:
        yield lo, lo + length
        lo += length


def clip(intervals: Iterable[Interval], start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """The parts of `intervals` inside [start, end), in order, empty parts left out."""
    parts = []
    for lo, hi in intervals:
        a, b = max(lo, start), min(hi or end, end)
        if a < b:
            parts.append((a, b))
    return parts


def next_provider_time(intervals: Iterable[Interval], moment: datetime) -> datetime | None:
    """The earliest time at or after `moment` inside an interval, or None when there is none."""
    for lo, hi in intervals:
        if hi is None or hi > moment:
            return max(lo, moment)
    return None
