"""Usage ingestion: validate every event on its own, then write the good ones in one statement.

The fast path does no per-event ORM work: bodies are parsed with orjson, customers and meters are
resolved with one query each, and on PostgreSQL the batch goes in by binary COPY into a staging table
and one statement that inserts the dedup keys (`MeterEventKey`, ON CONFLICT DO NOTHING) and the events
whose key was new. The key table's primary key decides duplicates, across every partition of the events
table, so retries and concurrent duplicates never create a second row. Keys are inserted in hash order,
so two batches with overlapping keys wait on each other in the same order and cannot deadlock.
"""

from __future__ import annotations

import hashlib
import logging
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
from django.conf import settings
from django.db import DatabaseError, IntegrityError, OperationalError, connection, transaction
from django.db.models import Q

from billing_site.datetimes import TimestampOutOfRange, to_utc
from customers.entitlements_cache import entitlements_invalidate
from customers.models import Customer
from metering.ids import event_public_id, new_tokens_for
from metering.listeners import ingest_committed
from metering.models import VALUE_DIGITS, VALUE_PLACES, Meter, MeterEvent, MeterEventKey, UsageDirtyHour
from metering.partitions import partitions_ensure_for

logger = logging.getLogger(__name__)

MAX_BATCH = 10_000
MAX_DIMENSIONS = 50
MAX_KEY_LENGTH = 255
FUTURE_TOLERANCE = timedelta(minutes=5)
# JSON numbers with a fraction arrive as binary floats from orjson; up to 15 significant digits every
# decimal survives the round trip exactly, beyond that it may not, so such values must come as strings.
_FLOAT_SAFE_DIGITS = 15
_MAX_INTEGER_DIGITS = VALUE_DIGITS - VALUE_PLACES
_EVENT_FIELDS = frozenset({"customer", "external_id", "meter", "value", "timestamp", "idempotency_key", "dimensions"})


class EventRejected(Exception):
    def __init__(self, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param

    def as_dict(self) -> dict[str, str | None]:
        return {"code": self.code, "message": self.message, "param": self.param}


@dataclass(slots=True)
class ParsedEvent:
    index: int
    customer_ref: str
    by_external_id: bool
    meter_code: str
    value: Decimal
    timestamp: datetime
    idempotency_key: str | None
    dimensions: dict[str, Any]
    customer_id: str = ""
    meter_id: str = ""
    token: str = ""


@dataclass
class IngestResult:
    results: list[dict[str, Any]] = field(default_factory=list)
    created: int = 0
    duplicates: int = 0
    rejected: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "created": self.created,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "results": self.results,
        }


# --- Parsing one event ----------------------------------------------------------------------------


_PLAIN_DECIMAL = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
_ONE = Decimal(1)


def _invalid_value(message: str = 'value must be a number or a plain decimal string such as "12.5".') -> EventRejected:
    return EventRejected("parameter_invalid", message, "value")


def _value(raw: Any) -> Decimal:
    """A usage value: finite, >= 0, at most 12 decimal places and 26 integer digits, exact.

    This runs once per event on the ingestion hot path, so the common cases (an int, a plain decimal
    string) are checked with string and integer operations rather than Decimal.as_tuple()."""
    if raw is None:
        return _ONE
    kind = type(raw)
    if kind is int:
        if raw < 0:
            raise EventRejected("value_negative", "value must be zero or more.", "value")
        if raw >= 10**_MAX_INTEGER_DIGITS:
            raise EventRejected(
                "value_too_large", f"value has more than {_MAX_INTEGER_DIGITS} integer digits.", "value"
            )
        return Decimal(raw)
    if kind is str:
        text = raw
        if not _PLAIN_DECIMAL.fullmatch(text):
            raise _invalid_value()
    elif kind is float:
        text = repr(raw)
        if not _PLAIN_DECIMAL.fullmatch(text):  # 1e-07, inf, nan
            raise _invalid_value("value must be a finite plain decimal.")
        if len(text.replace("-", "").replace(".", "").lstrip("0")) > _FLOAT_SAFE_DIGITS:
            raise EventRejected(
                "value_imprecise",
                f"value has more than {_FLOAT_SAFE_DIGITS} significant digits; send it as a string to keep it exact.",
                "value",
            )
    elif kind is Decimal:
        if not raw.is_finite():
            raise _invalid_value("value must be finite.")
        text = format(raw, "f")
    else:
        raise _invalid_value()
    if text[0] == "-":
        if text.strip("-0.") == "":
            text = text[1:]  # "-0" and "-0.0" are zero
        else:
            raise EventRejected("value_negative", "value must be zero or more.", "value")
    whole, _, fraction = text.partition(".")
    fraction = fraction.rstrip("0")
    if len(fraction) > VALUE_PLACES:
        raise EventRejected("too_many_decimals", f"value has more than {VALUE_PLACES} decimal places.", "value")
    if len(whole.lstrip("0")) > _MAX_INTEGER_DIGITS:
        raise EventRejected("value_too_large", f"value has more than {_MAX_INTEGER_DIGITS} integer digits.", "value")
    return Decimal(text)


