"""Proration by the second: what changing a subscription's items mid-period credits and charges.

Pure Python (no Django). When items change at `at`, the customer has already paid (licensed prices bill
in advance) for the whole current period of the old items, so they get a credit for the unused rest of
it ("Unused time on ...", negative) and a charge for the new items over that same rest ("Remaining time
on ...", positive). Both lines cover [at, period end) and are usually invoiced with the next renewal.

"By the second" means the time used is counted in whole seconds from the period start, dropping any
fraction of a second: a change at 10:00:00.999 is billed as if it happened at 10:00:00. Periods from
subscriptions.periods always start on the anchor's sub-second, so for the usual anchor (a whole second)
this is exactly truncating `at` to the second. Counting whole seconds keeps the fraction a ratio of
small integers that anyone can recompute from the invoice dates.

The credit for unused time is a share of what the period's line actually charged (after discounts and
coupons: `ProrationItem.charged`), not of the list price; without such a line (an item added during the
period, whose charge is itself a proration) it is the list price's share.

Metered items are never passed in: their usage is billed in arrears for what was actually used, so
there is nothing paid in advance to credit or charge (the caller leaves them out).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Final

from billing_site.money import InputError, round_fraction
from subscriptions.periods import Period, PeriodError

__all__ = [
    "ProrationError",
    "ProrationItem",
    "ProrationLine",
    "prorate",
    "proration_lines",
    "remaining_fraction",
    "truncate_to_second",
]

_ONE_SECOND: Final = timedelta(seconds=1)


class ProrationError(InputError):
    """Bad proration input. `code` is machine-readable, `param` is the field name for the API envelope."""


@dataclass(frozen=True, slots=True)
class ProrationItem:
    """One licensed subscription item as it was (old) or will be (new).

    `full_amount` is what the item costs for a whole period at its quantity, in minor units, already
    priced by the catalog engine; proration never re-prices, so tiers and flat fees are honoured as-is.
    """

    price_id: str
    description: str  # the price's display name, shown in "Unused time on <description>"
    full_amount: int
    quantity: Decimal
    # What the current period's invoice line actually charged for this item (after its discount) and the
    # period that line covered, when there is one: the unused-time credit is a share of what was paid,
    # never of the list price (a 50%-off item that paid 1450 is credited at most 1450).
    charged: int | None = None
    charged_period: Period | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.price_id, str) or not self.price_id:
            raise ProrationError("invalid_price", "price_id must be a non-empty string.", "price_id")
        if not isinstance(self.description, str):
            raise ProrationError("invalid_type", "description must be a string.", "description")
        if isinstance(self.full_amount, bool) or not isinstance(self.full_amount, int):
            raise ProrationError("not_integer", "full_amount must be an integer in minor units.", "full_amount")
        if self.full_amount < 0:
            raise ProrationError("negative", "full_amount must not be negative.", "full_amount")
        quantity = self.quantity
        if isinstance(quantity, bool) or not isinstance(quantity, int | Decimal):
            raise ProrationError("invalid_number", "quantity must be a Decimal or an int.", "quantity")
        quantity = Decimal(quantity)
        if not quantity.is_finite() or quantity < 0:
            raise ProrationError("invalid_number", "quantity must be a finite, non-negative number.", "quantity")
        object.__setattr__(self, "quantity", quantity)


@dataclass(frozen=True, slots=True)
class ProrationLine:
    """A credit (negative amount) or charge (positive amount) for [period_start, period_end)."""

    price_id: str
    description: str
    quantity: Decimal
    amount: int
    period_start: datetime
    period_end: datetime


def _check_period(period: object) -> Period:
    if not isinstance(period, Period):
        raise ProrationError("invalid_type", "period must be a Period.", "period")
    return period


def _elapsed_seconds(period: Period, at: object) -> int:
    if not isinstance(at, datetime):
        raise ProrationError("invalid_type", "at must be a datetime.", "at")
    try:
        inside = period.contains(at)
    except PeriodError as exc:  # naive datetimes, dates out of range
        raise ProrationError(exc.code, exc.message, "at") from None
    if not inside:
        raise ProrationError("outside_period", "at must lie within the period [start, end) being prorated.", "at")
    # Aware datetimes subtract correctly across zones; floor division drops the partial second.
    return (at - period.start) // _ONE_SECOND


def _total_seconds(period: Period) -> int:
    # Ceiling, not floor: a hand-built period that ends mid-second still has that last partial second,
    # and counting it keeps the remaining fraction above zero for every `at` inside the period. For
    # periods from subscriptions.periods the duration is whole seconds and this equals period.seconds.
    return -((period.start - period.end) // _ONE_SECOND)


def truncate_to_second(period: Period, at: datetime) -> datetime:
    """`at` with the fraction of a second since the period start dropped: the instant proration bills from."""
    checked = _check_period(period)
    return checked.start + _elapsed_seconds(checked, at) * _ONE_SECOND


def remaining_fraction(period: Period, at: datetime) -> Fraction:
    """(seconds left) / (seconds in the period), exactly, with `at` truncated to the second.

    `at` must lie in [start, end), so the result is in (0, 1]: 1 at the period's first second, 1/N at its
    last second of N.
    """
    checked = _check_period(period)
    total = _total_seconds(checked)
    return Fraction(total - _elapsed_seconds(checked, at), total)


def prorate(full_amount: int, period: Period, at: datetime) -> int:
    """full_amount * remaining_fraction(period, at), rounded once, half away from zero.

    Negative amounts mirror positive ones exactly (prorate(-x) == -prorate(x)), which is what makes an
    upgrade and an immediate downgrade back net to zero.
    """
    if isinstance(full_amount, bool) or not isinstance(full_amount, int):
        raise ProrationError("not_integer", "full_amount must be an integer in minor units.", "full_amount")
    return round_fraction(full_amount * remaining_fraction(period, at))


def _index(items: Sequence[ProrationItem], param: str) -> dict[str, ProrationItem]:
    by_price: dict[str, ProrationItem] = {}
    for position, item in enumerate(items):
        if not isinstance(item, ProrationItem):
            raise ProrationError("invalid_type", "Each item must be a ProrationItem.", f"{param}[{position}]")
        if item.price_id in by_price:
            # Items are matched by price; two items on one price would make the match ambiguous and a
            # subscription should never hold them (the caller merges quantities instead).
            raise ProrationError(
                "duplicate_price", f"Price {item.price_id!r} appears twice.", f"{param}[{position}].price_id"
            )
        by_price[item.price_id] = item
    return by_price


def _changed(before: ProrationItem, after: ProrationItem) -> bool:
    # Decimal equality ignores representation (2 == 2.0). A different full_amount at the same quantity
    # means the price's amount moved; prorating both sides bills exactly the difference.
    return before.quantity != after.quantity or before.full_amount != after.full_amount


def proration_lines(
    old: Sequence[ProrationItem],
    new: Sequence[ProrationItem],
    period: Period,
    at: datetime,
) -> list[ProrationLine]:
    """Credit and charge lines for changing the licensed items from `old` to `new` at `at`.

    Items are matched by price_id. An unchanged item (same price, quantity and amount) gives no line.
    A removed or changed old item gives "Unused time on <description>" (negative); an added or changed new
    item gives "Remaining time on <description>" (positive). A quantity change therefore gives both: the
    old quantity credited and the new quantity charged, which reads clearly on an invoice and prorates a
    tiered price correctly (the tiers apply to the whole quantity, not the difference).

    Credits come first (in `old` order), then charges (in `new` order). Lines that prorate to 0 (a free
    price, or an amount too small for the time left) are left out: a zero line explains nothing.
    """
    checked = _check_period(period)
    before = _index(old, "old")
    after = _index(new, "new")
    fraction = remaining_fraction(checked, at)
    start = truncate_to_second(checked, at)

    def unused(item: ProrationItem) -> int:
        if item.charged is not None and item.charged_period is not None and item.charged_period.contains(at):
            # The line's own period: for a partial first period it charged the same rate per second.
            return round_fraction(max(item.charged, 0) * remaining_fraction(item.charged_period, at))
        return round_fraction(item.full_amount * fraction)

    def line(item: ProrationItem, prefix: str, sign: int) -> ProrationLine:
        return ProrationLine(
            price_id=item.price_id,
            description=f"{prefix} {item.description}",
            quantity=item.quantity,
            amount=-unused(item) if sign < 0 else round_fraction(item.full_amount * fraction),
            period_start=start,
            period_end=checked.end,
        )

    lines: list[ProrationLine] = []
    for item in before.values():
        counterpart = after.get(item.price_id)
        if counterpart is None or _changed(item, counterpart):
            lines.append(line(item, "Unused time on", -1))
    for item in after.values():
        counterpart = before.get(item.price_id)
        if counterpart is None or _changed(counterpart, item):
            lines.append(line(item, "Remaining time on", 1))
    return [entry for entry in lines if entry.amount != 0]
