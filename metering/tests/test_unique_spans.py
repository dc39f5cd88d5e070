"""unique_count spans (`UsageUniqueSpan`): the roll-up job writes the hour, 6-hour block and day spans of
the hours it rolls up, and unique_count reads cover a period with the fewest clean spans plus raw edges and
dirty hours, equal to the raw aggregation at every moment."""

from __future__ import annotations

import importlib
import pkgutil
from datetime import UTC, datetime, timedelta

import pytest
from django.apps import apps
from django.db import connection, transaction
from django.db.models import Q
from django.test.utils import CaptureQueriesContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from customers.tests.factories import CustomerFactory
from metering import migrations
from metering.models import UsageDirtyHour, UsageHourly, UsageUniqueSpan
from metering.rollups import usage_rollup_job
from metering.selectors import UsageValue, usage_aggregate, usage_series
from metering.tests.usage_support import NOW, brute_force, ingest, make_meter
from metering.usage import span_cover, usage_cancel, usage_read

pytestmark = pytest.mark.django_db

DAY0 = datetime(2026, 3, 10, tzinfo=UTC)
HOUR = timedelta(hours=1)
US = timedelta(microseconds=1)


def _spans(meter, customer):
    return {
        (row.span_start, row.span_hours): (row.event_count, row.unique_values)
        for row in UsageUniqueSpan.objects.filter(meter=meter, customer=customer)
    }


def _assert_exact(meter, customer, start, end):
    value, count = brute_force(meter, customer, start, end)
    assert usage_aggregate(meter=meter, customer=customer, start=start, end=end) == UsageValue(value, count), (
        start,
        end,
    )


# --- The cover ------------------------------------------------------------------------------------


def test_cover_takes_days_then_blocks_then_hours():
    lo, hi = DAY0 + 1 * HOUR, DAY0 + 2 * 24 * HOUR + 23 * HOUR  # partial days at both ends
    spans = span_cover(lo, hi)
    assert spans == [
        *[(DAY0 + h * HOUR, 1) for h in range(1, 6)],
        (DAY0 + 6 * HOUR, 6),
        (DAY0 + 12 * HOUR, 6),
        (DAY0 + 18 * HOUR, 6),
        (DAY0 + 24 * HOUR, 24),
        (DAY0 + 48 * HOUR, 6),
        (DAY0 + 54 * HOUR, 6),
        (DAY0 + 60 * HOUR, 6),
        *[(DAY0 + h * HOUR, 1) for h in range(66, 71)],
    ]
    # Half-open and gap-free: every hour of [lo, hi) is in exactly one span.
    hours = [start + i * HOUR for start, n in spans for i in range(n)]
    assert hours == [lo + i * HOUR for i in range(int((hi - lo) / HOUR))]


def test_cover_splits_dirty_spans_down_and_leaves_dirty_hours_out():
    dirty = {DAY0 + 24 * HOUR + 7 * HOUR}  # 07:00 of the second day
    spans = span_cover(DAY0, DAY0 + 48 * HOUR, dirty=dirty)
    assert spans == [
        (DAY0, 24),
        (DAY0 + 24 * HOUR, 6),
        (DAY0 + 30 * HOUR, 1),
        *[(DAY0 + h * HOUR, 1) for h in range(32, 36)],
        (DAY0 + 36 * HOUR, 6),
        (DAY0 + 42 * HOUR, 6),
    ]
    assert span_cover(DAY0, DAY0 + 3 * HOUR, levels=(1,), dirty={DAY0 + HOUR}) == [(DAY0, 1), (DAY0 + 2 * HOUR, 1)]
    assert span_cover(DAY0, DAY0) == []


# --- Building -------------------------------------------------------------------------------------


