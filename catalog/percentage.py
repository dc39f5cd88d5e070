"""The percentage pricing model, computed exactly from aggregates a roll-up can keep.

Pure Python (no Django). `catalog.pricing` parses, validates and quotes percentage amounts; this
module holds the per-event math so that it can be evaluated without reading every raw event.

The model (Lago's "percentage" charge model, https://getlago.com/docs/guide/plans/charges/charge-models/percentage).
Event values are amounts in minor units of the price's currency (a `sum` meter over transaction amounts
in cents), taken in event order (timestamp, then id):

- `rate` (percent) applies to the value of every charged event, `fixed_fee` (minor units) is added once
  per charged event;
- the free allowance covers the first events: at most `free_units_per_events` of them, and at most
  `free_amount` of value. It ends at whichever runs out first (Lago's worked example: "the first 3 events
  or $500 are free", and a 4th event of $50 after $400 pays $0.10 + 1.2 % of $50). The event that uses up
  the free amount pays the rate on its part beyond it, and pays its fixed fee (even when nothing is left
  beyond it, as Lago does);
- with `per_event_min` / `per_event_max`, each charged event's charge (rate x value + fixed fee) is
  clamped to [min, max]. Entirely free events cost 0, not the minimum.

Deviations from Lago's engine, chosen for consistency: a fixed fee is owed per charged event even when
the period's summed value is 0 (Lago's aggregate path skips fees then, its per-event path does not);
when the first event alone exceeds the free amount, no event is exempt from the fixed fee (Lago's
aggregate path would exempt `free_units_per_events` of them); and the per-event path ends the allowance
exactly as the aggregate path does (Lago's per-event path keeps events free past `free_units_per_events`
while free amount remains, contradicting its own documentation).

Why this is exact from aggregates. For rate r > 0, clamp(r*v + f, lo, hi) is piecewise affine in v, with
breakpoints where r*v + f = lo and = hi. So the charge of a set of events needs only how many fall below
the first breakpoint (each pays lo), how many above the second (each pays hi) and the count and value sum
of the rest (r * sum + f * count). The tests are divisions-free: an event is "below" when
value * rate < 100 * (per_event_min - fixed_fee), "above" when value * rate > 100 * (per_event_max -
fixed_fee): exact in SQL numeric and in Decimal, and right for rate 0 too (then the predicate does not
depend on the value). These counts and sums are additive, so hourly roll-ups can keep them (EventStats).

The free allowance depends on order, but only on a prefix: whole roll-up buckets are taken while every
event in them is still free (FreeAllowance.fits: their count fits in what is left of
free_units_per_events and the running value stays below free_amount, values being never negative), and
only the one bucket where the allowance ends is read event by event.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Context, Decimal, Inexact, InvalidOperation, localcontext
from typing import Final, Literal

__all__ = [
    "EventClass",
    "EventStats",
    "FreeAllowance",
    "PercentageAmount",
    "PercentageUsage",
    "event_class",
    "percentage_parts",
]

EventClass = Literal["below", "middle", "above"]

# Same exact context as the pricing engine: an input that would need rounding mid-computation fails loudly.
_EXACT: Final = Context(prec=200, traps=[Inexact, InvalidOperation])
_ZERO: Final = Decimal(0)
_HUNDRED: Final = Decimal(100)


@dataclass(frozen=True, slots=True)
class PercentageAmount:
    """`rate` is a percentage ("2.9" is 2.9 %); `fixed_fee`, `per_event_min`, `per_event_max` are minor units
    (fractions allowed, like unit prices); `free_amount` is value (minor units of volume); None means unset."""

    currency: str
    rate: Decimal
    fixed_fee: Decimal = _ZERO
    free_units_per_events: int | None = None
    free_amount: Decimal | None = None
    per_event_min: Decimal | None = None
    per_event_max: Decimal | None = None

    @property
    def has_bounds(self) -> bool:
        return self.per_event_min is not None or self.per_event_max is not None

    @property
    def has_allowance(self) -> bool:
        return self.free_units_per_events is not None or self.free_amount is not None

    @property
    def needs_events(self) -> bool:
        """True when the summed value alone does not determine the price (a fee per event, per-event bounds, or
        an allowance counted in events); a free amount alone is order-independent: min(total, free_amount)."""
        return self.fixed_fee != 0 or self.has_bounds or self.free_units_per_events is not None


def event_class(amount: PercentageAmount, value: Decimal) -> EventClass:
    """Which term decides one charged event's charge: "below" pays per_event_min, "above" per_event_max,
    "middle" rate * value / 100 + fixed_fee. Written without division, as the roll-up's SQL would be."""
    with localcontext(_EXACT):
        scaled = value * amount.rate
        if amount.per_event_min is not None and scaled < _HUNDRED * (amount.per_event_min - amount.fixed_fee):
            return "below"
        if amount.per_event_max is not None and scaled > _HUNDRED * (amount.per_event_max - amount.fixed_fee):
            return "above"
    return "middle"


