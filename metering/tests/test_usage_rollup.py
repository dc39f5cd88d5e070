"""The roll-up job: exact hourly rows, dirty rows cleared, idempotent, late events, batching, and (on
PostgreSQL) concurrent roll-ups racing ingestion and cancellation."""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import StringIO

import orjson
import pytest
from django.core.management import call_command
from django.db import connection, transaction

from billing_site.jobs import get_job
from customers.tests.factories import CustomerFactory
from metering.ingest import mark_hours_dirty, usage_ingest
from metering.models import MeterEvent, UsageDailyGroup, UsageDirtyHour, UsageHourly, UsageHourlyGroup
from metering.rollups import usage_rollup_job
from metering.selectors import UsageValue, usage_aggregate, usage_changed_hours, usage_series
from metering.tests.usage_support import NOW, brute_force, ingest, make_meter
from metering.usage import usage_cancel

T0 = datetime(2026, 3, 10, 8, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def _snapshot(meter):
    return sorted(
        UsageHourly.objects.filter(meter=meter).values_list(
            "customer_id", "hour", "event_count", "value_sum", "value_max", "latest_value", "latest_event_id"
        )
    )


def _assert_rows_exact(meter, customer, hours):
    """Every rolled hour equals the brute force of that hour, and empty hours have no row."""
    for hour in hours:
        value, count = brute_force(meter, customer, hour, hour + HOUR)
        row = UsageHourly.objects.filter(meter=meter, customer=customer, hour=hour).first()
        if count == 0:
            assert row is None, hour
            continue
        assert row is not None, hour
        assert row.event_count == count
        if meter.aggregation == "sum":
            assert row.value_sum == value
        if meter.aggregation == "latest":
            assert row.latest_value == value
        if meter.aggregation == "max":
            assert row.value_max == value


@pytest.mark.django_db
def test_job_rolls_up_exactly_and_clears_dirty_rows():
    meter, customer = make_meter("sum", filters={"region": ["eu"]}), CustomerFactory()
    ingest(
        customer,
        meter,
        [
            (T0, "1.5", {"region": "eu"}),
            (T0 + timedelta(minutes=59, seconds=59), "2.25", {"region": "eu"}),
            (T0 + HOUR, "4", {"region": "eu"}),
            (T0 + 2 * HOUR, "8", {"region": "us"}),  # dirties an hour where nothing matches
        ],
    )
    assert UsageDirtyHour.objects.count() == 3
    report = usage_rollup_job(now=NOW)
    assert report == {"hours": 3, "rows_written": 2, "rows_deleted": 0, "batches": 1, "more": False}
    assert not UsageDirtyHour.objects.exists()
    row = UsageHourly.objects.get(meter=meter, hour=T0)
    assert (row.event_count, row.value_sum, row.value_max, row.latest_value) == (
        2,
        Decimal("3.75"),
        Decimal("2.25"),
        Decimal("2.25"),
    )
    assert row.latest_timestamp == T0 + timedelta(minutes=59, seconds=59)
    assert row.rolled_at == NOW
    assert not UsageHourly.objects.filter(hour=T0 + 2 * HOUR).exists()
    _assert_rows_exact(meter, customer, [T0 + i * HOUR for i in range(3)])


@pytest.mark.django_db
def test_rerunning_changes_nothing():
    meter, customer = make_meter("latest"), CustomerFactory()
    ingest(customer, meter, [(T0 + timedelta(minutes=i * 17), str(i)) for i in range(12)])
    usage_rollup_job(now=NOW)
    before = _snapshot(meter)
    assert usage_rollup_job(now=NOW) == {"hours": 0, "rows_written": 0, "rows_deleted": 0, "batches": 0, "more": False}
    assert _snapshot(meter) == before
    # Marking every hour dirty again and recomputing gives the same rows.
    mark_hours_dirty({(meter.id, customer.id, hour) for _, hour, *_ in before}, NOW)
    assert usage_rollup_job(now=NOW + HOUR)["hours"] == len(before)
    assert _snapshot(meter) == before
    assert set(UsageHourly.objects.values_list("rolled_at", flat=True)) == {NOW + HOUR}


@pytest.mark.django_db
def test_late_events_dirty_their_old_hour_again():
    meter, customer = make_meter("sum"), CustomerFactory()
    ingest(customer, meter, [(T0 + timedelta(minutes=5), "1"), (T0 + HOUR, "2")])
    usage_rollup_job(now=NOW)
    period = (T0, T0 + 3 * HOUR)
    assert usage_aggregate(meter=meter, customer=customer, start=period[0], end=period[1]).value == 3
    # Days later an event for the first hour arrives (within the backfill window).
    ingest(customer, meter, [(T0 + timedelta(minutes=50), "10")], now=NOW + timedelta(days=2))
    assert list(UsageDirtyHour.objects.values_list("hour", flat=True)) == [T0]
    assert usage_aggregate(meter=meter, customer=customer, start=period[0], end=period[1]) == UsageValue(Decimal(13), 3)
    usage_rollup_job(now=NOW + timedelta(days=2))
    assert usage_aggregate(meter=meter, customer=customer, start=period[0], end=period[1]) == UsageValue(Decimal(13), 3)
    assert UsageHourly.objects.get(meter=meter, hour=T0).value_sum == 11


@pytest.mark.django_db
def test_canceling_every_event_of_an_hour_deletes_its_row():
    meter, customer = make_meter("count"), CustomerFactory()
    ids = ingest(customer, meter, [(T0, "1"), (T0 + timedelta(minutes=1), "1"), (T0 + HOUR, "1")])
    usage_rollup_job(now=NOW)
    usage_cancel(event_ids=ids[:2], reason="test", now=NOW)
    report = usage_rollup_job(now=NOW)
    assert report["rows_deleted"] == 1
    assert list(UsageHourly.objects.filter(meter=meter).values_list("hour", flat=True)) == [T0 + HOUR]
    assert MeterEvent.objects.filter(meter=meter).count() == 3  # canceled events are kept


@pytest.mark.django_db
def test_batches_and_partial_runs():
    meter, customer = make_meter("sum"), CustomerFactory()
    ingest(customer, meter, [(T0 + i * HOUR, "1") for i in range(7)])
    report = usage_rollup_job(now=NOW, batch_size=2, max_batches=2)
    assert report["hours"] == 4
    assert report["more"] is True
    assert UsageDirtyHour.objects.count() == 3
    assert usage_aggregate(meter=meter, customer=customer, start=T0, end=T0 + 7 * HOUR).value == 7
    report = usage_rollup_job(now=NOW, batch_size=2)
    assert (report["hours"], report["batches"], report["more"]) == (3, 2, False)
    _assert_rows_exact(meter, customer, [T0 + i * HOUR for i in range(7)])


@pytest.mark.django_db
def test_registered_as_a_five_minute_job():
    job = get_job("rollup_usage")
    assert job.schedule == timedelta(minutes=5)
    meter, customer = make_meter("sum"), CustomerFactory()
    ingest(customer, meter, [(T0, "1")])
    out = StringIO()
    call_command("run_job", "rollup_usage", "--now", NOW.isoformat(), stdout=out)
    assert orjson.loads(out.getvalue())["result"]["hours"] == 1
    assert not UsageDirtyHour.objects.exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_rollups_ingestion_and_cancellation_stay_exact():
    customer = CustomerFactory()
    meters = [make_meter("sum"), make_meter("latest"), make_meter("count", filters={"region": ["eu"]})]
    hours = [T0 + i * HOUR for i in range(4)]
    done = threading.Event()
    errors: list[BaseException] = []
    created: list[str] = []

    def guarded(fn):
        def run(*args):
            try:
                fn(*args)
            except BaseException as exc:  # surfaced by the main thread
                errors.append(exc)
            finally:
                connection.close()

        return run

    @guarded
    def ingester(seed):
        rng = random.Random(seed)
        for _ in range(25):
            batch = [
                {
                    "customer": customer.id,
                    "meter": rng.choice(meters).code,
                    "timestamp": (T0 + timedelta(microseconds=rng.randrange(4 * 3600 * 10**6))).isoformat(),
                    "value": f"{rng.randrange(10**6)}.{rng.randrange(10**12):012d}",
                    "dimensions": {"region": rng.choice(["eu", "us"])},
                }
                for _ in range(rng.randint(1, 20))
            ]
            result = usage_ingest(events=batch, now=NOW)
            created.extend(row["id"] for row in result.results if row["status"] == "created")

    @guarded
    def canceller(seed):
        rng = random.Random(seed)
        while not done.is_set():
            if created:
                usage_cancel(event_ids=rng.sample(created, min(3, len(created))), reason="race", now=NOW)

    rolled: list[int] = []
    checked: list[int] = []

    @guarded
    def roller():
        while not done.is_set():
            rolled.append(usage_rollup_job(now=NOW, batch_size=3)["hours"])

    @guarded
    def reader():
        # Within one REPEATABLE READ snapshot, the combined read must equal the brute force of that snapshot,
        # while roll-ups, ingestion and cancellation commit around it.
        rng = random.Random(7)
        while not done.is_set():
            meter = rng.choice(meters)
            start = T0 + timedelta(minutes=rng.randrange(0, 120))
            end = start + timedelta(minutes=rng.randrange(1, 180))
            with transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                expected = UsageValue(*brute_force(meter, customer, start, end))
                assert usage_aggregate(meter=meter, customer=customer, start=start, end=end) == expected
            checked.append(1)

    workers = [threading.Thread(target=ingester, args=(seed,)) for seed in range(3)]
    background = [threading.Thread(target=roller) for _ in range(2)]
    background.append(threading.Thread(target=canceller, args=(99,)))
    background.append(threading.Thread(target=reader))
    for thread in workers + background:
        thread.start()
    for thread in workers:
        thread.join()
    done.set()
    for thread in background:
        thread.join()
    assert not errors, errors
    assert sum(rolled) > 0 and checked  # the race really happened
    assert MeterEvent.objects.filter(canceled_at__isnull=False).exists()

    periods = [(T0, T0 + 4 * HOUR), (T0 + timedelta(minutes=30), T0 + timedelta(hours=2, minutes=10))]
    for meter in meters:  # dirty or not, the answer is exact
        for start, end in periods:
            expected = UsageValue(*brute_force(meter, customer, start, end))
            assert usage_aggregate(meter=meter, customer=customer, start=start, end=end) == expected
    usage_rollup_job(now=NOW)
    assert not UsageDirtyHour.objects.exists()
    for meter in meters:
        _assert_rows_exact(meter, customer, hours)
        for start, end in periods:
            expected = UsageValue(*brute_force(meter, customer, start, end))
            assert usage_aggregate(meter=meter, customer=customer, start=start, end=end) == expected


@pytest.mark.django_db
def test_changed_hours_for_billing():
    meter, customer, other = make_meter("sum"), CustomerFactory(), CustomerFactory()
    pairs = {(meter.id, customer.id)}
    ids = ingest(customer, meter, [(T0, "1"), (T0 + HOUR, "2")], now=NOW)
    ingest(other, meter, [(T0, "5")], now=NOW)
    changed = usage_changed_hours(pairs=pairs, since=NOW)
    assert changed == [(meter.id, customer.id, T0, NOW), (meter.id, customer.id, T0 + HOUR, NOW)]
    assert usage_changed_hours(pairs=pairs, since=NOW + timedelta(seconds=1)) == []
    # A roll-up run with an earlier clock still dates the hour no earlier than its change.
    usage_rollup_job(now=NOW - timedelta(days=1))
    assert [row[3] for row in usage_changed_hours(pairs=pairs, since=NOW)] == [NOW, NOW]
    # Canceling every event of an hour deletes its roll-up row; the hour is still reported.
    later = NOW + timedelta(days=1)
    usage_cancel(event_ids=[ids[0]], reason="test", now=later)
    usage_rollup_job(now=later)
    assert not UsageHourly.objects.filter(meter=meter, customer=customer, hour=T0).exists()
    assert usage_changed_hours(pairs=pairs, since=later) == [(meter.id, customer.id, T0, later)]
    assert usage_changed_hours(pairs=set(), since=NOW) == []


@pytest.mark.django_db
def test_whole_days_come_from_daily_group_rows_and_stay_exact():
    """unique_count, filters and group_by over several days: whole clean days read the daily rows (shown
    by zeroing the hourly ones under them), days with a dirty hour and partial days read hours and raw
    events, and every answer equals the brute-force aggregation through late events and cancellation."""
    customer = CustomerFactory()
    users = make_meter("unique_count", unique_key="user")
    total = make_meter("sum")
    day0 = datetime(2026, 3, 8, tzinfo=UTC)
    events = [
        (
            day0 + timedelta(hours=h, minutes=(7 * h) % 60),
            str(h % 5 + 1),
            {"user": f"u{h % 7}", "region": ("eu", "us")[h % 2]},
        )
        for h in range(0, 24 * 4, 3)
    ]
    ids = []
    for meter in (users, total):
        ids += ingest(customer, meter, events)
    usage_rollup_job(now=NOW)
    assert UsageDailyGroup.objects.filter(customer=customer).exists()
    start, end = day0 + timedelta(hours=5, minutes=17), day0 + timedelta(days=3, hours=20)

    def check():
        for meter in (users, total):
            for extra in (None, {"region": ["eu"]}):
                want = brute_force(meter, customer, start, end, filters=extra)
                got = usage_aggregate(meter=meter, customer=customer, start=start, end=end, filters=extra)
                assert (got.value, got.event_count) == want, (meter.aggregation, extra)
            for bucket in usage_series(
                meter=meter, customer=customer, start=start, end=end, window="day", group_by="region"
            ):
                want = brute_force(
                    meter, customer, bucket.start, bucket.end, filters={"region": [bucket.group["region"]]}
                )
                assert (bucket.value, bucket.event_count) == want, (meter.aggregation, bucket)

    check()
    # Zero the hourly group rows of the whole days: the answers must not change, so they come from days.
    whole_days = (day0 + timedelta(days=1), day0 + timedelta(days=3))
    expected = usage_aggregate(meter=total, customer=customer, start=start, end=end, filters={"region": ["eu"]})
    hidden = UsageHourlyGroup.objects.filter(customer=customer, hour__gte=whole_days[0], hour__lt=whole_days[1])
    assert hidden.update(value_sum=0, event_count=0) > 0
    assert usage_aggregate(meter=total, customer=customer, start=start, end=end, filters={"region": ["eu"]}) == expected
    usage_rollup_job(now=NOW)
    mark_hours_dirty(
        {(m.id, customer.id, whole_days[0] + timedelta(hours=h)) for m in (users, total) for h in range(48)}, NOW
    )
    usage_rollup_job(now=NOW)  # recomputes the hours and, from them, the days
    check()
    # A late event in a whole day dirties it: that day is read from hours and raw events until rolled up.
    for meter in (users, total):
        ingest(customer, meter, [(day0 + timedelta(days=2, hours=4), "9", {"user": "late", "region": "eu"})])
    check()
    usage_rollup_job(now=NOW)
    check()
    usage_cancel(event_ids=ids[3:9], reason="test", now=NOW)
    check()
    usage_rollup_job(now=NOW)
    check()