def test_rollup_builds_hour_block_and_day_spans():
    meter, customer = make_meter("unique_count", unique_key="user"), CustomerFactory()
    other = make_meter("sum")
    ingest(
        customer,
        meter,
        [
            (DAY0 + 1 * HOUR, 1, {"user": "b"}),
            (DAY0 + 1 * HOUR + 5 * US, 1, {"user": "a"}),
            (DAY0 + 1 * HOUR + 9 * US, 1, {"user": "b", "region": "eu"}),
            (DAY0 + 2 * HOUR, 1, {"user": 7}),  # compared as text, like "7"
            (DAY0 + 2 * HOUR + US, 1, {"user": "7"}),
            (DAY0 + 3 * HOUR, 1, {"region": "eu"}),  # no unique key: not counted, no span
            (DAY0 + 6 * HOUR, 1, {"user": "Z"}),  # the first instant of the 06:00 block
            (DAY0 + 24 * HOUR - US, 1, {"user": "é"}),  # the last instant of the day
        ],
    )
    ingest(customer, other, [(DAY0 + HOUR, 5)])
    usage_rollup_job(now=NOW)
    assert _spans(meter, customer) == {
        (DAY0 + 1 * HOUR, 1): (3, ["a", "b"]),
        (DAY0 + 2 * HOUR, 1): (2, ["7"]),
        (DAY0 + 6 * HOUR, 1): (1, ["Z"]),
        (DAY0 + 23 * HOUR, 1): (1, ["é"]),
        (DAY0, 6): (5, ["7", "a", "b"]),
        (DAY0 + 6 * HOUR, 6): (1, ["Z"]),
        (DAY0 + 18 * HOUR, 6): (1, ["é"]),
        (DAY0, 24): (7, ["7", "Z", "a", "b", "é"]),  # code-point order on both databases
    }
    assert not UsageUniqueSpan.objects.filter(meter=other).exists()  # unique_count meters only
    # Re-running with nothing dirty changes nothing; re-rolling an hour writes the same spans.
    before = _spans(meter, customer)
    usage_rollup_job(now=NOW)
    UsageDirtyHour.objects.create(meter=meter, customer=customer, hour=DAY0 + HOUR, touched_at=NOW)
    usage_rollup_job(now=NOW)
    assert _spans(meter, customer) == before


def test_meter_filters_apply_to_spans():
    meter = make_meter("unique_count", unique_key="user", filters={"region": ["eu"]})
    customer = CustomerFactory()
    ingest(customer, meter, [(DAY0, 1, {"user": "a", "region": "eu"}), (DAY0, 1, {"user": "b", "region": "us"})])
    usage_rollup_job(now=NOW)
    assert _spans(meter, customer)[(DAY0, 24)] == (1, ["a"])
    assert usage_aggregate(meter=meter, customer=customer, start=DAY0, end=DAY0 + 24 * HOUR) == UsageValue(1, 1)


# --- Late events, cancellation, dirty spans -------------------------------------------------------


def test_late_event_in_a_rolled_up_hour_is_read_raw_then_rolled_into_every_level():
    meter, customer = make_meter("unique_count", unique_key="user"), CustomerFactory()
    ingest(customer, meter, [(DAY0 + h * HOUR, 1, {"user": f"u{h % 3}"}) for h in range(48)])
    usage_rollup_job(now=NOW)
    start, end = DAY0 + 90 * timedelta(minutes=1), DAY0 + 47 * HOUR + 30 * timedelta(minutes=1)
    assert usage_aggregate(meter=meter, customer=customer, start=start, end=end) == UsageValue(3, 46)
    ingest(customer, meter, [(DAY0 + 31 * HOUR + 59 * timedelta(minutes=1), 1, {"user": "late"})], now=NOW)
    assert UsageDirtyHour.objects.filter(meter=meter, customer=customer, hour=DAY0 + 31 * HOUR).exists()
    # Before the roll-up: the day and block spans of that hour are stale and not used; the hour is raw.
    assert usage_aggregate(meter=meter, customer=customer, start=start, end=end) == UsageValue(4, 47)
    _assert_exact(meter, customer, DAY0 + 24 * HOUR, DAY0 + 48 * HOUR)
    usage_rollup_job(now=NOW)
    assert not UsageDirtyHour.objects.exists()
    spans = _spans(meter, customer)
    assert "late" in spans[(DAY0 + 31 * HOUR, 1)][1]
    assert "late" in spans[(DAY0 + 30 * HOUR, 6)][1]
    assert spans[(DAY0 + 24 * HOUR, 24)] == (25, ["late", "u0", "u1", "u2"])
    assert usage_aggregate(meter=meter, customer=customer, start=start, end=end) == UsageValue(4, 47)


def test_canceled_events_leave_the_spans_and_empty_spans_are_deleted():
    meter, customer = make_meter("unique_count", unique_key="user"), CustomerFactory()
    ids = ingest(customer, meter, [(DAY0 + 7 * HOUR, 1, {"user": "a"}), (DAY0 + 8 * HOUR, 1, {"user": "b"})])
    usage_rollup_job(now=NOW)
    assert _spans(meter, customer)[(DAY0, 24)] == (2, ["a", "b"])
    usage_cancel(event_ids=[ids[0]], reason="test", now=NOW)
    usage_cancel(event_ids=[ids[0]], reason="retry", now=NOW)  # a retried cancellation changes nothing more
    assert usage_aggregate(meter=meter, customer=customer, start=DAY0, end=DAY0 + 24 * HOUR) == UsageValue(1, 1)
    usage_rollup_job(now=NOW)
    usage_rollup_job(now=NOW)
    assert _spans(meter, customer) == {
        (DAY0 + 8 * HOUR, 1): (1, ["b"]),
        (DAY0 + 6 * HOUR, 6): (1, ["b"]),
        (DAY0, 24): (1, ["b"]),
    }
    usage_cancel(event_ids=[ids[1]], reason="test", now=NOW)
    usage_rollup_job(now=NOW)
    assert _spans(meter, customer) == {}
    assert usage_aggregate(meter=meter, customer=customer, start=DAY0, end=DAY0 + 24 * HOUR) == UsageValue(0, 0)