def parse_timestamp(raw: Any, *, now: datetime, param: str = "timestamp") -> datetime:
    """RFC 3339 with an offset, or epoch milliseconds (an integer)."""
    if isinstance(raw, bool):
        raise EventRejected("parameter_invalid", "timestamp must be RFC 3339 or epoch milliseconds.", param)
    if isinstance(raw, int):
        seconds, millis = divmod(raw, 1000)
        try:
            return datetime.fromtimestamp(seconds, tz=UTC) + timedelta(milliseconds=millis)
        except (OverflowError, OSError, ValueError):
            raise EventRejected("parameter_invalid", "timestamp is out of range.", param) from None
    if isinstance(raw, str):
        try:
            parsed = datetime.fromisoformat(raw)
        except ValueError:
            raise EventRejected(
                "parameter_invalid", "timestamp must be RFC 3339, e.g. 2026-01-31T12:00:00Z.", param
            ) from None
        if parsed.tzinfo is None:
            raise EventRejected("parameter_invalid", "timestamp needs a UTC offset (e.g. a trailing Z).", param)
        try:
            return to_utc(parsed)
        except TimestampOutOfRange:
            raise EventRejected(
                "parameter_invalid", "timestamp is out of range once converted to UTC.", param
            ) from None
    raise EventRejected("parameter_invalid", "timestamp must be RFC 3339 or epoch milliseconds.", param)


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """The timestamps a batch accepts, computed once per batch (settings lookups are not free per event)."""

    earliest: datetime
    latest: datetime
    backfill_days: int

    @classmethod
    def around(cls, now: datetime) -> TimeWindow:
        backfill = settings.METERING_BACKFILL_WINDOW
        return cls(earliest=now - backfill, latest=now + FUTURE_TOLERANCE, backfill_days=backfill.days)

    def check(self, timestamp: datetime) -> None:
        if timestamp > self.latest:
            raise EventRejected("timestamp_in_future", "timestamp is more than 5 minutes in the future.", "timestamp")
        if timestamp < self.earliest:
            raise EventRejected(
                "timestamp_too_old",
                f"timestamp is older than the {self.backfill_days}-day backfill window.",
                "timestamp",
            )


def _dimensions(raw: Any) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise EventRejected("parameter_invalid", "dimensions must be a flat object.", "dimensions")
    if len(raw) > MAX_DIMENSIONS:
        raise EventRejected("too_many_dimensions", f"At most {MAX_DIMENSIONS} dimensions.", "dimensions")
    cleaned: dict[str, Any] = {}
    for key, value in raw.items():
        if not 1 <= len(key) <= 100:
            raise EventRejected("parameter_invalid", "Dimension names are 1-100 characters.", "dimensions")
        if isinstance(value, (str, bool, int)):
            if isinstance(value, str) and len(value) > 500:
                raise EventRejected(
                    "parameter_invalid", f"dimensions.{key} is longer than 500 characters.", f"dimensions.{key}"
                )
            cleaned[key] = value
        elif isinstance(value, (float, Decimal)):
            # Stored as text, never as a float: a dimension is a label, and its spelling must survive.
            cleaned[key] = repr(value) if isinstance(value, float) else format(value, "f")
        else:
            raise EventRejected(
                "parameter_invalid", f"dimensions.{key} must be a string, number or boolean.", f"dimensions.{key}"
            )
    return cleaned


