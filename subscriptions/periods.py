"""Billing periods: anchored day/week/month/year intervals, half-open [start, end), returned in UTC.

Pure Python (no Django) so the calendar rules can be property-tested on their own (DESIGN.md section 3).

Every boundary is computed from the anchor (`anchor + k intervals`), never by adding one interval to
the previous boundary. Repeated adding loses information: Jan 31 + 1 month = Feb 28, and Feb 28 + 1
month = Mar 28, so a customer anchored on the 31st would drift to the 28th for ever. Counting from the
anchor, the 31st clamps to the month's last day (Feb 28, or 29 in leap years, Apr 30) and returns to
the 31st in every month that has one. The same rule makes a Feb 29 yearly anchor fall on Feb 28 in
common years and Feb 29 in leap years.

Calendar zone. Every function takes `tz`, the customer's IANA time zone (default "UTC"). The calendar
arithmetic happens on the anchor's wall clock in that zone: the anchor's local date gives the day of
month that is clamped, and the anchor's local time of day (to the microsecond) is kept on every
boundary. A period anchored at local midnight therefore starts at local midnight in every month, and a
daily period is a local calendar day (23 or 25 hours across a DST change); `start_of_local_day` gives
the local midnight of a day to anchor on. Results are always aware UTC datetimes; periods are stored in
UTC. With tz UTC (the default) this is exactly the UTC calendar: days are 24 h, and a DST change in the
caller's zone can never make a period an hour short.

DST, where a boundary's wall time does not exist or exists twice in the zone:
- Nonexistent (the clock jumps over it, e.g. 02:30 on a spring-forward night in New York, 02:15 on
  Lord Howe Island, 00:00 on a Sao Paulo DST night): the boundary is moved forward by the length of the
  jump (02:30 becomes 03:30 EDT), i.e. read with the offset in force before the jump. The period then
  starts as soon as that wall time has been passed, never earlier and never skipped.
- Ambiguous (the clock repeats it, e.g. 01:30 on a fall-back night): the first occurrence, unless the
  anchor itself is a second occurrence (then the second), so that boundary 0 is always the anchor.
These are PEP 495's fold=0 (and the anchor's fold) and what most calendars do. A local day that a zone
skipped entirely (Pacific/Apia, Dec 30 2011) gives an empty period, which is never returned: the
periods around it meet.

Naive datetimes are refused: guessing their zone is how invoices end up a day off.
"""

from __future__ import annotations

import calendar
import functools
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Final
from zoneinfo import ZoneInfo

from billing_site.money import InputError

__all__ = [
    "UNITS",
    "Period",
    "PeriodError",
    "boundary",
    "next_period",
    "period_containing",
    "periods_between",
    "resolve_timezone",
    "start_of_local_day",
    "validate_interval",
]

UNITS: Final = ("day", "week", "month", "year")

_ONE_SECOND: Final = timedelta(seconds=1)


class PeriodError(InputError):
    """Bad period input. `code` is machine-readable, `param` is the field name for the API envelope."""


def _utc(value: object, param: str) -> datetime:
    if not isinstance(value, datetime):
        raise PeriodError("invalid_type", f"{param} must be a datetime.", param)
    if value.tzinfo is None or value.utcoffset() is None:
        raise PeriodError("naive_datetime", f"{param} must be timezone-aware (UTC).", param)
    if value.tzinfo is UTC:
        return value
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise PeriodError("out_of_range", f"{param} is outside the supported date range.", param) from None


@dataclass(frozen=True, slots=True)
class Period:
    """A half-open interval [start, end): an instant at exactly `end` belongs to the next period.

    Both ends are stored in UTC whatever zone they were given in, so two equal periods compare equal.
    """

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        start = _utc(self.start, "start")
        end = _utc(self.end, "end")
        if end <= start:
            # An empty (or reversed) period would make proration divide by zero and usage queries
            # silently return nothing; it is always a caller bug.
            raise PeriodError("empty_period", "A period must end after it starts.", "end")
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "end", end)

    def contains(self, at: datetime) -> bool:
        """start <= at < end."""
        moment = _utc(at, "at")
        return self.start <= moment < self.end

    @property
    def duration(self) -> timedelta:
        return self.end - self.start

    @property
    def seconds(self) -> int:
        """Whole seconds in the period, as an exact int (timedelta arithmetic is exact in microseconds,
        unlike total_seconds(), which is a float). Periods built by this module always span a whole
        number of seconds because both ends carry the anchor's sub-second part; for a hand-built period
        that does not, the partial second is dropped."""
        return (self.end - self.start) // _ONE_SECOND


def validate_interval(unit: object, amount: object) -> None:
    """Raise PeriodError unless (unit, amount) is a billing interval such as ("month", 3)."""
    if not isinstance(unit, str) or unit not in UNITS:
        raise PeriodError("invalid_choice", f"unit must be one of {', '.join(UNITS)}.", "unit")
    # bool is an int subclass; True meaning "every 1 month" is a bug to refuse, not a value to accept.
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise PeriodError("invalid_type", "amount must be an integer.", "amount")
    if amount < 1:
        raise PeriodError("invalid_amount", "amount must be at least 1.", "amount")


