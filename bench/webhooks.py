"""Outbound webhook throughput: fan-out of the outbox plus signed delivery to a local HTTP server.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/billing_bench_webhooks .venv/bin/python bench/webhooks.py

Pipeline (what production does, minus the broker): N `customer.updated` events are already in the outbox
(written in bulk, as the renewal writer does); `events_dispatch` fans them out to E enabled endpoints
(deliveries written, payloads rendered once per event by the customers API serializer), and each batch's
delivery ids, queued on commit, are taken by W worker threads (as W Celery workers would take the
`webhooks.deliver` tasks) that run `delivery_attempt`: claim by compare-and-set, sign (Standard
Webhooks), POST, record the attempt and the new state. Measured: deliveries per second from the start of
the fan-out to the last recorded attempt.

Baseline, in the same run, before and after: the same number of POSTs of the same bodies, signed the same
way and sent with the same HTTP client (`webhooks.sender.webhook_post`: SSRF check, a fresh connection,
the 4 KiB answer limit) by the same W threads, to the same server, with no database at all. The ratio
says what the outbox, the claims and the attempt rows cost on top of the HTTP itself.

The receiver runs in its own process (answers 200 at once) so it does not share the benchmark's GIL. The
database named by DATABASE_URL is dropped and recreated: its name must contain "bench".
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import queue
import sys
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_site.settings")
os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-0123456789abcdefghij")
os.environ.setdefault("PUBLIC_BASE_URL", "http://127.0.0.1:8000")
os.environ.setdefault("ALLOWED_HOSTS", "127.0.0.1")
os.environ.setdefault("LOG_LEVEL", "WARNING")
# The receiver is on 127.0.0.1 over plain http.
os.environ["WEBHOOKS_ALLOW_PRIVATE_URLS"] = "true"
os.environ["WEBHOOKS_ALLOW_HTTP"] = "true"
# Nothing may reach a broker: fan-out's on-commit queueing is replaced by an in-process queue below.
os.environ.setdefault("CELERY_BROKER_URL", "memory://")


def _receiver(port_out: multiprocessing.Queue, counter: multiprocessing.Value) -> None:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            with counter.get_lock():
                counter.value += 1
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    port_out.put(server.server_address[1])
    server.serve_forever()


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


def setup(events: int, endpoints: int, url: str) -> None:
    from django.core.management import call_command

    from customers.models import Customer
    from webhooks.endpoints import endpoint_create
    from webhooks.models import BillingEvent

    call_command("migrate", verbosity=0)
    now = datetime.now(UTC)
    customers = Customer.objects.bulk_create(
        [Customer(external_id=f"bench-{i}", name=f"Tenant {i}", email=f"t{i}@example.com") for i in range(100)]
    )
    for i in range(endpoints):
        endpoint_create(url=f"{url}/hook/{i}", enabled_events=["customer.*"], now=now)
    BillingEvent.objects.bulk_create(
        [
            BillingEvent(
                type="customer.updated",
                object_type="customer",
                object_id=customers[i % len(customers)].id,
                customer_id=customers[i % len(customers)].id,
                data={},
                previous_attributes={"name": "old name"},
                created_at=now,
            )
            for i in range(events)
        ],
        batch_size=1000,
    )


def sample_bodies(count: int) -> list[str]:
    """Bodies exactly like the deliveries' (the envelope rendered by the API serializer), for the baseline."""
    from billing_site.renderers import dumps
    from webhooks.models import BillingEvent
    from webhooks.rendering import envelope, event_objects_render

    events = list(BillingEvent.objects.order_by("id")[:count])
    objects = event_objects_render(events)
    return [dumps(envelope(e, objects[e.pk])).decode() for e in events]


