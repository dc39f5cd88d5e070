"""Partitioned events (PostgreSQL): partitions made ahead and on demand, detach for archive, dedup exact
across partition boundaries and under hash collisions, and every query pruned to the partitions it needs
(read off EXPLAIN of the statements the code really runs)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from customers.tests.factories import CustomerFactory
from metering import ingest as ingest_module
from metering.ingest import usage_ingest
from metering.models import MeterEvent, MeterEventKey
from metering.partitions import partitions_detach, partitions_ensure, partitions_ensure_range, partitions_list
from metering.rollups import usage_rollup_job
from metering.selectors import usage_aggregate, usage_series
from metering.tests.usage_support import NOW, ingest, make_meter
from metering.usage import usage_cancel

pytestmark = pytest.mark.django_db
postgres = pytest.mark.postgres(reason="partitioning is PostgreSQL's")

MARCH = datetime(2026, 3, 1, tzinfo=UTC)
APRIL = datetime(2026, 4, 1, tzinfo=UTC)
_PARTITION = re.compile(r"metering_meterevent_p\d+")


def partitions_read(captured: list[dict], table: str = "metering_meterevent") -> set[str]:
    """Names of the event partitions in the plans of the captured statements that read events."""
    names: set[str] = set()
    with connection.cursor() as cursor:
        for query in captured:
            sql = query["sql"]
            if table not in sql or sql.lstrip().upper().startswith(("SAVEPOINT", "RELEASE", "SET", "INSERT")):
                continue
            cursor.execute("EXPLAIN " + sql)
            names |= set(_PARTITION.findall("\n".join(row[0] for row in cursor.fetchall())))
    return names


@pytest.fixture
def months():
    partitions_ensure_range(datetime(2025, 12, 1, tzinfo=UTC), datetime(2026, 7, 1, tzinfo=UTC))
    return {p.name for p in partitions_list()}


@postgres
def test_the_job_makes_partitions_ahead_and_is_idempotent(settings):
    settings.METERING_PARTITIONS_AHEAD = 2
    now = datetime(2031, 5, 10, tzinfo=UTC)
    created = partitions_ensure(now=now)
    # From the backfill window's start (35 days back: April) to two months past May.
    assert created == [f"metering_meterevent_p2031{m:02d}01" for m in (4, 5, 6, 7)]
    assert partitions_ensure(now=now) == []
    spans = {(p.start, p.end) for p in partitions_list()}
    assert (datetime(2031, 7, 1, tzinfo=UTC), datetime(2031, 8, 1, tzinfo=UTC)) in spans


@postgres
def test_daily_partitions_fill_around_monthly_ones(settings):
    partitions_ensure_range(datetime(2032, 1, 1, tzinfo=UTC), datetime(2032, 2, 1, tzinfo=UTC))
    settings.METERING_PARTITION_INTERVAL = "day"
    made = partitions_ensure_range(datetime(2032, 1, 30, tzinfo=UTC), datetime(2032, 2, 2, tzinfo=UTC))
    assert made == ["metering_meterevent_p20320201"]  # January is covered by its monthly partition


@postgres
def test_ingestion_makes_a_missing_partition_instead_of_failing():
    now = datetime(2033, 6, 15, 12, tzinfo=UTC)
    assert not any(p.start.year == 2033 for p in partitions_list())
    customer, meter = CustomerFactory(), make_meter("sum")
    ids = ingest(customer, meter, [(now, "2"), (now - timedelta(days=20), "3")], now=now, keys=["a", "b"])
    assert len(ids) == 2
    assert {p.name for p in partitions_list()} >= {"metering_meterevent_p20330501", "metering_meterevent_p20330601"}
    assert (
        usage_aggregate(
            meter=meter, customer=customer, start=now - timedelta(days=30), end=now + timedelta(hours=1)
        ).value
        == 5
    )


@postgres
def test_dedup_is_exact_across_a_partition_boundary(months):
    customer, meter = CustomerFactory(), make_meter("sum")
    late_march = datetime(2026, 3, 31, 23, 59, tzinfo=UTC)
    first = usage_ingest(
        events=[
            {"customer": customer.id, "meter": meter.code, "timestamp": late_march.isoformat(), "idempotency_key": "k"}
        ],
        now=APRIL + timedelta(hours=1),
    )
    again = usage_ingest(
        events=[{"customer": customer.id, "meter": meter.code, "timestamp": APRIL.isoformat(), "idempotency_key": "k"}],
        now=APRIL + timedelta(hours=1),
    )
    assert first.created == 1
    assert (again.created, again.duplicates) == (0, 1)
    assert again.results[0]["id"] == first.results[0]["id"]
    assert MeterEvent.objects.filter(customer=customer).count() == 1
    assert MeterEventKey.objects.count() == 1


def test_hash_collisions_stay_exact(monkeypatch):
    """Force every key onto one probe-0 hash: distinct keys must still be distinct events, a repeat must
    still be a duplicate of the right one, and cancel by key must find the right event."""
    real = ingest_module.key_hash

    def colliding(customer_id: str, key: str, probe: int = 0):
        return real("same", "same") if probe == 0 else real(customer_id, key, probe)

    monkeypatch.setattr(ingest_module, "key_hash", colliding)
    monkeypatch.setattr(ingest_module, "_KEY_SQL", "md5('same' || E'\\n' || 'same')::uuid")
    customer, meter = CustomerFactory(), make_meter("count")
    one = ingest(customer, meter, [(NOW, "1"), (NOW, "1")], keys=["k1", "k2"])
    assert len(set(one)) == 2
    again = usage_ingest(
        events=[
            {"customer": customer.id, "meter": meter.code, "timestamp": NOW.isoformat(), "idempotency_key": key}
            for key in ("k2", "k1", "k3")
        ],
        now=NOW,
    )
    assert [r["status"] for r in again.results] == ["duplicate", "duplicate", "created"]
    assert [r["id"] for r in again.results[:2]] == [one[1], one[0]]
    assert MeterEvent.objects.filter(customer=customer).count() == 3
    result = usage_cancel(customer=customer, idempotency_keys=["k3", "k9"], reason="r", now=NOW)
    assert [r["status"] for r in result.results] == ["canceled", "not_found"]
    assert MeterEvent.objects.get(idempotency_key="k3", customer=customer).canceled_at is not None
    assert MeterEvent.objects.filter(customer=customer, canceled_at__isnull=False).count() == 1


@postgres
def test_every_query_prunes_to_the_partitions_it_needs(months, client):
    assert {"metering_meterevent_p20260201", "metering_meterevent_p20260301", "metering_meterevent_p20260401"} <= months
    customer, meter = CustomerFactory(), make_meter("sum")
    t = datetime(2026, 3, 10, 8, tzinfo=UTC)
    ids = ingest(
        customer, meter, [(t + timedelta(minutes=i), "1", {"region": "eu"}) for i in range(5)], keys=list("abcde")
    )
    march = {"metering_meterevent_p20260301"}

    def pruned(action) -> set[str]:
        with CaptureQueriesContext(connection) as captured:
            action()
        return partitions_read(captured.captured_queries)

    # Ingest dedup: a repeated batch finds its originals in March only.
    assert pruned(lambda: ingest(customer, meter, [(t, "1")], keys=["a"])) == march
    # Usage reads (roll-ups + raw edges), grouped reads, and the roll-up job.
    window = {"start": t - timedelta(minutes=30), "end": t + timedelta(hours=2, minutes=10)}
    assert pruned(lambda: usage_aggregate(meter=meter, customer=customer, **window)) == march
    assert (
        pruned(lambda: usage_series(meter=meter, customer=customer, window="hour", group_by="region", **window))
        == march
    )
    assert pruned(lambda: usage_rollup_job(now=NOW)) == march
    # Cancellation by id (the id names its day) and by idempotency key (the key row names its time).
    assert pruned(lambda: usage_cancel(event_ids=[ids[1]], reason="r", now=NOW)) == march
    assert pruned(lambda: usage_cancel(customer=customer, idempotency_keys=["c"], reason="r", now=NOW)) == march
    assert usage_aggregate(meter=meter, customer=customer, **window).value == Decimal(3)

    # The admin browser reads the newest partition for its default window; a search by id, its day's.
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw-for-tests-only")
    client.force_login(user)
    with CaptureQueriesContext(connection) as captured:
        assert client.get("/admin/metering/meterevent/").status_code == 200
    current = {p.name for p in partitions_list() if p.start <= datetime.now(tz=UTC) < p.end}
    assert partitions_read(captured.captured_queries) == current
    with CaptureQueriesContext(connection) as captured:
        page = client.get(f"/admin/metering/meterevent/?q={ids[0]}")
    assert ids[0] in page.content.decode()
    assert partitions_read(captured.captured_queries) == march


@postgres
def test_detach_only_what_billing_no_longer_needs():
    partitions_ensure_range(datetime(2020, 1, 1, tzinfo=UTC), datetime(2020, 4, 1, tzinfo=UTC))
    now = datetime(2026, 12, 3, tzinfo=UTC)
    with pytest.raises(ValueError, match="Only partitions ending by"):
        partitions_detach(before=now - timedelta(days=10), now=now)
    done = partitions_detach(before=datetime(2020, 3, 1, tzinfo=UTC), now=now)
    assert done == ["metering_meterevent_p20200101", "metering_meterevent_p20200201"]
    names = {p.name for p in partitions_list()}
    assert "metering_meterevent_p20200301" in names and "metering_meterevent_p20200101" not in names
    with connection.cursor() as cursor:  # detached, kept as a plain table to archive
        cursor.execute("SELECT to_regclass('metering_meterevent_p20200101')")
        assert cursor.fetchone()[0] is not None
    with pytest.raises(CommandError, match="Only partitions ending by"):
        call_command("detach_event_partitions", "--before", "2100-01-01")
    call_command("detach_event_partitions", "--before", "2020-04-01", "--drop")
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass('metering_meterevent_p20200301')")
        assert cursor.fetchone()[0] is None
