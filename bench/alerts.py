"""What usage alerts cost ingestion: batches for customers without alerts vs. with alerts, in one run.

    DEBUG=1 DATABASE_URL=postgres://postgres@127.0.0.1:5432/billing_bench .venv/bin/python bench/alerts.py

In-process `usage_ingest` (no HTTP, so the difference is not hidden in request handling): --batches
batches of --size events over --customers customers on one sum meter, alternately for a set of customers
without alerts and a set whose customers each have an active (never reached) alert on the meter, over
the same time window (all in the last hour, so every evaluation reads the hour's events raw until a
roll-up: `--rollup-every N` runs the job, untimed, every N batch pairs, as the 5-minute job would).
Prints the time per batch (p50, p99) of both and the ratio, and counts the SQL
statements of one batch of each (the alert evaluation is one statement for the whole batch; none
without alerts). Deletes its rows at the end (--keep leaves them). Needs a migrated PostgreSQL database.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time
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
from django.db import connection  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from customers.models import Customer  # noqa: E402
from metering import alerts as metering_alerts  # noqa: E402
from metering.alerts import usage_alert_create  # noqa: E402
from metering.ingest import usage_ingest  # noqa: E402
from metering.models import MeterEvent, UsageAlert, UsageDirtyHour, UsageHourly  # noqa: E402
from metering.partitions import partitions_ensure_for  # noqa: E402
from metering.rollups import usage_rollup_job  # noqa: E402
from metering.services import meter_create  # noqa: E402

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
    parser.add_argument(
        "--rollup-every", type=int, default=0, help="run the roll-up job (untimed) after every N batch pairs"
    )
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        sys.exit("bench/alerts.py needs DATABASE_URL to point at PostgreSQL")
    tag = secrets.token_hex(4)
    now = datetime.now(UTC)
    meter = meter_create(code=f"bench-alerts-{tag}", name="alerts bench", aggregation="sum", now=now)
    quiet = [Customer.objects.create(external_id=f"bench-q-{tag}-{i}", name="q") for i in range(args.customers)]
    loud = [Customer.objects.create(external_id=f"bench-l-{tag}-{i}", name="l") for i in range(args.customers)]
    for customer in loud:
        usage_alert_create(customer=customer, meter=meter, threshold=Decimal(10**20), now=now)
    partitions_ensure_for([now - timedelta(hours=1), now])
    serial = iter(range(10**9))

    def batch(customers: list[Customer]) -> list[dict]:
        return [
            {
                "customer": customers[i % len(customers)].id,
                "meter": meter.code,
                "value": "1.5",
                "timestamp": (now - timedelta(seconds=i % 3600)).isoformat(),
                "idempotency_key": f"k{next(serial)}",
            }
            for i in range(args.size)
        ]

    evaluation: list[float] = []
    evaluate = metering_alerts.usage_alerts_evaluate_ingested

    def timed_evaluate(**kwargs: object) -> int:
        started = time.perf_counter()
        try:
            return evaluate(**kwargs)  # type: ignore[arg-type]
        finally:
            evaluation.append((time.perf_counter() - started) * 1000)

    metering_alerts.usage_alerts_evaluate_ingested = timed_evaluate  # type: ignore[assignment]
    try:
        times: dict[str, list[float]] = {"without alerts": [], "with alerts": []}
        for _ in range(3):  # warm-up
            usage_ingest(events=batch(quiet), now=now)
            usage_ingest(events=batch(loud), now=now)
        for index in range(args.batches):
            if args.rollup_every and index % args.rollup_every == 0:
                usage_rollup_job(now=now)
            for label, customers in (("without alerts", quiet), ("with alerts", loud)):
                events = batch(customers)
                started = time.perf_counter()
                result = usage_ingest(events=events, now=now)
                times[label].append((time.perf_counter() - started) * 1000)
                assert result.created == args.size
        counts = {}
        for label, customers in (("without alerts", quiet), ("with alerts", loud)):
            events = batch(customers)
            with CaptureQueriesContext(connection) as captured:
                usage_ingest(events=events, now=now)
            counts[label] = len(captured.captured_queries)
            if os.environ.get("SHOW_SQL"):
                print(label, [q["sql"][:60] for q in captured.captured_queries])
        print(f"{args.batches} batches of {args.size} events per side, {args.customers} customers per side")
        for label, samples in times.items():
            print(
                f"{label:<16} p50 {percentile(samples, 0.5):8.2f} ms   p99 {percentile(samples, 0.99):8.2f} ms"
                f"   statements per batch: {counts[label]}"
            )
        p50 = percentile(times["with alerts"], 0.5) / percentile(times["without alerts"], 0.5)
        print(f"with / without alerts: p50 {p50:.2f}x")
        spent = sorted(evaluation)
        print(f"of which the alert evaluation (statement + its commit): p50 {percentile(spent, 0.5):.2f} ms")
    finally:
        if not args.keep:
            ids = [c.id for c in quiet + loud]
            with connection.cursor() as cursor:
                cursor.execute(
                    f"DELETE FROM {MeterEvent._meta.db_table} WHERE customer_id = ANY(%s) AND timestamp >= %s",
                    [ids, now - timedelta(hours=2)],
                )
            UsageDirtyHour.objects.filter(meter=meter).delete()
            UsageHourly.objects.filter(meter=meter).delete()
            UsageAlert.objects.filter(meter=meter).delete()
            meter.delete()
            Customer.objects.filter(id__in=ids).delete()


if __name__ == "__main__":
    main()