@dataclass(frozen=True, slots=True)
class EventStats:
    """Additive statistics of a set of events for one percentage price: what a roll-up bucket keeps.

    `count` and `total` are the usual event count and value sum. For a price with per-event bounds,
    `below_count` / `above_count` count the events classed "below" / "above" by `event_class`, and
    `middle_total` sums the values of the others; for a price without bounds every event is "middle"
    (`EventStats.plain(count, total)`).
    """

    count: int = 0
    total: Decimal = _ZERO
    below_count: int = 0
    above_count: int = 0
    middle_total: Decimal = _ZERO

    @classmethod
    def plain(cls, count: int, total: Decimal) -> EventStats:
        return cls(count=count, total=total, middle_total=total)

    @classmethod
    def of(cls, amount: PercentageAmount, values: Iterable[Decimal]) -> EventStats:
        """Classify raw event values (edge or dirty hours, the boundary bucket, tests)."""
        stats = cls()
        for value in values:
            stats = stats + cls._one(amount, value)
        return stats

    @classmethod
    def _one(cls, amount: PercentageAmount, value: Decimal) -> EventStats:
        if value < 0:
            raise ValueError("event values are never negative")
        kind = event_class(amount, value)
        return cls(
            count=1,
            total=value,
            below_count=int(kind == "below"),
            above_count=int(kind == "above"),
            middle_total=value if kind == "middle" else _ZERO,
        )

    @property
    def middle_count(self) -> int:
        return self.count - self.below_count - self.above_count

    def __add__(self, other: EventStats) -> EventStats:
        with localcontext(_EXACT):
            return EventStats(
                count=self.count + other.count,
                total=self.total + other.total,
                below_count=self.below_count + other.below_count,
                above_count=self.above_count + other.above_count,
                middle_total=self.middle_total + other.middle_total,
            )

    def __sub__(self, other: EventStats) -> EventStats:
        with localcontext(_EXACT):
            return EventStats(
                count=self.count - other.count,
                total=self.total - other.total,
                below_count=self.below_count - other.below_count,
                above_count=self.above_count - other.above_count,
                middle_total=self.middle_total - other.middle_total,
            )

    def is_consistent(self) -> bool:
        """Counts and sums that some set of non-negative events could have."""
        return (
            all(_is_int(n) for n in (self.count, self.below_count, self.above_count))
            and all(isinstance(d, Decimal) and d.is_finite() for d in (self.total, self.middle_total))
            and self.below_count >= 0
            and self.above_count >= 0
            and self.below_count + self.above_count <= self.count
            and 0 <= self.middle_total <= self.total
            and (self.count > 0 or self.total == 0)
            and (self.middle_count > 0 or self.middle_total == 0)
        )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True)
