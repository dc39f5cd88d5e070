"""A local fake of Stripe's HTTP API, for tests and benchmarks that drive the real SDK.

It listens on 127.0.0.1 on an ephemeral port; point the SDK at it with `STRIPE_API_BASE` (or the
`base` argument of `billing_site.stripe_sdk.client_build`). It answers with Stripe's own example objects
(`stripe_fixtures3.json`, copied from the public stripe/openapi repository, MIT, see
`STRIPE_FIXTURES_LICENSE`), with only the fields a request is about overridden, and it checks every
request's parameters against the TypedDicts the SDK ships (`stripe/params/...`): a parameter Stripe
would refuse is answered with Stripe's 400 and recorded in `violations`, which the `fake_stripe` pytest
fixture asserts is empty at the end of a test.

What it keeps, as Stripe does:
- idempotency: a POST with an `Idempotency-Key` seen in the last 24 hours (by the fake's clock) gets the
  first answer again (`Idempotent-Replayed: true`); the same key with other parameters is a 400
  `idempotency_error`; a key whose first request is still running is a 409;
- meter events (`identifier` unique over a rolling 24 hours: a repeat inside that window is accepted and
  not counted again), cancellations of events received less than 24 hours ago, and the event summaries
  a meter reports per customer (sum, count or last, per hour or day or over the whole range);
- customers and meters (`add_meter`, `add_customer` for a test's setup).

It can be told to misbehave on the next matching requests (`fail_next`): answer 429 or 500 without
acting, act and then answer 500, hang (with or without acting) until the client gives up, or drop the
connection (with or without acting). Its clock is the wall clock unless a test sets `now`.

Routes are a table (`FakeStripe.route`), so other resources can be added the same way.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from stripe.params._customer_create_params import CustomerCreateParams
from stripe.params._customer_retrieve_params import CustomerRetrieveParams
from stripe.params.billing._meter_event_adjustment_create_params import MeterEventAdjustmentCreateParams
from stripe.params.billing._meter_event_create_params import MeterEventCreateParams
from stripe.params.billing._meter_list_event_summaries_params import MeterListEventSummariesParams
from stripe.params.billing._meter_list_params import MeterListParams
from stripe.params.billing._meter_retrieve_params import MeterRetrieveParams

from billing_site.testing.stripe_params import check_params, decode_form

FIXTURES: dict[str, Any] = json.loads(Path(__file__).with_name("stripe_fixtures3.json").read_text())["resources"]

IDEMPOTENCY_WINDOW = timedelta(hours=24)
IDENTIFIER_WINDOW = timedelta(hours=24)
CANCEL_WINDOW = timedelta(hours=24)
EVENT_MAX_AGE = timedelta(days=35)
EVENT_MAX_FUTURE = timedelta(minutes=5)

# What `fail_next` can be told. "_after" faults do the work first, then lose the answer.
FAULTS = frozenset({"400", "429", "500", "500_after", "timeout", "timeout_after", "crash", "crash_after"})


def fixture(resource: str, /, **overrides: Any) -> dict[str, Any]:
    """A deep copy of Stripe's example object `resource` (`billing.meter_event`, `customer`, ...) with
    `overrides` applied at the top level."""
    body = copy.deepcopy(FIXTURES[resource])
    body.update(overrides)
    return body


def stripe_error(status: int, message: str, *, type_: str = "invalid_request_error", **fields: Any) -> tuple[int, Any]:
    return status, {"error": {"type": type_, "message": message, **fields}}


def _json_number(value: Decimal) -> int | float:
    # Stripe's JSON carries summary values as numbers; this is what the SDK then parses.
    return int(value) if value == value.to_integral_value() else float(value)


@dataclass
class Received:
    method: str
    path: str
    params: dict[str, Any]
    headers: dict[str, str]
    at: datetime


@dataclass
class MeterEventRecord:
    event_name: str
    identifier: str
    payload: dict[str, str]
    timestamp: int
    received_at: datetime
    counted: bool
    canceled_at: datetime | None = None


@dataclass
class _Route:
    method: str
    pattern: re.Pattern[str]
    params: type | None
    handler: Callable[..., tuple[int, Any]]


@dataclass
class _Stored:
    fingerprint: str
    status: int
    body: str  # the answer as JSON text: replayed byte for byte, and no objects for the GC to walk
    at: datetime


class _Dropped(Exception):
    """The fault says: answer nothing."""


@dataclass
class FakeStripe:
    hang_seconds: float = 2.0
    now: datetime | None = None
    record_requests: bool = True  # keep every request in `requests` (a long benchmark turns this off)
    customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    meters: dict[str, dict[str, Any]] = field(default_factory=dict)
    meter_events: list[MeterEventRecord] = field(default_factory=list)
    requests: list[Received] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.RLock()
        self._faults: list[tuple[str, str]] = []
        self._first_seen: dict[str, datetime] = {}  # meter event identifier -> when it was first counted
        self._idempotency: dict[str, _Stored] = {}
        self._in_flight: set[str] = set()
        self._stopping = threading.Event()
        self._ids = itertools.count(1)
        self._routes: list[_Route] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.route("POST", r"/v1/customers", CustomerCreateParams)(self._customer_create)
        self.route("GET", r"/v1/customers/(?P<id>[^/]+)", CustomerRetrieveParams)(self._customer_retrieve)
        self.route("GET", r"/v1/billing/meters", MeterListParams)(self._meter_list)
        self.route("GET", r"/v1/billing/meters/(?P<id>[^/]+)", MeterRetrieveParams)(self._meter_retrieve)
        self.route("POST", r"/v1/billing/meter_events", MeterEventCreateParams)(self._meter_event_create)
        self.route("POST", r"/v1/billing/meter_event_adjustments", MeterEventAdjustmentCreateParams)(
            self._meter_event_adjust
        )
        self.route("GET", r"/v1/billing/meters/(?P<id>[^/]+)/event_summaries", MeterListEventSummariesParams)(
            self._meter_event_summaries
        )
        # Not Stripe's: what the fake holds, for a benchmark or a test running the fake in another process.
        self.route("GET", r"/_fake/stats", None)(self._stats)

    # --- lifecycle ----------------------------------------------------------------------------------

    def start(self) -> FakeStripe:
        fake = self

        class Handler(_Handler):
            owner = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-stripe", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeStripe:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the fake first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def clock(self) -> datetime:
        return self.now or datetime.now(UTC)

    # --- setup and inspection -------------------------------------------------------------------

    def route(self, method: str, path: str, params: type | None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Register a handler `fn(match, params) -> (status, body)` for `method path` (a regex)."""

        def register(fn: Callable[..., tuple[int, Any]]) -> Callable[..., tuple[int, Any]]:
            self._routes.append(_Route(method, re.compile(f"^{path}$"), params, fn))
            return fn

        return register

    def fail_next(self, route: str, *faults: str) -> None:
        """The next requests matching `route` ("POST /v1/billing/meter_events") meet `faults`, in order."""
        unknown = set(faults) - FAULTS
        if unknown:
            raise ValueError(f"unknown faults {sorted(unknown)}; known: {sorted(FAULTS)}")
        with self._lock:
            self._faults.extend((route, fault) for fault in faults)

    def add_meter(
        self,
        event_name: str,
        *,
        formula: str = "sum",
        customer_key: str = "stripe_customer_id",
        value_key: str = "value",
        status: str = "active",
        meter_id: str | None = None,
    ) -> dict[str, Any]:
        meter = fixture(
            "billing.meter",
            id=meter_id or f"mtr_fake{next(self._ids):06d}",
            event_name=event_name,
            display_name=event_name,
            status=status,
            default_aggregation={"formula": formula},
            customer_mapping={"event_payload_key": customer_key, "type": "by_id"},
            value_settings={"event_payload_key": value_key},
            livemode=False,
        )
        with self._lock:
            self.meters[meter["id"]] = meter
        return meter

    def add_customer(self, customer_id: str | None = None, **fields: Any) -> dict[str, Any]:
        customer = fixture("customer", id=customer_id or f"cus_fake{secrets.token_hex(6)}", **fields)
        with self._lock:
            self.customers[customer["id"]] = customer
        return customer

    def counted_events(self, event_name: str | None = None, customer: str | None = None) -> list[MeterEventRecord]:
        """Meter events that count (not repeats inside the identifier window, not canceled)."""
        with self._lock:
            rows = [e for e in self.meter_events if e.counted and e.canceled_at is None]
        if event_name is not None:
            rows = [e for e in rows if e.event_name == event_name]
        if customer is not None:
            rows = [e for e in rows if customer in e.payload.values()]
        return rows

    def received(self, method: str, path: str) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if r.method == method and r.path == path]

    def summary_value(self, meter_id: str, customer: str, start: datetime, end: datetime) -> Decimal:
        return self._aggregate(self.meters[meter_id], customer, int(start.timestamp()), int(end.timestamp()))

    def record_meter_event(self, event_name: str, customer: str, value: str, timestamp: datetime) -> None:
        """Plant an event as if someone else had sent it (a reconciliation test's mismatch)."""
        meter = self._meter_by_event_name(event_name)
        assert meter is not None, f"no meter {event_name}"
        payload = {
            meter["customer_mapping"]["event_payload_key"]: customer,
            meter["value_settings"]["event_payload_key"]: value,
        }
        with self._lock:
            self.meter_events.append(
                MeterEventRecord(
                    event_name, f"planted-{next(self._ids)}", payload, int(timestamp.timestamp()), self.clock(), True
                )
            )

    # --- request handling -----------------------------------------------------------------------

    def _next_fault(self, key: str) -> str | None:
        with self._lock:
            for index, (route, fault) in enumerate(self._faults):
                if route == key:
                    del self._faults[index]
                    return fault
        return None

    def handle(self, method: str, raw_path: str, body: str, headers: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        parts = urlsplit(raw_path)
        path = parts.path
        text = body if method == "POST" else parts.query
        try:
            params = decode_form(text)
        except ValueError as exc:
            return (*stripe_error(400, f"Malformed parameters: {exc}"), {})
        if self.record_requests:
            with self._lock:
                self.requests.append(Received(method, path, params, headers, self.clock()))
        auth = headers.get("authorization", "")
        if not re.fullmatch(r"Bearer (sk|rk)_(test|live)_\S+", auth):
            return (*stripe_error(401, "Invalid API Key provided."), {})
        for route in self._routes:
            match = route.pattern.match(path)
            if route.method == method and match:
                break
        else:
            return (*stripe_error(404, f"Unrecognized request URL ({method}: {path})."), {})

        fault = self._next_fault(f"{method} {route.pattern.pattern[1:-1]}") or self._next_fault(f"{method} {path}")
        if fault == "429":
            return (*stripe_error(429, "Too many requests hit the API too quickly.", code="rate_limit"), {})
        if fault == "400":
            return (
                *stripe_error(400, "The request was refused (fault injected by the test).", code="parameter_invalid"),
                {},
            )
        if fault == "500":
            return (*stripe_error(500, "Something went wrong on Stripe's end.", type_="api_error"), {})
        if fault in ("timeout", "crash"):
            self._drop(fault)

        if route.params is not None:
            problems = check_params(route.params, params)
            if problems:
                with self._lock:
                    self.violations.extend(f"{method} {path}: {problem}" for problem in problems)
                return (*stripe_error(400, "; ".join(problems), param=problems[0].split(":")[0]), {})

        key = headers.get("idempotency-key") if method == "POST" else None
        status, answer, extra = self._with_idempotency(key, path, params, lambda: route.handler(match, params))

        if fault == "500_after":
            return (*stripe_error(500, "Something went wrong on Stripe's end.", type_="api_error"), {})
        if fault in ("timeout_after", "crash_after"):
            self._drop(fault)
        return status, answer, extra

    def _drop(self, fault: str) -> None:
        if fault.startswith("timeout"):
            self._stopping.wait(self.hang_seconds)
        raise _Dropped

    def _with_idempotency(
        self, key: str | None, path: str, params: dict[str, Any], run: Callable[[], tuple[int, Any]]
    ) -> tuple[int, Any, dict[str, str]]:
        if not key:
            status, answer = run()
            return status, answer, {}
        fingerprint = json.dumps([path, params], sort_keys=True)
        now = self.clock()
        with self._lock:
            stored = self._idempotency.get(key)
            if stored is not None and now - stored.at < IDEMPOTENCY_WINDOW:
                if stored.fingerprint != fingerprint:
                    return (
                        *stripe_error(
                            400,
                            "Keys for idempotent requests can only be used with the same parameters they were first "
                            "used with.",
                            type_="idempotency_error",
                        ),
                        {},
                    )
                return stored.status, json.loads(stored.body), {"Idempotent-Replayed": "true"}
            if key in self._in_flight:
                return (
                    *stripe_error(
                        409,
                        "There is currently another in-progress request using this Idempotent Key.",
                        type_="idempotency_error",
                    ),
                    {},
                )
            self._in_flight.add(key)
        try:
            status, answer = run()
        finally:
            with self._lock:
                self._in_flight.discard(key)
        with self._lock:
            self._idempotency[key] = _Stored(fingerprint, status, json.dumps(answer), now)
        return status, answer, {}

    # --- resources ------------------------------------------------------------------------------

    def _customer_create(self, match: re.Match[str], params: dict[str, Any]) -> tuple[int, Any]:
        fields = {name: params[name] for name in ("email", "name", "description") if name in params}
        customer = self.add_customer(
            metadata=params.get("metadata") or {}, created=int(self.clock().timestamp()), livemode=False, **fields
        )
        return 200, customer

    def _customer_retrieve(self, match: re.Match[str], params: dict[str, Any]) -> tuple[int, Any]:
        customer = self.customers.get(match["id"])
        if customer is None:
            return stripe_error(404, f"No such customer: '{match['id']}'", code="resource_missing", param="id")
        return 200, customer

    def _list(self, rows: list[dict[str, Any]], params: dict[str, Any], url: str) -> tuple[int, Any]:
        limit = int(params.get("limit", 10))
        if not 1 <= limit <= 100:
            return stripe_error(400, "limit must be between 1 and 100", param="limit")
        after = params.get("starting_after")
        if after:
            ids = [row["id"] for row in rows]
            if after not in ids:
                return stripe_error(400, f"No such object: {after}", param="starting_after")
            rows = rows[ids.index(after) + 1 :]
        page = rows[:limit]
        return 200, {"object": "list", "data": page, "has_more": len(rows) > limit, "url": url}

    def _meter_list(self, match: re.Match[str], params: dict[str, Any]) -> tuple[int, Any]:
        with self._lock:
            rows = sorted(self.meters.values(), key=lambda m: m["id"])
        if "status" in params:
            rows = [m for m in rows if m["status"] == params["status"]]
        return self._list(rows, params, "/v1/billing/meters")

    def _meter_retrieve(self, match: re.Match[str], params: dict[str, Any]) -> tuple[int, Any]:
        meter = self.meters.get(match["id"])
        if meter is None:
            return stripe_error(404, f"No such billing meter: '{match['id']}'", code="resource_missing", param="id")
        return 200, meter

    def _meter_by_event_name(self, event_name: str) -> dict[str, Any] | None:
        with self._lock:
            return next(
                (m for m in self.meters.values() if m["event_name"] == event_name and m["status"] == "active"), None
            )

    def _meter_event_create(self, match: re.Match[str], params: dict[str, Any]) -> tuple[int, Any]:
        now = self.clock()
        meter = self._meter_by_event_name(params["event_name"])
        if meter is None:
            return stripe_error(400, f"No active meter has event_name {params['event_name']!r}.", param="event_name")
        payload = params["payload"]
        customer_key = meter["customer_mapping"]["event_payload_key"]
        value_key = meter["value_settings"]["event_payload_key"]
        for key in (customer_key, value_key):
            if key not in payload:
                return stripe_error(400, f"The payload needs {key!r}.", param=f"payload[{key}]")
        try:
            Decimal(payload[value_key])
        except InvalidOperation:
            return stripe_error(400, "The value must be a number.", param=f"payload[{value_key}]")
        timestamp = int(params.get("timestamp", int(now.timestamp())))
        moment = datetime.fromtimestamp(timestamp, UTC)
        if not now - EVENT_MAX_AGE <= moment <= now + EVENT_MAX_FUTURE:
            return stripe_error(
                400,
                "Timestamp must be within the past 35 calendar days or up to 5 minutes in the future.",
                param="timestamp",
            )
        identifier = params.get("identifier") or f"fake-{secrets.token_hex(8)}"
        with self._lock:
            first = self._first_seen.get(identifier)
            repeat = first is not None and now - first < IDENTIFIER_WINDOW
            if not repeat:
                self._first_seen[identifier] = now
            self.meter_events.append(
                MeterEventRecord(params["event_name"], identifier, dict(payload), timestamp, now, counted=not repeat)
            )
        return 200, fixture(
            "billing.meter_event",
            event_name=params["event_name"],
            identifier=identifier,
            payload=payload,
            timestamp=timestamp,
            created=int(now.timestamp()),
        )

    def _meter_event_adjust(self, match: re.Match[str], params: dict[str, Any]) -> tuple[int, Any]:
        now = self.clock()
        identifier = (params.get("cancel") or {}).get("identifier")
        if not identifier:
            return stripe_error(400, "cancel[identifier] is required for a cancel.", param="cancel[identifier]")
        with self._lock:
            event = next(
                (
                    e
                    for e in self.meter_events
                    if e.identifier == identifier and e.event_name == params["event_name"] and e.counted
                ),
                None,
            )
            if event is None:
                return stripe_error(400, f"No meter event with identifier {identifier!r}.", param="cancel[identifier]")
            if now - event.received_at >= CANCEL_WINDOW:
                return stripe_error(
                    400,
                    "Meter events can only be canceled within 24 hours of being received.",
                    param="cancel[identifier]",
                )
            if event.canceled_at is None:
                event.canceled_at = now
        return 200, fixture(
            "billing.meter_event_adjustment",
            event_name=params["event_name"],
            cancel={"identifier": identifier},
            type="cancel",
            status="complete",
        )

    def _aggregate(self, meter: dict[str, Any], customer: str, start: int, end: int) -> Decimal:
        customer_key = meter["customer_mapping"]["event_payload_key"]
        value_key = meter["value_settings"]["event_payload_key"]
        with self._lock:
            rows = [
                e
                for e in self.meter_events
                if e.event_name == meter["event_name"]
                and e.counted
                and e.canceled_at is None
                and e.payload.get(customer_key) == customer
                and start <= e.timestamp < end
            ]
        formula = meter["default_aggregation"]["formula"]
        if formula == "count":
            return Decimal(len(rows))
        if formula == "last":
            rows.sort(key=lambda e: (e.timestamp, e.received_at))
            return Decimal(rows[-1].payload[value_key]) if rows else Decimal(0)
        return sum((Decimal(e.payload[value_key]) for e in rows), Decimal(0))

    def _stats(self, match: re.Match[str], params: dict[str, Any]) -> tuple[int, Any]:
        with self._lock:
            return 200, {
                "requests": len(self.requests) if self.record_requests else None,
                "meter_events": len(self.meter_events),
                "counted_meter_events": len(self.counted_events()),
                "customers": len(self.customers),
                "violations": list(self.violations),
            }

    def _meter_event_summaries(self, match: re.Match[str], params: dict[str, Any]) -> tuple[int, Any]:
        meter = self.meters.get(match["id"])
        if meter is None:
            return stripe_error(404, f"No such billing meter: '{match['id']}'", code="resource_missing", param="id")
        start, end = int(params["start_time"]), int(params["end_time"])
        window = params.get("value_grouping_window")
        step = {"hour": 3600, "day": 86400, None: None}.get(window, 0)
        if step == 0:
            return stripe_error(400, "value_grouping_window must be hour or day.", param="value_grouping_window")
        align = step or 60
        for name, value in (("start_time", start), ("end_time", end)):
            if value % align:
                return stripe_error(400, f"{name} must be aligned to {window or 'minute'} boundaries.", param=name)
        if start >= end:
            return stripe_error(400, "start_time must be before end_time.", param="start_time")
        windows = [(start, end)] if step is None else [(t, min(t + step, end)) for t in range(start, end, step)]
        rows = []
        for lo, hi in windows:
            value = self._aggregate(meter, params["customer"], lo, hi)
            if step is not None and not value:
                continue
            rows.append(
                fixture(
                    "billing.meter_event_summary",
                    id=f"mtrusg_{meter['id']}_{lo}",
                    meter=meter["id"],
                    start_time=lo,
                    end_time=hi,
                    aggregated_value=_json_number(value),
                )
            )
        return self._list(rows, params, f"/v1/billing/meters/{meter['id']}/event_summaries")


class _Handler(BaseHTTPRequestHandler):
    owner: FakeStripe
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's session expects
    # One buffered write per answer and no Nagle delay: otherwise every call waits ~40 ms for an ACK.
    wbufsize = 1 << 16
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        headers = {key.lower(): value for key, value in self.headers.items()}
        try:
            status, answer, extra = self.owner.handle(method, self.path, body, headers)
        except _Dropped:
            self.close_connection = True
            return
        except Exception as exc:  # a bug in the fake: fail the test that met it, loudly
            with self.owner._lock:
                self.owner.violations.append(f"the fake failed on {method} {self.path}: {exc!r}")
            status, answer, extra = 500, {"error": {"type": "api_error", "message": repr(exc)}}, {}
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Request-Id", f"req_fake{secrets.token_hex(6)}")
        for key, value in extra.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")
