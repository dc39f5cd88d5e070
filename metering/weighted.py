"""weighted_sum: the integral of a gauge over time, prorated to the period. Pure math, no Django.

A gauge is a series of events, each value held from its timestamp until the next event of the series
(ties on a timestamp go by event id, the ingestion order: the later one holds). The value held at a
period's start is the series' last value before it (the opening value); before a series' first event
nothing is held. A period's weighted sum is its integral divided by its length: 10 seats held for half
of the period is 5 (seat-periods); a window of a windowed read gets its own share of that same period's
figure, so the windows add up to the period's value.

Everything is exact: durations are integer microseconds, integrals are Decimal value x microseconds in a
wide context, and the one division is rounded half up to 12 places (the precision of event values).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, localcontext
from itertools import pairwise

ZERO = Decimal(0)
PLACES = Decimal("0.000000000001")
PRECISION = 120  # digits: values have 38, a century is 3.2e15 microseconds; sums stay far inside


def micros(delta: timedelta) -> int:
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def held_integral(events: Sequence[tuple[datetime, int, Decimal]], until: datetime) -> Decimal:
    """The integral, in value x microseconds, of events (timestamp, id, value) from the first one to
    `until`: each value held until the next event, the last one until `until`."""
    ordered = sorted(events)
    total = ZERO
    with localcontext() as ctx:
        ctx.prec = PRECISION
        for index, (timestamp, _, value) in enumerate(ordered):
            nxt = ordered[index + 1][0] if index + 1 < len(ordered) else until
            total += value * micros(nxt - timestamp)
    return total


@dataclass(frozen=True, slots=True)
class Part:
    """A stretch of one series, instants in microseconds since the Unix epoch: from its first event
    `first` to `hi`, the integral `held` of what it holds in between, and the value `last` it holds at
    `hi` (carried until the next part's first event).

    An hour roll-up row is a part (first event, hour end, its held integral, its latest value), and so is
    a raw range read with the same arithmetic (an edge or a dirty hour); a part never crosses an hour."""

    first: int
    order: int
    hi: int
    held: Decimal
    last: Decimal
    events: int


def integrate(
    parts: Iterable[Part],
    *,
    opening: Decimal | None,
    start: int,
    end: int,
    step: int | None = None,
) -> dict[int | None, tuple[Decimal, int]]:
    """Integral (value x microseconds) and event count per bucket of one series over [start, end).

    `parts` lie inside [start, end), do not overlap, and are sorted by (first, order). Buckets are
    `step` microseconds long, aligned on the epoch (UTC hours, days), keyed by their start; one bucket
    (None) without a step. A held value's stretch is split at the bucket boundaries it crosses."""
    result: dict[int | None, list] = {}

    def add(at: int, integral: Decimal, events: int = 0) -> None:
        slot = result.setdefault(None if step is None else at - at % step, [ZERO, 0])
        slot[0] += integral
        slot[1] += events

    def hold(value: Decimal | None, lo: int, hi: int) -> None:
        if value is None or not value or lo >= hi:
            return
        if step is None:
            add(lo, value * (hi - lo))
            return
        cut = lo - lo % step + step
        cuts = [lo, *range(cut, hi, step), hi]
        for left, right in pairwise(cuts):
            add(left, value * (right - left))

    with localcontext() as ctx:
        ctx.prec = PRECISION
        value, cursor = opening, start
        for part in parts:
            hold(value, cursor, part.first)
            add(part.first, part.held, part.events)
            value, cursor = part.last, part.hi
        hold(value, cursor, end)
    return {key: (total, events) for key, (total, events) in result.items()}


def prorate(integral: Decimal, length: int) -> Decimal:
    """The integral's share of a period `length` microseconds long, half up to 12 places."""
    if length <= 0:
        return ZERO
    with localcontext() as ctx:
        ctx.prec = PRECISION
        return (integral / length).quantize(PLACES, rounding=ROUND_HALF_UP)
