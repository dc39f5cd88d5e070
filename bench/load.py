"""The API under a fixed offered load: reads and event batches at 50, 100 and 200 requests/s.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/billing_bench_load .venv/bin/python bench/load.py

An open-loop generator (no dependency: threads and http.client): requests are sent at scheduled instants
whatever the server's answers, and each latency is measured from its scheduled instant, so a slow server
cannot slow the offered rate down and hide its queue (no coordinated omission). It is bounded: every
phase sends exactly rate x --seconds requests to 127.0.0.1 and stops.

The server is gunicorn started as the README tells production users (`-c billing_site/gunicorn.conf.py`,
WEB_CONCURRENCY workers). For each rate, two phases of the same length:
1. baseline: GET /healthz at that rate (what the server, the client and the machine cost with no work);
2. the mix at that rate, in equal parts: GET /customers/{id}, GET /invoices?customer=,
   GET /subscriptions/{id}/upcoming-invoice, and POST /events with a batch of --batch events.
It prints p50/p99 and errors per kind of request and for the baseline. The target: p99 of the reads under
30 ms at 100 req/s. The database is migrated and filled with --customers customers, each with a
subscription; give it a scratch database.
"""

from __future__ import annotations

import argparse
import http.client
import math
import secrets
import sys
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from queue import Empty, Queue

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import os

# The bench process itself loads the settings (to migrate and make its key): not DEBUG, like the server.
os.environ.setdefault("PUBLIC_BASE_URL", "http://127.0.0.1:8765")

import orjson
from django.core.management import call_command

from bench.ingest import PORT, start_server
from billing_site.services import api_key_create

READS = ("customer", "invoice_list", "upcoming_invoice")


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)] if ordered else float("nan")


