"""Usage ingestion throughput: HTTP batches through the real service vs. a raw COPY + INSERT baseline.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/billing_bench_ingest .venv/bin/python bench/ingest.py

What it does, all in one run so the machine's noise hits both sides alike:
1. baseline: the same rows, written straight into the events table with COPY into a temporary table and
   INSERT ... SELECT ... ON CONFLICT (customer_id, idempotency_key) DO NOTHING, in batches of 1,000 over
   as many connections as the server has workers;
2. http: gunicorn serving the real app, clients POSTing `{"events": [...]}` batches of 1,000 with keep-alive;
3. the baseline again (the table has grown; the ratio uses the mean of both baseline runs);
4. optionally (--memory) 1,000,000 events through HTTP while sampling the workers' RSS.

The database named by DATABASE_URL is migrated and its events table truncated: give it a scratch database.
"""

from __future__ import annotations

import argparse
import http.client
import io
import os
import secrets
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from queue import Empty, Queue

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_site.settings")
os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-0123456789abcdefghij")
os.environ.setdefault("ALLOWED_HOSTS", "127.0.0.1")
os.environ.setdefault("LOG_LEVEL", "WARNING")

import django  # noqa: E402

django.setup()

import orjson  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

from billing_site.services import api_key_create  # noqa: E402
from customers.models import Customer  # noqa: E402
from metering.ids import new_token  # noqa: E402
from metering.models import Meter, MeterEvent, UsageDirtyHour  # noqa: E402

BATCH = 1_000
PORT = 8765


def make_batches(n_batches: int, customers: list[str], tag: str, now: datetime) -> list[list[dict]]:
    batches = []
    for b in range(n_batches):
        events = []
        for i in range(BATCH):
            n = b * BATCH + i
            events.append(
                {
                    "external_id": customers[n % len(customers)],
                    "meter": "bench-calls",
                    "value": str(1 + n % 7),
                    # Spread over the last day, as a live service would receive them.
                    "timestamp": (now - timedelta(seconds=n % 86_400)).isoformat().replace("+00:00", "Z"),
                    "idempotency_key": f"{tag}-{n}",
                    "dimensions": {"region": ("eu", "us", "ap")[n % 3], "endpoint": f"/v1/items/{n % 50}"},
                }
            )
        batches.append(events)
    return batches


def reset_table() -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {MeterEvent._meta.db_table}, {UsageDirtyHour._meta.db_table}")


# --- baseline -------------------------------------------------------------------------------------


