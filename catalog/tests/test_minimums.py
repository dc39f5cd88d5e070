"""Minimum spend true-ups (pure Python, no database)."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from catalog.minimums import ItemSpend, MinimumError, MinimumSpend, TrueUp, minimum_spend, minimum_true_up


def test_item_minimum_lago_example() -> None:
    # https://getlago.com/docs/guide/plans/charges/spending-minimum : $0.010 per tracked user, a $100
    # spending minimum, $50 of usage: "a true-up fee of $50 will be charged".
    assert minimum_true_up(minimum=10000, spent=5000) == TrueUp(minimum=10000, spent=5000, amount=5000)
    assert minimum_true_up(minimum=10000, spent=12000) == TrueUp(minimum=10000, spent=12000, amount=0)
    assert not minimum_true_up(minimum=10000, spent=10000).owed


def test_subscription_minimum_lago_example() -> None:
    # https://getlago.canny.io/feature-requests/p/set-minimum-spend-for-subscriptions (released as
    # https://getlago.com/docs/guide/plans/commitment): a $50 subscription fee, $10 per unit, a $100 monthly
    # minimum and 3 units: "$50 + 3 * $10 = $80 + $20 (true-up fee) = $100".
    result = minimum_spend(
        items={"si_fee": ItemSpend(spent=5000), "si_units": ItemSpend(spent=3 * 1000)}, subscription_minimum=10000
    )
    assert result == MinimumSpend(items={}, subscription=TrueUp(minimum=10000, spent=8000, amount=2000))
    assert result.total == 2000


def test_item_true_ups_count_towards_the_subscription_minimum() -> None:
    result = minimum_spend(
        items={"a": ItemSpend(spent=1000, minimum=3000), "b": ItemSpend(spent=2500), "c": ItemSpend(0, 500)},
        subscription_minimum=7000,
    )
    assert result.items == {"a": TrueUp(3000, 1000, 2000), "c": TrueUp(500, 0, 500)}
    # 1000 + 2500 + 0 spent, plus the item true-ups 2000 + 500: 6000 of 7000.
    assert result.subscription == TrueUp(7000, 6000, 1000)
    assert result.total == 3500
    assert minimum_spend(items={"a": ItemSpend(1000)}).subscription is None


@pytest.mark.parametrize(
    ("fraction", "prorated"),
    [
        (Fraction(1, 2), 5000),
        (Fraction(10, 31), 3226),  # 3225.806...
        (Fraction(1, 3), 3333),
        (Fraction(1, 8), 1250),
        (0, 0),
        (1, 10000),
    ],
)
def test_minimum_is_prorated_for_a_partial_period_and_rounded_once(fraction: Fraction | int, prorated: int) -> None:
    # Lago: "Spending minimums and true-up fees are always prorated" for a partial period.
    result = minimum_true_up(minimum=10000, spent=1000, fraction=fraction)
    assert result == TrueUp(minimum=prorated, spent=1000, amount=max(0, prorated - 1000))


def test_half_a_minor_unit_rounds_up() -> None:
    assert minimum_true_up(minimum=1, spent=0, fraction=Fraction(1, 2)).amount == 1
    assert minimum_true_up(minimum=3, spent=0, fraction=Fraction(1, 2)).amount == 2  # 1.5


@pytest.mark.parametrize(
    ("kwargs", "code", "param"),
    [
        ({"minimum": -1, "spent": 0}, "negative", "minimum"),
        ({"minimum": 100, "spent": -5}, "negative", "spent"),  # a credit is not spending
        ({"minimum": 1.5, "spent": 0}, "not_integer", "minimum"),
        ({"minimum": True, "spent": 0}, "not_integer", "minimum"),
        ({"minimum": 2**63, "spent": 0}, "too_large", "minimum"),
        ({"minimum": 100, "spent": 0, "fraction": 0.5}, "invalid_type", "fraction"),
        ({"minimum": 100, "spent": 0, "fraction": Fraction(3, 2)}, "out_of_range", "fraction"),
        ({"minimum": 100, "spent": 0, "fraction": -1}, "out_of_range", "fraction"),
    ],
)
def test_bad_input_is_refused_with_a_code(kwargs: dict[str, Any], code: str, param: str) -> None:
    with pytest.raises(MinimumError) as info:
        minimum_true_up(**kwargs)
    assert (info.value.code, info.value.param) == (code, param)


def test_bad_item_names_the_item() -> None:
    with pytest.raises(MinimumError) as info:
        minimum_spend(items={"si_1": ItemSpend(spent=10, minimum=-1)})
    assert (info.value.code, info.value.param) == ("negative", "items['si_1'].minimum")
    with pytest.raises(MinimumError) as info:
        minimum_spend(items={"si_2": 10})  # type: ignore[dict-item]
    assert (info.value.code, info.value.param) == ("invalid_type", "items['si_2']")


amounts = st.integers(min_value=0, max_value=10**12)
fractions = st.fractions(min_value=0, max_value=1, max_denominator=10**7)


@settings(max_examples=300, deadline=None)
@given(minimum=amounts, spent=amounts, fraction=fractions)
def test_true_up_brings_spending_exactly_to_the_prorated_minimum(minimum: int, spent: int, fraction: Fraction) -> None:
    result = minimum_true_up(minimum=minimum, spent=spent, fraction=fraction)
    assert type(result.amount) is int and result.amount >= 0
    assert result.spent + result.amount == max(spent, result.minimum)
    assert abs(result.minimum - minimum * fraction) <= Fraction(1, 2)
    # More spending never raises the true-up, and never lowers what is billed in total.
    more = minimum_true_up(minimum=minimum, spent=spent + 1, fraction=fraction)
    assert more.amount <= result.amount
    assert more.spent + more.amount >= result.spent + result.amount


@settings(max_examples=200, deadline=None)
@given(
    items=st.lists(st.tuples(amounts, st.one_of(st.none(), amounts)), max_size=5),
    subscription_minimum=st.one_of(st.none(), amounts),
    fraction=fractions,
)
def test_the_period_bills_at_least_every_minimum(
    items: list[tuple[int, int | None]], subscription_minimum: int | None, fraction: Fraction
) -> None:
    result = minimum_spend(
        items={i: ItemSpend(s, m) for i, (s, m) in enumerate(items)},
        subscription_minimum=subscription_minimum,
        fraction=fraction,
    )
    billed = sum(s for s, _ in items) + result.total
    for index, (spent, minimum) in enumerate(items):
        if minimum is not None:
            assert spent + result.items[index].amount >= result.items[index].minimum
    if result.subscription is not None:
        assert billed >= result.subscription.minimum
        # The subscription true-up is what is still missing once the items are trued up, never more.
        assert result.subscription.amount == max(0, result.subscription.minimum - (billed - result.subscription.amount))
