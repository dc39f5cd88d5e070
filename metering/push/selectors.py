from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db.models import QuerySet

from billing_site.errors import NotFound
from billing_site.selectors import apply_filters
from metering.push.filters import MeterMappingFilter, UsagePushFilter
from metering.push.models import MeterMapping, UsagePush


def usage_push_list(*, filters: Mapping[str, Any] | None = None) -> QuerySet[UsagePush]:
    return apply_filters(UsagePushFilter, filters or {}, UsagePush.objects.all())


def usage_push_get(*, push_id: str) -> UsagePush:
    push = UsagePush.objects.filter(pk=push_id).first()
    if push is None:
        raise NotFound(f"No such usage push: {push_id}", param="id")
    return push


def meter_mapping_list(*, filters: Mapping[str, Any] | None = None) -> QuerySet[MeterMapping]:
    return apply_filters(MeterMappingFilter, filters or {}, MeterMapping.objects.all())


def meter_mapping_get(*, mapping_id: str) -> MeterMapping:
    mapping = MeterMapping.objects.filter(pk=mapping_id).first()
    if mapping is None:
        raise NotFound(f"No such meter mapping: {mapping_id}", param="id")
    return mapping
