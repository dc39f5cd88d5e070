"""Entitlements read latency: `GET /customers/{id}/entitlements`, as the operator's application calls it on
every request.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/billing_bench_entitlements \\
    REDIS_URL=redis://127.0.0.1:6379/8 .venv/bin/python bench/entitlements.py

Setup: N customers, each with a subscription to a price carrying three features (a boolean on the
product, a static value on the price, a metered limit on the price whose meter has usage this period).
Measured through the full stack in one process (Django's test client: middleware, API key auth, scope
and tenant checks, rendering), one request at a time over random customers:

- baseline: `GET /customers/{id}`, a plain read of one row by primary key through the same stack;
- warm: `GET /customers/{id}/entitlements` answered from the cache (the common case);
- cold: the same, with the customer's cached answer dropped before each request (every read builds it:
  three queries plus one usage read);
and, below the HTTP layer, the selector on a warm cache against `Customer.objects.get(pk=...)`.

Figures: p50/p99 in ms and the ratio of each p99 to the baseline's p99, same run. With REDIS_URL the cache
is Redis (as in production); without it, the process-local memory cache. The database named by
DATABASE_URL is dropped and recreated: its name must contain "bench" (SQLite: a file under var/).
"""

from __future__ import annotations

import argparse
import os
import random
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
os.environ.setdefault("ALLOWED_HOSTS", "testserver,127.0.0.1")
os.environ.setdefault("LOG_LEVEL", "WARNING")
os.environ.setdefault("CELERY_BROKER_URL", "memory://")
os.environ.setdefault("API_RATE_LIMIT", "0")


def recreate_database() -> None:
    from django.conf import settings

    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        Path(db["NAME"]).unlink(missing_ok=True)
        return
    import psycopg

    if "bench" not in db["NAME"]:
        raise SystemExit("Refusing to drop a database whose name does not contain 'bench'.")
    conninfo = (
        f"host={db['HOST']} port={db['PORT'] or 5432} dbname=postgres user={db['USER']} password={db['PASSWORD']}"
    )
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{db["NAME"]}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{db["NAME"]}"')


def setup(n: int, events: int) -> tuple[list[str], str]:
    from django.core.management import call_command

    from billing_site.services import api_key_create
    from catalog.features import feature_attach, feature_create
    from catalog.services import price_create, product_create
    from customers.models import Customer
    from metering.ingest import usage_ingest
    from metering.models import Meter
    from subscriptions.services.lifecycle import ItemSpec, subscription_create

    call_command("migrate", verbosity=0)
    now = datetime.now(UTC)
    start = now - timedelta(days=3)
    meter = Meter.objects.create(code="bench-api", name="API calls", aggregation="sum")
    product = product_create(name="Pro", now=start)
    price = price_create(
        type="product",
        product_id=product.id,
        duration_amount=1,
        duration_unit="month",
        now=start,
        amount={"model": "fixed", "currency": "usd", "unit": "1000", "flat": 0},
    )
    sso = feature_create(lookup_key="sso", name="SSO", type="boolean", now=start)
    seats = feature_create(lookup_key="seats", name="Seats", type="static", now=start)
    calls = feature_create(lookup_key="api_calls", name="API calls", type="metered", meter=meter.id, now=start)
    feature_attach(feature=sso.id, product=product.id, now=start)
    feature_attach(feature=seats.id, price=price.id, value="25", now=start)
    from decimal import Decimal

    feature_attach(feature=calls.id, price=price.id, limit=Decimal(100_000), now=start)
    ids = []
    for i in range(n):
        customer = Customer.objects.create(external_id=f"bench-{i}", currency="usd")
        subscription_create(customer=customer, items=[ItemSpec(price=price, quantity=None)], now=start)
        ids.append(customer.id)
        batch = [
            {
                "customer": customer.id,
                "meter": "bench-api",
                "value": "3",
                "timestamp": (start + timedelta(minutes=j)).isoformat(),
            }
            for j in range(events)
        ]
        usage_ingest(events=batch, now=now)
    _, raw = api_key_create(name="bench", scopes=["admin"])
    return ids, raw


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def measure(fn, ids: list[str], requests: int) -> list[float]:  # type: ignore[no-untyped-def]
    rng = random.Random(7)
    for customer_id in ids[:50]:  # warm up connections and code paths
        fn(customer_id)
    samples = []
    for _ in range(requests):
        customer_id = rng.choice(ids)
        started = time.perf_counter()
        fn(customer_id)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=500)
    parser.add_argument("--events", type=int, default=20, help="usage events per customer this period")
    parser.add_argument("--requests", type=int, default=3000)
    args = parser.parse_args()

    import django

    django.setup()
    recreate_database()
    from django.conf import settings
    from django.test import Client

    from customers.entitlements_cache import entitlements_invalidate
    from customers.models import Customer
    from subscriptions.entitlements import customer_entitlements

    ids, raw = setup(args.customers, args.events)
    client = Client(HTTP_AUTHORIZATION=f"Bearer {raw}")

    def baseline(customer_id: str) -> None:
        assert client.get(f"/api/v1/customers/{customer_id}").status_code == 200

    def warm(customer_id: str) -> None:
        assert client.get(f"/api/v1/customers/{customer_id}/entitlements").status_code == 200

    def cold(customer_id: str) -> None:
        entitlements_invalidate([customer_id])
        warm(customer_id)

    now = datetime.now(UTC)
    for customer_id in ids:
        customer_entitlements(customer_id=customer_id, now=now)  # fill the cache
    results = {}
    results["baseline GET /customers/{id}"] = measure(baseline, ids, args.requests)
    results["warm GET /customers/{id}/entitlements"] = measure(warm, ids, args.requests)
    results["cold GET /customers/{id}/entitlements"] = measure(cold, ids, max(args.requests // 3, 100))
    results["selector: Customer.objects.get(pk)"] = measure(lambda c: Customer.objects.get(pk=c), ids, args.requests)
    results["selector: customer_entitlements (warm)"] = measure(
        lambda c: customer_entitlements(customer_id=c, now=now), ids, args.requests
    )
    engine = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
    cache = settings.CACHES["default"]["BACKEND"].rsplit(".", 1)[-1]
    print(f"database {engine}, cache {cache}, {args.customers} customers, {args.events} events each")
    http_base = percentiles(results["baseline GET /customers/{id}"])[1]
    sel_base = percentiles(results["selector: Customer.objects.get(pk)"])[1]
    for name, samples in results.items():
        p50, p99 = percentiles(samples)
        base = sel_base if name.startswith("selector") else http_base
        print(f"{name:<42} p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  p99 ratio {p99 / base:5.2f}")


if __name__ == "__main__":
    main()
