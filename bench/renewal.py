"""Renewal throughput: 10,000 due subscriptions renewed by the renewal tasks on 2 worker processes.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/billing_bench_renewal .venv/bin/python bench/renewal.py

Each subscription has one licensed item ($10 / month) and one metered item (graduated tiers) whose usage
(20 events per customer) is already rolled up, as it would be at a real period end. The job runs in N
processes at once, as N Celery workers would; they split the work through SKIP LOCKED.

Baseline, in the same run, on a second cohort of the same size: the same processes doing only the
bookkeeping floor of a renewal per subscription (lock the row, insert an invoice and two lines, advance
the period, commit) with no pricing, usage, tax or numbering. The ratio says how much of the time is the
billing logic itself.

The database named by DATABASE_URL is dropped and recreated: its name must contain "bench".
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_site.settings")
os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-0123456789abcdefghij")
os.environ.setdefault("PUBLIC_BASE_URL", "http://127.0.0.1:8000")
os.environ.setdefault("ALLOWED_HOSTS", "127.0.0.1")
os.environ.setdefault("LOG_LEVEL", "WARNING")

PERIOD_END = datetime(2026, 11, 1, tzinfo=UTC)
PERIOD_START = datetime(2026, 10, 1, tzinfo=UTC)
NOW = PERIOD_END + timedelta(minutes=1)


def recreate_database() -> None:
    import psycopg
    from django.conf import settings

    db = settings.DATABASES["default"]
    if "bench" not in db["NAME"]:
        raise SystemExit("Refusing to drop a database whose name does not contain 'bench'.")
    conninfo = (
        f"host={db['HOST']} port={db['PORT'] or 5432} dbname=postgres user={db['USER']} password={db['PASSWORD']}"
    )
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{db["NAME"]}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{db["NAME"]}"')


def setup(n: int, events_per_sub: int, rollup: str = "sql", floor: bool = True) -> tuple[list[str], list[str]]:
    from django.core.management import call_command
    from django.db import connection

    from catalog.services import price_create
    from customers.models import Customer
    from metering.models import Meter, MeterEvent
    from subscriptions.models import Subscription, SubscriptionItem

    call_command("migrate", verbosity=0)
    meter = Meter.objects.create(code="bench-api", name="API calls", aggregation="sum")
    licensed = price_create(
        type="standalone",
        duration_amount=1,
        duration_unit="month",
        now=PERIOD_START,
        amount={"model": "fixed", "currency": "usd", "unit": "1000", "flat": 0},
    )
    metered = price_create(
        type="standalone",
        duration_amount=1,
        duration_unit="month",
        now=PERIOD_START,
        meter_id=meter.id,
        amount={
            "model": "tiered",
            "currency": "usd",
            "mode": "graduated",
            "tiers": [{"up_to": 100, "unit": "5", "flat": 0}, {"up_to": None, "unit": "2", "flat": 100}],
        },
    )
    cohorts: list[list[str]] = []
    for cohort in ("real", "floor") if floor else ("real",):
        customers = Customer.objects.bulk_create(
            [
                Customer(external_id=f"{cohort}-{i}", name=f"Tenant {i}", currency="usd", address_country="US")
                for i in range(n)
            ],
            batch_size=2000,
        )
        subs = Subscription.objects.bulk_create(
            [
                Subscription(
                    customer=c,
                    status="active",
                    currency="usd",
                    interval_unit="month",
                    interval_amount=1,
                    start_date=PERIOD_START,
                    billing_cycle_anchor=PERIOD_START,
                    current_period_start=PERIOD_START,
                    current_period_end=PERIOD_END,
                )
                for c in customers
            ],
            batch_size=2000,
        )
        SubscriptionItem.objects.bulk_create(
            [
                SubscriptionItem(subscription=s, price=p, quantity=q, added_at=PERIOD_START)
                for s in subs
                for p, q in ((licensed, 1), (metered, None))
            ],
            batch_size=4000,
        )
        cohorts.append([s.id for s in subs])
    real_customer_ids = [s.customer_id for s in Subscription.objects.filter(pk__in=cohorts[0])]
    # Usage for the "real" cohort, straight in with SQL, spread over the period; then dirty + rolled up.
    from metering.partitions import partitions_ensure_range

    partitions_ensure_range(PERIOD_START, PERIOD_START + timedelta(hours=7 * events_per_sub + 1))  # PostgreSQL
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {MeterEvent._meta.db_table} (token, customer_id, meter_id, value, timestamp,
                idempotency_key, dimensions, ingested_at, cancel_reason)
            SELECT substr(md5(c || '-' || g), 1, 16), c, %s, (g %% 7) + 1,
                   %s::timestamptz + (g * interval '1 hour' * 7), NULL, '{{}}'::jsonb, %s, ''
            FROM unnest(%s::text[]) AS c, generate_series(1, %s) AS g
            """,
            [meter.id, PERIOD_START, PERIOD_START, real_customer_ids, events_per_sub],
        )
        cursor.execute(
            """
            INSERT INTO metering_usagedirtyhour (meter_id, customer_id, hour, touched_at)
            SELECT DISTINCT meter_id, customer_id, date_trunc('hour', timestamp), now() FROM metering_meterevent
            """
        )
        cursor.execute(f"ANALYZE {MeterEvent._meta.db_table}")
        cursor.execute("ANALYZE metering_usagedirtyhour")
    started = time.perf_counter()
    hours = rollup_job(NOW) if rollup == "job" else rollup_sql(NOW)
    elapsed = time.perf_counter() - started
    print(f"roll-up: {hours:,} dirty hours in {elapsed:.1f}s = {hours / elapsed:,.0f} hours/s")
    connection.close()
    return cohorts[0], cohorts[1] if floor else []


