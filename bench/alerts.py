"""What usage alerts cost ingestion: batches for customers without alerts vs. with alerts, in one run.

    DEBUG=1 DATABASE_URL=postgres://postgres@127.0.0.1:5432/billing_bench REDIS_URL=redis://127.0.0.1:6379/0 \
        .venv/bin/python bench/alerts.py

In-process `usage_ingest` (no HTTP, so the difference is not hidden in request handling): --batches
batches of --size events over --customers customers, for each kind of alert against the same batches for
customers without alerts, alternated (A/B/A/B) in one run:

- sum: a sum meter, each customer with an active (never reached) alert on it (one bulk statement);
- unique_count: a unique_count meter (events with distinct users), each customer with an alert on it
  (the bulk statement names them, then one usage read for the batch's customers); its baseline is the
  same meter's batches for customers without alerts;
- amount: a sum meter, each customer with an invoice_amount alert: ingestion enqueues the
  `metering.evaluate_amount_alerts` task per customer once per burst. The task's send is stubbed here
  (counted, not sent: no worker runs), and the pending marks are cleared after every batch (untimed), as
  workers running each task at once would: every batch pays the enqueue for every customer, the worst
  case (`--burst` keeps the marks, as a burst faster than the workers does).

All events in the last hour, so every evaluation reads the hour's events raw until a roll-up
(`--rollup-every N` runs the job, untimed, every N rounds, as the 5-minute job would). Prints the time
per batch (p50, p99) of each side and the ratios, and counts the SQL statements of one batch of each.
Deletes its rows at the end (--keep leaves them). Needs a migrated PostgreSQL database.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_site.settings")
os.environ.setdefault("LOG_LEVEL", "WARNING")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.cache import cache  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from customers.models import Customer  # noqa: E402
from metering import alerts as metering_alerts  # noqa: E402
from metering.alerts import usage_alert_create  # noqa: E402
from metering.ingest import usage_ingest  # noqa: E402
from metering.models import (  # noqa: E402
    Meter,
    MeterEvent,
    UsageAlert,
    UsageDailyGroup,
    UsageDirtyHour,
    UsageHourly,
    UsageHourlyGroup,
)
from metering.partitions import partitions_ensure_for  # noqa: E402
from metering.rollups import usage_rollup_job  # noqa: E402
from metering.services import meter_create  # noqa: E402
from metering.tasks import evaluate_amount_alerts  # noqa: E402

settings.DEBUG = False


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=40, help="per side")
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--customers", type=int, default=50, help="per side")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--burst", action="store_true", help="keep the amount tasks pending (no worker)")
    parser.add_argument(
        "--rollup-every", type=int, default=0, help="run the roll-up job (untimed) after every N rounds"
    )
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        sys.exit("bench/alerts.py needs DATABASE_URL to point at PostgreSQL")
    tag = secrets.token_hex(4)
    now = datetime.now(UTC)
    plain = meter_create(code=f"bench-alerts-{tag}", name="alerts bench", aggregation="sum", now=now)
    users = meter_create(
        code=f"bench-alerts-u-{tag}", name="alerts bench", aggregation="unique_count", unique_key="user", now=now
    )
    meters = [plain, users]

    def customers(prefix: str) -> list[Customer]:
        return [
            Customer.objects.create(external_id=f"bench-{prefix}-{tag}-{i}", name=prefix) for i in range(args.customers)
        ]

    quiet, loud, unique, amount = customers("q"), customers("l"), customers("u"), customers("a")
    for customer in loud:
        usage_alert_create(customer=customer, meter=plain, threshold=Decimal(10**20), now=now)
    for customer in unique:
        usage_alert_create(customer=customer, meter=users, threshold=Decimal(10**20), now=now)
    for customer in amount:
        usage_alert_create(customer=customer, kind="invoice_amount", threshold=Decimal(10**15), now=now)
    partitions_ensure_for([now - timedelta(hours=1), now])
    serial = iter(range(10**9))

    def batch(people: list[Customer], meter: Meter) -> list[dict]:
        return [
            {
                "customer": people[i % len(people)].id,
                "meter": meter.code,
                "value": "1.5",
                "dimensions": {"user": f"user-{n % 5000}"},
                "timestamp": (now - timedelta(seconds=i % 3600)).isoformat(),
                "idempotency_key": f"k{n}",
            }
            for i, n in ((i, next(serial)) for i in range(args.size))
        ]

    evaluation: dict[str, list[float]] = defaultdict(list)
    evaluate = metering_alerts.usage_alerts_evaluate_ingested
    current = [""]

    def timed_evaluate(**kwargs: object) -> int:
        started = time.perf_counter()
        try:
            return evaluate(**kwargs)  # type: ignore[arg-type]
        finally:
            evaluation[current[0]].append((time.perf_counter() - started) * 1000)

    enqueued: list[tuple] = []

    def send(*task_args: object) -> None:  # the broker send, stubbed: counted
        enqueued.append(task_args)

    def release(people: list[Customer]) -> None:  # what each task does first when it starts
        if not args.burst:
            cache.delete_many([metering_alerts._amount_pending_key(c.id) for c in people])

    sides = [  # (label, customers, meter, baseline label)
        ("sum: without alerts", quiet, plain, None),
        ("sum: with alerts", loud, plain, "sum: without alerts"),
        ("unique_count: without alerts", quiet, users, None),
        ("unique_count: with alerts", unique, users, "unique_count: without alerts"),
        ("amount: without alerts", quiet, plain, None),
        ("amount: with alerts", amount, plain, "amount: without alerts"),
    ]
    metering_alerts.usage_alerts_evaluate_ingested = timed_evaluate  # type: ignore[assignment]
    original_delay = evaluate_amount_alerts.delay
    evaluate_amount_alerts.delay = send  # type: ignore[method-assign]
    try:
        times: dict[str, list[float]] = {label: [] for label, *_ in sides}
        for _ in range(2):  # warm-up
            for _, people, meter, _ in sides:
                usage_ingest(events=batch(people, meter), now=now)
                release(people)
        evaluation.clear()
        enqueued.clear()
        for index in range(args.batches):
            if args.rollup_every and index % args.rollup_every == 0:
                usage_rollup_job(now=now)
            for label, people, meter, _ in sides:
                events = batch(people, meter)
                current[0] = label
                started = time.perf_counter()
                result = usage_ingest(events=events, now=now)
                times[label].append((time.perf_counter() - started) * 1000)
                assert result.created == args.size
                release(people)
        sent = len(enqueued)
        counts = {}
        for label, people, meter, _ in sides:
            events = batch(people, meter)
            with CaptureQueriesContext(connection) as captured:
                usage_ingest(events=events, now=now)
            release(people)
            counts[label] = len(captured.captured_queries)
            if os.environ.get("SHOW_SQL"):
                print(label, [q["sql"][:60] for q in captured.captured_queries])
        print(f"{args.batches} batches of {args.size} events per side, {args.customers} customers per side")
        for label, samples in times.items():
            spent = sorted(evaluation.get(label, []))
            of_which = f"   evaluation p50 {percentile(spent, 0.5):7.2f} ms" if spent else ""
            print(
                f"{label:<30} p50 {percentile(samples, 0.5):8.2f} ms   p99 {percentile(samples, 0.99):8.2f} ms"
                f"   statements per batch: {counts[label]}{of_which}"
            )
        for label, _, _, baseline in sides:
            if baseline:
                p50 = percentile(times[label], 0.5) / percentile(times[baseline], 0.5)
                print(f"{label} / {baseline}: p50 {p50:.2f}x")
        print(f"amount tasks enqueued: {sent} for {args.batches} batches of {args.customers} customers")
    finally:
        evaluate_amount_alerts.delay = original_delay  # type: ignore[method-assign]
        if not args.keep:
            ids = [c.id for c in quiet + loud + unique + amount]
            with connection.cursor() as cursor:
                cursor.execute(
                    f"DELETE FROM {MeterEvent._meta.db_table} WHERE customer_id = ANY(%s) AND timestamp >= %s",
                    [ids, now - timedelta(hours=2)],
                )
            for meter in meters:
                for model in (UsageDirtyHour, UsageHourly, UsageHourlyGroup, UsageDailyGroup):
                    model.objects.filter(meter=meter).delete()
            UsageAlert.objects.filter(customer_id__in=ids).delete()
            for meter in meters:
                meter.delete()
            Customer.objects.filter(id__in=ids).delete()


if __name__ == "__main__":
    main()