def parse_event(raw: Any, index: int, *, now: datetime, window: TimeWindow | None = None) -> ParsedEvent:
    if not isinstance(raw, dict):
        raise EventRejected("parameter_invalid", "Each event must be a JSON object.", None)
    if not _EVENT_FIELDS.issuperset(raw):
        name = sorted(raw.keys() - _EVENT_FIELDS)[0]
        raise EventRejected("unknown_field", f"Unknown field '{name}'.", name)
    customer, external_id = raw.get("customer"), raw.get("external_id")
    if customer is not None and external_id is not None:
        raise EventRejected("parameter_invalid", "Give customer or external_id, not both.", "customer")
    ref = customer if customer is not None else external_id
    if ref is None:
        raise EventRejected("parameter_missing", "customer (an id) or external_id is required.", "customer")
    if not isinstance(ref, str) or not ref or len(ref) > 255:
        param = "customer" if customer is not None else "external_id"
        raise EventRejected("parameter_invalid", f"{param} must be a non-empty string.", param)
    meter = raw.get("meter")
    if meter is None:
        raise EventRejected("parameter_missing", "meter (the meter's code) is required.", "meter")
    if not isinstance(meter, str) or not meter or len(meter) > 100:
        raise EventRejected("parameter_invalid", "meter must be a meter code.", "meter")
    key = raw.get("idempotency_key")
    if key is not None and (not isinstance(key, str) or not 1 <= len(key) <= MAX_KEY_LENGTH or not key.isprintable()):
        raise EventRejected(
            "parameter_invalid", f"idempotency_key must be 1-{MAX_KEY_LENGTH} printable characters.", "idempotency_key"
        )
    timestamp = now if raw.get("timestamp") is None else parse_timestamp(raw["timestamp"], now=now)
    (window or TimeWindow.around(now)).check(timestamp)
    return ParsedEvent(
        index=index,
        customer_ref=ref,
        by_external_id=customer is None,
        meter_code=meter,
        value=_value(raw.get("value")),
        timestamp=timestamp,
        idempotency_key=key,
        dimensions=_dimensions(raw.get("dimensions")),
    )


def billing_event_to_event(raw: Any) -> Any:
    """The reference pipeline's `{TenantID, ProductCode, Quantity, Timestamp}` as one of our events.

    Without an explicit IdempotencyKey the key is a hash of the content, so a redelivered event is a
    duplicate, as in the reference pipeline's DynamoDB table (which keys on the same fields)."""
    if not isinstance(raw, dict):
        return raw
    allowed = {"TenantID", "ProductCode", "Quantity", "Timestamp", "IdempotencyKey", "Dimensions"}
    unknown = sorted(raw.keys() - allowed)
    event: dict[str, Any] = {
        "external_id": raw.get("TenantID"),
        "meter": raw.get("ProductCode"),
        "value": raw.get("Quantity"),
        "timestamp": raw.get("Timestamp"),
    }
    if unknown:
        event[unknown[0]] = raw[unknown[0]]  # rejected as an unknown field, named as sent
    if raw.get("Dimensions") is not None:
        event["dimensions"] = raw["Dimensions"]
    key = raw.get("IdempotencyKey")
    if key is None:
        content = orjson.dumps(
            [raw.get("TenantID"), raw.get("ProductCode"), str(raw.get("Quantity")), raw.get("Timestamp")],
            default=str,
        )
        key = "bev-" + hashlib.sha256(content).hexdigest()[:40]
    event["idempotency_key"] = key
    if event["timestamp"] is None:
        event["timestamp"] = None  # "default now" applies
    return event


# --- Resolving and writing a batch ----------------------------------------------------------------


CustomerRow = tuple[str, str, str | None]  # (id, status, test clock id)


def _customers(
    parsed: list[ParsedEvent], extra: list[tuple[str, bool]], alerted: set[str] | None
) -> tuple[dict[str, CustomerRow], dict[str, CustomerRow]]:
    """The batch's customers in ONE query, by id and by external id (`extra`: (ref, by external id) of
    events refused by the wall clock's window, which their customer's test clock may accept). `alerted`
    receives the customers that have active usage alerts (read in the same query)."""
    ids = {p.customer_ref for p in parsed if not p.by_external_id} | {ref for ref, ext in extra if not ext}
    external = {p.customer_ref for p in parsed if p.by_external_id} | {ref for ref, ext in extra if ext}
    by_id: dict[str, CustomerRow] = {}
    by_external: dict[str, CustomerRow] = {}
    if ids or external:
        rows = Customer.objects.filter(Q(id__in=ids) | Q(external_id__in=external)).values_list(
            "id", "external_id", "status", "has_usage_alerts", "test_clock_id"
        )
        for cid, ext, status, has_alerts, clock_id in rows:
            by_id[cid] = by_external[ext] = (cid, status, clock_id)
            if has_alerts and alerted is not None:
                alerted.add(cid)
    return by_id, by_external