def baseline(batches: list[list[dict]], ext_to_id: dict[str, str], meter_id: str, workers: int) -> float:
    import psycopg

    settings = connection.settings_dict
    dsn = (
        f"host={settings['HOST']} port={settings['PORT'] or 5432} dbname={settings['NAME']} "
        f"user={settings['USER']} password={settings['PASSWORD']}"
    )
    table = MeterEvent._meta.db_table
    # Rows are prepared before the clock starts: the baseline measures only what the database must do.
    prepared = []
    for events in batches:
        buf = io.StringIO()
        for e in events:
            dims = orjson.dumps(e["dimensions"]).decode().replace("\\", "\\\\")
            buf.write(
                f"{new_token()}\t{ext_to_id[e['external_id']]}\t{meter_id}\t{e['value']}\t{e['timestamp']}\t"
                f"{e['idempotency_key']}\t{dims}\n"
            )
        prepared.append(buf.getvalue())
    queue: Queue[str] = Queue()
    for data in prepared:
        queue.put(data)

    def work() -> None:
        with psycopg.connect(dsn, autocommit=False) as conn, conn.cursor() as cur:
            cur.execute(
                "CREATE TEMP TABLE incoming (token text, customer_id text, meter_id text, value numeric, "
                "ts timestamptz, idem text, dims jsonb) ON COMMIT DELETE ROWS"
            )
            conn.commit()
            while True:
                try:
                    data = queue.get_nowait()
                except Empty:
                    return
                with cur.copy("COPY incoming FROM STDIN") as copy:
                    copy.write(data)
                cur.execute(
                    f"INSERT INTO {table} (token, customer_id, meter_id, value, timestamp, idempotency_key, "
                    "dimensions, ingested_at, cancel_reason) SELECT token, customer_id, meter_id, value, ts, "
                    "idem, dims, now(), '' FROM incoming ON CONFLICT (customer_id, idempotency_key) DO NOTHING"
                )
                conn.commit()

    started = time.perf_counter()
    threads = [threading.Thread(target=work) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    return len(batches) * BATCH / elapsed


# --- http -----------------------------------------------------------------------------------------


def start_server(workers: int) -> subprocess.Popen:
    env = {**os.environ, "DEBUG": "false"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "billing_site.wsgi:application",
            "--bind",
            f"127.0.0.1:{PORT}",
            "--workers",
            str(workers),
            "--worker-class",
            "sync",
            "--keep-alive",
            "30",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
    )
    for _ in range(100):
        try:
            conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("gunicorn did not start")


def send(bodies: list[bytes], key: str, clients: int, on_progress=None) -> tuple[float, int]:
    queue: Queue[bytes] = Queue()
    for body in bodies:
        queue.put(body)
    created = [0]
    lock = threading.Lock()
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    def work() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=120)
        while True:
            try:
                body = queue.get_nowait()
            except Empty:
                conn.close()
                return
            conn.request("POST", "/api/v1/events", body=body, headers=headers)
            response = conn.getresponse()
            payload = response.read()
            if response.status != 200:
                raise SystemExit(f"HTTP {response.status}: {payload[:300]!r}")
            # The counts are at the head of the body; no need to parse 1,000 results.
            count = int(payload[11 : payload.index(b",")])
            with lock:
                created[0] += count
            if on_progress:
                on_progress()

    started = time.perf_counter()
    threads = [threading.Thread(target=work) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    return len(bodies) * BATCH / elapsed, created[0]


def rss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total


def worker_pids(server: subprocess.Popen) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(server.pid)], capture_output=True, text=True, check=False)
    return [int(p) for p in out.stdout.split()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=200, help="batches of 1,000 per measured phase")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (and baseline connections)")
    parser.add_argument("--clients", type=int, default=4, help="concurrent HTTP clients")
    parser.add_argument("--memory", type=int, default=0, help="also ingest this many events watching RSS")
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        raise SystemExit("Run this against PostgreSQL: DATABASE_URL=postgres://...")

    call_command("migrate", verbosity=0)
    customers = [f"bench-tenant-{i}" for i in range(20)]
    for ext in customers:
        Customer.objects.get_or_create(external_id=ext, defaults={"name": ext})
    meter, _ = Meter.objects.get_or_create(code="bench-calls", defaults={"name": "Bench", "aggregation": "sum"})
    ext_to_id = dict(Customer.objects.filter(external_id__in=customers).values_list("external_id", "id"))
    _, key = api_key_create(name=f"bench-{secrets.token_hex(4)}", scopes=["usage:write"])
    now = datetime.now(tz=UTC)

    run = secrets.token_hex(3)
    base_batches = make_batches(args.batches, customers, f"b1-{run}", now)
    http_batches = make_batches(args.batches, customers, f"h-{run}", now)
    base2_batches = make_batches(args.batches, customers, f"b2-{run}", now)
    bodies = [orjson.dumps({"events": events}) for events in http_batches]
    warmup = [orjson.dumps({"events": events}) for events in make_batches(5, customers, f"w-{run}", now)]

    reset_table()
    connection.close()
    base1 = baseline(base_batches, ext_to_id, meter.id, args.workers)
    print(f"baseline 1: {base1:,.0f} events/s")

    server = start_server(args.workers)
    try:
        send(warmup, key, args.clients)  # warm-up: imports, connections, the staging tables
        rate, created = send(bodies, key, args.clients)
        print(f"http:       {rate:,.0f} events/s  (created {created:,} of {len(bodies) * BATCH:,})")

        base2 = baseline(base2_batches, ext_to_id, meter.id, args.workers)
        print(f"baseline 2: {base2:,.0f} events/s")
        ratio = rate / ((base1 + base2) / 2)
        print(f"ratio http / baseline: {ratio:.2f}")

        if args.memory:
            n = args.memory // BATCH
            pids = worker_pids(server)
            samples: list[tuple[int, int]] = []
            done = [0]

            def progress() -> None:
                done[0] += 1
                if done[0] % max(1, n // 20) == 0:
                    samples.append((done[0] * BATCH, rss_kib(pids)))

            # Generated and sent in chunks so the client's own memory does not grow with the run.
            total_rate, total_created, chunk = 0.0, 0, 100
            started = time.perf_counter()
            for start in range(0, n, chunk):
                size = min(chunk, n - start)
                batch = make_batches(size, customers, f"m-{run}-{start}", now)
                _, c = send([orjson.dumps({"events": e}) for e in batch], key, args.clients, progress)
                total_created += c
            total_rate = n * BATCH / (time.perf_counter() - started)
            print(
                f"memory run: {n * BATCH:,} events, {total_created:,} created, {total_rate:,.0f} events/s "
                "(including generating the bodies)"
            )
            for events_done, kib in samples:
                print(f"  after {events_done:>9,} events: workers RSS {kib / 1024:,.1f} MiB")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
