"""Reconciliation: our per-slice usage and pushes against the provider's meter event summaries.

For every lane in scope and every closed slice of the range, three numbers:
- `usage`: the slice's usage inside the customer's provider intervals (what the provider should hold),
- `pushed`: what our sent pushes add up to for the slice,
- `provider`: what the provider's summary says it holds.

`ok` when all three agree; `behind` when the provider holds what we pushed but usage has changed since
(a correction is due at the next run, or the difference is flagged unreconcilable); `mismatch` when the
provider holds something our pushes do not explain (someone else sent events to the meter, or a push was
lost in a way we did not see). Provider reads happen outside any transaction; the result is stored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Sum

from billing_site.money import decimal_to_str
from customers.models import Customer
from customers.selectors import provider_intervals
from metering.push.mappings import mapping_for
from metering.push.models import UsagePush, UsagePushLane, UsagePushReconciliation
from metering.push.provider import ProviderRefused, ProviderUnavailable, UsageProvider, usage_provider
from metering.push.services import push_slice_length
from metering.push.slices import clip, slice_ceil, slice_floor
from metering.selectors import usage_series

ZERO = Decimal(0)
MAX_STORED_ROWS = 1000


@dataclass(frozen=True)
class ReconcileRow:
    customer_id: str
    external_id: str
    meter_code: str
    slice_start: datetime
    slice_end: datetime
    usage: Decimal
    pushed: Decimal
    provider: Decimal

    @property
    def status(self) -> str:
        if self.provider != self.pushed:
            return "mismatch"
        return "ok" if self.usage == self.pushed else "behind"

    @property
    def difference(self) -> Decimal:
        """What the provider holds beyond the slice's usage (negative: it holds too little)."""
        return self.provider - self.usage

    def as_dict(self) -> dict[str, Any]:
        return {
            "customer": self.customer_id,
            "external_id": self.external_id,
            "meter": self.meter_code,
            "slice_start": self.slice_start.isoformat(),
            "slice_end": self.slice_end.isoformat(),
            "usage": decimal_to_str(self.usage),
            "pushed": decimal_to_str(self.pushed),
            "provider": decimal_to_str(self.provider),
            "difference": decimal_to_str(self.difference),
            "status": self.status,
        }


def _identity(lanes: Iterable[UsagePushLane]) -> Iterable[UsagePushLane]:
    return lanes


def _lane_rows(
    lane: UsagePushLane, start: datetime, end: datetime, provider: UsageProvider, window: str
) -> list[ReconcileRow]:
    length = push_slice_length()
    customer = lane.customer
    usage: dict[datetime, Decimal] = {}
    intervals = provider_intervals(customer_ids=[customer.id])[customer.id]
    for lo, hi in clip(intervals, max(start, lane.started_at), end):
        for bucket in usage_series(meter=lane.meter, customer=customer, start=lo, end=hi, window=window):
            key = slice_floor(bucket.start, length)
            usage[key] = usage.get(key, ZERO) + bucket.value
    pushed = dict(
        UsagePush.objects.filter(lane=lane, status=UsagePush.Status.SENT, slice_start__gte=start, slice_start__lt=end)
        .values_list("slice_start")
        .annotate(total=Sum("value"))
        .order_by()
    )
    mapping = mapping_for(meter_id=lane.meter_id, customer_id=customer.id)
    held: dict[datetime, Decimal] = {}
    if mapping is not None and mapping.resolved and customer.provider_customer_id:
        held = provider.summaries(
            meter_id=mapping.provider_meter_id,
            customer=customer.provider_customer_id,
            start=start,
            end=end,
            window=window,
        )
    rows = []
    for slice_start in sorted(set(usage) | set(pushed) | set(held)):
        row = ReconcileRow(
            customer_id=customer.id,
            external_id=customer.external_id,
            meter_code=lane.meter.code,
            slice_start=slice_start,
            slice_end=slice_start + length,
            usage=usage.get(slice_start, ZERO),
            pushed=pushed.get(slice_start, ZERO),
            provider=held.get(slice_start, ZERO),
        )
        if row.usage or row.pushed or row.provider:
            rows.append(row)
    return rows


def usage_push_reconcile(
    *,
    start: datetime,
    end: datetime,
    now: datetime,
    customer: Customer | None = None,
    provider: UsageProvider | None = None,
    progress: Callable[[Iterable[UsagePushLane]], Iterable[UsagePushLane]] = _identity,
) -> tuple[UsagePushReconciliation, list[ReconcileRow]]:
    """Compare every closed slice of [start, end) of every lane (of `customer`, or all) with the provider,
    store the result, and return it with every nonzero row (`progress` wraps the lanes, for a progress bar)."""
    length = push_slice_length()
    window = settings.USAGE_PUSH_SLICE
    start = slice_floor(start, length)
    end = min(slice_ceil(end, length), slice_floor(now, length))
    provider = provider or usage_provider()
    record = UsagePushReconciliation.objects.create(start=start, end=max(end, start), customer=customer, started_at=now)
    lanes = UsagePushLane.objects.select_related("customer", "meter").order_by("customer_id", "meter__code")
    if customer is not None:
        lanes = lanes.filter(customer=customer)
    rows: list[ReconcileRow] = []
    count = 0
    try:
        if start < end:
            for lane in progress(list(lanes)):
                rows.extend(_lane_rows(lane, start, end, provider, window))
                count += 1
    except (ProviderUnavailable, ProviderRefused) as exc:
        record.status, record.error = UsagePushReconciliation.Status.ERROR, f"Reading the provider failed: {exc}"
    else:
        differing = [row for row in rows if row.status != "ok"]
        record.status = UsagePushReconciliation.Status.MISMATCH if differing else UsagePushReconciliation.Status.OK
        record.mismatches = len(differing)
        record.rows = [row.as_dict() for row in differing[:MAX_STORED_ROWS]]
    record.lanes, record.slices, record.finished_at = count, len(rows), now
    with transaction.atomic():
        record.save()
    return record, rows