def _resolve(
    parsed: list[ParsedEvent],
    rejected: dict[int, EventRejected],
    by_id: dict[str, CustomerRow],
    by_external: dict[str, CustomerRow],
) -> tuple[list[ParsedEvent], set[str]]:
    """The events whose customer and meter exist and take events, and the meters among them that have
    never had an event (their `has_events` flag is set by this batch)."""
    meters = {
        code: (mid, active, has_events)
        for mid, code, active, has_events in Meter.objects.filter(code__in={p.meter_code for p in parsed}).values_list(
            "id", "code", "active", "has_events"
        )
    }
    good: list[ParsedEvent] = []
    fresh: set[str] = set()
    for p in parsed:
        found = (by_external if p.by_external_id else by_id).get(p.customer_ref)
        param = "external_id" if p.by_external_id else "customer"
        if found is None:
            rejected[p.index] = EventRejected("customer_not_found", f"No customer {p.customer_ref!r}.", param)
            continue
        if found[1] == Customer.Status.DELETED:
            rejected[p.index] = EventRejected("customer_deleted", f"Customer {p.customer_ref!r} is deleted.", param)
            continue
        if found[1] == Customer.Status.DEACTIVATED:
            # Suspended by the control plane (deactivateRequest): usage is refused, not queued, until the
            # tenant is activated again; what it used before the suspension is still billed.
            rejected[p.index] = EventRejected(
                "customer_deactivated",
                f"Customer {p.customer_ref!r} is deactivated; usage is refused until it is activated again.",
                param,
            )
            continue
        meter = meters.get(p.meter_code)
        if meter is None:
            rejected[p.index] = EventRejected("meter_not_found", f"No meter with code {p.meter_code!r}.", "meter")
            continue
        if not meter[1]:
            rejected[p.index] = EventRejected("meter_inactive", f"Meter {p.meter_code!r} is archived.", "meter")
            continue
        p.customer_id, p.meter_id = found[0], meter[0]
        if not meter[2]:
            fresh.add(meter[0])
        good.append(p)
    return good, fresh


_WINDOW_CODES = frozenset({"timestamp_in_future", "timestamp_too_old"})


def _event_ref(raw: dict[str, Any]) -> tuple[str, bool]:
    """(customer ref, by external id) of an event that parsed up to its timestamp."""
    return (raw["external_id"], True) if raw.get("customer") is None else (raw["customer"], False)


def _on_clocks(
    events: list[Any],
    parsed: list[ParsedEvent],
    deferred: dict[int, EventRejected],
    rejected: dict[int, EventRejected],
    by_id: dict[str, CustomerRow],
    by_external: dict[str, CustomerRow],
) -> tuple[list[ParsedEvent], dict[str, datetime]]:
    """Customers on a test clock live on the clock's time: their events are parsed again with the clock's
    frozen time as `now` (the default timestamp) and the backfill/future window around it, including
    those the wall clock's window refused. One query (the clocks' frozen times), run only when the batch
    has a clock customer. Returns the batch's events and {customer id: its clock's frozen time}."""
    from customers.models import TestClock  # customers is below metering

    def row(ref: str, by_external_id: bool) -> CustomerRow | None:
        return (by_external if by_external_id else by_id).get(ref)

    clock_ids = {found[2] for found in by_id.values() if found[2]}
    frozen = dict(TestClock.objects.filter(pk__in=clock_ids).values_list("id", "frozen_time"))
    windows = {clock_id: TimeWindow.around(at) for clock_id, at in frozen.items()}
    customer_now: dict[str, datetime] = {}
    kept: list[ParsedEvent] = []
    again: list[int] = []
    for p in parsed:
        found = row(p.customer_ref, p.by_external_id)
        if found is not None and found[2] in frozen:
            again.append(p.index)
        else:
            kept.append(p)
    for index in deferred:
        found = row(*_event_ref(events[index]))
        if found is not None and found[2] in frozen:
            del rejected[index]
            again.append(index)
    for index in again:
        raw = events[index]
        found = row(*_event_ref(raw))
        at = frozen[found[2]]
        customer_now[found[0]] = at
        try:
            kept.append(parse_event(raw, index, now=at, window=windows[found[2]]))
        except EventRejected as exc:
            rejected[index] = exc
    kept.sort(key=lambda p: p.index)  # the first of duplicates in the batch stays the first
    return kept, customer_now


def _hour(ts: datetime) -> datetime:
    return ts.replace(minute=0, second=0, microsecond=0)


# --- Dedup keys -------------------------------------------------------------------------------------
#
# `MeterEventKey.key_hash` is MD5(customer id, "\n", idempotency key) for probe 0 and
# MD5(customer id, "\n", key, "\n", probe) for probe n > 0. A key is a duplicate when the event its hash
# row points to has the same customer and key; a different (customer, key) under the same hash (an MD5
# collision, never seen in practice but handled exactly) moves on to the next probe, as open addressing
# does. Key rows are never deleted, so a probe chain never breaks.

