"""weighted_sum: the integral of a gauge over time, prorated to the period, with the value carried over
period boundaries; exact on roll-ups, with late and canceled events; in usage queries and on invoices."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from customers.tests.factories import CustomerFactory
from metering.models import MeterEvent, UsageDirtyHour, UsageHourly
from metering.rollups import usage_rollup_job
from metering.selectors import UsageValue, usage_aggregate, usage_series
from metering.tests.usage_support import NOW, brute_force, ingest, make_meter
from metering.usage import usage_cancel
from metering.weighted import Part, integrate, prorate

pytestmark = pytest.mark.django_db

MAR1 = datetime(2026, 3, 1, tzinfo=UTC)
APR1 = datetime(2026, 4, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def value(meter, customer, start, end, **kwargs):
    return usage_aggregate(meter=meter, customer=customer, start=start, end=end, **kwargs)


def test_pure_integral_worked_example():
    # 10 seats for the first 15 days of a 30-day period, then 20: (10 x 15 + 20 x 15) / 30 = 15 seats.
    day = 86_400 * 10**6
    start, end = 1_000 * day, 1_030 * day
    parts = [Part(first=start + 15 * day, order=1, hi=start + 15 * day, held=Decimal(0), last=Decimal(20), events=1)]
    integral, events = integrate(parts, opening=Decimal(10), start=start, end=end)[None]
    assert events == 1
    assert prorate(integral, end - start) == Decimal(15)
    # By day: each day gets its own integral; the change lands in day 15.
    days = integrate(parts, opening=Decimal(10), start=start, end=end, step=day)
    assert len(days) == 30 and days[start] == (Decimal(10 * day), 0)
    assert days[start + 15 * day] == (Decimal(20 * day), 1)
    # A third of a microsecond-exact period rounds half up at 12 places.
    assert prorate(Decimal(1), 3) == Decimal("0.333333333333")
    assert prorate(Decimal(2), 3) == Decimal("0.666666666667")


def test_the_value_is_held_until_the_next_event_and_carried_over_period_boundaries():
    meter, customer = make_meter("weighted_sum"), CustomerFactory()
    # February: 4 seats from Feb 20; March: 10 from Mar 11 00:00, 2 from Mar 21 12:30.
    ingest(
        customer,
        meter,
        [
            (datetime(2026, 2, 20, tzinfo=UTC), "4"),
            (datetime(2026, 3, 11, tzinfo=UTC), "10"),
            (datetime(2026, 3, 21, 12, 30, tzinfo=UTC), "2"),
        ],
        now=datetime(2026, 3, 22, tzinfo=UTC),
    )
    # March (31 days = 744 h): 4 carried in for 240 h, 10 for 252.5 h, 2 for 251.5 h.
    expected = (Decimal(4 * 240) + Decimal("10") * Decimal("252.5") + Decimal(2) * Decimal("251.5")) / 744
    expected = expected.quantize(Decimal("0.000000000001"))
    for _ in range(2):  # raw, then from roll-ups
        got = value(meter, customer, MAR1, APR1)
        assert got == UsageValue(expected, 2)
        assert got == UsageValue(*brute_force(meter, customer, MAR1, APR1))
        usage_rollup_job(now=NOW)
        assert not UsageDirtyHour.objects.exists()
    # The whole of April holds the last value, 2, though April has no event at all.
    assert value(meter, customer, APR1, datetime(2026, 5, 1, tzinfo=UTC)) == UsageValue(Decimal(2), 0)
    # Before the first event nothing is held.
    assert value(meter, customer, datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 2, 20, tzinfo=UTC)) == UsageValue(
        Decimal(0), 0
    )
    # A period that starts mid-hour and ends mid-hour: the edges are raw, the hours between rolled up.
    start, end = datetime(2026, 3, 21, 11, 45, tzinfo=UTC), datetime(2026, 3, 21, 13, 15, tzinfo=UTC)
    # 10 for 45 min, 2 for 45 min over 90 min = 6.
    assert value(meter, customer, start, end) == UsageValue(Decimal(6), 1)


def test_roll_up_rows_hold_the_integral_from_the_first_event_to_the_hour_end():
    meter, customer = make_meter("weighted_sum"), CustomerFactory()
    hour = datetime(2026, 3, 10, 8, tzinfo=UTC)
    ingest(customer, meter, [(hour + timedelta(minutes=15), "3"), (hour + timedelta(minutes=45), "1")])
    usage_rollup_job(now=NOW)
    row = UsageHourly.objects.get(meter=meter, customer=customer)
    assert row.first_timestamp == hour + timedelta(minutes=15)
    # 3 for 30 minutes + 1 for 15 minutes, in value x microseconds.
    assert row.held_integral == Decimal(3 * 30 * 60 * 10**6 + 15 * 60 * 10**6)
    assert row.latest_value == Decimal(1)


def test_a_late_event_changes_its_hour_and_what_is_carried_after_it():
    meter, customer = make_meter("weighted_sum"), CustomerFactory()
    t = datetime(2026, 3, 10, tzinfo=UTC)
    ingest(customer, meter, [(t, "1"), (t + 10 * DAY, "5")], now=t + 11 * DAY)
    usage_rollup_job(now=NOW)
    before = value(meter, customer, t, t + 20 * DAY)
    assert before == UsageValue((Decimal(1 * 10 + 5 * 10) / 20).quantize(Decimal("1E-12")), 2)
    # A late event on day 2 changes what is held from day 2 to day 10 (the later hours keep their rows).
    ingest(customer, meter, [(t + 2 * DAY + timedelta(minutes=30), "3")], now=t + 12 * DAY)
    assert UsageDirtyHour.objects.count() == 1
    expected = UsageValue(*brute_force(meter, customer, t, t + 20 * DAY))
    assert expected.value != before.value
    assert value(meter, customer, t, t + 20 * DAY) == expected  # dirty hour read raw
    usage_rollup_job(now=NOW)
    assert value(meter, customer, t, t + 20 * DAY) == expected  # and the same from roll-ups
    # A late event before a period changes the period's opening value.
    ingest(customer, meter, [(t + 15 * DAY, "7")], now=t + 16 * DAY)
    later = (t + 16 * DAY, t + 18 * DAY)
    assert value(meter, customer, *later) == UsageValue(Decimal(7), 0)
    usage_rollup_job(now=NOW)
    assert value(meter, customer, *later) == UsageValue(Decimal(7), 0)


def test_canceled_events_stop_being_held():
    meter, customer = make_meter("weighted_sum"), CustomerFactory()
    t = datetime(2026, 3, 10, tzinfo=UTC)
    ids = ingest(customer, meter, [(t, "2"), (t + DAY, "8"), (t + 2 * DAY, "2")], now=t + 3 * DAY)
    usage_rollup_job(now=NOW)
    assert value(meter, customer, t, t + 4 * DAY).value == Decimal(2 + 8 + 2 + 2) / 4
    usage_cancel(event_ids=[ids[1]], reason="wrong gauge reading", now=NOW)
    assert value(meter, customer, t, t + 4 * DAY) == UsageValue(Decimal(2), 2)
    usage_rollup_job(now=NOW)
    assert value(meter, customer, t, t + 4 * DAY) == UsageValue(Decimal(2), 2)
    # The first event canceled too: nothing is held before the third.
    usage_cancel(event_ids=[ids[0]], reason="wrong", now=NOW)
    assert value(meter, customer, t, t + 4 * DAY) == UsageValue(Decimal(1), 1)


def test_filters_group_by_and_windows():
    meter, customer = make_meter("weighted_sum"), CustomerFactory()
    t = datetime(2026, 3, 10, tzinfo=UTC)
    ingest(
        customer,
        meter,
        [
            (t - DAY, "4", {"region": "eu"}),  # carried into the period for eu
            (t + 6 * HOUR, "2", {"region": "us"}),
            (t + 12 * HOUR, "6", {"region": "eu"}),
        ],
        now=t + DAY,
    )
    usage_rollup_job(now=NOW)
    end = t + DAY
    buckets = usage_series(meter=meter, customer=customer, start=t, end=end, group_by="region")
    # eu: 4 for 12 h, 6 for 12 h -> 5; us: 2 for 18 h -> 1.5 (each series its own gauge).
    assert [(b.group, b.value, b.event_count) for b in buckets] == [
        ({"region": "eu"}, Decimal(5), 1),
        ({"region": "us"}, Decimal("1.5"), 1),
    ]
    assert value(meter, customer, t, end, filters={"region": ["us"]}) == UsageValue(Decimal("1.5"), 1)
    # Without group_by the meter is one gauge: 4 until 06:00, 2 until 12:00, then 6.
    assert value(meter, customer, t, end) == UsageValue(Decimal(4 * 6 + 2 * 6 + 6 * 12) / 24, 2)
    # Windows get their share of the period's figure, so they add up to it.
    hours = usage_series(meter=meter, customer=customer, start=t, end=end, window="hour")
    assert len(hours) == 24
    assert sum(b.value for b in hours) == value(meter, customer, t, end).value
    assert hours[0].value == (Decimal(4) / 24).quantize(Decimal("1E-12"))


def test_usage_api_answers_weighted_sum(api):
    meter, customer = make_meter("weighted_sum"), CustomerFactory()
    t = datetime(2026, 3, 10, tzinfo=UTC)
    ingest(customer, meter, [(t, "3", {"region": "eu"}), (t + 12 * HOUR, "1", {"region": "us"})], now=t + DAY)
    body = api.get(
        f"/api/v1/usage/{meter.id}",
        {"customer": customer.id, "start": "2026-03-10T00:00:00Z", "end": "2026-03-11T00:00:00Z"},
    ).json()
    assert body["aggregation"] == "weighted_sum"
    assert [(b["value"], b["event_count"]) for b in body["data"]] == [("2", 2)]
    body = api.get(
        f"/api/v1/usage/{meter.id}",
        {
            "customer": customer.id,
            "start": "2026-03-10T00:00:00Z",
            "end": "2026-03-11T00:00:00Z",
            "group_by": "region",
        },
    ).json()
    assert [(b["group"], b["value"]) for b in body["data"]] == [({"region": "eu"}, "3"), ({"region": "us"}, "0.5")]


def test_meters_api_accepts_weighted_sum(api):
    response = api.post(
        "/api/v1/meters", {"code": "seats", "name": "Seats", "aggregation": "weighted_sum"}, format="json"
    )
    assert response.status_code == 201, response.json()
    assert response.json()["aggregation"] == "weighted_sum"


def test_the_opening_value_with_dirty_clean_and_canceled_hours_before_the_period():
    meter, customer = make_meter("weighted_sum", filters={"region": ["eu"]}), CustomerFactory()
    t = datetime(2026, 3, 10, tzinfo=UTC)
    eu = {"region": "eu"}
    ids = ingest(customer, meter, [(t, "3", eu), (t + 5 * HOUR, "4", eu)], now=t + DAY)
    usage_rollup_job(now=NOW)
    period = (t + 10 * HOUR + timedelta(minutes=30), t + 12 * HOUR)
    assert value(meter, customer, *period) == UsageValue(Decimal(4), 0)  # from the clean row of hour 5
    # A later event outside the meter's filter changes nothing; one inside, not rolled up yet, does.
    ingest(customer, meter, [(t + 7 * HOUR, "9", {"region": "us"})], now=t + DAY)
    assert value(meter, customer, *period) == UsageValue(Decimal(4), 0)
    late = ingest(customer, meter, [(t + 8 * HOUR, "6", eu)], now=t + DAY)
    assert value(meter, customer, *period) == UsageValue(Decimal(6), 0)  # from the dirty hour, raw
    # In the period's own partial hour, before its start: raw too.
    ingest(customer, meter, [(t + 10 * HOUR + timedelta(minutes=10), "8", eu)], now=t + DAY)
    assert value(meter, customer, *period) == UsageValue(Decimal(8), 0)
    usage_rollup_job(now=NOW)
    assert value(meter, customer, *period) == UsageValue(Decimal(8), 0)
    # Canceling the latest ones goes back to what was held before them.
    usage_cancel(event_ids=[late[0]], reason="test", now=NOW)  # an earlier one: the 8 still holds
    assert value(meter, customer, *period) == UsageValue(Decimal(8), 0)
    ids8 = MeterEvent.objects.filter(meter=meter, value=8).get()
    usage_cancel(event_ids=[ids8.public_id], reason="test", now=NOW)
    assert value(meter, customer, *period) == UsageValue(Decimal(4), 0)
    usage_cancel(event_ids=ids, reason="test", now=NOW)
    assert value(meter, customer, *period) == UsageValue(Decimal(0), 0)
    usage_rollup_job(now=NOW)
    assert value(meter, customer, *period) == UsageValue(Decimal(0), 0)
