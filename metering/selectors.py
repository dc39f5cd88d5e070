from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db.models import QuerySet

from billing_site.errors import NotFound
from billing_site.selectors import apply_filters
from metering.filters import MeterFilter
from metering.models import Meter


def meter_get(*, meter_id: str) -> Meter:
    meter = Meter.objects.filter(pk=meter_id).first()
    if meter is None:
        raise NotFound(f"No such meter: {meter_id}", param="id")
    return meter


def meter_list(*, filters: Mapping[str, Any] | None = None) -> QuerySet[Meter]:
    return apply_filters(MeterFilter, filters or {}, Meter.objects.all())
