"""The package, percentage and graduated percentage models (pure Python, no database).

Worked examples come from the peers' documentation, cited above each test; amounts there are in major
units and are written here in minor units (cents) of the same currency.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from catalog.pricing import (
    EventStats,
    FreeAllowance,
    GraduatedPercentageAmount,
    PackageAmount,
    PercentageAmount,
    PercentageTier,
    PercentageUsage,
    PricingError,
    Quote,
    amount_model,
    amount_to_dict,
    event_class,
    generate_price_name,
    parse_amount,
    quote,
    quote_events,
    quote_percentage,
    quote_to_dict,
    validate_amount,
)

D = Decimal


def lines(result: Quote) -> list[tuple[str, str, str, int]]:
    return [(e.kind, str(e.quantity), str(e.unit), e.amount) for e in result.breakdown]


def package(size: str | int, amount: str | int, free: str | int = 0, currency: str = "usd") -> PackageAmount:
    return PackageAmount(currency=currency, package_size=D(size), amount=D(amount), free_units=D(free))


def percentage(
    rate: str, *, currency: str = "usd", free_units_per_events: Any = None, **terms: str
) -> PercentageAmount:
    decimals = {key: D(value) for key, value in terms.items()}
    return PercentageAmount(currency=currency, rate=D(rate), free_units_per_events=free_units_per_events, **decimals)


def events(*values: str | int) -> list[Decimal]:
    return [D(v) for v in values]


# --------------------------------------------------------------------------------------------------
# Package


def test_package_lago_example_free_units_then_started_blocks() -> None:
    # https://getlago.com/docs/guide/plans/charges/charge-models/package : "$5 per 100 units and offer the
    # first 100 units. 201 units would cost $0 (first 100 units) + $5 (next 100 units) + $5 (last unit) = $10."
    amount = parse_amount(
        {"model": "package", "currency": "usd", "package_size": 100, "amount": "500", "free_units": 100}
    )
    result = quote(amount, D(201))
    assert result.amount == 1000
    assert lines(result) == [("free_units", "100", "0", 0), ("packages", "2", "500", 1000)]
    assert quote_to_dict(result)["breakdown"] == [
        {"tier": 1, "quantity": "100", "unit": "0", "flat": 0, "amount": 0, "kind": "free_units"},
        {"tier": 2, "quantity": "2", "unit": "500", "flat": 0, "amount": 1000, "kind": "packages"},
    ]


@pytest.mark.parametrize(("users", "expected"), [(1, 1000), (3, 1000), (5, 1000), (6, 2000), (7, 2000)])
def test_package_stripe_quantity_transformation_table(users: int, expected: int) -> None:
    # https://stripe.com/docs/billing/subscriptions/quantity-transformation : "$10 for every 5 users (or
    # portion thereof)", transform_quantity divide_by 5, round up: 1, 3, 5 users $10; 6, 7 users $20.
    assert quote(package(5, 1000), D(users)).amount == expected


def test_package_stripe_car_rental_rounds_minutes_up_to_hours() -> None:
    # https://docs.stripe.com/billing/subscriptions/usage-based/transform-quantities : $10 per hour, usage in
    # minutes, rounded up: "150 minutes ... charged 30 USD for 3 hours".
    result = quote(package(60, 1000), D(150))
    assert (result.amount, lines(result)) == (3000, [("packages", "3", "1000", 3000)])


@pytest.mark.parametrize(
    ("quantity", "expected", "breakdown"),
    [
        ("0", 0, []),
        ("50", 0, [("free_units", "50", "0", 0)]),
        ("100", 0, [("free_units", "100", "0", 0)]),  # all free: no block started
        ("100.001", 500, [("free_units", "100", "0", 0), ("packages", "1", "500", 500)]),
        ("200", 500, [("free_units", "100", "0", 0), ("packages", "1", "500", 500)]),  # exactly one block
        ("300", 1000, [("free_units", "100", "0", 0), ("packages", "2", "500", 1000)]),
    ],
)
def test_package_edges(quantity: str, expected: int, breakdown: list[tuple[str, str, str, int]]) -> None:
    result = quote(package(100, 500, 100), D(quantity))
    assert (result.amount, lines(result)) == (expected, breakdown)


def test_package_fractional_sizes_and_prices_round_once() -> None:
    # 0.5 GB blocks at a third of a cent... 1.25 GB is 3 blocks: 3 x 0.333 = 0.999, rounded once to 1.
    assert quote(package("0.5", "0.333"), D("1.25")).amount == 1
    assert quote(package("0.5", "0.333"), D("1.5")).amount == 1  # 3 blocks exactly
    assert quote(package("0.5", "0.5"), D("0.0000001")).amount == 1  # 0.5: half up
    assert quote(package(1000, 1, currency="jpy"), D(1_000_000_001)).amount == 1_000_001


# --------------------------------------------------------------------------------------------------
# Tiered: Stripe's volume example through the "volume" alias


@pytest.mark.parametrize(("fonts", "expected"), [(1, 700), (5, 3500), (6, 3900), (20, 12000), (25, 15000)])
def test_volume_stripe_example(fonts: int, expected: int) -> None:
    # https://docs.stripe.com/subscriptions/pricing-models/tiered-pricing : tiers 1-5 at $7, 6-10 at $6.50,
    # 11+ at $6; volume-based totals 1 -> $7, 5 -> $35, 6 -> $39, 20 -> $120, 25 -> $150.
    tiers = [{"up_to": 5, "unit": "700"}, {"up_to": 10, "unit": "650"}, {"up_to": None, "unit": "600"}]
    volume = parse_amount({"model": "tiered", "currency": "usd", "mode": "volume", "tiers": tiers})
    assert quote(volume, D(fonts)).amount == expected
    # Same page: with graduated pricing "5 fonts result in the same charge as volume-based pricing: 35 USD".
    graduated = parse_amount({"model": "tiered", "currency": "usd", "mode": "graduated", "tiers": tiers})
    assert quote(graduated, D(5)).amount == 3500
    assert quote(graduated, D(6)).amount == 3500 + 650


# --------------------------------------------------------------------------------------------------
# Graduated percentage

LAGO_GRADUATED_PERCENTAGE = {
    "model": "graduated_percentage",
    "currency": "usd",
    "tiers": [
        {"up_to": 100000, "rate": "1", "flat": 20000},
        {"up_to": 1000000, "rate": "2", "flat": 30000},
        {"up_to": None, "rate": "3", "flat": 40000},
    ],
}


def test_graduated_percentage_lago_example() -> None:
    # https://getlago.com/docs/guide/plans/charges/charge-models/graduated-percentage : tiers $0-1,000 at 1 %
    # + $200, $1,001-10,000 at 2 % + $300, above at 3 % + $400. "A first transaction at $500 would cost
    # $205.00; a second transaction at $550 would cost $306.00; a third transaction at $4,000 would cost
    # $80.00." Each transaction costs what it adds to the period's running total.
    amount = parse_amount(LAGO_GRADUATED_PERCENTAGE)
    running = [quote(amount, D(total)).amount for total in (0, 50000, 105000, 505000)]
    assert [after - before for before, after in itertools.pairwise(running)] == [20500, 30600, 8000]
    result = quote(amount, D(105000))
    assert lines(result) == [("tier", "100000", "0.01", 21000), ("tier", "5000", "0.02", 30100)]
    assert [(e.tier, e.flat) for e in result.breakdown] == [(1, 20000), (2, 30000)]


def test_graduated_percentage_boundaries_and_zero() -> None:
    amount = parse_amount(LAGO_GRADUATED_PERCENTAGE)
    assert quote(amount, D(0)) == Quote(amount=0, currency="usd", breakdown=())
    assert quote(amount, D(100000)).amount == 21000  # inclusive bound: tier 2's flat fee is not due yet
    assert quote(amount, D("100000.01")).amount == 51000  # any volume in tier 2 owes its flat fee
    assert quote(amount, D(1000001)).amount == 21000 + 48000 + 40000  # 0.03 of one unit rounds away


# --------------------------------------------------------------------------------------------------
# Percentage: worked examples


def test_percentage_lago_docs_free_events_or_free_amount_whichever_runs_out_first() -> None:
    # https://getlago.com/docs/guide/plans/charges/charge-models/percentage : 1.2 %, $0.10 per transaction,
    # "the first 3 events or $500 are free". Transactions $200, $100, $100: no charges; a 4th of $50 (total
    # $450, free events exceeded): "$0.10 x 1 event + 1.2% of $50 = $0.70".
    amount = parse_amount(
        {
            "model": "percentage",
            "currency": "usd",
            "rate": "1.2",
            "fixed_fee": "10",
            "free_units_per_events": 3,
            "free_amount": "50000",
        }
    )
    transactions = events(20000, 10000, 10000, 5000)
    assert [quote_events(amount, transactions[:n]).amount for n in range(1, 5)] == [0, 0, 0, 70]
    assert lines(quote_events(amount, transactions)) == [
        ("free_value", "40000", "0", 0),
        ("free_events", "3", "0", 0),
        ("rate", "5000", "0.012", 60),
        ("fixed_fee", "1", "10", 10),
    ]


# https://github.com/getlago/lago-api spec/services/charges/charge_models/percentage_service_spec.rb: four
# events summing to 800 whose running totals start 50, 150, 400 (values 50, 100, 250, 400), rate 1.3 %,
# fixed amount 2 per event. Values here are x100 so every expected amount is whole.
LAGO_SPEC_EVENTS = events(5000, 10000, 25000, 40000)


@pytest.mark.parametrize(
    ("terms", "expected"),
    [
        # free 3 events and 250: (800 - 250) x 1.3 % + (4 - 2) x 2: the 3rd event crosses 250, pays its fee
        ({"free_units_per_events": 3, "free_amount": "25000"}, (80000 - 25000) * 13 // 1000 + 2 * 200),
        # free_units_per_events nil: the same
        ({"free_amount": "25000"}, (80000 - 25000) * 13 // 1000 + 2 * 200),
        # free_units_per_total_aggregation nil: the first 3 events (400) are free
        ({"free_units_per_events": 3}, (80000 - 40000) * 13 // 1000 + 1 * 200),
        # free amount 500 > 400: the 3 free events end the allowance first
        ({"free_units_per_events": 3, "free_amount": "50000"}, (80000 - 40000) * 13 // 1000 + 1 * 200),
        # no free units
        ({}, 80000 * 13 // 1000 + 4 * 200),
    ],
)
def test_percentage_lago_engine_spec(terms: dict[str, Any], expected: int) -> None:
    amount = PercentageAmount(
        currency="usd",
        rate=D("1.3"),
        fixed_fee=D(200),
        free_units_per_events=terms.get("free_units_per_events"),
        free_amount=None if "free_amount" not in terms else D(terms["free_amount"]),
    )
    assert quote_events(amount, LAGO_SPEC_EVENTS).amount == expected


def test_percentage_lago_engine_spec_rate_zero_and_more_free_events_than_events() -> None:
    # Same spec: "when rate is 0" only the fixed amounts, 4 x 2; "when free_units_count > number of events"
    # (5 free events, 4 events summing to 400) nothing.
    assert quote_events(percentage("0", fixed_fee="200"), LAGO_SPEC_EVENTS).amount == 800
    assert (
        quote_events(percentage("1.3", fixed_fee="200", free_units_per_events=5), events(5000, 10000, 25000, 0)).amount
        == 0
    )


def test_percentage_stripe_card_pricing() -> None:
    # https://getlago.com/docs/templates/per-transaction/stripe : card payments online 2.9 % + $0.30 per
    # transaction. A $100 charge costs $3.20; $10 and $25.50 charges cost 29 + 30 and 73.95 + 30 cents.
    amount = parse_amount({"model": "percentage", "currency": "usd", "rate": "2.9", "fixed_fee": "30"})
    assert quote_events(amount, events(10000)).amount == 320
    assert quote_events(amount, events(1000, 2550)).amount == 163  # 29 + 30 + 73.95 + 30 = 162.95
    assert generate_price_name(amount, 1, "month") == "2.9% + $0.30 per event / month"


def test_percentage_per_event_min_and_max() -> None:
    # 1 % per transaction, at least 50 and at most 500 cents per transaction.
    amount = percentage("1", per_event_min="50", per_event_max="500")
    values = events(1000, 20000, 100000, 5000, 50000)  # charges 10 -> 50, 200, 1000 -> 500, 50, 500
    result = quote_events(amount, values)
    assert result.amount == 50 + 200 + 500 + 50 + 500
    # A charge exactly at a bound is "middle": rate and bound agree there.
    assert lines(result) == [
        ("rate", "75000", "0.01", 750),
        ("per_event_min", "1", "50", 50),
        ("per_event_max", "1", "500", 500),
    ]
    assert [event_class(amount, v) for v in values] == ["below", "middle", "above", "middle", "middle"]


def test_percentage_bounds_apply_to_rate_plus_fee_and_free_events_cost_nothing() -> None:
    # 2 % + 30, min 50, max 300: a free event is free (not the minimum); the event crossing the free amount
    # is charged on its remainder, fee included, then clamped.
    amount = percentage("2", fixed_fee="30", free_amount="1000", per_event_min="50", per_event_max="300")
    result = quote_events(amount, events(600, 700, 100000, 0))
    # 600: free. 700: crosses 1000, remainder 300 -> 6 + 30 = 36 -> min 50. 100000 -> 2030 -> max 300.
    # 0: 30 -> min 50.
    assert result.amount == 50 + 300 + 50
    assert lines(result) == [
        ("free_value", "1000", "0", 0),
        ("free_events", "1", "0", 0),
        ("per_event_min", "2", "50", 100),
        ("per_event_max", "1", "300", 300),
    ]


def test_percentage_boundary_event_that_exactly_uses_up_the_free_amount_pays_its_fee() -> None:
    # As Lago's engine does: the event reaching the free amount exactly is where the allowance ends.
    amount = percentage("1", fixed_fee="25", free_amount="1000")
    assert quote_events(amount, events(400, 600)).amount == 25
    assert quote_events(amount, events(400, 599)).amount == 0


def test_percentage_fee_per_event_even_for_zero_value_events() -> None:
    assert quote_events(percentage("2.9", fixed_fee="30"), events(0, 0)).amount == 60


def test_percentage_from_volume_alone_when_it_decides_the_price() -> None:
    # rate + free amount: min(total, free_amount) is free whatever the order of events.
    amount = percentage("2.5", free_amount="10000")
    result = quote(amount, D(50000))
    assert result.amount == 1000
    assert lines(result) == [("free_value", "10000", "0", 0), ("rate", "40000", "0.025", 1000)]
    assert quote(amount, D(0)) == Quote(amount=0, currency="usd", breakdown=())
    for needs_events in (
        percentage("2.5", fixed_fee="1"),
        percentage("2.5", free_units_per_events=2),
        percentage("2.5", per_event_max="100"),
    ):
        with pytest.raises(PricingError) as info:
            quote(needs_events, D(100))
        assert (info.value.code, info.value.param) == ("events_required", "quantity")


def test_quote_events_of_other_models_prices_the_sum() -> None:
    amount = package(100, 500, 100)
    assert quote_events(amount, events("150.5", "50", 1)) == quote(amount, D("201.5"))
    with pytest.raises(PricingError) as info:
        quote_events(amount, events(1, -1))
    assert (info.value.code, info.value.param) == ("negative_quantity", "events[1]")


# --------------------------------------------------------------------------------------------------
# Percentage from aggregates (what the invoice builder does with roll-ups)


def test_percentage_from_roll_up_buckets_reads_only_the_bucket_where_the_allowance_ends() -> None:
    amount = percentage("1.2", fixed_fee="10", free_amount="50000", per_event_min="20")
    hours = [events(10000, 5000), events(20000), events(10000, 8000, 100), events(300, 70000)]
    allowance = FreeAllowance.start(amount)
    read_raw: list[int] = []
    for index, hour in enumerate(hours):
        if allowance.done:
            break
        stats = EventStats.of(amount, hour)  # in production: the hour's roll-up row
        if allowance.fits(stats):
            allowance = allowance.take_block(stats)
        else:
            read_raw.append(index)
            allowance = allowance.take_all(hour)
    assert read_raw == [2]  # 35000 after two hours; the third hour's 2nd event crosses 50000
    assert (allowance.free_events, allowance.free_value, allowance.remainder, allowance.done) == (
        4,
        D(50000),
        D(3000),
        True,
    )
    period = sum((EventStats.of(amount, hour) for hour in hours), EventStats())
    result = quote_percentage(amount, PercentageUsage(period=period, allowance=allowance))
    flat = [v for hour in hours for v in hour]
    assert result == quote_events(amount, flat)
    # remainder 3000 -> 36 + 10; 100 -> 1.2 + 10 -> min 20; 300 -> 3.6 + 10 -> min 20; 70000 -> 840 + 10
    assert result.amount == 46 + 20 + 20 + 850


def test_quote_percentage_refuses_inconsistent_usage() -> None:
    amount = percentage("1", free_units_per_events=2)
    allowance = FreeAllowance.start(amount).take_all(events(10, 20, 30))
    assert allowance.consumed.count == 2
    cases = [
        (PercentageUsage(EventStats.plain(1, D(10)), allowance), "usage_inconsistent", "usage"),
        (PercentageUsage(EventStats(count=1, total=D(-1)), allowance), "invalid_usage", "usage.period"),
        (PercentageUsage(EventStats(count=3, total=D(60), below_count=1), allowance), "invalid_usage", "usage.period"),
        (
            PercentageUsage(EventStats.plain(3, D(60)), FreeAllowance.start(percentage("2"))),
            "invalid_usage",
            "usage.allowance",
        ),
    ]
    for usage, code, param in cases:
        with pytest.raises(PricingError) as info:
            quote_percentage(amount, usage)
        assert (info.value.code, info.value.param) == (code, param)
    assert quote_percentage(amount, PercentageUsage(EventStats.plain(3, D(60)), allowance)).amount == 0  # 0.3


def test_free_allowance_steps_refuse_misuse() -> None:
    amount = percentage("1", free_units_per_events=1)
    done = FreeAllowance.start(amount).take(D(5))
    assert done.done
    with pytest.raises(ValueError):
        done.take(D(1))
    with pytest.raises(ValueError):
        FreeAllowance.start(amount).take_block(EventStats.plain(2, D(2)))
    with pytest.raises(ValueError):
        FreeAllowance.start(amount).take(D(-1))
    assert FreeAllowance.start(percentage("1")).done  # no allowance at all


# --------------------------------------------------------------------------------------------------
# Parsing, validation, canonical form, names

PACKAGE = {"model": "package", "currency": "usd", "package_size": "100", "amount": "500", "free_units": "0"}
PERCENTAGE = {
    "model": "percentage",
    "currency": "usd",
    "rate": "2.9",
    "fixed_fee": "30",
    "free_units_per_events": None,
    "free_amount": None,
    "per_event_min": None,
    "per_event_max": None,
}


def test_canonical_forms() -> None:
    assert (
        amount_to_dict(parse_amount({"model": "package", "currency": "USD", "package_size": 100, "amount": 500}))
        == PACKAGE
    )
    assert amount_to_dict(parse_amount({"model": "percentage", "currency": "usd", "rate": 2.5, "fixed_fee": 30})) == {
        **PERCENTAGE,
        "rate": "2.5",
    }
    # 0 is how Lago spells "none" for the allowances: stored as unset, one spelling per price.
    zero = parse_amount({**PERCENTAGE, "free_units_per_events": 0, "free_amount": "0.00"})
    assert amount_to_dict(zero) == PERCENTAGE
    assert amount_to_dict(parse_amount(LAGO_GRADUATED_PERCENTAGE))["tiers"][0] == {
        "up_to": "100000",
        "rate": "1",
        "flat": 20000,
    }
    assert [amount_model(parse_amount(d)) for d in (PACKAGE, PERCENTAGE, LAGO_GRADUATED_PERCENTAGE)] == [
        "package",
        "percentage",
        "graduated_percentage",
    ]


def gp_tiers(*tiers: dict[str, Any]) -> dict[str, Any]:
    return {"model": "graduated_percentage", "currency": "usd", "tiers": list(tiers)}


OPEN_RATE = {"up_to": None, "rate": "1"}


@pytest.mark.parametrize(
    ("data", "code", "param"),
    [
        ({**PACKAGE, "model": "packages"}, "invalid_choice", "amount.model"),
        ({k: v for k, v in PACKAGE.items() if k != "package_size"}, "missing", "amount.package_size"),
        ({**PACKAGE, "package_size": 0}, "not_positive", "amount.package_size"),
        ({**PACKAGE, "package_size": "-5"}, "negative", "amount.package_size"),
        ({**PACKAGE, "package_size": "0.0000000000001"}, "too_many_decimals", "amount.package_size"),
        ({k: v for k, v in PACKAGE.items() if k != "amount"}, "missing", "amount.amount"),
        ({**PACKAGE, "amount": "abc"}, "invalid_number", "amount.amount"),
        ({**PACKAGE, "free_units": "-1"}, "negative", "amount.free_units"),
        ({**PACKAGE, "unit": "1"}, "unknown_field", "amount.unit"),
        ({**PACKAGE, "packageSize": 5}, "unknown_field", "amount.packageSize"),
        ({k: v for k, v in PERCENTAGE.items() if k != "rate"}, "missing", "amount.rate"),
        ({**PERCENTAGE, "rate": "101"}, "too_large", "amount.rate"),
        ({**PERCENTAGE, "rate": "-1"}, "negative", "amount.rate"),
        ({**PERCENTAGE, "rate": 0.1}, "inexact_float", "amount.rate"),
        ({**PERCENTAGE, "fixed_fee": "-30"}, "negative", "amount.fixed_fee"),
        ({**PERCENTAGE, "free_units_per_events": "1.5"}, "not_integer", "amount.free_units_per_events"),
        ({**PERCENTAGE, "free_units_per_events": -3}, "negative", "amount.free_units_per_events"),
        ({**PERCENTAGE, "free_amount": "-1"}, "negative", "amount.free_amount"),
        ({**PERCENTAGE, "per_event_min": "-1"}, "negative", "amount.per_event_min"),
        ({**PERCENTAGE, "per_event_min": "500", "per_event_max": "100"}, "min_above_max", "amount.per_event_max"),
        ({**PERCENTAGE, "fixed_amount": "30"}, "unknown_field", "amount.fixed_amount"),
        ({**PERCENTAGE, "tiers": []}, "unknown_field", "amount.tiers"),
        (gp_tiers(), "tiers_empty", "amount.tiers"),
        ({"model": "graduated_percentage", "currency": "usd"}, "missing", "amount.tiers"),
        (gp_tiers({"up_to": 10, "rate": "1"}, {"up_to": None}), "missing", "amount.tiers[1].rate"),
        (gp_tiers({"up_to": 10, "rate": "1"}, {"up_to": None, "rate": "250"}), "too_large", "amount.tiers[1].rate"),
        (gp_tiers({"up_to": 10, "rate": "1", "flat": "1.5"}, OPEN_RATE), "not_integer", "amount.tiers[0].flat"),
        (
            gp_tiers({"up_to": 10, "rate": "1"}, {"up_to": 10, "rate": "1"}, OPEN_RATE),
            "up_to_not_increasing",
            "amount.tiers[1].up_to",
        ),
        (gp_tiers(OPEN_RATE, {"up_to": 10, "rate": "1"}), "unbounded_tier_not_last", "amount.tiers[0].up_to"),
        (gp_tiers({"up_to": 10, "rate": "1"}), "last_tier_bounded", "amount.tiers[0].up_to"),
        (gp_tiers({"up_to": 10, "rate": "1", "unit": "2"}, OPEN_RATE), "unknown_field", "amount.tiers[0].unit"),
        (gp_tiers({"to_value": 10, "rate": "1"}, OPEN_RATE), "unknown_field", "amount.tiers[0].to_value"),
        (gp_tiers("x"), "invalid_type", "amount.tiers[0]"),
    ],
)
def test_parse_errors_name_the_field(data: Any, code: str, param: str) -> None:
    with pytest.raises(PricingError) as info:
        parse_amount(data)
    assert (info.value.code, info.value.param) == (code, param)
    assert info.value.message


def test_peer_field_names_get_a_hint() -> None:
    with pytest.raises(PricingError) as info:
        parse_amount({**PERCENTAGE, "free_units_per_total_aggregation": "500"})
    assert "free_amount" in info.value.message


@pytest.mark.parametrize(
    ("amount", "code", "param"),
    [
        (replace(package(1, 1), package_size=D(0)), "not_positive", "amount.package_size"),
        (replace(package(1, 1), amount=1.5), "invalid_number", "amount.amount"),
        (percentage("1", free_units_per_events=0), "not_positive", "amount.free_units_per_events"),
        (percentage("1", free_units_per_events=True), "not_integer", "amount.free_units_per_events"),
        (percentage("1", free_amount="0"), "not_positive", "amount.free_amount"),
        (
            GraduatedPercentageAmount(currency="usd", tiers=(PercentageTier(None, D("-1"), 0),)),
            "negative",
            "amount.tiers[0].rate",
        ),
        (GraduatedPercentageAmount(currency="usd", tiers=("x",)), "invalid_type", "amount.tiers[0]"),  # type: ignore[arg-type]
        (replace(percentage("1"), currency="xyz"), "unknown_currency", "amount.currency"),
    ],
)
def test_hand_built_amounts_are_validated(amount: Any, code: str, param: str) -> None:
    with pytest.raises(PricingError) as info:
        validate_amount(amount)
    assert (info.value.code, info.value.param) == (code, param)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (PACKAGE, "$5.00 per 100 units / month"),
        ({**PACKAGE, "package_size": 1, "free_units": 1000}, "$5.00 per unit, first 1000 free / month"),
        ({**PACKAGE, "currency": "jpy", "amount": 500}, "¥500 per 100 units / month"),
        ({**PERCENTAGE, "fixed_fee": "0"}, "2.9% / month"),
        ({**PERCENTAGE, "rate": "0"}, "$0.30 per event / month"),
        ({**PERCENTAGE, "rate": "1.25", "fixed_fee": "0.5"}, "1.25% + $0.005 per event / month"),
        (LAGO_GRADUATED_PERCENTAGE, "Graduated percentage, USD / month"),
    ],
)
def test_names(data: dict[str, Any], expected: str) -> None:
    assert generate_price_name(parse_amount(data), 1, "month") == expected


# --------------------------------------------------------------------------------------------------
# Properties

small_decimals = st.decimals(min_value=0, max_value=10**6, places=2, allow_nan=False, allow_infinity=False)
currencies = st.sampled_from(["usd", "jpy", "kwd"])
packages = st.builds(
    PackageAmount,
    currency=currencies,
    package_size=st.decimals(min_value=D("0.001"), max_value=10**4, places=3, allow_nan=False, allow_infinity=False),
    amount=st.decimals(min_value=0, max_value=10**5, places=4, allow_nan=False, allow_infinity=False),
    free_units=st.one_of(st.just(D(0)), small_decimals),
)


@st.composite
def graduated_percentages(draw: st.DrawFn) -> GraduatedPercentageAmount:
    bounds = sorted(draw(st.sets(st.integers(min_value=1, max_value=10**7).map(D), max_size=3)))
    rates = st.decimals(min_value=0, max_value=100, places=3, allow_nan=False, allow_infinity=False)
    limits: list[Decimal | None] = [*bounds, None]
    return GraduatedPercentageAmount(
        currency=draw(currencies),
        tiers=tuple(PercentageTier(u, draw(rates), draw(st.integers(0, 10**5))) for u in limits),
    )


@st.composite
def percentages(draw: st.DrawFn) -> PercentageAmount:
    low = draw(st.one_of(st.none(), st.decimals(min_value=0, max_value=500, places=1, allow_nan=False)))
    high = draw(st.one_of(st.none(), st.decimals(min_value=0, max_value=2000, places=1, allow_nan=False)))
    if low is not None and high is not None and high < low:
        low, high = high, low
    return PercentageAmount(
        currency=draw(currencies),
        rate=draw(st.decimals(min_value=0, max_value=100, places=3, allow_nan=False, allow_infinity=False)),
        fixed_fee=draw(st.one_of(st.just(D(0)), st.decimals(min_value=0, max_value=100, places=2, allow_nan=False))),
        free_units_per_events=draw(st.one_of(st.none(), st.integers(min_value=1, max_value=6))),
        free_amount=draw(st.one_of(st.none(), st.decimals(min_value=1, max_value=10**5, places=2, allow_nan=False))),
        per_event_min=low,
        per_event_max=high,
    )


event_values = st.lists(
    st.one_of(st.just(D(0)), st.decimals(min_value=0, max_value=10**5, places=2, allow_nan=False)), max_size=14
)
any_new_amounts = st.one_of(packages, graduated_percentages(), percentages())


def oracle_percentage(amount: PercentageAmount, values: list[Decimal]) -> Fraction:
    """The model's definition event by event, on rationals, written apart from the engine's aggregates."""
    events_left = amount.free_units_per_events
    free_left = None if amount.free_amount is None else Fraction(amount.free_amount)
    over = events_left is None and free_left is None
    total = Fraction(0)
    for raw in values:
        value = Fraction(raw)
        if not over:
            if free_left is not None and value >= free_left:
                value, over = value - free_left, True  # charged on what lies beyond the free amount
            else:
                if free_left is not None:
                    free_left -= value
                if events_left is not None:
                    events_left -= 1
                    over = events_left == 0
                continue  # an entirely free event costs nothing, not even the minimum
        charge = Fraction(amount.rate) / 100 * value + Fraction(amount.fixed_fee)
        if amount.per_event_min is not None:
            charge = max(charge, Fraction(amount.per_event_min))
        if amount.per_event_max is not None:
            charge = min(charge, Fraction(amount.per_event_max))
        total += charge
    return total


def half_up(value: Fraction) -> int:
    return int(value + Fraction(1, 2))


@settings(max_examples=300, deadline=None)
@given(amount=percentages(), values=event_values, cuts=st.lists(st.integers(min_value=0, max_value=14), max_size=6))
def test_percentage_aggregates_equal_the_per_event_definition(
    amount: PercentageAmount, values: list[Decimal], cuts: list[int]
) -> None:
    expected = half_up(oracle_percentage(amount, values))
    assert quote_events(amount, values).amount == expected
    # The same events cut into roll-up buckets at arbitrary points: whole buckets while they fit, the
    # events of the one bucket where the allowance ends, and summed bucket stats for the period.
    points = sorted({min(c, len(values)) for c in cuts} | {0, len(values)})
    buckets = [values[a:b] for a, b in itertools.pairwise(points)]
    allowance = FreeAllowance.start(amount)
    for bucket in buckets:
        if allowance.done:
            break
        stats = EventStats.of(amount, bucket)
        if allowance.fits(stats):
            allowance = allowance.take_block(stats)
        else:
            allowance = allowance.take_all(bucket)
            assert allowance.done  # a bucket that does not fit is where the allowance ends
    period = sum((EventStats.of(amount, b) for b in buckets), EventStats())
    result = quote_percentage(amount, PercentageUsage(period=period, allowance=allowance))
    assert result == quote_events(amount, values)
    assert sum(e.amount for e in result.breakdown) == result.amount
    assert all(type(e.amount) is int and e.amount >= 0 for e in result.breakdown)


@settings(max_examples=200, deadline=None)
@given(amount=percentages(), value=st.decimals(min_value=0, max_value=10**5, places=2))
def test_percentage_event_class_is_the_clamp(amount: PercentageAmount, value: Decimal) -> None:
    charge = Fraction(amount.rate) / 100 * Fraction(value) + Fraction(amount.fixed_fee)
    kind = event_class(amount, value)
    if amount.per_event_min is not None and charge < amount.per_event_min:
        assert kind == "below"
    elif amount.per_event_max is not None and charge > amount.per_event_max:
        assert kind == "above"
    else:
        assert kind == "middle"


@settings(max_examples=200, deadline=None)
@given(amount=percentages(), values=event_values, extra=st.decimals(min_value=0, max_value=10**5, places=2))
def test_percentage_never_decreases_when_an_event_is_added(
    amount: PercentageAmount, values: list[Decimal], extra: Decimal
) -> None:
    assert quote_events(amount, [*values, extra]).amount >= quote_events(amount, values).amount >= 0


@settings(max_examples=200, deadline=None)
@given(
    rate=st.integers(min_value=0, max_value=100),
    fee=st.integers(min_value=0, max_value=100),
    bounds=st.tuples(st.integers(0, 300), st.integers(0, 3000)),
    first=st.lists(st.integers(0, 10**4).map(lambda v: D(v * 100)), max_size=8),
    second=st.lists(st.integers(0, 10**4).map(lambda v: D(v * 100)), max_size=8),
)
def test_percentage_without_allowance_is_additive_over_events(
    rate: int, fee: int, bounds: tuple[int, int], first: list[Decimal], second: list[Decimal]
) -> None:
    # Whole-percent rates on whole-dollar values make every event's charge exact, so the rounding once per
    # line cannot hide a missing or doubled event: the price of two sets of events is the sum of theirs.
    low, high = sorted(bounds)
    amount = PercentageAmount("usd", D(rate), D(fee), per_event_min=D(low), per_event_max=D(high))
    assert quote_events(amount, first + second).amount == (
        quote_events(amount, first).amount + quote_events(amount, second).amount
    )


@settings(max_examples=200, deadline=None)
@given(amount=packages, a=small_decimals, b=small_decimals)
def test_package_is_the_rounded_block_count_and_monotone(amount: PackageAmount, a: Decimal, b: Decimal) -> None:
    low, high = sorted((a, b))
    billed = max(Fraction(0), Fraction(high) - Fraction(amount.free_units))
    blocks = -(-billed // Fraction(amount.package_size))  # ceiling, on rationals
    assert quote(amount, high).amount == half_up(blocks * Fraction(amount.amount))
    assert 0 <= quote(amount, low).amount <= quote(amount, high).amount


@settings(max_examples=200, deadline=None)
@given(amount=graduated_percentages(), a=small_decimals, b=small_decimals)
def test_graduated_percentage_is_monotone_and_exact(amount: GraduatedPercentageAmount, a: Decimal, b: Decimal) -> None:
    low, high = sorted((a, b))
    result = quote(amount, high)
    exact, lower = Fraction(0), Fraction(0)
    for tier in amount.tiers:
        upper = Fraction(high) if tier.up_to is None else min(Fraction(high), Fraction(tier.up_to))
        if upper > lower:
            exact += tier.flat + Fraction(tier.rate) / 100 * (upper - lower)
        if tier.up_to is None or tier.up_to >= high:
            break
        lower = Fraction(tier.up_to)
    assert result.amount == half_up(exact)
    assert 0 <= quote(amount, low).amount <= result.amount
    assert sum(e.amount for e in result.breakdown) == result.amount


@settings(max_examples=300, deadline=None)
@given(any_new_amounts)
def test_amount_to_dict_round_trips_every_new_model(amount: Any) -> None:
    rendered = amount_to_dict(amount)
    assert parse_amount(rendered) == replace(amount, currency=amount.currency.lower())
    assert amount_to_dict(parse_amount(rendered)) == rendered

    # The canonical form never carries a float: decimals are strings, flats and counts integers.
    def walk(value: Any) -> None:
        assert not isinstance(value, float)
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        if isinstance(value, list):
            for item in value:
                walk(item)

    walk(rendered)