def test_reads_never_use_a_span_with_a_dirty_hour():
    """A stale span (its hour dirty) must not be read: here the spans are deliberately wrong, so any use
    of them would show."""
    meter, customer = make_meter("unique_count", unique_key="user"), CustomerFactory()
    ingest(customer, meter, [(DAY0 + h * HOUR, 1, {"user": f"u{h}"}) for h in range(24)])
    usage_rollup_job(now=NOW)
    hour = DAY0 + 13 * HOUR
    UsageDirtyHour.objects.create(meter=meter, customer=customer, hour=hour, touched_at=NOW)
    stale = Q(span_start=DAY0, span_hours=24) | Q(span_start=DAY0 + 12 * HOUR, span_hours=6)
    stale |= Q(span_start=hour, span_hours=1)
    assert UsageUniqueSpan.objects.filter(stale, meter=meter).update(unique_values=["bogus"], event_count=1000) == 3
    for start, end in ((DAY0, DAY0 + 24 * HOUR), (DAY0 + 30 * timedelta(minutes=1), DAY0 + 23 * HOUR + US)):
        _assert_exact(meter, customer, start, end)


# --- Reads ----------------------------------------------------------------------------------------


def test_boundary_events_are_counted_once_half_open():
    meter, customer = make_meter("unique_count", unique_key="user"), CustomerFactory()
    edges = [DAY0 + 6 * HOUR, DAY0 + 12 * HOUR, DAY0 + 24 * HOUR, DAY0 + 25 * HOUR]
    ingest(customer, meter, [(at, 1, {"user": f"at{i}"}) for i, at in enumerate(edges)])
    ingest(customer, meter, [(at - US, 1, {"user": f"before{i}"}) for i, at in enumerate(edges)])
    usage_rollup_job(now=NOW)
    points = [DAY0, *edges, DAY0 + 48 * HOUR]
    for start in points:
        for end in points:
            if start <= end:
                for lo, hi in ((start, end), (start - US, end), (start, end - US), (start + US, end + US)):
                    if lo <= hi:
                        _assert_exact(meter, customer, lo, hi)


def test_day_and_hour_series_from_spans_equal_raw():
    meter, customer = make_meter("unique_count", unique_key="user"), CustomerFactory()
    ingest(customer, meter, [(DAY0 + h * 37 * timedelta(minutes=1), 1, {"user": f"u{h % 5}"}) for h in range(90)])
    usage_rollup_job(now=NOW)
    ingest(customer, meter, [(DAY0 + 26 * HOUR, 1, {"user": "late"})])  # one dirty hour
    start, end = DAY0 + 17 * timedelta(minutes=1), DAY0 + 50 * HOUR + 3 * timedelta(minutes=1)
    for window in ("day", "hour"):
        buckets = usage_series(meter=meter, customer=customer, start=start, end=end, window=window)
        assert buckets, window
        for bucket in buckets:
            value, count = brute_force(meter, customer, max(bucket.start, start), min(bucket.end, end))
            assert (bucket.value, bucket.event_count) == (value, count), (window, bucket.start)
        assert sum(b.event_count for b in buckets) == brute_force(meter, customer, start, end)[1]


def test_several_customers_in_one_read():
    meter = make_meter("unique_count", unique_key="user")
    first, second = CustomerFactory(), CustomerFactory()
    ingest(first, meter, [(DAY0 + h * HOUR, 1, {"user": f"a{h % 4}"}) for h in range(30)])
    ingest(second, meter, [(DAY0 + h * HOUR, 1, {"user": f"b{h % 6}"}) for h in range(30)])
    usage_rollup_job(now=NOW)
    ingest(second, meter, [(DAY0 + 2 * HOUR, 1, {"user": "late"})])
    start, end = DAY0 + HOUR + US, DAY0 + 29 * HOUR - US
    accs = usage_read(meter=meter, customer_ids=[first.id, second.id], start=start, end=end)
    assert {key[0]: (acc.value("unique_count"), acc.count) for key, acc in accs.items()} == {
        first.id: brute_force(meter, first, start, end),
        second.id: brute_force(meter, second, start, end),
    }


