"""Usage events of one meter as CSV, streamed (`billing_site.csv_export`): one cursor over the events in
[start, end) in time order (the partitions of that range only), no row limit, constant memory."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import orjson
from django.db.models import Q, QuerySet

from billing_site.csv_export import CHUNK_SIZE
from billing_site.errors import InvalidRequest
from metering.ids import event_public_id
from metering.models import Meter, MeterEvent

USAGE_COLUMNS = (
    "id",
    "customer",
    "customer_external_id",
    "meter",
    "meter_code",
    "timestamp",
    "value",
    "idempotency_key",
    "dimensions",
    "ingested_at",
    "canceled_at",
)


def export_meter(value: str) -> Meter:
    meter = Meter.objects.filter(Q(pk=value) | Q(code=value)).first()
    if meter is None:
        raise InvalidRequest(f"No such meter: {value}", code="resource_missing", param="meter")
    return meter


def events_for_export(
    *, meter: Meter, start: datetime, end: datetime, customer: str | None = None, include_canceled: bool = False
) -> QuerySet[MeterEvent]:
    events = MeterEvent.objects.filter(meter_id=meter.pk, timestamp__gte=start, timestamp__lt=end)
    if customer is not None:
        events = events.filter(customer_id=customer)
    if not include_canceled:
        events = events.filter(canceled_at__isnull=True)
    return events.order_by("timestamp", "id")


def usage_rows(events: QuerySet[MeterEvent], meter: Meter) -> Iterator[tuple[Any, ...]]:
    fields = ("id", "token", "customer_id", "customer__external_id", "timestamp", "value", "idempotency_key")
    rest = ("dimensions", "ingested_at", "canceled_at")
    for row in events.values_list(*fields, *rest).iterator(chunk_size=CHUNK_SIZE):
        pk, token, customer_id, external_id, timestamp, value, key, dimensions, ingested_at, canceled_at = row
        yield (
            event_public_id(pk, token),
            customer_id,
            external_id,
            meter.pk,
            meter.code,
            timestamp,
            value,
            key,
            orjson.dumps(dimensions or {}, option=orjson.OPT_SORT_KEYS).decode(),
            ingested_at,
            canceled_at,
        )
