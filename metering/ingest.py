"""Usage ingestion: validate every event on its own, then write the good ones in one statement.

The fast path does no per-event ORM work: bodies are parsed with orjson, customers and meters are
resolved with one query each, and on PostgreSQL the batch goes in as one
`INSERT ... SELECT FROM unnest(arrays) ON CONFLICT (customer_id, idempotency_key) DO NOTHING RETURNING`.
The unique constraint decides duplicates, so retries and concurrent duplicates never create a second
row. Rows are inserted sorted by (customer, idempotency key) so two batches with overlapping keys wait
on each other in the same order and cannot deadlock.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
from django.conf import settings
from django.db import OperationalError, connection, transaction
from django.db.models import Q

from customers.models import Customer
from metering.ids import event_public_id, new_tokens
from metering.models import VALUE_DIGITS, VALUE_PLACES, Meter, MeterEvent, UsageDirtyHour

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
        return parsed.astimezone(UTC)
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


def _resolve(parsed: list[ParsedEvent], rejected: dict[int, EventRejected]) -> list[ParsedEvent]:
    ids = {p.customer_ref for p in parsed if not p.by_external_id}
    external = {p.customer_ref for p in parsed if p.by_external_id}
    by_id: dict[str, tuple[str, str]] = {}
    by_external: dict[str, tuple[str, str]] = {}
    if ids or external:
        rows = Customer.objects.filter(Q(id__in=ids) | Q(external_id__in=external)).values_list(
            "id", "external_id", "status"
        )
        for cid, ext, status in rows:
            by_id[cid] = (cid, status)
            by_external[ext] = (cid, status)
    meters = {
        code: (mid, active)
        for mid, code, active in Meter.objects.filter(code__in={p.meter_code for p in parsed}).values_list(
            "id", "code", "active"
        )
    }
    good: list[ParsedEvent] = []
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
        good.append(p)
    return good


def _hour(ts: datetime) -> datetime:
    return ts.replace(minute=0, second=0, microsecond=0)


_STAGE = "metering_event_stage"


def _insert_postgres(rows: list[ParsedEvent], now: datetime) -> dict[str, int]:
    """Binary COPY into a session-local staging table, then one INSERT ... SELECT ... ON CONFLICT.

    COPY is the cheapest way into PostgreSQL (no SQL text per row, no array quoting); the staging table
    lives as long as the pooled connection and empties itself at every commit."""
    table = MeterEvent._meta.db_table
    with connection.cursor() as cursor:
        raw = cursor.cursor  # psycopg's own cursor: Django's wrapper has no COPY
        raw.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {_STAGE} (token text, customer_id text, meter_id text, "
            "value numeric, ts timestamptz, idem text, dims text) ON COMMIT DELETE ROWS"
        )
        with raw.copy(f"COPY {_STAGE} FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["text", "text", "text", "numeric", "timestamptz", "text", "text"])
            for r in rows:
                copy.write_row(
                    (
                        r.token,
                        r.customer_id,
                        r.meter_id,
                        r.value,
                        r.timestamp,
                        r.idempotency_key,
                        orjson.dumps(r.dimensions).decode(),
                    )
                )
        # Sorted by (customer, key): overlapping batches meet each other's rows in the same order.
        raw.execute(
            f"""
            INSERT INTO {table} (token, customer_id, meter_id, value, timestamp, idempotency_key, dimensions,
                                 ingested_at, cancel_reason)
            SELECT token, customer_id, meter_id, value, ts, idem, dims::jsonb, %s, ''
            FROM {_STAGE} ORDER BY customer_id, idem
            ON CONFLICT (customer_id, idempotency_key) DO NOTHING
            RETURNING id, token
            """,  # noqa: S608 - table names are ours, values are bound
            [now],
        )
        created = {token: pk for pk, token in raw.fetchall()}
        # ON COMMIT DELETE ROWS empties it at commit; a second batch in the same transaction must not see
        # this one's rows.
        raw.execute(f"TRUNCATE {_STAGE}")
        return created


def _insert_generic(rows: list[ParsedEvent], now: datetime) -> dict[str, int]:
    """SQLite (the development default): the same statement one row at a time."""
    table = MeterEvent._meta.db_table
    sql = f"""
        INSERT INTO {table} (token, customer_id, meter_id, value, timestamp, idempotency_key, dimensions,
                             ingested_at, cancel_reason)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, '')
        ON CONFLICT (customer_id, idempotency_key) DO NOTHING
        RETURNING id
    """  # noqa: S608
    created: dict[str, int] = {}
    value_field = MeterEvent._meta.get_field("value")
    time_field = MeterEvent._meta.get_field("timestamp")
    with connection.cursor() as cursor:
        for r in rows:
            cursor.execute(
                sql,
                [
                    r.token,
                    r.customer_id,
                    r.meter_id,
                    value_field.get_db_prep_save(r.value, connection),
                    time_field.get_db_prep_save(r.timestamp, connection),
                    r.idempotency_key,
                    orjson.dumps(r.dimensions).decode(),
                    time_field.get_db_prep_save(now, connection),
                ],
            )
            row = cursor.fetchone()
            if row is not None:
                created[r.token] = row[0]
    return created


def _existing(rows: list[ParsedEvent]) -> dict[tuple[str, str], str]:
    """Public ids of events already stored under these (customer, idempotency key) pairs."""
    wanted: dict[str, set[str]] = {}
    for r in rows:
        wanted.setdefault(r.customer_id, set()).add(r.idempotency_key or "")
    query = Q()
    for customer_id, keys in wanted.items():
        query |= Q(customer_id=customer_id, idempotency_key__in=keys)
    found = MeterEvent.objects.filter(query).values_list("customer_id", "idempotency_key", "id", "token")
    return {(cid, key): event_public_id(pk, token) for cid, key, pk, token in found}


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


def _write(rows: list[ParsedEvent], now: datetime) -> tuple[dict[str, int], dict[tuple[str, str], str]]:
    insert = _insert_postgres if connection.vendor == "postgresql" else _insert_generic
    for attempt in range(3):
        try:
            with transaction.atomic():
                created = insert(rows, now)
                conflicted = [r for r in rows if r.token not in created]
                existing = _existing(conflicted) if conflicted else {}
                dirty = {(r.meter_id, r.customer_id, _hour(r.timestamp)) for r in rows if r.token in created}
                mark_hours_dirty(dirty, now)  # last, so the hot row lock is held only until commit
            return created, existing
        except OperationalError as exc:  # a deadlock or serialization failure: the batch is retried whole
            if attempt == 2 or getattr(getattr(exc, "__cause__", None), "sqlstate", None) not in {"40P01", "40001"}:
                raise
            logger.warning("usage batch retried after %s", exc)
    raise AssertionError("unreachable")


def usage_ingest(*, events: list[Any], now: datetime) -> IngestResult:
    """Ingest a batch. Every event gets its own outcome; one bad event never fails the others."""
    rejected: dict[int, EventRejected] = {}
    parsed: list[ParsedEvent] = []
    window = TimeWindow.around(now)
    for index, raw in enumerate(events):
        try:
            parsed.append(parse_event(raw, index, now=now, window=window))
        except EventRejected as exc:
            rejected[index] = exc
    good = _resolve(parsed, rejected) if parsed else []

    # Within the batch the first event with a (customer, key) is the candidate; later ones are its duplicates.
    first: dict[tuple[str, str], ParsedEvent] = {}
    copies: dict[int, ParsedEvent] = {}
    to_insert: list[ParsedEvent] = []
    for p in good:
        if p.idempotency_key is not None:
            seen = first.get((p.customer_id, p.idempotency_key))
            if seen is not None:
                copies[p.index] = seen
                continue
            first[(p.customer_id, p.idempotency_key)] = p
        to_insert.append(p)
    for p, token in zip(to_insert, new_tokens(len(to_insert)), strict=True):
        p.token = token
    to_insert.sort(key=lambda p: (p.customer_id, p.idempotency_key or "", p.index))

    created, existing = _write(to_insert, now) if to_insert else ({}, {})

    outcome: dict[int, tuple[str, str]] = {}
    for p in to_insert:
        pk = created.get(p.token)
        if pk is not None:
            outcome[p.index] = ("created", event_public_id(pk, p.token))
        else:
            outcome[p.index] = ("duplicate", existing.get((p.customer_id, p.idempotency_key or ""), ""))
    for index, original in copies.items():
        outcome[index] = ("duplicate", outcome[original.index][1])

    result = IngestResult()
    for index in range(len(events)):
        if index in rejected:
            result.rejected += 1
            result.results.append(
                {"index": index, "status": "rejected", "id": None, "error": rejected[index].as_dict()}
            )
        else:
            status, public_id = outcome[index]
            if status == "created":
                result.created += 1
            else:
                result.duplicates += 1
            result.results.append({"index": index, "status": status, "id": public_id or None, "error": None})
    return result