def test_migration_marks_rolled_hours_of_unique_meters_dirty():
    meter, customer = make_meter("unique_count", unique_key="user"), CustomerFactory()
    plain = make_meter("count")
    ingest(customer, meter, [(DAY0 + h * HOUR, 1, {"user": f"u{h}"}) for h in range(3)])
    ingest(customer, plain, [(DAY0, 1)])
    usage_rollup_job(now=NOW)
    UsageUniqueSpan.objects.all().delete()  # as after the schema migration: rolled hours, no spans
    (name,) = [m.name for m in pkgutil.iter_modules(migrations.__path__) if m.name.endswith("_uniq_unique_spans")]
    migration = importlib.import_module(f"metering.migrations.{name}")
    migration.redo_unique_hours(apps, None)
    assert set(UsageDirtyHour.objects.values_list("meter_id", "hour")) == {
        (meter.id, hour) for hour in UsageHourly.objects.filter(meter=meter).values_list("hour", flat=True)
    }
    _assert_exact(meter, customer, DAY0, DAY0 + 24 * HOUR)  # exact meanwhile (raw)
    usage_rollup_job(now=NOW)
    assert _spans(meter, customer)[(DAY0, 24)] == (3, ["u0", "u1", "u2"])
    _assert_exact(meter, customer, DAY0, DAY0 + 24 * HOUR)


@pytest.mark.postgres(reason="statement count of the PostgreSQL read")
def test_postgres_read_is_one_statement():
    meter, customer = make_meter("unique_count", unique_key="user"), CustomerFactory()
    ingest(customer, meter, [(DAY0 + h * HOUR, 1, {"user": f"u{h % 7}"}) for h in range(72)])
    usage_rollup_job(now=NOW)
    ingest(customer, meter, [(DAY0 + 40 * HOUR, 1, {"user": "late"})])
    start, end = DAY0 + 90 * timedelta(minutes=1), DAY0 + 70 * HOUR + 30 * timedelta(minutes=1)
    with CaptureQueriesContext(connection) as queries:
        accs = usage_read(meter=meter, customer_ids=[customer.id], start=start, end=end)
    statements = [q["sql"] for q in queries.captured_queries if "SAVEPOINT" not in q["sql"]]  # the nested atomic's
    assert len(statements) == 1
    assert UsageUniqueSpan._meta.db_table in statements[0]
    (acc,) = accs.values()
    assert (acc.value("unique_count"), acc.count) == brute_force(meter, customer, start, end)


# --- Random data ----------------------------------------------------------------------------------

SPAN_US = 3 * 24 * 3600 * 10**6
HOUR_US = 3600 * 10**6
boundary = st.sampled_from([h * HOUR_US + d for h in range(0, 73, 6) for d in (-1, 0, 1)]).filter(
    lambda o: 0 <= o < SPAN_US
)
offset = st.one_of(st.integers(0, SPAN_US - 1), boundary, st.integers(0, 71).map(lambda h: h * HOUR_US))
event = st.tuples(offset, st.sampled_from(["a", "b", "c", 1, "1", None]))
edge = st.one_of(st.integers(0, SPAN_US), boundary, st.integers(0, 72).map(lambda h: h * HOUR_US))


def _at(offset_us: int) -> datetime:
    return DAY0 + timedelta(microseconds=offset_us)


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    batches=st.lists(st.lists(event, min_size=1, max_size=12), min_size=1, max_size=3),
    rollup_after=st.lists(st.integers(0, 3), max_size=3),
    periods=st.lists(st.tuples(edge, edge).map(sorted), min_size=1, max_size=4),
)
def test_random_reads_equal_raw_aggregation(batches, rollup_after, periods):
    with transaction.atomic():
        meter, customer = make_meter("unique_count", unique_key="user"), CustomerFactory()
        for index, batch in enumerate(batches):
            ingest(customer, meter, [(_at(o), 1, {} if u is None else {"user": u}) for o, u in batch])
            if index in rollup_after:
                usage_rollup_job(now=NOW, batch_size=index + 2, max_batches=2)  # partial: some hours stay dirty
            for lo, hi in periods:
                _assert_exact(meter, customer, _at(lo), _at(hi))
        usage_rollup_job(now=NOW)
        for lo, hi in [*periods, (0, SPAN_US)]:
            _assert_exact(meter, customer, _at(lo), _at(hi))
        transaction.set_rollback(True)
