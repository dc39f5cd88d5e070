"""The roll-up job's cost per event at 1,000,000 and 10,000,000 events: it must grow linearly.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/billing_bench_rollup .venv/bin/python bench/rollup.py

For each size N (default 1M, then 10M) it loads N events with `INSERT ... SELECT FROM generate_series`
(the API is not what this measures) for N / 50,000 customers, each with the same density (about 67
events per hour over a 31-day month, 3 regions), ANALYZEs, marks every (customer, hour) dirty and runs
the real `rollup_usage` job until nothing is dirty, timing it. It reports events/s and hours/s; the
target is the 10M rate at least 0.8 of the 1M rate (issue 15). Each size runs on its own customers; the
bench deletes its rows at the end. Give it a scratch database.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_site.settings")
os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-0123456789abcdefghij")
os.environ.setdefault("PUBLIC_BASE_URL", "http://127.0.0.1:8000")
os.environ.setdefault("LOG_LEVEL", "WARNING")
os.environ.setdefault("ALLOWED_HOSTS", "127.0.0.1")

import django

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

from customers.models import Customer  # noqa: E402
from metering.ingest import mark_hours_dirty  # noqa: E402
from metering.models import MeterEvent, UsageDirtyHour, UsageHourly, UsageHourlyGroup  # noqa: E402
from metering.partitions import partitions_ensure_range  # noqa: E402
from metering.rollups import usage_rollup_job  # noqa: E402
from metering.services import meter_create  # noqa: E402

MONTH_START = datetime(2026, 10, 1, tzinfo=UTC)
MONTH_END = datetime(2026, 11, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
PER_CUSTOMER = 50_000


def run(n: int) -> tuple[float, float, int]:
    tag = secrets.token_hex(3)
    now = datetime.now(tz=UTC)
    meter = meter_create(code=f"bench-rollup-{tag}", name="rollup bench", aggregation="sum", now=now)
    customers = [
        Customer.objects.create(external_id=f"bench-rollup-{tag}-{i}", name="rollup bench").id
        for i in range(max(1, n // PER_CUSTOMER))
    ]
    span_us = int((MONTH_END - MONTH_START).total_seconds() * 1_000_000)
    per = n // len(customers)
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {MeterEvent._meta.db_table}
                (token, customer_id, meter_id, value, timestamp, idempotency_key, dimensions, ingested_at,
                 cancel_reason)
            SELECT substr(md5(g::text), 1, 16), (%(cs)s::text[])[1 + g %% %(nc)s], %(m)s, (g %% 7)::numeric,
                   %(start)s::timestamptz + ((g / %(nc)s)::bigint * %(step)s) * interval '1 microsecond', NULL,
                   jsonb_build_object('region', (ARRAY['eu', 'us', 'ap'])[1 + g %% 3]), now(), ''
            FROM generate_series(0, %(n)s - 1) AS g
            """,
            {
                "cs": customers,
                "nc": len(customers),
                "m": meter.id,
                "start": MONTH_START,
                "step": span_us // per,
                "n": n,
            },
        )
        cursor.execute(f"ANALYZE {MeterEvent._meta.db_table}")
    print(f"  load {n:,} events for {len(customers)} customers: {time.perf_counter() - started:.0f} s")
    hours = int((MONTH_END - MONTH_START) / HOUR)
    for customer in customers:
        mark_hours_dirty({(meter.id, customer, MONTH_START + i * HOUR) for i in range(hours)}, now)
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {UsageDirtyHour._meta.db_table}")
    started = time.perf_counter()
    rolled = 0
    while True:
        report = usage_rollup_job(now=now)
        rolled += report["hours"]
        if not report["more"]:
            break
    elapsed = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {MeterEvent._meta.db_table} WHERE meter_id = %s AND timestamp >= %s AND timestamp < %s",
            [meter.id, MONTH_START, MONTH_END],
        )
    for model in (UsageHourly, UsageHourlyGroup, UsageDirtyHour):
        model.objects.filter(meter=meter).delete()
    meter.delete()
    Customer.objects.filter(id__in=customers).delete()
    return n / elapsed, rolled / elapsed, rolled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,10000000")
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        raise SystemExit("Run this against PostgreSQL: DATABASE_URL=postgres://...")
    call_command("migrate", verbosity=0)
    partitions_ensure_range(MONTH_START, MONTH_END)
    rates = []
    for n in (int(s) for s in args.sizes.split(",")):
        events_s, hours_s, hours = run(n)
        rates.append(events_s)
        print(f"{n:>11,} events: {events_s:,.0f} events/s, {hours_s:,.0f} hours/s ({hours:,} hours)")
    if len(rates) > 1:
        verdict = "met" if rates[-1] >= 0.8 * rates[0] else "MISSED"
        print(f"rate at the largest size / rate at the smallest: {rates[-1] / rates[0]:.2f} (target >= 0.8: {verdict})")


if __name__ == "__main__":
    main()