_KEY_SQL = "md5(s.customer_id || E'\\n' || s.idem)::uuid"  # probe 0 in SQL: must equal key_hash(c, k, 0)


def key_hash(customer_id: str, key: str, probe: int = 0) -> uuid.UUID:
    text = f"{customer_id}\n{key}" if probe == 0 else f"{customer_id}\n{key}\n{probe}"
    return uuid.UUID(bytes=hashlib.md5(text.encode(), usedforsecurity=False).digest())


_STAGE = "metering_event_stage"
_EVENT_COLUMNS = (
    "token, customer_id, meter_id, value, timestamp, idempotency_key, dimensions, ingested_at, cancel_reason"
)


def _insert_postgres(rows: list[ParsedEvent], now: datetime, outermost: bool) -> dict[str, int]:
    """Binary COPY into a session-local staging table, then ONE statement that inserts the keyed rows'
    dedup keys (ON CONFLICT DO NOTHING, in hash order so overlapping batches lock in the same order and
    cannot deadlock) and the events whose key was new (or that have no key). Returns {token: id} of the
    events created.

    COPY is the cheapest way into PostgreSQL (no SQL text per row, no array quoting); the staging table
    lives as long as the pooled connection and empties itself at every commit."""
    events, keys, dirty = (model._meta.db_table for model in (MeterEvent, MeterEventKey, UsageDirtyHour))
    # wrap_database_errors: psycopg's own errors become Django's (deadlocks, a missing partition).
    with connection.cursor() as cursor, connection.wrap_database_errors:
        raw = cursor.cursor  # psycopg's own cursor: Django's wrapper has no COPY
        raw.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {_STAGE} (token text, customer_id text, meter_id text, "
            "value numeric, ts timestamptz, idem text, dims text) ON COMMIT DELETE ROWS"
        )
        with raw.copy(f"COPY {_STAGE} FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["text", "text", "text", "numeric", "timestamptz", "text", "text"])
            write = copy.write_row
            dumps = orjson.dumps
            for r in rows:
                write(
                    (
                        r.token,
                        r.customer_id,
                        r.meter_id,
                        r.value,
                        r.timestamp,
                        r.idempotency_key,
                        dumps(r.dimensions).decode() if r.dimensions else "{}",
                    )
                )
        # The dirty-hour flags go last, in (meter, customer, hour) order like every writer's, so their hot
        # row locks are taken in one order and held only until the commit.
        raw.execute(
            f"""
            WITH s AS MATERIALIZED (SELECT nextval('{events}_seq') AS id, * FROM {_STAGE}),
            k AS (
                INSERT INTO {keys} (key_hash, event_id, timestamp)
                SELECT {_KEY_SQL}, s.id, s.ts FROM s WHERE s.idem IS NOT NULL ORDER BY 1
                ON CONFLICT (key_hash) DO NOTHING
                RETURNING event_id
            ),
            ins AS (
                INSERT INTO {events} (id, {_EVENT_COLUMNS})
                SELECT s.id, s.token, s.customer_id, s.meter_id, s.value, s.ts, s.idem, s.dims::jsonb, %(now)s, ''
                FROM s WHERE s.idem IS NULL OR s.id IN (SELECT event_id FROM k)
                RETURNING id, token, customer_id, meter_id, timestamp
            ),
            d AS (
                INSERT INTO {dirty} (meter_id, customer_id, hour, touched_at)
                SELECT DISTINCT meter_id, customer_id, date_trunc('hour', timestamp, 'UTC'), %(now)s::timestamptz
                FROM ins ORDER BY 1, 2, 3
                ON CONFLICT (meter_id, customer_id, hour) DO UPDATE SET touched_at = EXCLUDED.touched_at
            )
            SELECT id, token FROM ins
            """,  # noqa: S608 - table names are ours, values are bound
            {"now": now},
        )
        created = {token: pk for pk, token in raw.fetchall()}
        if not outermost:
            # The commit that empties it is someone else's: a second batch in the same transaction must
            # not see this one's rows.
            raw.execute(f"DELETE FROM {_STAGE}")  # noqa: S608
        return created


def _occupants(
    hashes: list[uuid.UUID],
) -> dict[uuid.UUID, tuple[int, datetime, str | None, str | None, str | None]]:
    """For key rows under these hashes: (event id, timestamp, token, customer id, idempotency key) of
    their event; the last three are None when the event's partition was detached."""
    pointers = {
        h: (pk, ts)
        for h, pk, ts in MeterEventKey.objects.filter(key_hash__in=hashes)
        .values_list("key_hash", "event_id", "timestamp")
        .order_by()
    }
    if not pointers:
        return {}
    # The key rows' timestamps name the partitions: `timestamp IN (...)` prunes to them.
    found = {
        pk: (token, cid, key)
        for pk, token, cid, key in MeterEvent.objects.filter(
            pk__in=[pk for pk, _ in pointers.values()], timestamp__in={ts for _, ts in pointers.values()}
        ).values_list("id", "token", "customer_id", "idempotency_key")
    }
    return {h: (pk, ts, *found.get(pk, (None, None, None))) for h, (pk, ts) in pointers.items()}


def events_by_keys(customer_id: str, keys: list[str]) -> dict[str, tuple[int, datetime]]:
    """(id, timestamp) of the customer's events stored under these idempotency keys, found through the
    key table (walking a probe chain past other keys' hashes), so reading them prunes to their partitions."""
    found: dict[str, tuple[int, datetime]] = {}
    pending, probe = list(dict.fromkeys(keys)), 0
    while pending:
        hashes = {key: key_hash(customer_id, key, probe) for key in pending}
        occupants = _occupants(list(hashes.values()))
        next_round = []
        for key, h in hashes.items():
            occupant = occupants.get(h)
            if occupant is None:
                continue  # the chain ends here: never stored
            if (occupant[3], occupant[4]) == (customer_id, key):
                found[key] = (occupant[0], occupant[1])
            elif occupant[2] is not None:  # another key under this hash
                next_round.append(key)
        pending, probe = next_round, probe + 1
    return found


def _insert_one(r: ParsedEvent, now: datetime, pk: int | None) -> int:
    table = MeterEvent._meta.db_table
    value_field = MeterEvent._meta.get_field("value")
    time_field = MeterEvent._meta.get_field("timestamp")
    params = [
        r.token,
        r.customer_id,
        r.meter_id,
        value_field.get_db_prep_save(r.value, connection),
        time_field.get_db_prep_save(r.timestamp, connection),
        r.idempotency_key,
        orjson.dumps(r.dimensions).decode(),
        time_field.get_db_prep_save(now, connection),
    ]
    with connection.cursor() as cursor:
        if pk is None:
            cursor.execute(
                f"INSERT INTO {table} ({_EVENT_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, '') RETURNING id",  # noqa: S608
                params,
            )
            return cursor.fetchone()[0]
        cursor.execute(
            f"INSERT INTO {table} (id, {_EVENT_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, '')",  # noqa: S608
            [pk, *params],
        )
        return pk


def _insert_probing(r: ParsedEvent, now: datetime, probe: int) -> tuple[int | None, str | None]:
    """Insert one event walking its key's probe chain from `probe`: (id, None) when created, or
    (None, public id of the original) when it is a duplicate ("" when the original was archived)."""
    postgres = connection.vendor == "postgresql"
    key = r.idempotency_key
    while True:
        if key is None:
            return _insert_one(r, now, None), None
        h = key_hash(r.customer_id, key, probe)
        occupant = _occupants([h]).get(h)
        if occupant is not None:
            pk, _, token, cid, okey = occupant
            if token is None or (cid, okey) == (r.customer_id, key):
                return None, event_public_id(pk, token) if token else ""
            probe += 1  # a different key under the same hash
            continue
        if not postgres:  # SQLite: writers are serialized, so the check above cannot be overtaken
            pk = _insert_one(r, now, None)
            MeterEventKey.objects.create(key_hash=h, event_id=pk, timestamp=r.timestamp)
            return pk, None
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {MeterEventKey._meta.db_table} (key_hash, event_id, timestamp) "  # noqa: S608
                f"VALUES (%s, nextval('{MeterEvent._meta.db_table}_seq'), %s) ON CONFLICT (key_hash) DO NOTHING "
                "RETURNING event_id",
                [h, r.timestamp],
            )
            row = cursor.fetchone()
        if row is None:
            continue  # taken meanwhile by a batch that just committed: look at its occupant again
        return _insert_one(r, now, row[0]), None


