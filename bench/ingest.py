"""Usage ingestion throughput and cost: HTTP batches through the real service vs. the plain baseline.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/billing_bench_ingest .venv/bin/python bench/ingest.py

The baseline is the one issue 15 defines: the same rows, written by plain COPY into a temporary table and
`INSERT ... SELECT ... ON CONFLICT DO NOTHING` into a table of the same columns that has only the same
unique key (customer_id, idempotency_key) and one time index (timestamp), over as many connections as
the server has workers, one transaction per batch of 1,000. Everything runs in one process and one run,
so the machine's noise hits both sides alike:

1. baseline (run 1), 2. HTTP: gunicorn started as the README tells production users
   (`gunicorn -c billing_site/gunicorn.conf.py`), clients POSTing `{"events": [...]}` batches of 1,000 with
   keep-alive, 3. baseline (run 2); the ratio uses the mean of both baseline runs.

For each phase it reports events/s, CPU ms per 1,000 events spent in the web workers (or the baseline's
client) and in the PostgreSQL backends serving them (read from /proc for the backends' pids, so other
databases on a shared server do not count), and bytes per event on disk (heap + indexes + TOAST of the
tables written) for the events written by that phase.

The database named by DATABASE_URL is migrated and its events truncated: give it a scratch database.
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
from metering.models import Meter  # noqa: E402

BATCH = 1_000
PORT = 8765
PLAIN = "bench_plain_events"
TICKS = os.sysconf("SC_CLK_TCK")
# What ingestion writes: the events, their dedup keys, and the dirty-hour bookkeeping.
EVENT_TABLES = ("metering_meterevent", "metering_metereventkey")
DIRTY_TABLE = "metering_usagedirtyhour"


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
                    "dimensions": {"region": ("eu", "us", "ap")[n % 3]},
                }
            )
        batches.append(events)
    return batches


def dsn() -> str:
    s = connection.settings_dict
    return f"host={s['HOST']} port={s['PORT'] or 5432} dbname={s['NAME']} user={s['USER']} password={s['PASSWORD']}"


def cpu_ticks(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total


def backend_pids(exclude: int) -> list[int]:
    """PostgreSQL backends connected to the bench database (the server may serve other databases)."""
    import psycopg

    with psycopg.connect(dsn(), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return [pid for (pid,) in rows if pid != exclude]


def relation_bytes(tables: tuple[str, ...]) -> int:
    with connection.cursor() as cursor:
        total = 0
        for table in tables:
            cursor.execute("SELECT to_regclass(%s)", [table])
            if cursor.fetchone()[0] is None:
                continue
            # A partitioned table has no storage of its own: add its partitions (and their indexes).
            cursor.execute(
                "SELECT coalesce(sum(pg_total_relation_size(relid)), 0) FROM pg_partition_tree(%s::regclass)",
                [table],
            )
            partitions = int(cursor.fetchone()[0])
            cursor.execute("SELECT pg_total_relation_size(%s::regclass)", [table])
            total += partitions or int(cursor.fetchone()[0])
        return total


def vacuum(tables: tuple[str, ...]) -> None:
    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute("SELECT to_regclass(%s)", [table])
            if cursor.fetchone()[0] is not None:
                cursor.execute(f"VACUUM ANALYZE {table}")


def count_rows(table: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {table}")
        return int(cursor.fetchone()[0])


def reset_tables() -> None:
    with connection.cursor() as cursor:
        existing = []
        for table in (*EVENT_TABLES, DIRTY_TABLE, "metering_usagehourly"):
            cursor.execute("SELECT to_regclass(%s)", [table])
            if cursor.fetchone()[0] is not None:
                existing.append(table)
        cursor.execute(f"TRUNCATE {', '.join(existing)}")
        cursor.execute(f"DROP TABLE IF EXISTS {PLAIN}")
        # The plain table: the columns an event carries, the same unique key, one time index, nothing else.
        cursor.execute(
            f"CREATE TABLE {PLAIN} (id bigint GENERATED BY DEFAULT AS IDENTITY, customer_id text NOT NULL, "
            "meter_id text NOT NULL, value numeric NOT NULL, timestamp timestamptz NOT NULL, idempotency_key text, "
            "dimensions jsonb NOT NULL, ingested_at timestamptz NOT NULL, "
            f"CONSTRAINT {PLAIN}_key UNIQUE (customer_id, idempotency_key))"
        )
        cursor.execute(f"CREATE INDEX {PLAIN}_ts ON {PLAIN} (timestamp)")


class Phase:
    """Wall time and CPU of a set of client processes and of the PostgreSQL backends."""

    def __init__(self, name: str) -> None:
        self.name = name

    def start(self, client_pids: list[int], backends: list[int]) -> None:
        self.client_pids, self.backends = client_pids, backends
        self.client0, self.pg0 = cpu_ticks(client_pids), cpu_ticks(backends)
        self.t0 = time.perf_counter()

    def stop(self, events: int) -> dict[str, float]:
        elapsed = time.perf_counter() - self.t0
        client = (cpu_ticks(self.client_pids) - self.client0) / TICKS
        pg = (cpu_ticks(self.backends) - self.pg0) / TICKS
        per = 1000 * 1000 / events  # ms per 1,000 events
        return {"rate": events / elapsed, "client_ms": client * per, "pg_ms": pg * per}


# --- baseline -------------------------------------------------------------------------------------


def baseline(batches: list[list[dict]], ext_to_id: dict[str, str], meter_id: str, workers: int) -> dict[str, float]:
    import psycopg

    # Rows are prepared before the clock starts: the baseline measures only what the database must do.
    prepared = []
    for events in batches:
        buf = io.StringIO()
        for e in events:
            dims = orjson.dumps(e["dimensions"]).decode().replace("\\", "\\\\")
            buf.write(f"{ext_to_id[e['external_id']]}\t{meter_id}\t{e['value']}\t{e['timestamp']}\t")
            buf.write(f"{e['idempotency_key']}\t{dims}\n")
        prepared.append(buf.getvalue())
    queue: Queue[str] = Queue()
    for data in prepared:
        queue.put(data)
    ready = threading.Barrier(workers + 1)
    go = threading.Event()
    pids: list[int] = []

    def work() -> None:
        with psycopg.connect(dsn(), autocommit=False) as conn, conn.cursor() as cur:
            pids.append(conn.info.backend_pid)
            cur.execute(
                "CREATE TEMP TABLE incoming (customer_id text, meter_id text, value numeric, ts timestamptz, "
                "idem text, dims jsonb) ON COMMIT DELETE ROWS"
            )
            conn.commit()
            ready.wait()
            go.wait()
            while True:
                try:
                    data = queue.get_nowait()
                except Empty:
                    return
                with cur.copy("COPY incoming FROM STDIN") as copy:
                    copy.write(data)
                cur.execute(
                    f"INSERT INTO {PLAIN} (customer_id, meter_id, value, timestamp, idempotency_key, dimensions, "
                    "ingested_at) SELECT customer_id, meter_id, value, ts, idem, dims, now() FROM incoming "
                    "ON CONFLICT (customer_id, idempotency_key) DO NOTHING"
                )
                conn.commit()

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for t in threads:
        t.start()
    ready.wait()
    phase = Phase("baseline")
    phase.start([os.getpid()], list(pids))
    go.set()
    for t in threads:
        t.join()
    return phase.stop(len(batches) * BATCH)


# --- http -----------------------------------------------------------------------------------------


def start_server(workers: int) -> subprocess.Popen:
    env = {**os.environ, "DEBUG": "false", "WEB_CONCURRENCY": str(workers), "PORT": str(PORT)}
    env.setdefault("PUBLIC_BASE_URL", f"http://127.0.0.1:{PORT}")
    env.setdefault("GUNICORN_BIND", f"127.0.0.1:{PORT}")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "billing_site/gunicorn.conf.py", "--log-level", "warning"],
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


def send(bodies: list[bytes], key: str, clients: int) -> int:
    queue: Queue[bytes] = Queue()
    for body in bodies:
        queue.put(body)
    created = [0]
    lock = threading.Lock()
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    errors: list[str] = []

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
                errors.append(f"HTTP {response.status}: {payload[:300]!r}")
                return
            # The counts are at the head of the body; no need to parse 1,000 results.
            count = int(payload[11 : payload.index(b",")])
            with lock:
                created[0] += count

    threads = [threading.Thread(target=work) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise SystemExit(errors[0])
    return created[0]


def worker_pids(server: subprocess.Popen) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(server.pid)], capture_output=True, text=True, check=False)
    return [int(p) for p in out.stdout.split()]


def show(label: str, m: dict[str, float], client: str) -> None:
    print(
        f"{label:<12} {m['rate']:>9,.0f} events/s   CPU per 1,000 events: {client} {m['client_ms']:5.1f} ms, "
        f"postgres {m['pg_ms']:5.1f} ms, all {m['client_ms'] + m['pg_ms']:5.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=150, help="batches of 1,000 per measured phase")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (and baseline connections)")
    parser.add_argument("--clients", type=int, default=2, help="concurrent HTTP clients")
    parser.add_argument("--customers", type=int, default=50)
    parser.add_argument("--keep", action="store_true", help="leave the server running for a profiler (prints pids)")
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        raise SystemExit("Run this against PostgreSQL: DATABASE_URL=postgres://...")

    call_command("migrate", verbosity=0)
    customers = [f"bench-tenant-{i}" for i in range(args.customers)]
    for ext in customers:
        Customer.objects.get_or_create(external_id=ext, defaults={"name": ext})
    meter, _ = Meter.objects.get_or_create(code="bench-calls", defaults={"name": "Bench", "aggregation": "sum"})
    ext_to_id = dict(Customer.objects.filter(external_id__in=customers).values_list("external_id", "id"))
    _, key = api_key_create(name=f"bench-{secrets.token_hex(4)}", scopes=["usage:write"])
    now = datetime.now(tz=UTC)
    if hasattr(sys.modules.get("metering.partitions"), "partitions_ensure"):
        sys.modules["metering.partitions"].partitions_ensure(now=now)

    run = secrets.token_hex(3)
    base_batches = make_batches(args.batches, customers, f"b1-{run}", now)
    http_batches = make_batches(args.batches, customers, f"h-{run}", now)
    base2_batches = make_batches(args.batches, customers, f"b2-{run}", now)
    bodies = [orjson.dumps({"events": events}) for events in http_batches]
    warmup = [orjson.dumps({"events": events}) for events in make_batches(4, customers, f"w-{run}", now)]

    reset_tables()
    connection.close()
    base1 = baseline(base_batches, ext_to_id, meter.id, args.workers)
    show("baseline 1", base1, "client ")
    vacuum((PLAIN,))
    plain_bytes = relation_bytes((PLAIN,)) / count_rows(PLAIN)

    server = start_server(args.workers)
    try:
        send(warmup, key, args.clients)  # imports, pooled connections, the staging tables
        workers = worker_pids(server)
        phase = Phase("http")
        phase.start([server.pid, *workers], backend_pids(exclude=0))
        created = send(bodies, key, args.clients)
        http_m = phase.stop(len(bodies) * BATCH)
        show("http", http_m, "workers")
        if created != len(bodies) * BATCH:
            raise SystemExit(f"created {created} of {len(bodies) * BATCH}")
        if args.keep:
            print(f"server pid {server.pid}, workers {workers}; Ctrl-C to stop")
            while True:
                time.sleep(60)
    finally:
        server.terminate()
        server.wait(timeout=30)

    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {PLAIN}")
    connection.close()
    base2 = baseline(base2_batches, ext_to_id, meter.id, args.workers)
    show("baseline 2", base2, "client ")
    mean = (base1["rate"] + base2["rate"]) / 2
    print(f"ratio http / mean baseline: {http_m['rate'] / mean:.2f}")

    vacuum((*EVENT_TABLES, DIRTY_TABLE))
    events = count_rows("metering_meterevent")
    ours = relation_bytes(EVENT_TABLES) / events
    print(
        f"bytes per event (heap + indexes + TOAST, after VACUUM): plain table {plain_bytes:,.0f}, "
        f"events tables {ours:,.0f} ({ours / plain_bytes:.2f}x), "
        f"dirty-hour bookkeeping {relation_bytes((DIRTY_TABLE,)) / events:,.1f}"
    )


if __name__ == "__main__":
    main()
