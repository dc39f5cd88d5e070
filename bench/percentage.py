"""Invoice-time pricing of one customer's month on a percentage price with per-event bounds and free
events: the raw path (every event's value read and priced, `quote_events`) against the roll-up path
(`catalog.selectors.percentage_usage_quote`: hourly per-classifier rows, raw edges, the one hour where the
free allowance ends read event by event), in the same run, alternately A/B/A/B.

    DEBUG=1 DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_pct .venv/bin/python bench/percentage.py

For each size N (default 100,000 then 1,000,000) it loads N events of one customer over a 31-day month
with `INSERT ... SELECT FROM generate_series` (values 0.00 to 99.99 units, in cents), creates the price
(2.9 % + 30, clamped to [50, 500] cents, first 1,000 events free), marks every hour dirty and runs the
real roll-up job (timed: once with the price's classifier registered, once without, so the job's extra
cost shows), then times both reads over [month start + 30 min, month end - 30 min) and checks they agree.
Give it a scratch database; the bench deletes its rows at the end.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
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
from django.test.utils import CaptureQueriesContext  # noqa: E402

from catalog.models import Price  # noqa: E402
from catalog.pricing import quote_events  # noqa: E402
from catalog.selectors import percentage_usage_quote  # noqa: E402
from catalog.services import price_create  # noqa: E402
from customers.models import Customer  # noqa: E402
from metering import class_stats  # noqa: E402
from metering.class_stats_models import UsageHourlyClassStats  # noqa: E402
from metering.ingest import mark_hours_dirty  # noqa: E402
from metering.models import MeterEvent, UsageDailyGroup, UsageDirtyHour, UsageHourly, UsageHourlyGroup  # noqa: E402
from metering.partitions import partitions_ensure_range  # noqa: E402
from metering.rollups import usage_rollup_job  # noqa: E402
from metering.selectors import usage_event_values  # noqa: E402
from metering.services import meter_create  # noqa: E402

MONTH_START = datetime(2026, 10, 1, tzinfo=UTC)
MONTH_END = datetime(2026, 11, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
AMOUNT = {
    "model": "percentage",
    "currency": "usd",
    "rate": "2.9",
    "fixed_fee": "30",
    "per_event_min": "50",
    "per_event_max": "500",
    "free_units_per_events": 1000,
}


def _rollup(meter_id: str, customer_id: str, now: datetime) -> float:
    hours = int((MONTH_END - MONTH_START) / HOUR)
    mark_hours_dirty({(meter_id, customer_id, MONTH_START + i * HOUR) for i in range(hours)}, now)
    started = time.perf_counter()
    while usage_rollup_job(now=now)["more"]:
        pass
    return time.perf_counter() - started


def run(n: int, runs: int) -> None:
    tag = secrets.token_hex(3)
    now = datetime.now(tz=UTC)
    meter = meter_create(code=f"bench-pct-{tag}", name="percentage bench", aggregation="sum", now=now)
    customer = Customer.objects.create(external_id=f"bench-pct-{tag}", name="percentage bench")
    span_us = int((MONTH_END - MONTH_START).total_seconds() * 1_000_000)
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {MeterEvent._meta.db_table}
                (token, customer_id, meter_id, value, timestamp, idempotency_key, dimensions, ingested_at,
                 cancel_reason)
            SELECT substr(md5(g::text), 1, 16), %(c)s, %(m)s, ((g::bigint * 7919) %% 10000)::numeric,
                   %(start)s::timestamptz + (g::bigint * %(step)s) * interval '1 microsecond', NULL,
                   '{{}}'::jsonb, now(), ''
            FROM generate_series(0, %(n)s - 1) AS g
            """,
            {"c": customer.id, "m": meter.id, "start": MONTH_START, "step": span_us // n, "n": n},
        )
        cursor.execute(f"ANALYZE {MeterEvent._meta.db_table}")
    print(f"  load {n:,} events: {time.perf_counter() - started:.0f} s")
    # The job without the classifier first (no percentage price on the meter yet), then with it.
    without = _rollup(meter.id, customer.id, now)
    price = price_create(
        type="standalone", duration_amount=1, duration_unit="month", amount=AMOUNT, meter_id=meter.id, now=now
    )
    with_stats = _rollup(meter.id, customer.id, now)
    with connection.cursor() as cursor:
        for model in (UsageHourly, UsageHourlyClassStats):
            cursor.execute(f"ANALYZE {model._meta.db_table}")
    rows = UsageHourlyClassStats.objects.filter(meter_id=meter.id, customer_id=customer.id).count()
    print(
        f"  roll-up of 744 hours: {without:.2f} s without the classifier, {with_stats:.2f} s with it "
        f"({with_stats / without:.2f}x), {rows} class rows"
    )
    amount = price.engine_amount
    start, end = MONTH_START + timedelta(minutes=30), MONTH_END - timedelta(minutes=30)

    def raw() -> int:
        values = usage_event_values(meter=meter, customer_id=customer.id, start=start, end=end)
        return quote_events(amount, values).amount

    def rolled() -> int:
        return percentage_usage_quote(amount=amount, meter=meter, customer_id=customer.id, start=start, end=end).amount

    times: dict[str, list[float]] = {"raw": [], "rolled": []}
    answers: dict[str, set[int]] = {"raw": set(), "rolled": set()}
    for _ in range(runs):
        for name, fn in (("raw", raw), ("rolled", rolled)):
            began = time.perf_counter()
            answers[name].add(fn())
            times[name].append(time.perf_counter() - began)
    with CaptureQueriesContext(connection) as queries:
        rolled()
    assert answers["raw"] == answers["rolled"] and len(answers["raw"]) == 1, answers
    raw_p50, rolled_p50 = statistics.median(times["raw"]), statistics.median(times["rolled"])
    print(
        f"{n:>11,} events: raw {raw_p50 * 1000:,.1f} ms, roll-up {rolled_p50 * 1000:,.1f} ms (p50 of {runs} each, "
        f"alternated): raw / roll-up = {raw_p50 / rolled_p50:,.0f}x; amount {answers['raw'].pop():,} on both; "
        f"roll-up path {len(queries.captured_queries)} statements"
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {MeterEvent._meta.db_table} WHERE meter_id = %s AND timestamp >= %s AND timestamp < %s",
            [meter.id, MONTH_START, MONTH_END],
        )
    for model in (UsageHourlyClassStats, UsageHourly, UsageHourlyGroup, UsageDailyGroup, UsageDirtyHour):
        model.objects.filter(meter=meter).delete()
    Price.objects.filter(pk=price.pk).delete()
    meter.delete()
    customer.delete()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        raise SystemExit("Run this against PostgreSQL: DATABASE_URL=postgres://...")
    if "bench" not in connection.settings_dict["NAME"]:
        raise SystemExit("Give it a scratch database whose name contains 'bench'.")
    call_command("migrate", verbosity=0)
    partitions_ensure_range(MONTH_START, MONTH_END)
    assert class_stats._sources, "catalog registers its classifier source in apps.ready"
    for n in (int(s) for s in args.sizes.split(",")):
        run(n, args.runs)


if __name__ == "__main__":
    main()