def _settle_conflicts(rows: list[ParsedEvent], now: datetime) -> tuple[dict[str, int], dict[tuple[str, str], str]]:
    """Keyed rows whose probe-0 hash was taken: duplicates when the occupant has the same customer and
    key (one query for all of them), otherwise (a hash collision) walked along their probe chain."""
    hashes = {r.token: key_hash(r.customer_id, r.idempotency_key or "") for r in rows}
    occupants = _occupants(list(set(hashes.values())))
    created: dict[str, int] = {}
    existing: dict[tuple[str, str], str] = {}
    for r in rows:
        occupant = occupants.get(hashes[r.token])
        ident = (r.customer_id, r.idempotency_key or "")
        if occupant is not None and (occupant[2] is None or (occupant[3], occupant[4]) == ident):
            existing[ident] = event_public_id(occupant[0], occupant[2]) if occupant[2] else ""
            continue
        pk, original = _insert_probing(r, now, 1 if occupant is not None else 0)
        if pk is not None:
            created[r.token] = pk
        else:
            existing[ident] = original or ""
    return created, existing


def _insert_generic(rows: list[ParsedEvent], now: datetime) -> tuple[dict[str, int], dict[tuple[str, str], str]]:
    """SQLite (the development default): each row on its own, through the same probe chain."""
    created: dict[str, int] = {}
    existing: dict[tuple[str, str], str] = {}
    for r in rows:
        pk, original = _insert_probing(r, now, 0)
        if pk is not None:
            created[r.token] = pk
        else:
            existing[(r.customer_id, r.idempotency_key or "")] = original or ""
    return created, existing


