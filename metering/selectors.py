from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.db.models import Max, Q, QuerySet, Sum
from django.db.models.functions import Trunc

from billing_site.errors import NotFound
from billing_site.selectors import apply_filters
from customers.models import Customer
from metering.filters import MeterFilter
from metering.models import Meter, MeterEvent, UsageDirtyHour, UsageHourly
from metering.usage import HOUR, WINDOWS, Acc, conditions_for, floor_window, passes, raw_events, usage_read, utc


def meter_get(*, meter_id: str) -> Meter:
    meter = Meter.objects.filter(pk=meter_id).first()
    if meter is None:
        raise NotFound(f"No such meter: {meter_id}", param="id")
    return meter


def meter_list(*, filters: Mapping[str, Any] | None = None) -> QuerySet[Meter]:
    return apply_filters(MeterFilter, filters or {}, Meter.objects.all())


# --- Usage ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UsageValue:
    """A meter's value for one customer and period, and how many events it is made of.

    For unique_count, event_count counts the events that carry the meter's unique_key."""

    value: Decimal
    event_count: int


@dataclass(frozen=True)
class UsageBucket:
    start: datetime
    end: datetime
    value: Decimal
    event_count: int
    group: dict[str, str | None]

    @property
    def sort_key(self) -> tuple[datetime, int, str]:
        return bucket_sort_key(self.start, self.group)


def bucket_sort_key(start: datetime, group: Mapping[str, str | None]) -> tuple[datetime, int, str]:
    """Buckets go by start, then group value with null first."""
    value = next(iter(group.values()), None)
    return (start, 0 if value is None else 1, value or "")


def usage_aggregate(
    *,
    meter: Meter,
    customer: Customer,
    start: datetime,
    end: datetime,
    filters: Mapping[str, Iterable[Any]] | None = None,
) -> UsageValue:
    """The meter's aggregate over the customer's non-canceled events in [start, end) (what billing uses).

    Whole clean hours come from the hourly roll-ups, everything else from raw events, in one snapshot, so
    the result always equals the aggregation of the raw events. `filters` ({dimension: [allowed values]})
    narrows the meter's own filters further and makes the read raw-only. An empty period is 0 with 0
    events (max and latest of nothing are 0)."""
    many = usage_aggregate_many(meter=meter, customer_ids=[customer.pk], start=start, end=end, filters=filters)
    return many[customer.pk]


def usage_aggregate_many(
    *,
    meter: Meter,
    customer_ids: Iterable[str],
    start: datetime,
    end: datetime,
    filters: Mapping[str, Iterable[Any]] | None = None,
) -> dict[str, UsageValue]:
    """`usage_aggregate` for many customers of one meter over the same period (renewal reads a batch of
    subscriptions this way), in one SQL statement. Every customer asked for is in the result, with 0 and
    0 events when it has no usage."""
    wanted = list(customer_ids)
    buckets = usage_read(meter=meter, customer_ids=wanted, start=start, end=end, filters=filters)
    result = {}
    for customer_id in wanted:
        acc = buckets.get((customer_id, None, None)) or Acc()
        result[customer_id] = UsageValue(value=acc.value(meter.aggregation), event_count=acc.count)
    return result


def usage_series(
    *,
    meter: Meter,
    customer: Customer,
    start: datetime,
    end: datetime,
    window: str = "none",
    group_by: str | None = None,
    filters: Mapping[str, Iterable[Any]] | None = None,
    after: tuple[datetime, Mapping[str, str | None]] | None = None,
) -> list[UsageBucket]:
    """Usage per UTC hour or day (or one bucket for the whole period), optionally per value of one
    dimension (`group_by`; events without it group under null), ordered by start then group.

    Windows are aligned to UTC hours/days and clipped to [start, end). Buckets without events are left
    out, except that window "none" without group_by always has its one bucket. `filters` ({dimension:
    [allowed values]}) narrows the meter's own filters. `after` (the start and
    group of the last bucket already returned) continues a listing: only later buckets are returned."""
    if window not in WINDOWS:
        raise ValueError(f"window must be one of {', '.join(WINDOWS)}")
    step = WINDOWS[window]
    start, end = utc(start, "start"), utc(end, "end")
    read_from = start
    if after is not None and step is not None:
        floor = floor_window(utc(after[0], "after"), step)
        read_from = max(start, floor) if floor is not None else start
    read_from = min(read_from, end)
    accs = usage_read(
        meter=meter,
        customer_ids=[customer.pk],
        start=read_from,
        end=end,
        window=step,
        group_by=group_by,
        filters=filters,
    )
    if step is None and group_by is None and not accs and start < end:
        accs = {(customer.pk, None, None): Acc()}
    buckets = []
    for (_, key, group_value), acc in accs.items():
        bucket_start = start if key is None else max(key, start)
        bucket_end = end if key is None or step is None else min(key + step, end)
        buckets.append(
            UsageBucket(
                start=bucket_start,
                end=bucket_end,
                value=acc.value(meter.aggregation),
                event_count=acc.count,
                group={group_by: group_value} if group_by else {},
            )
        )
    buckets.sort(key=lambda bucket: bucket.sort_key)
    if after is not None:
        last = bucket_sort_key(utc(after[0], "after"), after[1])
        buckets = [bucket for bucket in buckets if bucket.sort_key > last]
    return buckets


