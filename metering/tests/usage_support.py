"""Helpers for the usage tests: meters, events through the real ingestion service, and a brute-force
aggregation written independently of `metering.usage` (it reads every row and filters in Python)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

from customers.models import Customer
from metering.ingest import usage_ingest
from metering.models import Meter, MeterEvent
from metering.services import meter_create

NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)
_codes = itertools.count()


def make_meter(aggregation: str = "sum", **kwargs: Any) -> Meter:
    code = kwargs.pop("code", None) or f"meter-{aggregation.replace('_', '-')}-{next(_codes)}"
    return meter_create(code=code, name=code, aggregation=aggregation, now=NOW, **kwargs)


def ingest(
    customer: Customer,
    meter: Meter,
    events: Iterable[tuple[datetime, Any] | tuple[datetime, Any, Mapping[str, Any]]],
    *,
    now: datetime = NOW,
    keys: Iterable[str] | None = None,
) -> list[str]:
    """Ingest (timestamp, value[, dimensions]) tuples for one customer and meter; returns the event ids."""
    batch = []
    key_iter = iter(keys) if keys is not None else None
    for event in events:
        raw: dict[str, Any] = {
            "customer": customer.id,
            "meter": meter.code,
            "timestamp": event[0].isoformat(),
            "value": event[1] if isinstance(event[1], str) else format(event[1], "f"),
        }
        if len(event) > 2:
            raw["dimensions"] = dict(event[2])  # type: ignore[misc]
        if key_iter is not None:
            raw["idempotency_key"] = next(key_iter)
        batch.append(raw)
    result = usage_ingest(events=batch, now=now)
    assert result.rejected == 0, result.results
    return [row["id"] for row in result.results]


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _allowed(filters: Mapping[str, Iterable[Any]] | None, dimensions: Mapping[str, Any]) -> bool:
    for key, values in (filters or {}).items():
        if key not in dimensions or _text(dimensions[key]) not in {_text(v) for v in values}:
            return False
    return True


def brute_force(
    meter: Meter,
    customer: Customer,
    start: datetime,
    end: datetime,
    filters: Mapping[str, Iterable[Any]] | None = None,
    where: Callable[[Mapping[str, Any]], bool] | None = None,
) -> tuple[Decimal, int]:
    """(value, event_count) from every stored row of the meter, aggregated in Python; `where` narrows the
    rows by their dimensions."""
    if meter.aggregation == "weighted_sum":
        return brute_force_weighted(meter, customer, start, end, filters=filters, where=where)
    rows = [
        row
        for row in MeterEvent.objects.filter(meter=meter, customer=customer).order_by("id")
        if row.canceled_at is None
        and start <= row.timestamp < end
        and _allowed(meter.filters, row.dimensions)
        and _allowed(filters, row.dimensions)
        and (where is None or where(row.dimensions))
    ]
    if meter.aggregation == "unique_count":
        rows = [row for row in rows if meter.unique_key in row.dimensions]
        return Decimal(len({_text(row.dimensions[meter.unique_key]) for row in rows})), len(rows)
    if not rows:
        return Decimal(0), 0
    values = [row.value for row in rows]
    if meter.aggregation == "count":
        return Decimal(len(rows)), len(rows)
    if meter.aggregation == "sum":
        return sum(values, Decimal(0)), len(rows)
    if meter.aggregation == "max":
        return max(values), len(rows)
    latest = max(rows, key=lambda row: (row.timestamp, row.id))
    return latest.value, len(rows)


def brute_force_weighted(
    meter: Meter,
    customer: Customer,
    start: datetime,
    end: datetime,
    filters: Mapping[str, Iterable[Any]] | None = None,
    where: Callable[[Mapping[str, Any]], bool] | None = None,
) -> tuple[Decimal, int]:
    """weighted_sum from every stored row: the step function of all matching events (each value held
    until the next event, by timestamp then id), integrated over [start, end) in whole microseconds with
    Python integers and Fractions, divided by the period's length, rounded half up to 12 places."""
    rows = sorted(
        (
            (row.timestamp, row.id, row.value)
            for row in MeterEvent.objects.filter(meter=meter, customer=customer)
            if row.canceled_at is None
            and _allowed(meter.filters, row.dimensions)
            and _allowed(filters, row.dimensions)
            and (where is None or where(row.dimensions))
        ),
    )
    count = sum(1 for ts, _, _ in rows if start <= ts < end)
    if end <= start:
        return Decimal(0), count
    total = Fraction(0)
    for index, (ts, _, value) in enumerate(rows):
        held_to = rows[index + 1][0] if index + 1 < len(rows) else end
        lo, hi = max(ts, start), min(held_to, end)
        if lo < hi:
            total += Fraction(value) * ((hi - lo) // timedelta(microseconds=1))
    share = total / ((end - start) // timedelta(microseconds=1))
    scaled = share * 10**12
    rounded = int(scaled) + (1 if scaled - int(scaled) >= Fraction(1, 2) else 0)  # half up, never negative
    return Decimal(rounded).scaleb(-12), count