def mark_hours_dirty(keys: set[tuple[str, str, datetime]], now: datetime) -> None:
    """Flag hours whose roll-up no longer matches the raw events, in the caller's transaction.

    DO UPDATE (not DO NOTHING) takes the row lock, so a roll-up job that is recomputing this hour right
    now either finishes first (and our insert recreates the flag) or skips the locked row."""
    if not keys:
        return
    ordered = sorted(keys)  # one lock order for every writer
    table = UsageDirtyHour._meta.db_table
    if connection.vendor == "postgresql":
        sql = f"""
            INSERT INTO {table} (meter_id, customer_id, hour, touched_at)
            SELECT m, c, h, %s FROM unnest(%s::text[], %s::text[], %s::timestamptz[]) AS t(m, c, h)
            ON CONFLICT (meter_id, customer_id, hour) DO UPDATE SET touched_at = EXCLUDED.touched_at
        """  # noqa: S608
        with connection.cursor() as cursor:
            cursor.execute(sql, [now, [k[0] for k in ordered], [k[1] for k in ordered], [k[2] for k in ordered]])
        return
    for meter_id, customer_id, hour in ordered:
        UsageDirtyHour.objects.update_or_create(
            meter_id=meter_id, customer_id=customer_id, hour=hour, defaults={"touched_at": now}
        )


def _claim_meters(fresh: set[str]) -> set[str]:
    """Mark meters as having events, under their row locks (taken in id order, before any key row, so
    batches never deadlock on them). Returns the meters that no longer exist (deleted meanwhile)."""
    if not fresh:
        return set()
    ordered = sorted(fresh)
    with connection.cursor() as cursor:
        table = Meter._meta.db_table
        marks = ", ".join(["%s"] * len(ordered))
        cursor.execute(f"UPDATE {table} SET has_events = %s WHERE id IN ({marks}) RETURNING id", [True, *ordered])  # noqa: S608
        return fresh - {row[0] for row in cursor.fetchall()}


def _no_partition(exc: Exception) -> bool:
    cause = getattr(exc, "__cause__", None)
    return getattr(cause, "sqlstate", None) == "23514" and "no partition" in str(cause)


def _write(
    rows: list[ParsedEvent], now: datetime, fresh: set[str]
) -> tuple[dict[str, int], dict[tuple[str, str], str], set[str]]:
    """Write a batch in one transaction: (created {token: id}, duplicates {(customer, key): original id},
    meters that vanished). Retried whole on a deadlock, and once after creating a missing partition."""
    postgres = connection.vendor == "postgresql"
    made_partitions = False
    for attempt in range(3):
        outermost = not connection.in_atomic_block
        try:
            with transaction.atomic():
                vanished = _claim_meters(fresh)
                live = [r for r in rows if r.meter_id not in vanished] if vanished else rows
                if postgres:
                    # Marks the hours of what it created dirty itself.
                    created = _insert_postgres(live, now, outermost)
                    conflicted = [r for r in live if r.token not in created]
                    extra, existing = _settle_conflicts(conflicted, now) if conflicted else ({}, {})
                else:
                    extra, existing = _insert_generic(live, now)
                    created = {}
                if extra:
                    created.update(extra)
                    made = [r for r in live if r.token in extra]
                    mark_hours_dirty({(r.meter_id, r.customer_id, _hour(r.timestamp)) for r in made}, now)
            return created, existing, vanished
        except IntegrityError as exc:
            if made_partitions or not _no_partition(exc):
                raise
            partitions_ensure_for([r.timestamp for r in rows])
            made_partitions = True
        except OperationalError as exc:  # a deadlock or serialization failure: the batch is retried whole
            if attempt == 2 or getattr(getattr(exc, "__cause__", None), "sqlstate", None) not in {"40P01", "40001"}:
                raise
            logger.warning("usage batch retried after %s", exc)
    raise AssertionError("unreachable")