def usage_top_customers(
    *, meter: Meter, start: datetime, end: datetime, limit: int = 10
) -> list[tuple[Customer, UsageValue]]:
    """The customers with the most usage of a meter in [start, end), for the admin's summary.

    Candidates come from the hourly roll-ups (ranked by sum, count or max, which is cheap) plus the
    customers with hours not rolled up yet; each candidate's value is then the exact `usage_aggregate`,
    so the figures shown are exact. A customer whose usage is all in rolled-up hours outside the top
    candidates by the cheap ranking could be missed for latest and unique_count meters."""
    rolled = UsageHourly.objects.filter(meter=meter, hour__gte=floor_window(start, HOUR), hour__lt=end)
    order = {
        Meter.Aggregation.SUM: "-total",
        Meter.Aggregation.MAX: "-maximum",
    }.get(meter.aggregation, "-events")
    ranked = (
        rolled.values("customer_id")
        .annotate(total=Sum("value_sum"), maximum=Max("value_max"), events=Sum("event_count"))
        .order_by(order, "customer_id")
        .values_list("customer_id", flat=True)[: limit * 2]
    )
    pending = (
        UsageDirtyHour.objects.filter(meter=meter, hour__gte=floor_window(start, HOUR), hour__lt=end)
        .order_by("customer_id")
        .values_list("customer_id", flat=True)
        .distinct()[: limit * 5]
    )
    customers = Customer.objects.in_bulk(set(ranked) | set(pending))
    exact = usage_aggregate_many(meter=meter, customer_ids=list(customers), start=start, end=end)
    values = [(customer, exact[customer.pk]) for customer in customers.values()]
    values.sort(key=lambda item: (-item[1].value, -item[1].event_count, item[0].pk))
    return [item for item in values if item[1].event_count][:limit]


def usage_changed_hours(
    *, pairs: Iterable[tuple[str, str]], since: datetime
) -> list[tuple[str, str, datetime, datetime]]:
    """(meter id, customer id, hour, changed at) of every hour of these (meter, customer) pairs whose
    events changed at or after `since`: new or late events, cancellations. Billing uses it to find
    invoiced periods whose usage changed, at a cost that follows the changes, not the history.

    Read from the roll-up bookkeeping: a dirty hour changed at its `touched_at`; a rolled-up hour at the
    latest at its `rolled_at` (the job never dates a roll-up before the change it reflects, so re-rolling
    an unchanged hour can report it again: a false positive, never a miss); and an hour whose roll-up row
    is gone because every event in it was canceled is found through `canceled_at` (that part reads the
    pairs' events, so it costs about one index scan of each pair's history)."""
    wanted = set(pairs)
    if not wanted:
        return []
    scope = Q()
    for meter_id, customer_id in sorted(wanted):
        scope |= Q(meter_id=meter_id, customer_id=customer_id)
    latest: dict[tuple[str, str, datetime], datetime] = {}
    fields = ("meter_id", "customer_id", "hour")
    canceled = (
        MeterEvent.objects.filter(scope, canceled_at__gte=since)
        .annotate(hour=Trunc("timestamp", "hour", tzinfo=UTC))
        .values_list(*fields)
        .annotate(changed_at=Max("canceled_at"))
        .order_by()
    )
    for rows in (
        UsageDirtyHour.objects.filter(scope, touched_at__gte=since).values_list(*fields, "touched_at"),
        UsageHourly.objects.filter(scope, rolled_at__gte=since).values_list(*fields, "rolled_at"),
        canceled,
    ):
        for meter_id, customer_id, hour, changed_at in rows:
            key = (meter_id, customer_id, utc(hour))
            if key not in latest or changed_at > latest[key]:
                latest[key] = changed_at
    return sorted((*key, changed_at) for key, changed_at in latest.items())


# --- Usage alerts ---------------------------------------------------------------------------------


def _alerts() -> QuerySet:
    from django.db.models import Prefetch

    from metering.models import UsageAlert, UsageAlertTrigger

    return UsageAlert.objects.prefetch_related(
        Prefetch("triggers", queryset=UsageAlertTrigger.objects.order_by("level"), to_attr="current_triggers")
    )


def alert_list(*, filters: Mapping[str, Any] | None = None) -> QuerySet:
    from metering.alert_filters import AlertFilter

    return apply_filters(AlertFilter, filters or {}, _alerts())


def alert_get(*, alert_id: str) -> Any:
    alert = _alerts().filter(pk=alert_id).first()
    if alert is None:
        raise NotFound(f"No such alert: {alert_id}", param="id")
    return alert


def usage_event_values(*, meter: Meter, customer_id: str, start: datetime, end: datetime) -> list[Decimal]:
    """The values of the customer's non-canceled events of `meter` in [start, end) that pass the meter's
    filters, in event order (timestamp, then id).

    For the one pricing model whose charge depends on each event and not only on the period's aggregate
    (a percentage price with a fee per event, per-event bounds or free events): billing reads these raw
    events for that model only; every other model is priced from `usage_aggregate`."""
    conditions = conditions_for(meter)
    rows = sorted(
        (timestamp, pk, value)
        for value, timestamp, pk, dimensions in raw_events(meter, customer_id, [(start, end)])
        if not conditions or passes(conditions, dimensions or {})
    )
    return [value for _, _, value in rows]