def rollup_job(now: datetime) -> int:
    """The roll-up job itself over every dirty hour (`--rollup job`: slow at 50,000 subscriptions)."""
    from metering.rollups import usage_rollup_job

    hours = 0
    while report := usage_rollup_job(now=now):
        hours += report.get("hours", 0)
        if not report.get("hours", 0):
            break
    return hours


def rollup_sql(now: datetime) -> int:
    """What the roll-up job writes for these events, in three set-based statements over the whole load
    (`--rollup sql`, the default): the bench's meter is a `sum` meter without filters and its events have
    no dimensions, so per (customer, hour) the job writes one `UsageHourly` row (count, sum, max, the
    latest event; no weighted_sum columns), one `UsageHourlyGroup` row for the empty dimension set (no
    `latest_*`: not a latest meter) and per day one `UsageDailyGroup` row adding up the day's group rows,
    each `rolled_at` the later of `now` and the dirty hour's `touched_at`, then deletes the dirty
    hours. `bench/renewal.py --rollup job` runs the job instead; the two give the same rows."""
    from django.db import connection

    from metering.models import MeterEvent, UsageDailyGroup, UsageDirtyHour, UsageHourly, UsageHourlyGroup

    events, dirty = MeterEvent._meta.db_table, UsageDirtyHour._meta.db_table
    hourly, groups, daily = UsageHourly._meta.db_table, UsageHourlyGroup._meta.db_table, UsageDailyGroup._meta.db_table
    hour_of = "date_trunc('hour', e.timestamp AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
    latest = "ORDER BY e.timestamp DESC, e.id DESC"
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {hourly} (meter_id, customer_id, hour, event_count, value_sum, value_max, latest_value,
                                  latest_timestamp, latest_event_id, first_timestamp, held_integral, rolled_at)
            SELECT e.meter_id, e.customer_id, {hour_of}, count(*), sum(e.value), max(e.value),
                   (array_agg(e.value {latest}))[1], max(e.timestamp), (array_agg(e.id {latest}))[1],
                   NULL::timestamptz, NULL::numeric, greatest(%s, max(d.touched_at))
            FROM {events} e JOIN {dirty} d
              ON d.meter_id = e.meter_id AND d.customer_id = e.customer_id AND d.hour = {hour_of}
            WHERE e.canceled_at IS NULL
            GROUP BY e.meter_id, e.customer_id, {hour_of}
            """,
            [now],
        )
        cursor.execute(
            f"""
            INSERT INTO {groups} (meter_id, customer_id, hour, dimensions_hash, dimensions, event_count, value_sum,
                                  value_max, latest_value, latest_timestamp, latest_event_id, rolled_at)
            SELECT e.meter_id, e.customer_id, {hour_of}, md5(e.dimensions::text)::uuid, e.dimensions, count(*),
                   sum(e.value), max(e.value), NULL::numeric, NULL::timestamptz, NULL::bigint,
                   greatest(%s, max(d.touched_at))
            FROM {events} e JOIN {dirty} d
              ON d.meter_id = e.meter_id AND d.customer_id = e.customer_id AND d.hour = {hour_of}
            WHERE e.canceled_at IS NULL
            GROUP BY e.meter_id, e.customer_id, {hour_of}, e.dimensions
            """,
            [now],
        )
        cursor.execute(
            f"""
            INSERT INTO {daily} (meter_id, customer_id, day, dimensions_hash, dimensions, event_count, value_sum,
                                 value_max, latest_value, latest_timestamp, latest_event_id, rolled_at)
            SELECT g.meter_id, g.customer_id, date_trunc('day', g.hour AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',
                   g.dimensions_hash, g.dimensions, sum(g.event_count), sum(g.value_sum), max(g.value_max),
                   NULL::numeric, NULL::timestamptz, NULL::bigint, max(g.rolled_at)
            FROM {groups} g
            GROUP BY g.meter_id, g.customer_id, date_trunc('day', g.hour AT TIME ZONE 'UTC'), g.dimensions_hash,
                     g.dimensions
            """
        )
        cursor.execute(f"DELETE FROM {dirty}")
        hours = cursor.rowcount
        for table in (hourly, groups, daily):
            cursor.execute(f"ANALYZE {table}")
    return hours


def _real_worker(job: tuple[float, list[list[str]]]) -> tuple[float, float, dict]:
    """One Celery worker: it runs the renewal tasks the sweep sent it (`subscriptions.renew_batch`, whose body
    is `subscriptions_renew(ids=batch)`), one after another."""
    start_at, batches = job
    import django

    django.setup()
    from subscriptions.services.renewal import subscriptions_renew

    _wait_until(start_at)
    started = time.time()
    totals = {"renewed": 0, "invoices": 0, "failed": 0}
    for batch in batches:
        for key, value in subscriptions_renew(now=NOW, ids=batch).items():
            totals[key] += value
    return started, time.time(), totals


def _wait_until(start_at: float) -> None:
    # Every process starts the clock together, after its own (slow) interpreter and Django start-up.
    while time.time() < start_at:
        time.sleep(0.005)


def _floor_worker(job: tuple[float, list[str]]) -> tuple[float, float, int]:
    start_at, ids = job
    import django

    django.setup()
    from django.db import transaction
    from django.db.models import F

    from invoicing.models import Invoice, InvoiceLine
    from subscriptions.models import Subscription

    done = 0
    _wait_until(start_at)
    started = time.time()
    for sub_id in ids:
        with transaction.atomic():
            sub = (
                Subscription.objects.select_for_update(skip_locked=True)
                .filter(pk=sub_id, current_period_end__lte=NOW)
                .first()
            )
            if sub is None:
                continue
            invoice = Invoice.objects.create(
                customer_id=sub.customer_id,
                subscription=sub,
                currency="usd",
                billing_reason="subscription_cycle",
                cycle_period_start=PERIOD_END,
            )
            InvoiceLine.objects.bulk_create(
                [
                    InvoiceLine(invoice=invoice, position=1, kind="fixed", description="floor", amount=1000),
                    InvoiceLine(invoice=invoice, position=2, kind="usage", description="floor", amount=1),
                ]
            )
            Subscription.objects.filter(pk=sub.pk).update(
                current_period_start=F("current_period_end"), current_period_end=PERIOD_END + timedelta(days=30)
            )
            done += 1
    return started, time.time(), done


def run(processes: int, fn, args: list) -> tuple[float, list]:
    """Run `fn` in `processes` fresh processes; the time is from the common start to the last finish."""
    from django.db import connections

    connections.close_all()
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        outcomes = pool.map(fn, args)
    elapsed = max(end for _, end, _ in outcomes) - min(start for start, _, _ in outcomes)
    return elapsed, [result for _, _, result in outcomes]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscriptions", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--events-per-sub", type=int, default=20)
    parser.add_argument(
        "--rollup",
        choices=("sql", "job"),
        default="sql",
        help="roll the loaded usage up with set-based SQL (fast; the same rows) or with the roll-up job",
    )
    parser.add_argument(
        "--no-floor",
        action="store_true",
        help="only the renewal (no floor cohort, no baseline): for rates across sizes, e.g. issue 15's linearity",
    )
    args = parser.parse_args()

    import django

    django.setup()
    from django.db import connection

    if connection.vendor != "postgresql":
        raise SystemExit("Run this against PostgreSQL: DATABASE_URL=postgres://...")
    recreate_database()
    connection.close()
    started = time.perf_counter()
    real, floor = setup(args.subscriptions, args.events_per_sub, args.rollup, not args.no_floor)
    cohorts = 1 if args.no_floor else 2
    print(
        f"setup: {cohorts * args.subscriptions:,} subscriptions, {args.subscriptions * args.events_per_sub:,} events "
        f"rolled up, in {time.perf_counter() - started:.1f}s"
    )

    # The floor splits its cohort between the processes the way SKIP LOCKED would.
    floor_rate = None
    if not args.no_floor:
        start_at = time.time() + 8
        chunks = [(start_at, floor[i :: args.workers]) for i in range(args.workers)]
        floor_time, floor_done = run(args.workers, _floor_worker, chunks)
        floor_rate = sum(floor_done) / floor_time
        print(f"baseline (bookkeeping floor): {sum(floor_done):,} in {floor_time:.1f}s = {floor_rate:,.0f}/s")

    # The sweep (beat's `renew_subscriptions` job) finds the due subscriptions and cuts them into task-sized
    # batches; the workers share the tasks as Celery would hand them out.
    from django.conf import settings

    from subscriptions.services.renewal import subscriptions_due

    swept = time.perf_counter()
    ids = list(subscriptions_due(NOW).order_by("current_period_end", "id").values_list("id", flat=True))
    size = settings.RENEWAL_BATCH_SIZE
    batches = [ids[i : i + size] for i in range(0, len(ids), size)]
    print(f"sweep: {len(ids):,} due in {len(batches)} tasks, found in {(time.perf_counter() - swept) * 1000:.0f} ms")
    connection.close()
    start_at = time.time() + 8
    real_time, results = run(
        args.workers, _real_worker, [(start_at, batches[i :: args.workers]) for i in range(args.workers)]
    )
    invoices = sum(r["invoices"] for r in results)
    failed = sum(r["failed"] for r in results)
    rate = invoices / real_time
    print(f"renewal job: {invoices:,} invoices ({failed} failed) in {real_time:.1f}s = {rate:,.0f} invoices/s")
    if floor_rate is not None:
        print(f"ratio renewal / floor: {rate / floor_rate:.2f}")

    from invoicing.models import Invoice

    numbers = Invoice.objects.exclude(number=None).count()
    per_period = Invoice.objects.filter(cycle_period_start=PERIOD_END, subscription_id__in=real).count()
    print(f"check: {per_period:,} cycle invoices for {len(real):,} subscriptions, {numbers:,} numbered")


if __name__ == "__main__":
    main()