def _check_index(k: object) -> int:
    if isinstance(k, bool) or not isinstance(k, int):
        raise PeriodError("invalid_type", "k must be an integer.", "k")
    return k


def _out_of_range() -> PeriodError:
    return PeriodError("out_of_range", "The period lies outside the supported date range (years 1-9999).", "anchor")


def _boundary(anchor: datetime, unit: str, amount: int, k: int) -> datetime:
    """The k-th boundary as a wall time: `anchor` is the UTC anchor (UTC calendar) or the anchor's naive
    local wall time (a zone's calendar); the arithmetic is the same on both."""
    try:
        if unit == "day":
            return anchor + timedelta(days=amount * k)
        if unit == "week":
            return anchor + timedelta(weeks=amount * k)
        months = amount * k * (12 if unit == "year" else 1)
        # Month arithmetic on a single running index (year * 12 + month - 1): divmod floors, so negative
        # k walks back across year ends correctly.
        year, month0 = divmod(anchor.year * 12 + anchor.month - 1 + months, 12)
        month = month0 + 1
        if not 1 <= year <= 9999:
            raise _out_of_range()
        day = min(anchor.day, calendar.monthrange(year, month)[1])
        return anchor.replace(year=year, month=month, day=day)
    except (OverflowError, ValueError) as exc:
        if isinstance(exc, PeriodError):
            raise
        raise _out_of_range() from None


@functools.cache
def _zone_names() -> frozenset[str]:
    # Read once: the tz database's keys. Only these are accepted, so a client's string never reaches the
    # file system lookup ZoneInfo does for an unknown key.
    return frozenset(zoneinfo.available_timezones())


def resolve_timezone(tz: object, param: str = "timezone") -> tzinfo:
    """The zone for an IANA name ("America/New_York"), a ZoneInfo, or a fixed-offset `timezone`; None and
    "UTC" are UTC. Raise PeriodError for anything else (names are case-sensitive, as in the tz database)."""
    if tz is None or tz is UTC:
        return UTC
    if isinstance(tz, str):
        if tz == "UTC":
            return UTC
        if tz not in _zone_names():
            raise PeriodError(
                "unknown_timezone", f"Unknown time zone {tz!r}: use an IANA name such as 'Europe/Paris'.", param
            )
        return ZoneInfo(tz)
    if isinstance(tz, ZoneInfo):
        return UTC if tz.key == "UTC" else tz
    if isinstance(tz, timezone):
        return UTC if tz.utcoffset(None) == timedelta(0) else tz
    # Other tzinfo implementations (pytz above all) do not follow PEP 495's fold, which the DST rules need.
    raise PeriodError("invalid_type", "timezone must be an IANA time zone name.", param)


def _from_wall(wall: datetime, zone: tzinfo, fold: int) -> datetime:
    """The UTC instant of a naive local wall time, by the module's DST rules."""
    try:
        instant = wall.replace(tzinfo=zone, fold=fold).astimezone(UTC)
        if instant.astimezone(zone).replace(tzinfo=None) != wall:
            # The clock jumped over this wall time. Read it with the offset in force before the jump
            # (fold=0): the instant lands the length of the jump later, where the wall time was passed.
            instant = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
        return instant
    except (OverflowError, ValueError):
        raise _out_of_range() from None


def _to_wall(instant: datetime, zone: tzinfo) -> datetime:
    try:
        return instant.astimezone(zone)
    except (OverflowError, ValueError):
        raise _out_of_range() from None


@dataclass(frozen=True, slots=True)
class _Schedule:
    """An anchored interval in a calendar zone: validated once, then boundaries and indexes."""

    anchor: datetime  # UTC
    unit: str
    amount: int
    zone: tzinfo | None  # None: the UTC calendar
    wall: datetime  # the anchor's wall time: the UTC anchor itself, or naive local time in `zone`
    fold: int  # the anchor's fold: which occurrence of an ambiguous wall time it is

    @classmethod
    def make(cls, anchor: object, unit: object, amount: object, tz: object) -> _Schedule:
        validate_interval(unit, amount)
        assert isinstance(unit, str) and isinstance(amount, int)
        origin = _utc(anchor, "anchor")
        zone = resolve_timezone(tz)
        if zone is UTC:
            return cls(origin, unit, amount, None, origin, 0)
        local = _to_wall(origin, zone)
        return cls(origin, unit, amount, zone, local.replace(tzinfo=None), local.fold)

    def boundary(self, k: int) -> datetime:
        wall = _boundary(self.wall, self.unit, self.amount, k)
        if self.zone is None:
            return wall
        # With the anchor's own fold, boundary 0 is the anchor even when it is a repeated hour's second pass.
        return _from_wall(wall, self.zone, self.fold)

    def index_at(self, at: datetime) -> int:
        """The k with boundary(k) <= at < boundary(k + 1)."""
        local = at if self.zone is None else _to_wall(at, self.zone).replace(tzinfo=None)
        if self.unit in ("day", "week"):
            step = timedelta(days=self.amount) if self.unit == "day" else timedelta(weeks=self.amount)
            # timedelta // timedelta is an exact floor division in microseconds, so instants before the
            # anchor get negative indexes and an instant on a boundary starts its own period.
            k = (local - self.wall) // step
        else:
            months_per_period = self.amount * (12 if self.unit == "year" else 1)
            month_diff = (local.year - self.wall.year) * 12 + (local.month - self.wall.month)
            k = month_diff // months_per_period
        # The estimate ignores the day and time of month (a boundary late in the month can still lie
        # ahead) and a zone's DST shifts, so it can be one period off; the loops settle it, skipping a
        # period a zone left empty (a skipped local day) because its ends are equal.
        while self.boundary(k) > at:
            k -= 1
        while self.boundary(k + 1) <= at:
            k += 1
        return k


