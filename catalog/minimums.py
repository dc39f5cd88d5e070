"""Minimum spend: the true-up owed when a period's spending falls short of a minimum.

Pure Python (no Django); the invoice builder calls it with the lines of a period it has already priced.
Two levels, as Lago has them (https://getlago.com/docs/guide/plans/charges/spending-minimum and
https://getlago.com/docs/guide/plans/commitment):

- an item minimum (a subscription item's charge must reach it): $0.010 per tracked user with a $100
  minimum and $50 of usage gives a true-up of $50;
- a subscription minimum (the whole period must reach it, the item true-ups included): a $50 fee plus 3
  units at $10 with a $100 minimum gives a true-up of $20.

Rules:
- `spent` is what the period's lines covered by the minimum add up to, before discounts and tax (a
  minimum is a commitment on price, not on what coupons leave of it), with metered usage re-rated for
  the whole period. Proration credits are not spending: they are not passed in (a negative `spent` is
  refused, so a credit cannot inflate a true-up).
- The minimum is prorated for a partial period by `fraction` (the served share, the same fraction the
  period's fixed fee was prorated by: seconds served / seconds in the period) and rounded once, half up;
  the true-up, a line of its own, is that rounded minimum less what was spent.
- The subscription minimum looks at the item lines plus their true-ups: an item true-up is spending on
  the subscription.
- A true-up is never negative: spending above the minimum is billed as it is.
When late usage changes a billed period, calling this again with the re-rated `spent` gives the new
true-ups; the difference from what was billed is the correction.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Final, Generic, TypeVar

from billing_site.money import InputError, round_fraction

__all__ = ["ItemSpend", "MinimumError", "MinimumSpend", "TrueUp", "minimum_spend", "minimum_true_up"]

# The largest amount a BIGINT column (and so an invoice line) holds.
MAX_MINOR: Final = 2**63 - 1

K = TypeVar("K", bound=Hashable)


class MinimumError(InputError):
    """Bad minimum-spend input; `code` and `param` as the other pure modules give them."""


@dataclass(frozen=True, slots=True)
class TrueUp:
    minimum: int  # the minimum for this period, after proration (minor units)
    spent: int  # what the covered lines add up to
    amount: int  # max(0, minimum - spent): the true-up line

    @property
    def owed(self) -> bool:
        return self.amount > 0


@dataclass(frozen=True, slots=True)
class ItemSpend:
    spent: int
    minimum: int | None = None  # None: the item has no minimum


@dataclass(frozen=True, slots=True)
class MinimumSpend(Generic[K]):
    items: dict[K, TrueUp]  # only the items that have a minimum
    subscription: TrueUp | None  # None when the subscription has no minimum

    @property
    def total(self) -> int:
        """Every true-up of the period together."""
        return sum(t.amount for t in self.items.values()) + (self.subscription.amount if self.subscription else 0)


def _amount(value: object, param: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise MinimumError("not_integer", f"{param} must be an integer amount in minor units.", param)
    if value < 0:
        raise MinimumError("negative", f"{param} must not be negative.", param)
    if value > MAX_MINOR:
        raise MinimumError("too_large", f"{param} must be at most {MAX_MINOR}.", param)
    return value


def _fraction(value: object) -> Fraction:
    if isinstance(value, bool) or not isinstance(value, int | Fraction):
        # A float share of a period would put binary rounding into a money amount.
        raise MinimumError("invalid_type", "fraction must be an int or a Fraction.", "fraction")
    share = Fraction(value)
    if not 0 <= share <= 1:
        raise MinimumError("out_of_range", "fraction is the served share of the period: between 0 and 1.", "fraction")
    return share


def minimum_true_up(*, minimum: int, spent: int, fraction: Fraction | int = 1) -> TrueUp:
    """The true-up against one minimum: max(0, round_half_up(minimum x fraction) - spent)."""
    prorated = round_fraction(_amount(minimum, "minimum") * _fraction(fraction))
    used = _amount(spent, "spent")
    return TrueUp(minimum=prorated, spent=used, amount=max(0, prorated - used))


def minimum_spend(
    *,
    items: Mapping[K, ItemSpend],
    subscription_minimum: int | None = None,
    fraction: Fraction | int = 1,
) -> MinimumSpend[K]:
    """Item true-ups, then the subscription's, for one period of one subscription.

    `items` holds every item line of the period (keyed by whatever the caller uses, the item id), with
    its minimum if it has one; items without a minimum still count towards the subscription minimum.
    """
    share = _fraction(fraction)
    true_ups: dict[K, TrueUp] = {}
    spent_total = 0
    for key, item in items.items():
        if not isinstance(item, ItemSpend):
            raise MinimumError("invalid_type", "Each item must be an ItemSpend.", f"items[{key!r}]")
        spent = _amount(item.spent, f"items[{key!r}].spent")
        spent_total += spent
        if item.minimum is not None:
            try:
                true_up = minimum_true_up(minimum=item.minimum, spent=spent, fraction=share)
            except MinimumError as exc:
                raise MinimumError(exc.code, exc.message, f"items[{key!r}].{exc.param}") from None
            true_ups[key] = true_up
            spent_total += true_up.amount
    subscription = None
    if subscription_minimum is not None:
        subscription = minimum_true_up(
            minimum=_amount(subscription_minimum, "subscription_minimum"),
            spent=min(spent_total, MAX_MINOR),
            fraction=share,
        )
    return MinimumSpend(items=true_ups, subscription=subscription)
