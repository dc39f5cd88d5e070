"""Percentage prices with per-event terms priced from the hourly per-classifier roll-ups
(`metering.class_stats` + `catalog.selectors.percentage_usage`) equal the per-event definition on the raw
events (`quote_events`), whatever mix of ingestion, late events, cancellations, partial roll-ups and prices
created after the hours were rolled up; and the invoice-time read does not grow with the events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from catalog.percentage import PercentageAmount
from catalog.pricing import quote_events
from catalog.selectors import classifier_of, percentage_usage, percentage_usage_quote
from catalog.services import price_create
from customers.tests.factories import CustomerFactory
from metering.class_stats import Classifier, classifiers_for, period_class_stats
from metering.class_stats_models import UsageHourlyClassStats
from metering.models import MeterEvent, UsageDirtyHour
from metering.rollups import usage_rollup_job
from metering.selectors import usage_event_values
from metering.tests.usage_support import NOW, ingest, make_meter
from metering.usage import usage_cancel

pytestmark = pytest.mark.django_db

D = Decimal
T0 = datetime(2026, 3, 10, tzinfo=UTC)
HOURS = 4
HOUR_US = 3600 * 10**6
SPAN_US = HOURS * HOUR_US


def _at(offset_us: int) -> datetime:
    return T0 + timedelta(microseconds=offset_us)


def _price(meter, amount: PercentageAmount):
    return price_create(
        type="standalone", duration_amount=1, duration_unit="month", amount=amount, meter_id=meter.id, now=NOW
    )


def _raw_quote(amount, meter, customer, start, end):
    values = usage_event_values(meter=meter, customer_id=customer.id, start=start, end=end)
    return quote_events(amount, values)


@st.composite
def amounts(draw: st.DrawFn) -> PercentageAmount:
    # Small numbers so that events fall on every side of both breakpoints, and some exactly on them.
    low = draw(st.one_of(st.none(), st.sampled_from([D(0), D(10), D(50), D("35.5"), D(100)])))
    high = draw(st.one_of(st.none(), st.sampled_from([D(50), D(100), D(200), D("250.25")])))
    if low is not None and high is not None and high < low:
        low, high = high, low
    return PercentageAmount(
        currency="usd",
        rate=draw(st.sampled_from([D(0), D(1), D("2.9"), D(10), D(50)])),
        fixed_fee=draw(st.sampled_from([D(0), D(10), D(30)])),
        free_units_per_events=draw(st.one_of(st.none(), st.integers(1, 12))),
        free_amount=draw(st.one_of(st.none(), st.sampled_from([D(1), D(500), D("1234.5"), D(5000)]))),
        per_event_min=low,
        per_event_max=high,
    )


# Values on the breakpoints of the sampled terms (e.g. 10 % of 500 = 50, 50 % of 100 = 50, 2.9 % of 1000).
values = st.one_of(
    st.integers(0, 3000).map(D),
    st.sampled_from([D(0), D(100), D(200), D(400), D(500), D(1000), D(2000), D("0.01"), D("1234.56")]),
)
offsets = st.one_of(
    st.integers(0, SPAN_US - 1),
    st.sampled_from([h * HOUR_US + d for h in range(HOURS) for d in (0, 1)] + [HOUR_US - 1, SPAN_US - 1]),
)
events = st.lists(st.tuples(offsets, values), min_size=1, max_size=12)
step = st.one_of(
    st.tuples(st.just("ingest"), events),
    st.tuples(st.just("rollup"), st.integers(1, 4), st.booleans()),
    st.tuples(st.just("cancel"), st.lists(st.integers(0, 10**6), min_size=1, max_size=3)),
    st.tuples(st.just("price"), amounts()),  # a price created after some hours were rolled up
)
edge = st.one_of(st.integers(-HOUR_US, SPAN_US + HOUR_US), st.sampled_from([h * HOUR_US for h in range(-1, HOURS + 2)]))
periods = st.lists(st.tuples(edge, edge).map(sorted), min_size=1, max_size=3)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(first=amounts(), steps=st.lists(step, min_size=1, max_size=7), spans=periods)
def test_rollup_path_equals_raw_events(first, steps, spans):
    with transaction.atomic():  # each example starts from an empty database
        customer = CustomerFactory()
        meter = make_meter("sum")
        filtered = make_meter("sum", filters={"region": ["eu"]})
        prices = [(meter, first), (filtered, first)]
        _price(meter, first)
        _price(filtered, first)
        ids: list[str] = []
        for action in steps:
            if action[0] == "ingest":
                ids += ingest(customer, meter, [(_at(o), v) for o, v in action[1]])
                regions = ("eu", "us")
                rows = [(_at(o), v, {"region": regions[i % 2]}) for i, (o, v) in enumerate(action[1])]
                ids += ingest(customer, filtered, rows)
            elif action[0] == "rollup":
                usage_rollup_job(now=NOW, batch_size=action[1], max_batches=100 if action[2] else 1)
            elif action[0] == "price":
                _price(meter, action[1])
                prices.append((meter, action[1]))
            elif ids:
                usage_cancel(event_ids=[ids[i % len(ids)] for i in action[1]], reason="test", now=NOW)
            _check(customer, prices, [(0, SPAN_US)])  # between steps, dirty and clean hours are mixed
        _check(customer, prices, [(-HOUR_US, SPAN_US + HOUR_US), *spans])
        usage_rollup_job(now=NOW)
        assert not UsageDirtyHour.objects.exists()
        _check(customer, prices, [(-HOUR_US, SPAN_US + HOUR_US), *spans])
        transaction.set_rollback(True)


def _check(customer, prices, spans):
    for lo, hi in spans:
        start, end = _at(lo), _at(hi)
        for meter, amount in prices:
            expected = _raw_quote(amount, meter, customer, start, end)
            got = percentage_usage_quote(amount=amount, meter=meter, customer_id=customer.id, start=start, end=end)
            assert got == expected, (amount, start, end)


def _card(**terms) -> PercentageAmount:
    return PercentageAmount(currency="usd", rate=D(10), fixed_fee=D(0), **terms)


def test_classifier_is_the_price_breakpoints_and_catalog_registers_it():
    meter = make_meter("sum")
    plain = make_meter("sum")
    _price(meter, _card(per_event_min=D(5), per_event_max=D(50)))
    _price(meter, _card(per_event_min=D(5), per_event_max=D(50)))  # the same classifier: one set of rows
    _price(plain, _card(free_units_per_events=3))  # no bounds: UsageHourly alone serves it
    (classifier,) = classifiers_for(meter.id)
    assert classifier == Classifier(rate=D(10), low=D(500), high=D(5000))
    assert classifiers_for(plain.id) == []
    # The exact predicates of catalog.percentage: 10 % of 50 is exactly the minimum, not below it.
    assert [classifier.classify(D(v)) for v in (49, 50, 500, 501)] == ["below", "middle", "middle", "above"]
    # Equal breakpoints, equal key, however the terms are written.
    with_fee = PercentageAmount(currency="usd", rate=D("10.0"), fixed_fee=D(1), per_event_min=D(6), per_event_max=D(51))
    assert classifier_of(with_fee).key == classifier.key


def test_hours_are_served_from_rows_and_reruns_do_not_double_count():
    customer = CustomerFactory()
    meter = make_meter("sum")
    amount = _card(per_event_min=D(5), per_event_max=D(50))
    _price(meter, amount)
    ingest(customer, meter, [(T0 + timedelta(minutes=10 * i), D(100 * i)) for i in range(30)])
    start, end = T0, T0 + timedelta(hours=6)
    expected = _raw_quote(amount, meter, customer, start, end)
    usage_rollup_job(now=NOW)
    rows = UsageHourlyClassStats.objects.filter(meter=meter, customer=customer)
    assert rows.count() == 5  # the hours with events, one classifier
    assert sum(row.event_count for row in rows) == 30
    assert sum(row.below_count for row in rows) == 1 and sum(row.above_count for row in rows) == 24
    # A re-run (nothing dirty) and a re-roll of the same hours change nothing.
    usage_rollup_job(now=NOW)
    UsageDirtyHour.objects.create(meter=meter, customer=customer, hour=T0, touched_at=NOW)
    usage_rollup_job(now=NOW)
    assert sorted(rows.values_list("hour", "event_count", "middle_sum")) == sorted(
        (row.hour, row.event_count, row.middle_sum) for row in rows
    )
    assert UsageHourlyClassStats.objects.filter(meter=meter, customer=customer).count() == 5
    assert percentage_usage_quote(amount=amount, meter=meter, customer_id=customer.id, start=start, end=end) == expected
    # Whole clean hours are read from the rows, not the events: values changed behind the roll-up's back
    # (no dirty hour) do not show.
    MeterEvent.objects.filter(meter_id=meter.id, customer_id=customer.id).update(value=0)
    assert percentage_usage_quote(amount=amount, meter=meter, customer_id=customer.id, start=start, end=end) == expected


def test_late_event_into_a_rolled_up_hour_and_an_hour_without_a_row():
    customer = CustomerFactory()
    meter = make_meter("sum")
    amount = _card(per_event_min=D(5), per_event_max=D(50))
    _price(meter, amount)
    ingest(customer, meter, [(T0 + timedelta(minutes=30), D(100)), (T0 + timedelta(hours=1, minutes=5), D(1000))])
    usage_rollup_job(now=NOW)
    start, end = T0, T0 + timedelta(hours=3)

    def both():
        raw = _raw_quote(amount, meter, customer, start, end)
        got = percentage_usage_quote(amount=amount, meter=meter, customer_id=customer.id, start=start, end=end)
        return got.amount, raw.amount

    assert both() == (10 + 50, 60)
    ingest(customer, meter, [(T0 + timedelta(minutes=1), D(10))], now=NOW + timedelta(hours=1))  # late: dirty
    assert both() == (65, 65)
    usage_rollup_job(now=NOW + timedelta(hours=1))
    assert both() == (65, 65)
    # A price created after the roll-up: its classifier has no rows yet, its hours are read raw.
    later = _card(per_event_max=D(20))
    _price(meter, later)
    assert not UsageHourlyClassStats.objects.filter(classifier_key=classifier_of(later).key).exists()
    got = percentage_usage_quote(amount=later, meter=meter, customer_id=customer.id, start=start, end=end)
    assert got.amount == 1 + 10 + 20 == _raw_quote(later, meter, customer, start, end).amount
    # The next roll-up of those hours writes them.
    UsageDirtyHour.objects.create(meter=meter, customer=customer, hour=T0, touched_at=NOW)
    usage_rollup_job(now=NOW + timedelta(hours=2))
    assert UsageHourlyClassStats.objects.filter(classifier_key=classifier_of(later).key).count() == 1


def test_free_allowance_ending_mid_hour_reads_only_that_hour():
    customer = CustomerFactory()
    meter = make_meter("sum")
    # 10 events an hour for 5 hours; the 25 free events end in the middle of the third hour.
    amount = PercentageAmount(
        currency="usd", rate=D(10), fixed_fee=D(3), free_units_per_events=25, per_event_min=D(5), per_event_max=D(50)
    )
    _price(meter, amount)
    ingest(customer, meter, [(T0 + timedelta(minutes=6 * i), D(7 * i)) for i in range(50)])
    usage_rollup_job(now=NOW)
    start, end = T0, T0 + timedelta(hours=5)
    usage = percentage_usage(amount=amount, meter=meter, customer_id=customer.id, start=start, end=end)
    assert usage.allowance.free_events == 25 and usage.allowance.done
    assert usage.period.count == 50
    got = percentage_usage_quote(amount=amount, meter=meter, customer_id=customer.id, start=start, end=end)
    assert got == _raw_quote(amount, meter, customer, start, end)
    # A free amount that ends in the middle of an event, within an hour (the 18th event crosses it).
    by_value = PercentageAmount(
        currency="usd", rate=D(10), fixed_fee=D(3), free_amount=D(1000), per_event_min=D(5), per_event_max=D(50)
    )
    usage = percentage_usage(amount=by_value, meter=meter, customer_id=customer.id, start=start, end=end)
    assert usage.allowance.free_events == 17 and usage.allowance.remainder == D(7 * 17 * 18 // 2 - 1000)
    by_value_quote = percentage_usage_quote(amount=by_value, meter=meter, customer_id=customer.id, start=start, end=end)
    assert by_value_quote == _raw_quote(by_value, meter, customer, start, end)
    # The hours after the boundary hour are never read raw: changing their events behind the roll-up's
    # back does not change the result.
    MeterEvent.objects.filter(meter_id=meter.id, timestamp__gte=T0 + timedelta(hours=3)).update(value=0)
    assert percentage_usage_quote(amount=amount, meter=meter, customer_id=customer.id, start=start, end=end) == got


def _statements(amount, meter, customer, start, end) -> int:
    with CaptureQueriesContext(connection) as queries:
        percentage_usage_quote(amount=amount, meter=meter, customer_id=customer.id, start=start, end=end)
    return len(queries.captured_queries)


def test_invoice_time_statements_do_not_grow_with_events(django_assert_max_num_queries):
    meter = make_meter("sum")
    _price(meter, PercentageAmount(currency="usd", rate=D("2.9"), fixed_fee=D(30), per_event_max=D(500)))
    start, end = T0 + timedelta(minutes=30), T0 + timedelta(hours=23, minutes=30)  # partial edge hours
    counts = []
    for per_hour in (2, 60):
        customer = CustomerFactory()
        # The free events end in the middle of the fourth hour: one hour is read event by event.
        amount = PercentageAmount(
            currency="usd",
            rate=D("2.9"),
            fixed_fee=D(30),
            free_units_per_events=3 * per_hour + per_hour // 2 + 1,
            per_event_max=D(500),
        )
        step = timedelta(hours=1) / per_hour
        ingest(customer, meter, [(T0 + step * i, D(100 + 37 * i)) for i in range(24 * per_hour)])
        usage_rollup_job(now=NOW)
        # One stats statement and one read of the boundary hour (plus the transaction's own) on
        # PostgreSQL; on SQLite a few ORM reads. Neither depends on the number of events.
        with django_assert_max_num_queries(6 if connection.vendor == "postgresql" else 10):
            got = percentage_usage_quote(amount=amount, meter=meter, customer_id=customer.id, start=start, end=end)
        assert got == _raw_quote(amount, meter, customer, start, end)
        usage = percentage_usage(amount=amount, meter=meter, customer_id=customer.id, start=start, end=end)
        assert usage.allowance.done and usage.allowance.free_events == amount.free_units_per_events
        counts.append(_statements(amount, meter, customer, start, end))
    assert counts[0] == counts[1]


def test_bad_periods_are_refused():
    customer = CustomerFactory()
    meter = make_meter("sum")
    classifier = Classifier.of(D(10), D(0), D(5), None)
    with pytest.raises(ValueError, match="start must not be after end"):
        period_class_stats(
            meter=meter, customer_id=customer.id, start=T0 + timedelta(hours=1), end=T0, classifier=classifier
        )
    with pytest.raises(ValueError, match="timezone-aware"):
        period_class_stats(
            meter=meter, customer_id=customer.id, start=T0.replace(tzinfo=None), end=T0, classifier=classifier
        )
    assert period_class_stats(meter=meter, customer_id=customer.id, start=T0, end=T0, classifier=classifier) == []
