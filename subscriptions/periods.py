"""Billing periods: anchored day/week/month/year intervals, half-open [start, end), all in UTC.

Pure Python (no Django) so the calendar rules can be property-tested on their own (DESIGN.md section 3).

Every boundary is computed from the anchor (`anchor + k intervals`), never by adding one interval to
the previous boundary. Repeated adding loses information: Jan 31 + 1 month = Feb 28, and Feb 28 + 1
month = Mar 28, so a customer anchored on the 31st would drift to the 28th for ever. Counting from the
anchor, the 31st clamps to the month's last day (Feb 28, or 29 in leap years, Apr 30) and returns to
the 31st in every month that has one. The same rule makes a Feb 29 yearly anchor fall on Feb 28 in
common years and Feb 29 in leap years.

The billing calendar is UTC: aware datetimes in any other zone are converted to UTC first, so "the
31st" always means the 31st in UTC and a DST change can never make a period an hour short. Naive
datetimes are refused: guessing their zone is how invoices end up a day off. The anchor's time of day
(down to the microsecond) is kept on every boundary, so every period spans a whole number of seconds.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from billing_site.money import InputError

__all__ = [
    "UNITS",
    "Period",
    "PeriodError",
    "boundary",
    "next_period",
    "period_containing",
    "periods_between",
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
    """boundary() without validation; `anchor` is already UTC and the interval already checked."""
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


def _index_at(anchor: datetime, unit: str, amount: int, at: datetime) -> int:
    """The k with boundary(k) <= at < boundary(k + 1)."""
    if unit in ("day", "week"):
        step = timedelta(days=amount) if unit == "day" else timedelta(weeks=amount)
        # timedelta // timedelta is an exact floor division in microseconds, so instants before the
        # anchor get negative indexes and an instant on a boundary starts its own period.
        return (at - anchor) // step
    months_per_period = amount * (12 if unit == "year" else 1)
    month_diff = (at.year - anchor.year) * 12 + (at.month - anchor.month)
    k = month_diff // months_per_period
    # The estimate ignores the day and time of month (a boundary late in at's month can still lie ahead
    # of it), so it can be one period too far; both loops run at most once.
    while _boundary(anchor, unit, amount, k) > at:
        k -= 1
    while _boundary(anchor, unit, amount, k + 1) <= at:
        k += 1
    return k


def boundary(anchor: datetime, unit: str, amount: int, k: int) -> datetime:
    """The k-th period boundary counted from `anchor` (k may be negative; boundary(..., 0) is the anchor).

    Months and years are computed from the anchor each time: the day of month is
    min(anchor day, days in the target month), and the anchor's time of day is kept. Days and weeks are
    exact multiples of 24 h / 7 days in UTC.
    """
    validate_interval(unit, amount)
    return _boundary(_utc(anchor, "anchor"), unit, amount, _check_index(k))


def period_containing(anchor: datetime, unit: str, amount: int, at: datetime) -> Period:
    """The period [boundary(k), boundary(k + 1)) that holds `at`; an instant exactly on a boundary
    belongs to the period that starts there. Works for instants before the anchor too."""
    validate_interval(unit, amount)
    origin = _utc(anchor, "anchor")
    moment = _utc(at, "at")
    k = _index_at(origin, unit, amount, moment)
    return Period(_boundary(origin, unit, amount, k), _boundary(origin, unit, amount, k + 1))


def next_period(anchor: datetime, unit: str, amount: int, period: Period) -> Period:
    """The period that starts where `period` ends.

    `period.end` must be a boundary of this schedule; `period.start` need not be, so a first stub period
    (for example one that started mid-cycle) still has a well-defined successor. An end that is not a
    boundary means the period belongs to a different anchor or interval, and guessing which period
    the caller meant would bill the wrong dates, so it is refused.
    """
    validate_interval(unit, amount)
    if not isinstance(period, Period):
        raise PeriodError("invalid_type", "period must be a Period.", "period")
    origin = _utc(anchor, "anchor")
    k = _index_at(origin, unit, amount, period.end)
    if _boundary(origin, unit, amount, k) != period.end:
        raise PeriodError(
            "not_on_boundary", "The period does not end on a boundary of this anchor and interval.", "period"
        )
    return Period(period.end, _boundary(origin, unit, amount, k + 1))


def _iter_periods(anchor: datetime, unit: str, amount: int, start: datetime, until: datetime) -> Iterator[Period]:
    k = _index_at(anchor, unit, amount, start)
    lower = _boundary(anchor, unit, amount, k)
    if lower < start:
        # `start` falls inside a period; that period started before it, so it is not included.
        k += 1
        lower = _boundary(anchor, unit, amount, k)
    while lower < until:
        upper = _boundary(anchor, unit, amount, k + 1)
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
) -> list[Period]:
    """Every period whose start lies in [start, until), in order: the periods to catch up on after a
    backdated start or after the renewal job was stopped for a while (one invoice each).

    A period that starts before `start` is not included even if it is still running at `start`, and a
    period starting exactly at `until` is not included either (half-open, like everything else here).
    `limit` caps how many periods are returned, so a job can work through a long backlog in batches.
    """
    validate_interval(unit, amount)
    origin = _utc(anchor, "anchor")
    lower = _utc(start, "start")
    upper = _utc(until, "until")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise PeriodError("invalid_limit", "limit must be a non-negative integer or None.", "limit")
    result: list[Period] = []
    if upper <= lower or limit == 0:
        return result
    for period in _iter_periods(origin, unit, amount, lower, upper):
        result.append(period)
        if limit is not None and len(result) >= limit:
            break
    return result