def boundary(anchor: datetime, unit: str, amount: int, k: int, *, tz: str | tzinfo | None = "UTC") -> datetime:
    """The k-th period boundary counted from `anchor` (k may be negative; boundary(..., 0) is the anchor).

    Months and years are computed from the anchor each time: the day of month is
    min(anchor's local day, days in the target month), and the anchor's local time of day is kept. Days
    and weeks are whole local calendar days (exact multiples of 24 h / 7 days in UTC). Returned in UTC.
    """
    schedule = _Schedule.make(anchor, unit, amount, tz)
    return schedule.boundary(_check_index(k))


def period_containing(
    anchor: datetime, unit: str, amount: int, at: datetime, *, tz: str | tzinfo | None = "UTC"
) -> Period:
    """The period [boundary(k), boundary(k + 1)) that holds `at`; an instant exactly on a boundary
    belongs to the period that starts there. Works for instants before the anchor too."""
    schedule = _Schedule.make(anchor, unit, amount, tz)
    k = schedule.index_at(_utc(at, "at"))
    return Period(schedule.boundary(k), schedule.boundary(k + 1))


def next_period(anchor: datetime, unit: str, amount: int, period: Period, *, tz: str | tzinfo | None = "UTC") -> Period:
    """The period that starts where `period` ends.

    `period.end` must be a boundary of this schedule; `period.start` need not be, so a first stub period
    (for example one that started mid-cycle) still has a well-defined successor. An end that is not a
    boundary means the period belongs to a different anchor, interval or zone, and guessing which period
    the caller meant would bill the wrong dates, so it is refused.
    """
    schedule = _Schedule.make(anchor, unit, amount, tz)
    if not isinstance(period, Period):
        raise PeriodError("invalid_type", "period must be a Period.", "period")
    k = schedule.index_at(period.end)
    if schedule.boundary(k) != period.end:
        raise PeriodError(
            "not_on_boundary", "The period does not end on a boundary of this anchor and interval.", "period"
        )
    return Period(period.end, schedule.boundary(k + 1))


def _iter_periods(schedule: _Schedule, start: datetime, until: datetime) -> Iterator[Period]:
    k = schedule.index_at(start)
    lower = schedule.boundary(k)
    if lower < start:
        # `start` falls inside a period; that period started before it, so it is not included.
        k += 1
        lower = schedule.boundary(k)
    while lower < until:
        upper = schedule.boundary(k + 1)
        if upper > lower:  # a local day the zone skipped is an empty period: the neighbours meet
            yield Period(lower, upper)
            lower = upper
        k += 1


def periods_between(
    anchor: datetime,
    unit: str,
    amount: int,
    start: datetime,
    until: datetime,
    *,
    limit: int | None = None,
    tz: str | tzinfo | None = "UTC",
) -> list[Period]:
    """Every period whose start lies in [start, until), in order: the periods to catch up on after a
    backdated start or after the renewal job was stopped for a while (one invoice each).

    A period that starts before `start` is not included even if it is still running at `start`, and a
    period starting exactly at `until` is not included either (half-open, like everything else here).
    `limit` caps how many periods are returned, so a job can work through a long backlog in batches.
    """
    schedule = _Schedule.make(anchor, unit, amount, tz)
    lower = _utc(start, "start")
    upper = _utc(until, "until")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise PeriodError("invalid_limit", "limit must be a non-negative integer or None.", "limit")
    result: list[Period] = []
    if upper <= lower or limit == 0:
        return result
    for period in _iter_periods(schedule, lower, upper):
        result.append(period)
        if limit is not None and len(result) >= limit:
            break
    return result


def start_of_local_day(at: datetime, tz: str | tzinfo | None = "UTC") -> datetime:
    """The first instant (in UTC) of the local calendar day that holds `at`: local midnight, or the end of
    the jump where a zone's DST starts at midnight (Sao Paulo 2018-11-04 began at 01:00). Anchor a
    customer's subscription here for periods that start at local midnight."""
    moment = _utc(at, "at")
    zone = resolve_timezone(tz)
    if zone is UTC:
        return moment.replace(hour=0, minute=0, second=0, microsecond=0)
    local = _to_wall(moment, zone)
    return _from_wall(datetime(local.year, local.month, local.day), zone, 0)
