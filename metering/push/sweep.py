"""The `push_usage` sweep: make sure every lane exists, then start one task per lane that may have work.

A lane exists for every customer billed in provider mode (now, or recently enough that late usage of its
provider slices can still be corrected) and every meter mapped for it. Many customers never serialize
behind one: each lane is its own task, and a lane that waits (a rate limit, a lost answer) waits alone.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Exists, OuterRef, Q

from customers.models import Customer
from customers.selectors import provider_intervals
from metering.models import Meter, MeterEvent
from metering.push.models import PUSHABLE_AGGREGATIONS, MeterMapping, UsagePush, UsagePushLane
from metering.push.provider import usage_provider
from metering.push.services import (
    PROVIDER_MAX_AGE,
    RESOLVE_RETRY,
    LaneResult,
    mapping_resolve,
    push_slice_length,
)
from metering.push.slices import Interval, next_provider_time, slice_ceil, slice_floor

logger = logging.getLogger(__name__)


def _lane_start(intervals: list[Interval], now: datetime, length: timedelta) -> datetime | None:
    """The slice holding the customer's first switch to provider mode that the provider can still take
    (usage before the switch is never pushed); None when it has no provider time in that reach."""
    earliest = slice_ceil(now - PROVIDER_MAX_AGE, length)
    first = next_provider_time(intervals, earliest)
    return None if first is None else max(slice_floor(first, length), earliest)


def _push_customer_ids(now: datetime) -> list[str]:
    """Customers in provider mode, or out of it recently enough that their provider slices still count."""
    return list(
        Customer.objects.filter(
            Q(billing_mode=Customer.BillingMode.PROVIDER) | Q(billing_mode_since__gte=now - PROVIDER_MAX_AGE),
            billing_mode_since__isnull=False,
        )
        # An offboarded tenant that never reached the provider has nothing to push there.
        .exclude(status=Customer.Status.DELETED, provider_customer_id="")
        .values_list("id", flat=True)
    )


def usage_push_lanes_ensure(*, now: datetime) -> int:
    """A lane for every customer billed in provider mode (now or recently) and every meter mapped for it;
    returns how many were added."""
    length = push_slice_length()
    customer_ids = _push_customer_ids(now)
    if not customer_ids:
        return 0
    mappings = MeterMapping.objects.filter(meter__aggregation__in=PUSHABLE_AGGREGATIONS).values_list(
        "meter_id", "customer_id"
    )
    wanted_customers = set(customer_ids)
    defaults, overrides = set(), set()
    for meter_id, customer_id in mappings:
        if customer_id is None:
            defaults.add(meter_id)
        elif customer_id in wanted_customers:
            overrides.add((customer_id, meter_id))
    wanted = {(customer_id, meter_id) for customer_id in customer_ids for meter_id in defaults} | overrides
    existing = set(UsagePushLane.objects.values_list("customer_id", "meter_id"))
    missing = sorted(wanted - existing)
    if not missing:
        return 0
    intervals = provider_intervals(customer_ids=sorted({customer_id for customer_id, _ in missing}))
    lanes = []
    for customer_id, meter_id in missing:
        start = _lane_start(intervals[customer_id], now, length)
        if start is None:
            continue
        lanes.append(
            UsagePushLane(
                customer_id=customer_id,
                meter_id=meter_id,
                started_at=start,
                pushed_through=start,
                changes_checked_at=now,
                created_at=now,
            )
        )
    UsagePushLane.objects.bulk_create(lanes, ignore_conflicts=True, batch_size=2000)
    return len(lanes)


def _lanes_due(now: datetime) -> list[int]:
    """Lanes with something possibly to do: the customer is in provider mode, or left it recently enough
    that late usage of its provider slices can still be corrected, or a push is outstanding."""
    outstanding = UsagePush.objects.filter(lane=OuterRef("pk"), status__in=UsagePush.OUTSTANDING)
    return list(
        UsagePushLane.objects.filter(
            Q(customer__billing_mode=Customer.BillingMode.PROVIDER)
            | Q(customer__billing_mode_since__gte=now - PROVIDER_MAX_AGE)
            | Exists(outstanding),
            blocked_at__isnull=True,
            # Customers on a test clock are billed natively on their clock's time, never pushed.
            customer__test_clock__isnull=True,
        )
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def _unmapped_usage(now: datetime, length: timedelta) -> list[dict[str, Any]]:
    """Recent usage of provider customers on meters no mapping covers for them (it is never pushed)."""
    report = []
    defaults = MeterMapping.objects.filter(customer__isnull=True).values("meter_id")
    for meter in Meter.objects.exclude(pk__in=defaults).order_by("code"):
        overridden = MeterMapping.objects.filter(meter=meter).values("customer_id")
        customers = (
            MeterEvent.objects.filter(
                meter=meter,
                timestamp__gte=now - 2 * length,
                timestamp__lt=now,
                customer__billing_mode=Customer.BillingMode.PROVIDER,
            )
            .exclude(customer_id__in=overridden)
            .values("customer_id")
            .distinct()
            .count()
        )
        if customers:
            report.append({"meter": meter.id, "code": meter.code, "customers": customers})
    return report


def usage_push_job(*, now: datetime) -> dict[str, Any]:
    """The `push_usage` sweep: make sure every lane exists, then start one task per lane that may have
    work, so no customer waits behind another."""
    from metering.tasks import push_usage_lane

    length = push_slice_length()
    created = usage_push_lanes_ensure(now=now)
    lane_ids = _lanes_due(now)
    resolved = _mappings_resolve(lane_ids, now) if lane_ids else 0
    for lane_id in lane_ids:
        push_usage_lane.delay(lane_id, now.isoformat())
    unmapped = _unmapped_usage(now, length)
    for row in unmapped:
        logger.warning(
            "usage of %s customer(s) in provider mode on meter %s is not pushed: the meter has no provider mapping",
            row["customers"],
            row["code"],
        )
    return {
        "lanes_created": created,
        "lanes_started": len(lane_ids),
        "mappings_resolved": resolved,
        "unmapped": unmapped,
    }


def _mappings_resolve(lane_ids: list[int], now: datetime) -> int:
    """Look up the provider meters of mappings not resolved yet once here, rather than in every lane that
    uses them (a default mapping serves thousands of lanes)."""
    pending = MeterMapping.objects.filter(provider_meter_id="").filter(
        Q(resolve_failed_at__isnull=True) | Q(resolve_failed_at__lte=now - RESOLVE_RETRY)
    )
    done = 0
    provider = None
    for mapping in pending:
        provider = provider or usage_provider()
        done += mapping_resolve(mapping, provider, now, LaneResult(0))
    return done