def usage_ingest(*, events: list[Any], now: datetime) -> IngestResult:
    """Ingest a batch. Every event gets its own outcome; one bad event never fails the others."""
    rejected: dict[int, EventRejected] = {}
    parsed: list[ParsedEvent] = []
    deferred: dict[int, EventRejected] = {}  # outside the wall clock's window: maybe inside a test clock's
    window = TimeWindow.around(now)
    for index, raw in enumerate(events):
        try:
            parsed.append(parse_event(raw, index, now=now, window=window))
        except EventRejected as exc:
            rejected[index] = exc
            if exc.code in _WINDOW_CODES:
                deferred[index] = exc
    alerted: set[str] = set()
    clock_now: dict[str, datetime] = {}
    if parsed or deferred:
        by_id, by_external = _customers(parsed, [_event_ref(events[i]) for i in deferred], alerted)
        if any(found[2] for found in by_id.values()):
            parsed, clock_now = _on_clocks(events, parsed, deferred, rejected, by_id, by_external)
        good, fresh = _resolve(parsed, rejected, by_id, by_external) if parsed else ([], set())
    else:
        good, fresh = [], set()

    # Within the batch the first event with a (customer, key) is the candidate; later ones are its duplicates.
    first: dict[tuple[str, str], ParsedEvent] = {}
    copies: dict[int, ParsedEvent] = {}
    to_insert: list[ParsedEvent] = []
    for p in good:
        if p.idempotency_key is not None:
            ident = (p.customer_id, p.idempotency_key)
            seen = first.get(ident)
            if seen is not None:
                copies[p.index] = seen
                continue
            first[ident] = p
        to_insert.append(p)
    for p, token in zip(to_insert, new_tokens_for([p.timestamp for p in to_insert]), strict=True):
        p.token = token

    created, existing, vanished = _write(to_insert, now, fresh) if to_insert else ({}, {}, set())
    if alerted and created:
        # After the batch's commit, so concurrent batches' evaluations see each other's events; a fixed number
        # of statements for the whole batch, invoice amounts by a task (see metering.alerts).
        from metering.alerts import usage_alerts_evaluate_ingested  # alerts read usage, which imports us

        pairs = {(p.customer_id, p.meter_id) for p in to_insert if p.customer_id in alerted and p.token in created}
        # A test clock's customers are evaluated at their clock's time (one call per clock time).
        by_time: dict[datetime, set[tuple[str, str]]] = {}
        for pair in pairs:
            by_time.setdefault(clock_now.get(pair[0], now), set()).add(pair)
        try:
            for at, some in by_time.items():
                usage_alerts_evaluate_ingested(pairs=some, now=at)
        except DatabaseError:
            # The events are committed: answering 5xx now would make the client resend a batch that
            # succeeded. The evaluate_usage_alerts job evaluates every alert again within minutes.
            if connection.in_atomic_block:
                raise  # inside a caller's transaction, which the error has broken: theirs to handle
            logger.exception("usage alert evaluation failed after a committed batch; the job will catch up")
    if created:  # their metered usage changed: one cache call for the batch
        changed = {p.customer_id for p in to_insert if p.token in created}
        entitlements_invalidate(changed)
        ingest_committed(changed, now, clock_now)  # higher apps' listeners (progressive billing)

    outcome: dict[int, tuple[str, str]] = {}
    for p in to_insert:
        if p.meter_id in vanished:
            rejected[p.index] = EventRejected("meter_not_found", f"No meter with code {p.meter_code!r}.", "meter")
            continue
        pk = created.get(p.token)
        if pk is not None:
            outcome[p.index] = ("created", event_public_id(pk, p.token))
        else:
            outcome[p.index] = ("duplicate", existing.get((p.customer_id, p.idempotency_key or ""), ""))
    for index, original in copies.items():
        if original.index in rejected:
            rejected[index] = rejected[original.index]
        else:
            outcome[index] = ("duplicate", outcome[original.index][1])

    result = IngestResult()
    results = result.results
    for index in range(len(events)):
        failure = rejected.get(index)
        if failure is not None:
            result.rejected += 1
            results.append({"index": index, "status": "rejected", "id": None, "error": failure.as_dict()})
        else:
            status, public_id = outcome[index]
            if status == "created":
                result.created += 1
            else:
                result.duplicates += 1
            results.append({"index": index, "status": status, "id": public_id or None, "error": None})
    return result