def _run_threads(workers: int, target, args_of) -> None:
    threads = [threading.Thread(target=target, args=args_of(i)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def baseline(total: int, workers: int, url: str, bodies: list[str], secret: str) -> float:
    """Signed POSTs with the same client, no database: deliveries/s."""
    from webhooks.sender import webhook_post
    from webhooks.signing import signature_headers

    counts = [total // workers + (1 if i < total % workers else 0) for i in range(workers)]
    failures: list[str] = []

    def send(n: int, offset: int) -> None:
        for k in range(n):
            body = bodies[(offset + k) % len(bodies)]
            headers = signature_headers(
                msg_id=f"bev_{offset + k}", timestamp=datetime.now(UTC), body=body, secrets_=[secret]
            )
            result = webhook_post(url=f"{url}/hook/0", body=body.encode(), headers=headers, timeout=10)
            if not result.succeeded:
                failures.append(result.error)

    started = time.perf_counter()
    _run_threads(workers, send, lambda i: (counts[i], sum(counts[:i])))
    elapsed = time.perf_counter() - started
    if failures:
        raise SystemExit(f"baseline: {len(failures)} failed sends, e.g. {failures[0]}")
    return total / elapsed


def pipeline(expected: int, workers: int) -> tuple[float, float]:
    """Fan-out + delivery with W workers: (deliveries/s, fan-out seconds)."""
    from django.db import connection
    from django.utils import timezone

    from webhooks import delivery
    from webhooks.models import WebhookDelivery

    todo: queue.Queue[str | None] = queue.Queue()
    delivery._enqueue = lambda ids: [todo.put(i) for i in ids]  # what deliver.delay would queue
    outcomes: list[str] = []

    def worker() -> None:
        try:
            while (delivery_id := todo.get()) is not None:
                outcomes.append(delivery.delivery_attempt(delivery_id=delivery_id, now=timezone.now()))
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    fanned = delivery.events_dispatch(now=timezone.now())
    fanout = time.perf_counter() - started
    for _ in threads:
        todo.put(None)
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    succeeded = WebhookDelivery.objects.filter(status="succeeded").count()
    if fanned["deliveries"] != expected or succeeded != expected or outcomes.count("succeeded") != expected:
        raise SystemExit(f"pipeline: {fanned}, {succeeded} succeeded rows, outcomes {len(outcomes)}")
    return expected / elapsed, fanout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--endpoints", type=int, default=2)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()

    import django

    django.setup()
    recreate_database()
    from django.db import connection

    connection.close()

    ports: multiprocessing.Queue = multiprocessing.Queue()
    received = multiprocessing.Value("i", 0)
    receiver = multiprocessing.Process(target=_receiver, args=(ports, received), daemon=True)
    receiver.start()
    url = f"http://127.0.0.1:{ports.get(timeout=10)}"
    try:
        setup(args.events, args.endpoints, url)
        from webhooks.models import WebhookEndpoint

        secret = WebhookEndpoint.objects.first().secret
        bodies = sample_bodies(200)
        total = args.events * args.endpoints
        print(
            f"{args.events} events x {args.endpoints} endpoints = {total} deliveries, {args.workers} workers, "
            f"body ~{sum(map(len, bodies)) // len(bodies)} bytes"
        )
        before = baseline(total, args.workers, url, bodies, secret)
        print(f"baseline 1 (signed POSTs, same client, no database): {before:,.0f} deliveries/s")
        rate, fanout = pipeline(total, args.workers)
        print(f"pipeline (fan-out + claim + sign + POST + attempt row): {rate:,.0f} deliveries/s")
        print(f"  of which the fan-out (deliveries and payloads written): {fanout:.2f} s")
        after = baseline(total, args.workers, url, bodies, secret)
        print(f"baseline 2: {after:,.0f} deliveries/s")
        mean = (before + after) / 2
        print(f"ratio pipeline / mean baseline: {rate / mean:.2f}")
        print(f"receiver counted {received.value} requests (expected {3 * total})")
    finally:
        receiver.terminate()


if __name__ == "__main__":
    main()
