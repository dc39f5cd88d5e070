"""Usage push throughput: one closed hour of 10,000 provider-mode customers x 3 meters pushed to a local
fake Stripe through the real SDK, by N worker processes running the per-(customer, meter) lane service
the way N Celery workers run its tasks.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/billing_bench_push .venv/bin/python bench/usage_push.py

Baseline, in the same run, before and after: the same N processes making the same number of bare SDK
calls (`client.v1.billing.meter_events.create`, one identifier and idempotency key each, the same client
settings) against the same fake, with no database at all. The ratio says what the push's bookkeeping
(the row written before the call, the claim, the answer recorded, the usage read, the lane lock, the
correction check) costs on top of the call itself.

`--seconds N` measures each of the three phases for N seconds instead of to the end (on a machine too
busy to push all 30,000 in reasonable time); the lanes are the same 30,000 either way.

The fake runs in its own process (so it does not share the workers' interpreter lock), and its own
count of accepted meter events is checked at the end: exactly one per (customer, meter).

The database named by DATABASE_URL is dropped and recreated: its name must contain "bench".
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
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
os.environ.setdefault("STRIPE_API_KEY", "sk_test_51BenchOnlyKey000000000000000000")
os.environ.setdefault("USAGE_PUSH_SLICE", "hour")

# The slice pushed: the hour before last, by the wall clock (the fake checks timestamps against it).
SLICE = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
NOW = SLICE + timedelta(hours=1, minutes=3)
METERS = ("bench-api-calls", "bench-storage", "bench-egress")


def _serve_fake(queue: multiprocessing.Queue, stop: multiprocessing.Event) -> None:
    import gc

    from billing_site.testing.fake_stripe import FakeStripe

    # The fake's state only grows (events, idempotency keys); a collection pause in it would count against
    # whichever phase it fell in, so its process runs without the cyclic collector.
    gc.disable()
    fake = FakeStripe(record_requests=False)
    for code in METERS:
        fake.add_meter(f"{code}-event", meter_id=f"mtr_{code.replace('-', '_')}")
    fake.start()
    queue.put(fake.url)
    stop.wait()
    fake.stop()


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


def setup(customers: int) -> list[int]:
    from django.core.management import call_command
    from django.db import connection

    from customers.models import BillingModeChange, Customer
    from metering.models import Meter, MeterEvent
    from metering.push.models import MeterMapping, UsagePushLane
    from metering.push.sweep import usage_push_lanes_ensure
    from metering.rollups import usage_rollup_job

    call_command("migrate", verbosity=0)
    meters = [Meter.objects.create(code=code, name=code, aggregation="sum") for code in METERS]
    for meter in meters:
        MeterMapping.objects.create(
            meter=meter,
            event_name=f"{meter.code}-event",
            provider_meter_id=f"mtr_{meter.code.replace('-', '_')}",
            customer_payload_key="stripe_customer_id",
            value_payload_key="value",
            resolved_at=SLICE,
        )
    # In provider mode from the slice's start: each lane has exactly this slice to push, as in the steady
    # state of an hourly job (a lane catching up over empty slices costs the same single usage read).
    since = SLICE
    created = Customer.objects.bulk_create(
        [
            Customer(
                external_id=f"tenant-{i}",
                name=f"Tenant {i}",
                billing_mode="provider",
                billing_mode_since=since,
                provider="stripe",
                provider_customer_id=f"cus_bench{i:06d}",
            )
            for i in range(customers)
        ],
        batch_size=2000,
    )
    BillingModeChange.objects.bulk_create(
        [
            BillingModeChange(customer=c, mode="provider", effective_at=since, source="api", created_at=since)
            for c in created
        ],
        batch_size=2000,
    )
    with connection.cursor() as cursor:
        # Three events per (customer, meter) inside the slice, then dirty hours rolled up as the job would.
        cursor.execute(
            f"""
            INSERT INTO {MeterEvent._meta.db_table} (token, customer_id, meter_id, value, timestamp,
                idempotency_key, dimensions, ingested_at, cancel_reason)
            SELECT substr(md5(c || m || g), 1, 16), c, m, g + 0.5, %s::timestamptz + g * interval '10 minutes',
                   NULL, '{{}}'::jsonb, %s, ''
            FROM unnest(%s::text[]) AS c, unnest(%s::text[]) AS m, generate_series(1, 3) AS g
            """,
            [SLICE, SLICE, [c.id for c in created], [m.id for m in meters]],
        )
        cursor.execute(
            """
            INSERT INTO metering_usagedirtyhour (meter_id, customer_id, hour, touched_at)
            SELECT DISTINCT meter_id, customer_id, date_trunc('hour', timestamp), %s FROM metering_meterevent
            """,
            [SLICE + timedelta(minutes=40)],
        )
        for table in ("metering_meterevent", "metering_usagedirtyhour", "customers_customer"):
            cursor.execute(f"ANALYZE {table}")
    while usage_rollup_job(now=SLICE + timedelta(minutes=50))["hours"]:
        pass
    usage_push_lanes_ensure(now=NOW)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE metering_usagepushlane")
    ids = list(UsagePushLane.objects.order_by("pk").values_list("pk", flat=True))
    connection.close()
    return ids


def _wait_until(start_at: float) -> None:
    # Every process starts the clock together, after its own (slow) interpreter and Django start-up.
    while time.time() < start_at:
        time.sleep(0.005)


def _push_worker(job: tuple[float, str, list[int], float]) -> tuple[float, float, int]:
    start_at, url, lane_ids, seconds = job
    os.environ["STRIPE_API_BASE"] = url
    import django

    django.setup()
    from metering.push.services import usage_push_lane_run

    sent = 0
    _wait_until(start_at)
    started = time.time()
    for lane_id in lane_ids:
        sent += usage_push_lane_run(lane_id=lane_id, now=NOW).sent
        if seconds and time.time() - started >= seconds:
            break
    return started, time.time(), sent


def _sdk_worker(job: tuple[float, str, int, int, int, float]) -> tuple[float, float, int]:
    start_at, url, worker, calls, run, seconds = job
    os.environ["STRIPE_API_BASE"] = url
    import django

    django.setup()
    from billing_site.stripe_sdk import stripe_client

    client = stripe_client(max_network_retries=0)
    timestamp = int(SLICE.timestamp())
    _wait_until(start_at)
    started = time.time()
    for i in range(calls):
        identifier = f"base-{run}-{worker}-{i}"
        client.v1.billing.meter_events.create(
            {
                "event_name": f"{METERS[i % 3]}-event",
                "identifier": identifier,
                "timestamp": timestamp,
                "payload": {"stripe_customer_id": f"cus_base{i:06d}", "value": "4.5"},
            },
            {"idempotency_key": identifier},
        )
        if seconds and time.time() - started >= seconds:
            return started, time.time(), i + 1
    return started, time.time(), calls


def run(processes: int, fn, args: list) -> tuple[float, int]:
    from django.db import connections

    connections.close_all()
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        outcomes = pool.map(fn, args)
    elapsed = max(end for _, end, _ in outcomes) - min(start for start, _, _ in outcomes)
    return elapsed, sum(done for _, _, done in outcomes)


def baseline(workers: int, url: str, calls: int, run_no: int, seconds: float) -> tuple[float, int]:
    start_at = time.time() + 6
    per = calls // workers
    jobs = [(start_at, url, w, per, run_no, seconds) for w in range(workers)]
    elapsed, done = run(workers, _sdk_worker, jobs)
    rate = done / elapsed
    print(f"baseline {run_no} (bare SDK calls): {done:,} in {elapsed:.1f}s = {rate:,.0f} calls/s")
    return rate, done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--seconds",
        type=float,
        default=0,
        help="measure each phase for this long instead of pushing every lane (0: all of them)",
    )
    args = parser.parse_args()

    import django

    django.setup()
    import requests
    from django.db import connection

    if connection.vendor != "postgresql":
        raise SystemExit("Run this against PostgreSQL: DATABASE_URL=postgres://...")
    context = multiprocessing.get_context("spawn")
    queue, stop = context.Queue(), context.Event()
    server = context.Process(target=_serve_fake, args=(queue, stop), daemon=True)
    server.start()
    url = queue.get(timeout=30)
    try:
        recreate_database()
        connection.close()
        started = time.perf_counter()
        lane_ids = setup(args.customers)
        print(
            f"setup: {args.customers:,} customers x {len(METERS)} meters = {len(lane_ids):,} lanes, "
            f"{len(lane_ids) * 3:,} events rolled up, in {time.perf_counter() - started:.1f}s"
        )

        first, first_calls = baseline(args.workers, url, len(lane_ids), 1, args.seconds)
        start_at = time.time() + 6
        chunks = [(start_at, url, lane_ids[i :: args.workers], args.seconds) for i in range(args.workers)]
        elapsed, sent = run(args.workers, _push_worker, chunks)
        rate = sent / elapsed
        print(f"usage push: {sent:,} pushes in {elapsed:.1f}s = {rate:,.0f} pushes/s")
        second, second_calls = baseline(args.workers, url, len(lane_ids), 2, args.seconds)
        mean = statistics.mean([first, second])
        print(f"ratio push / mean baseline: {rate / mean:.2f}")

        stats = requests.get(f"{url}/_fake/stats", headers={"Authorization": "Bearer sk_test_stats"}, timeout=10).json()
        from metering.push.models import UsagePush

        pushed = UsagePush.objects.filter(status="sent").count()
        counted = stats["counted_meter_events"] - first_calls - second_calls
        print(
            f"check: {pushed:,} pushes sent, the fake counted {counted:,} pushed meter events, "
            f"{len(stats['violations'])} parameter violations"
        )
    finally:
        stop.set()
        server.join(timeout=10)


if __name__ == "__main__":
    main()
