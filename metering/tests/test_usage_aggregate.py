"""usage_aggregate: every aggregation at period edges, ties, cancellation and filters, before and after
the roll-up, always equal to the brute-force aggregation of the raw rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from customers.tests.factories import CustomerFactory
from metering.models import UsageDirtyHour, UsageHourly
from metering.rollups import usage_rollup_job
from metering.selectors import UsageValue, usage_aggregate, usage_aggregate_many
from metering.tests.usage_support import NOW, brute_force, ingest, make_meter
from metering.usage import usage_cancel

pytestmark = pytest.mark.django_db

START = datetime(2026, 3, 10, 10, 0, tzinfo=UTC)
END = datetime(2026, 3, 10, 13, 0, tzinfo=UTC)
US = timedelta(microseconds=1)

EXPECTED = {
    "count": Decimal(3),
    "sum": Decimal(10),
    "max": Decimal(5),
    "latest": Decimal(3),
    "unique_count": Decimal(2),
}


def _edge_events():
    return [
        (START - US, "100", {"user": "a"}),  # just before start: out
        (START, "2", {"user": "b"}),  # exactly at start: in
        (START + timedelta(minutes=30), "5", {"user": "b"}),
        (END - US, "3", {"user": "c"}),  # a microsecond before end: in
        (END, "50", {"user": "d"}),  # exactly at end: out
    ]


def _meter(aggregation):
    return make_meter(aggregation, unique_key="user" if aggregation == "unique_count" else "")


def _check(meter, customer, start, end, filters=None):
    expected_value, expected_count = brute_force(meter, customer, start, end, filters)
    got = usage_aggregate(meter=meter, customer=customer, start=start, end=end, filters=filters)
    assert got == UsageValue(value=expected_value, event_count=expected_count), (start, end)
    return got


@pytest.mark.parametrize("aggregation", sorted(EXPECTED))
@pytest.mark.parametrize("rolled", [False, True], ids=["raw", "rolled"])
def test_period_edges(aggregation, rolled):
    meter, customer = _meter(aggregation), CustomerFactory()
    ingest(customer, meter, _edge_events())
    if rolled:
        usage_rollup_job(now=NOW)
        assert not UsageDirtyHour.objects.exists()
    got = _check(meter, customer, START, END)
    assert got.value == EXPECTED[aggregation]
    assert got.event_count == 3
    # Shifted and non-aligned windows around the same events.
    for start, end in [
        (START + US, END),  # the event at start drops out
        (START, END - US),  # the event a microsecond before end drops out
        (START - US, END + US),  # both outside events come in
        (START + timedelta(minutes=7), END - timedelta(minutes=59)),
        (START - timedelta(hours=5), END + timedelta(hours=5)),
        (START + timedelta(minutes=29), START + timedelta(minutes=31)),
    ]:
        _check(meter, customer, start, end)


@pytest.mark.parametrize("aggregation", sorted(EXPECTED))
def test_empty_period_is_zero(aggregation):
    meter, customer = _meter(aggregation), CustomerFactory()
    assert usage_aggregate(meter=meter, customer=customer, start=START, end=END) == UsageValue(Decimal(0), 0)
    assert usage_aggregate(meter=meter, customer=customer, start=START, end=START) == UsageValue(Decimal(0), 0)
    ingest(customer, meter, _edge_events())
    usage_rollup_job(now=NOW)
    empty = usage_aggregate(meter=meter, customer=customer, start=END + US, end=END + timedelta(days=1))
    assert empty == UsageValue(Decimal(0), 0)


def test_naive_or_reversed_periods_are_refused():
    meter, customer = _meter("sum"), CustomerFactory()
    with pytest.raises(ValueError, match="timezone-aware"):
        usage_aggregate(meter=meter, customer=customer, start=START.replace(tzinfo=None), end=END)
    with pytest.raises(ValueError, match="after end"):
        usage_aggregate(meter=meter, customer=customer, start=END, end=START)


@pytest.mark.parametrize("rolled", [False, True], ids=["raw", "rolled"])
def test_latest_ties_go_to_the_event_ingested_last(rolled):
    meter, customer = _meter("latest"), CustomerFactory()
    at = START + timedelta(minutes=10)
    ingest(customer, meter, [(at, "7"), (at, "4")])  # same batch: ingestion order
    ingest(customer, meter, [(at - timedelta(minutes=5), "99")])  # ingested later but earlier in time
    if rolled:
        usage_rollup_job(now=NOW)
    assert _check(meter, customer, START, END).value == Decimal(4)
    ingest(customer, meter, [(at, "1")])  # a later batch with the same timestamp wins the tie
    assert _check(meter, customer, START, END).value == Decimal(1)
    usage_rollup_job(now=NOW)
    assert _check(meter, customer, START, END).value == Decimal(1)
    assert _check(meter, customer, START + timedelta(hours=1), END) == UsageValue(Decimal(0), 0)


@pytest.mark.parametrize("aggregation", sorted(EXPECTED))
def test_canceled_events_never_count(aggregation):
    meter, customer = _meter(aggregation), CustomerFactory()
    ids = ingest(customer, meter, _edge_events())
    usage_rollup_job(now=NOW)
    usage_cancel(event_ids=[ids[2], ids[3]], reason="duplicate", now=NOW)  # the 5 and the latest 3
    assert UsageDirtyHour.objects.count() == 2  # their hours are stale until the next roll-up
    before = _check(meter, customer, START, END)
    usage_rollup_job(now=NOW)
    after = _check(meter, customer, START, END)
    assert before == after
    assert after.event_count == 1
    assert after.value == {"count": 1, "sum": 2, "max": 2, "latest": 2, "unique_count": 1}[aggregation]


@pytest.mark.parametrize("rolled", [False, True], ids=["raw", "rolled"])
def test_meter_filters_and_extra_filters(rolled):
    meter = make_meter("sum", filters={"region": ["eu", "us"], "tier": ["1"]})
    customer = CustomerFactory()
    at = START + timedelta(minutes=1)
    ingest(
        customer,
        meter,
        [
            (at, "1", {"region": "eu", "tier": 1}),  # an integer dimension compares as its text
            (at, "2", {"region": "us", "tier": "1"}),
            (at, "4", {"region": "apac", "tier": "1"}),  # region not allowed
            (at, "8", {"region": "eu"}),  # tier missing
            (at, "16", {"region": "eu", "tier": "2"}),
            (at + timedelta(hours=1), "32", {"region": "eu", "tier": "1", "env": "prod"}),
        ],
    )
    if rolled:
        usage_rollup_job(now=NOW)
        assert UsageHourly.objects.filter(meter=meter).count() == 2
    assert _check(meter, customer, START, END) == UsageValue(Decimal(35), 3)
    assert _check(meter, customer, START, END, {"region": ["eu"]}) == UsageValue(Decimal(33), 2)
    assert _check(meter, customer, START, END, {"env": ["prod"]}) == UsageValue(Decimal(32), 1)
    assert _check(meter, customer, START, END, {"region": ["apac"]}) == UsageValue(Decimal(0), 0)


def test_boolean_dimensions_match_filters_as_true_false():
    meter = make_meter("count", filters={"internal": ["false"]})
    customer = CustomerFactory()
    at = START + timedelta(minutes=1)
    ingest(customer, meter, [(at, "1", {"internal": False}), (at, "1", {"internal": True}), (at, "1", {})])
    assert usage_aggregate(meter=meter, customer=customer, start=START, end=END).event_count == 1
    usage_rollup_job(now=NOW)
    assert usage_aggregate(meter=meter, customer=customer, start=START, end=END).event_count == 1


def test_other_customers_and_meters_do_not_leak_in():
    meter, other_meter = _meter("sum"), _meter("sum")
    customer, other = CustomerFactory(), CustomerFactory()
    at = START + timedelta(minutes=1)
    ingest(customer, meter, [(at, "1")])
    ingest(other, meter, [(at, "10")])
    ingest(customer, other_meter, [(at, "100")])
    usage_rollup_job(now=NOW)
    assert _check(meter, customer, START, END) == UsageValue(Decimal(1), 1)


def test_unique_count_ignores_events_without_the_key_and_compares_as_text():
    meter, customer = _meter("unique_count"), CustomerFactory()
    at = START + timedelta(minutes=1)
    ingest(customer, meter, [(at, "1", {"user": 7}), (at, "1", {"user": "7"}), (at, "1", {"other": "x"})])
    assert _check(meter, customer, START, END) == UsageValue(Decimal(1), 2)


@pytest.mark.postgres
def test_large_values_stay_exact_on_postgres():
    meter, customer = _meter("sum"), CustomerFactory()
    big = Decimal("12345678901234567890123456.123456789012")
    ingest(customer, meter, [(START + timedelta(minutes=m), big) for m in range(3)])
    ingest(customer, meter, [(START + timedelta(hours=1, minutes=1), "0.000000000001")])
    usage_rollup_job(now=NOW)
    got = usage_aggregate(meter=meter, customer=customer, start=START, end=END)
    assert got.value == big * 3 + Decimal("0.000000000001")
    assert usage_aggregate(meter=meter, customer=customer, start=START + US, end=END).value == big * 2 + Decimal(
        "0.000000000001"
    )


@pytest.mark.parametrize("aggregation", sorted(EXPECTED))
def test_many_customers_in_one_read_equal_one_by_one(aggregation):
    meter = _meter(aggregation)
    customers = [CustomerFactory() for _ in range(4)]
    for index, customer in enumerate(customers[:3]):
        events = _edge_events()[index:]
        ingest(customer, meter, events)
    usage_rollup_job(now=NOW, batch_size=2, max_batches=2)  # some hours rolled up, some dirty
    for start, end in [(START, END), (START + timedelta(minutes=13), END - US)]:
        many = usage_aggregate_many(meter=meter, customer_ids=[c.id for c in customers], start=start, end=end)
        assert list(many) == [c.id for c in customers]
        for customer in customers:
            assert many[customer.id] == UsageValue(*brute_force(meter, customer, start, end))
    assert many[customers[3].id] == UsageValue(Decimal(0), 0)
    assert usage_aggregate_many(meter=meter, customer_ids=[], start=START, end=END) == {}