class FreeAllowance:
    """The free allowance, walked over the period's events in order. Immutable: each step returns a new one.

    `free_events`: events entirely free. `free_value`: value not subject to the rate (the free events'
    values plus the free part of the boundary event). `consumed`: stats of every event taken (the free ones
    and the boundary one), classified like the period's stats. `remainder`: the charged part of the
    boundary event's value, None when no event straddled the free amount. `done`: the allowance is over,
    every later event is charged in full.
    """

    amount: PercentageAmount
    free_events: int = 0
    free_value: Decimal = _ZERO
    consumed: EventStats = field(default_factory=EventStats)
    remainder: Decimal | None = None
    done: bool = False

    @classmethod
    def start(cls, amount: PercentageAmount) -> FreeAllowance:
        return cls(amount=amount, done=not amount.has_allowance)

    def fits(self, block: EventStats) -> bool:
        """Whether every event of `block` (the next events in order) is entirely free, so the block can be
        taken whole from its roll-up without reading its events. Values are never negative, so the running
        value stays below free_amount for every event exactly when it does after the last one."""
        if self.done:
            return False
        events = self.amount.free_units_per_events
        if events is not None and self.free_events + block.count > events:
            return False
        limit = self.amount.free_amount
        with localcontext(_EXACT):
            return limit is None or self.free_value + block.total < limit

    def take_block(self, block: EventStats) -> FreeAllowance:
        if not self.fits(block):
            raise ValueError("the block is not entirely free; take its events one by one")
        with localcontext(_EXACT):
            free_events = self.free_events + block.count
            return FreeAllowance(
                amount=self.amount,
                free_events=free_events,
                free_value=self.free_value + block.total,
                consumed=self.consumed + block,
                done=free_events == self.amount.free_units_per_events,
            )

    def take(self, value: Decimal) -> FreeAllowance:
        """The next event in order."""
        if self.done:
            raise ValueError("the allowance is over; later events are charged in full")
        one = EventStats._one(self.amount, value)
        limit = self.amount.free_amount
        with localcontext(_EXACT):
            if limit is not None and self.free_value + value >= limit:
                # This event uses up the free amount: it pays the rate on what lies beyond, and its fee.
                return FreeAllowance(
                    amount=self.amount,
                    free_events=self.free_events,
                    free_value=limit,
                    consumed=self.consumed + one,
                    remainder=self.free_value + value - limit,
                    done=True,
                )
            free_events = self.free_events + 1
            return FreeAllowance(
                amount=self.amount,
                free_events=free_events,
                free_value=self.free_value + value,
                consumed=self.consumed + one,
                done=free_events == self.amount.free_units_per_events,
            )

    def take_all(self, values: Iterable[Decimal]) -> FreeAllowance:
        """Take events in order until the allowance ends; reads no value past the one that ends it."""
        allowance = self
        iterator = iter(values)
        while not allowance.done:
            value = next(iterator, None)
            if value is None:
                break
            allowance = allowance.take(value)
        return allowance


@dataclass(frozen=True, slots=True)
class PercentageUsage:
    """What the invoice builder hands the engine for one percentage line: the period's stats (every
    billable event) and the free allowance walked over the first of those events."""

    period: EventStats
    allowance: FreeAllowance


# (kind, quantity, unit, exact amount): one breakdown line before the single rounding.
Part = tuple[str, Decimal, Decimal, Decimal]


def percentage_parts(usage: PercentageUsage) -> list[Part]:
    """The exact charge of a percentage line, split into the parts the quote explains.

    Charged events are the period's events the allowance never reached, plus the boundary event valued at
    its remainder. Free parts (amount 0) come first so the breakdown says why the charged volume is smaller
    than the usage. Parts with nothing in them are left out. The caller validates the inputs (pricing.py).
    """
    amount, allowance = usage.allowance.amount, usage.allowance
    charged = usage.period - allowance.consumed
    if allowance.remainder is not None:
        charged = charged + EventStats._one(amount, allowance.remainder)
    with localcontext(_EXACT):
        unit_rate = amount.rate.scaleb(-2)  # 2.9 % of one minor unit of volume is 0.029 minor units
        parts: list[Part] = [
            ("free_value", allowance.free_value, _ZERO, _ZERO),
            ("free_events", Decimal(allowance.free_events), _ZERO, _ZERO),
            ("rate", charged.middle_total, unit_rate, unit_rate * charged.middle_total),
            ("fixed_fee", Decimal(charged.middle_count), amount.fixed_fee, amount.fixed_fee * charged.middle_count),
        ]
        if amount.per_event_min is not None:
            low = amount.per_event_min
            parts.append(("per_event_min", Decimal(charged.below_count), low, low * charged.below_count))
        if amount.per_event_max is not None:
            high = amount.per_event_max
            parts.append(("per_event_max", Decimal(charged.above_count), high, high * charged.above_count))
    # A rate of 0 or a fee of 0 explains nothing; neither does an empty part.
    return [part for part in parts if part[1] != 0 and (part[0].startswith("free_") or part[2] != 0)]