def call(conn: http.client.HTTPConnection, method: str, path: str, key: str, body: bytes | None = None) -> dict:
    headers = {"Authorization": f"Bearer {key}"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    payload = response.read()
    if response.status >= 300:
        raise SystemExit(f"setup {method} {path}: HTTP {response.status} {payload[:300]!r}")
    return orjson.loads(payload) if payload else {}


def setup(key: str, customers: int) -> list[tuple[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
    tag = secrets.token_hex(3)
    call(
        conn, "POST", "/api/v1/meters", key, orjson.dumps({"code": f"load-{tag}", "name": "load", "aggregation": "sum"})
    )
    product = call(conn, "POST", "/api/v1/products", key, orjson.dumps({"name": f"load {tag}"}))
    price = call(
        conn,
        "POST",
        "/api/v1/prices",
        key,
        orjson.dumps(
            {
                "type": "product",
                "product": product["id"],
                "duration": {"amount": 1, "unit": "month"},
                "amount": {"model": "fixed", "currency": "usd", "unit": "2500", "flat": 0},
            }
        ),
    )
    made = []
    for i in range(customers):
        customer = call(
            conn,
            "POST",
            "/api/v1/customers",
            key,
            orjson.dumps({"external_id": f"load-{tag}-{i}", "name": f"Load {i}", "currency": "usd"}),
        )
        subscription = call(
            conn,
            "POST",
            "/api/v1/subscriptions",
            key,
            orjson.dumps(
                {
                    "customer": customer["id"],
                    "items": [{"price": price["id"], "quantity": 1}],
                    "collection_method": "send_invoice",
                }
            ),
        )
        made.append((customer["id"], subscription["id"]))
    return made, f"load-{tag}"


class Generator:
    """Sends scheduled requests from a pool of threads with keep-alive connections."""

    def __init__(self, key: str, threads: int) -> None:
        self.key, self.threads = key, threads

    def run(
        self, requests: list[tuple[float, str, str, str, bytes | None]], from_send: bool = False
    ) -> dict[str, dict]:
        """Latency from each request's scheduled instant (open loop), or from its sending (`from_send`)."""
        queue: Queue = Queue()
        for item in requests:
            queue.put(item)
        results: dict[str, list[float]] = defaultdict(list)
        errors: dict[str, int] = defaultdict(int)
        lock = threading.Lock()
        start = time.perf_counter() + 0.2

        def work() -> None:
            conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
            while True:
                try:
                    due, kind, method, path, body = queue.get_nowait()
                except Empty:
                    conn.close()
                    return
                wait = start + due - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
                headers = {"Authorization": f"Bearer {self.key}"}
                if body is not None:
                    headers["Content-Type"] = "application/json"
                ok = False
                sent = time.perf_counter()
                try:
                    conn.request(method, path, body=body, headers=headers)
                    response = conn.getresponse()
                    response.read()
                    ok = response.status < 400
                except (OSError, http.client.HTTPException):
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
                latency = (time.perf_counter() - (sent if from_send else start + due)) * 1000
                with lock:
                    results[kind].append(latency)
                    if not ok:
                        errors[kind] += 1

        pool = [threading.Thread(target=work) for _ in range(self.threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        elapsed = time.perf_counter() - start
        total = sum(len(v) for v in results.values())
        return {
            kind: {
                "n": len(samples),
                "p50": percentile(samples, 0.5),
                "p99": percentile(samples, 0.99),
                "errors": errors[kind],
                "achieved": total / elapsed,
            }
            for kind, samples in results.items()
        }


def schedule(rate: int, seconds: float, make) -> list:
    n = int(rate * seconds)
    return [(i / rate, *make(i)) for i in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="50,100,200")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each phase")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (WEB_CONCURRENCY)")
    parser.add_argument("--threads", type=int, default=32, help="client threads (open loop: enough to never wait)")
    parser.add_argument("--customers", type=int, default=50)
    parser.add_argument("--batch", type=int, default=100, help="events per POST /events")
    parser.add_argument(
        "--serial",
        type=int,
        default=0,
        help="also send each kind of request N times one after another (no queue: the cost of one request)",
    )
    args = parser.parse_args()

    call_command("migrate", verbosity=0)
    _, key = api_key_create(name=f"load-{secrets.token_hex(4)}", scopes=["admin"])
    server = start_server(args.workers)
    try:
        pairs, meter_code = setup(key, args.customers)
        generator = Generator(key, args.threads)
        run = secrets.token_hex(3)

        def mix(i: int) -> tuple[str, str, str, bytes | None]:
            customer, subscription = pairs[i % len(pairs)]
            kind = ("customer", "invoice_list", "upcoming_invoice", "events")[i % 4]
            if kind == "customer":
                return kind, "GET", f"/api/v1/customers/{customer}", None
            if kind == "invoice_list":
                return kind, "GET", f"/api/v1/invoices?customer={customer}", None
            if kind == "upcoming_invoice":
                return kind, "GET", f"/api/v1/subscriptions/{subscription}/upcoming-invoice", None
            now = datetime.now(tz=UTC)
            events = [
                {
                    "customer": customer,
                    "meter": meter_code,
                    "value": "1",
                    "timestamp": (now - timedelta(seconds=j)).isoformat(),
                    "idempotency_key": f"{run}-{i}-{j}",
                }
                for j in range(args.batch)
            ]
            return kind, "POST", "/api/v1/events", orjson.dumps({"events": events})

        # Warm-up: every kind of request once per customer, at a gentle rate.
        generator.run(schedule(50, 2, mix))
        print(f"gunicorn {args.workers} sync workers; {args.seconds:.0f} s per phase; events batches of {args.batch}")
        print(f"{'rate':>5} {'request':<18} {'n':>5} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6}  achieved req/s")
        for rate in (int(r) for r in args.rates.split(",")):
            base = generator.run(schedule(rate, args.seconds, lambda i: ("healthz", "GET", "/healthz", None)))
            body = schedule(rate, args.seconds, mix)
            measured = generator.run(body)
            for kind, m in [("healthz", base["healthz"]), *sorted(measured.items())]:
                print(
                    f"{rate:>5} {kind:<18} {m['n']:>5} {m['p50']:>8.1f} {m['p99']:>8.1f} {m['errors']:>6}  "
                    f"{m['achieved']:.0f}"
                )
            reads = [measured[k]["p99"] for k in READS]
            print(
                f"{rate:>5} {'reads p99 (worst)':<18} {max(reads):>23.1f}  vs healthz p99 {base['healthz']['p99']:.1f}"
                f" (ratio {max(reads) / base['healthz']['p99']:.1f}x)"
            )
        if args.serial:
            print(f"one at a time, {args.serial} of each: p50 / p99 ms, and p50 vs healthz p50")
            kinds = {
                "healthz": lambda i: ("healthz", "GET", "/healthz", None),
                **{
                    k: (lambda i, k=k: mix(4 * i + ("customer", "invoice_list", "upcoming_invoice", "events").index(k)))
                    for k in (*READS, "events")
                },
            }
            serial = {}
            for kind, make in kinds.items():
                serial[kind] = Generator(key, 1).run([(0.0, *make(i)) for i in range(args.serial)], from_send=True)[
                    kind
                ]
            for kind, m in serial.items():
                print(
                    f"      {kind:<18} {m['p50']:>8.1f} {m['p99']:>8.1f} {m['errors']:>6}  "
                    f"{m['p50'] / serial['healthz']['p50']:.1f}x"
                )
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
