"""Writes to meters. Ingestion lives in `metering/ingest.py`, cancellation and roll-ups in
`metering/usage.py`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import ProtectedError

from billing_site.errors import Conflict, InvalidRequest
from billing_site.fields import metadata_clean, metadata_merge
from metering.locks import lock_meter
from metering.models import Meter
from metering.push.mappings import check_meter_aggregation
from webhooks.services import event_emit

# What an event means for billing: fixed once the meter has events.
DEFINING_FIELDS = ("code", "aggregation", "unique_key", "filters")
_MUTABLE = ("name", "description", "active")


def meter_snapshot(meter: Meter) -> dict[str, Any]:
    return {
        "id": meter.id,
        "code": meter.code,
        "name": meter.name,
        "aggregation": meter.aggregation,
        "unique_key": meter.unique_key or None,
        "filters": meter.filters,
        "active": meter.active,
        "metadata": meter.metadata,
    }


def _check_definition(aggregation: str, unique_key: str) -> None:
    if aggregation == Meter.Aggregation.UNIQUE_COUNT and not unique_key:
        raise InvalidRequest(
            "A unique_count meter needs unique_key: the dimension whose distinct values it counts.",
            param="unique_key",
            code="parameter_missing",
        )
    if aggregation != Meter.Aggregation.UNIQUE_COUNT and unique_key:
        raise InvalidRequest("unique_key only applies to unique_count meters.", param="unique_key")


def _code_taken(code: str) -> Conflict:
    return Conflict(f"A meter with code '{code}' already exists.", code="meter_exists", param="code")


def meter_create(
    *,
    code: str,
    name: str,
    aggregation: str,
    now: datetime,
    unique_key: str = "",
    filters: dict[str, list[str]] | None = None,
    description: str = "",
    active: bool = True,
    metadata: dict[str, str | None] | None = None,
) -> Meter:
    _check_definition(aggregation, unique_key)
    meter = Meter(
        code=code,
        name=name,
        aggregation=aggregation,
        unique_key=unique_key,
        filters=filters or {},
        description=description,
        active=active,
        metadata=metadata_clean(metadata or {}),
    )
    try:
        with transaction.atomic():
            meter.save(force_insert=True)
            event_emit(
                type="meter.created", object_type="meter", object_id=meter.id, data=meter_snapshot(meter), now=now
            )
    except IntegrityError:
        if Meter.objects.filter(code=code).exists():
            raise _code_taken(code) from None
        raise
    return meter


def meter_has_events(meter: Meter) -> bool:
    """Pass the row locked FOR UPDATE: ingestion sets the flag under that lock in the transaction that
    writes a meter's first events, so a locked False means no event exists or can arrive meanwhile."""
    return meter.has_events


def meter_update(*, meter: Meter, changes: dict[str, Any], now: datetime) -> Meter:
    with transaction.atomic():
        locked = lock_meter(meter.pk)
        before = meter_snapshot(locked)
        changing = [f for f in DEFINING_FIELDS if f in changes and changes[f] != getattr(locked, f)]
        if changing and meter_has_events(locked):
            raise InvalidRequest(
                f"{changing[0]} cannot change once the meter has events: it would change what past usage means. "
                "Create a new meter instead.",
                param=changing[0],
                code="immutable",
            )
        if "aggregation" in changing:
            check_meter_aggregation(locked, changes["aggregation"])
        for field in (*DEFINING_FIELDS, *_MUTABLE):
            if field in changes:
                setattr(locked, field, changes[field] if changes[field] is not None else "")
        if "metadata" in changes:
            locked.metadata = metadata_merge(locked.metadata, changes["metadata"])
        _check_definition(locked.aggregation, locked.unique_key)
        after = meter_snapshot(locked)
        previous = {k: v for k, v in before.items() if after[k] != v}
        if previous:
            try:
                with transaction.atomic():
                    locked.save()
            except IntegrityError:
                raise _code_taken(locked.code) from None
            event_emit(
                type="meter.updated",
                object_type="meter",
                object_id=locked.id,
                data=after,
                previous_attributes=previous,
                now=now,
            )
    return locked


def meter_delete(*, meter: Meter, now: datetime) -> None:
    """Only a meter nothing refers to can go; one with events or prices is archived (active: false)."""
    with transaction.atomic():
        locked = lock_meter(meter.pk)
        if meter_has_events(locked):
            raise Conflict(
                "This meter has usage events and cannot be deleted; archive it with active: false.",
                code="meter_in_use",
            )
        try:
            with transaction.atomic():
                locked.delete()
        except (IntegrityError, ProtectedError):
            raise Conflict(
                "Prices refer to this meter, so it cannot be deleted; archive it with active: false.",
                code="meter_in_use",
            ) from None
        event_emit(type="meter.deleted", object_type="meter", object_id=meter.id, data=meter_snapshot(meter), now=now)
