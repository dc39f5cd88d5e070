"""Row locks of metering, in the one order (`billing_site.locks`).

Meters are catalog definitions (locked before any customer's rows). Usage events, dirty hours and the
usage push's rows (mappings, lanes, pushes: taken in the push's own transactions, after the customer's
rows when at all) are leaves: nothing is locked after them."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from billing_site.locks import LockRank, lock_first, lock_one, lock_values
from metering.models import Meter, MeterEvent, UsageDirtyHour
from metering.push.models import MeterMapping, UsagePush, UsagePushLane


def lock_meter(meter_id: str) -> Meter:
    return lock_one(Meter.objects.filter(pk=meter_id), LockRank.CATALOG)


def lock_meter_mapping(mapping_id: str) -> MeterMapping:
    return lock_one(MeterMapping.objects.filter(pk=mapping_id), LockRank.LEAF)


def lock_event_values(queryset: QuerySet[MeterEvent], fields: tuple[str, ...]) -> list[tuple[Any, ...]]:
    """The events of `queryset`, locked in primary-key order, as `fields` tuples (`fields[0]` is `pk`)."""
    return lock_values(queryset, LockRank.LEAF, fields)


def claim_dirty_hours(fields: tuple[str, ...], *, limit: int) -> list[tuple[Any, ...]]:
    """Up to `limit` dirty hours no other roll-up holds, by hour, so one batch holds the hour of many
    customers and reads each hour's pages once."""
    return lock_values(
        UsageDirtyHour.objects.all(),
        LockRank.LEAF,
        fields,
        skip_locked=True,
        limit=limit,
        order_by=("meter_id", "hour", "customer_id"),
    )


def lock_push_lane(lane_id: str) -> UsagePushLane:
    return lock_one(UsagePushLane.objects.filter(pk=lane_id).select_related("customer", "meter"), LockRank.LEAF)


def lock_usage_push(push_id: Any) -> UsagePush:
    return lock_one(UsagePush.objects.filter(pk=push_id), LockRank.LEAF)


def lock_first_push(queryset: QuerySet[UsagePush]) -> UsagePush | None:
    return lock_first(queryset, LockRank.LEAF)
