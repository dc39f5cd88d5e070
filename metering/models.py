from __future__ import annotations

from django.db import models
from django.db.models import Q

from billing_site.ids import PublicIdField, TimestampedModel
from customers.models import Customer

# Usage values: up to 26 integer digits and 12 decimals, exact.
VALUE_DIGITS = 38
VALUE_PLACES = 12


class Meter(TimestampedModel):
    """What is counted: events named `code`, aggregated per customer and period.

    `code`, `aggregation`, `unique_key` and `filters` fix what every past event means for billing, so they
    cannot change once the meter has events (a new meter is the honest way to count differently).
    """

    class Aggregation(models.TextChoices):
        COUNT = "count"
        SUM = "sum"
        MAX = "max"
        UNIQUE_COUNT = "unique_count"
        LATEST = "latest"
        # The integral of a gauge over time (seat-time, GB-hours), prorated to the period: each event's
        # value is held until the next event; the last value before a period is its opening value.
        WEIGHTED_SUM = "weighted_sum"

    id = PublicIdField("mtr")
    code = models.SlugField(max_length=100, unique=True)
    name = models.CharField(max_length=255)
    description = models.TextField(blank=True)
    aggregation = models.CharField(max_length=20, choices=Aggregation.choices)
    unique_key = models.CharField(max_length=100, blank=True, help_text="The dimension unique_count counts.")
    filters = models.JSONField(
        default=dict, blank=True, help_text='{"region": ["eu", "us"]}: only matching events count.'
    )
    active = models.BooleanField(default=True)
    metadata = models.JSONField(default=dict, blank=True)
    # Set by the first ingested event, in its transaction, under this row's lock: whether the meter's
    # definition is frozen and it can no longer be deleted. Asking the events table instead would scan
    # every partition, since nothing there is indexed by meter alone.
    has_events = models.BooleanField(default=False, editable=False)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=~Q(aggregation="unique_count") | ~Q(unique_key=""),
                name="meter_unique_count_needs_unique_key",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.code} ({self.aggregation})"


class MeterEvent(models.Model):
    """One usage event. Never deleted: canceling sets `canceled_at` and every aggregation skips it.

    On PostgreSQL the table is range-partitioned by `timestamp` (monthly by default, `metering.partitions`)
    and has no primary-key index: a unique index on a partitioned table must contain the partition key,
    so neither the id nor the dedup key could be unique there. Dedup lives in `MeterEventKey`; lookups
    by id go through the BRIN index on `id` of the partitions the id's day names (`metering.ids`). On
    SQLite (development) it is a plain table. The primary key is a database sequence, so it is also the
    ingestion order ("latest" breaks timestamp ties with it, and invoicing's watermarks compare against it).

    Customer and meter carry no foreign-key constraint: checking two parents for every ingested row
    doubled PostgreSQL's cost per event. Ingestion resolves both in its own transaction; customers are
    only ever soft-deleted; a meter with events cannot be deleted (`Meter.has_events`, set under the
    meter's row lock in the ingesting transaction).
    """

    id = models.BigAutoField(primary_key=True)
    token = models.CharField(max_length=16)
    customer = models.ForeignKey(
        Customer, on_delete=models.DO_NOTHING, related_name="+", db_index=False, db_constraint=False
    )
    meter = models.ForeignKey(Meter, on_delete=models.DO_NOTHING, related_name="+", db_index=False, db_constraint=False)
    value = models.DecimalField(max_digits=VALUE_DIGITS, decimal_places=VALUE_PLACES, default=1)
    timestamp = models.DateTimeField()
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001 - NULL = no dedup
    dimensions = models.JSONField(default=dict, blank=True)
    ingested_at = models.DateTimeField()
    canceled_at = models.DateTimeField(null=True, blank=True)
    cancel_reason = models.CharField(max_length=500, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(value__gte=0), name="meter_event_value_non_negative"),
        ]
        indexes = [
            # Usage queries, roll-ups, the admin browser by customer: one customer's events of one meter in
            # a time range. The only B-tree written per event (on PostgreSQL, BRIN indexes on id and
            # timestamp sit beside it; see the partitioning migration).
            models.Index(fields=["customer", "meter", "timestamp"], name="meter_event_usage_idx"),
            # Billing's "what was canceled since this invoice": only canceled rows are in it, so it costs
            # ingestion nothing and stays small.
            models.Index(
                fields=["customer", "meter", "canceled_at"],
                condition=Q(canceled_at__isnull=False),
                name="meter_event_canceled_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.public_id} {self.meter_id} {self.value}"

    @property
    def public_id(self) -> str:
        from metering.ids import event_public_id

        return event_public_id(self.id, self.token)


class MeterEventKey(models.Model):
    """The dedup guard: one row per (customer, idempotency key) ever ingested, holding its event's id and
    timestamp (which name the event's partition).

    The key is a 128-bit MD5 of customer id and idempotency key, not the two texts: it keeps this table
    and its index at a third of the size, and the database still refuses a second row for the same key,
    across every partition of the events table. Two different keys with the same hash are handled
    exactly by probing (`metering.ingest`): the event row keeps its real customer and key, a conflict is a
    duplicate only when they match, and otherwise the event takes the next probe's hash.
    Never deleted, also when old partitions are detached, so a key stays used forever.
    """

    key_hash = models.UUIDField(primary_key=True)
    event_id = models.BigIntegerField()
    timestamp = models.DateTimeField()

    def __str__(self) -> str:
        return f"key {self.key_hash} -> {self.event_id}"


class UsageHourly(models.Model):
    """Roll-up of one hour of one meter for one customer: exactly the non-canceled, filter-matching events
    of that hour, as of the last roll-up. An hour with a `UsageDirtyHour` row is not trusted."""

    meter = models.ForeignKey(Meter, on_delete=models.CASCADE, related_name="+", db_index=False)
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="+", db_index=False)
    hour = models.DateTimeField()
    event_count = models.BigIntegerField()
    value_sum = models.DecimalField(max_digits=VALUE_DIGITS, decimal_places=VALUE_PLACES)
    value_max = models.DecimalField(max_digits=VALUE_DIGITS, decimal_places=VALUE_PLACES)
    latest_value = models.DecimalField(max_digits=VALUE_DIGITS, decimal_places=VALUE_PLACES)
    latest_timestamp = models.DateTimeField()
    latest_event_id = models.BigIntegerField()
    # weighted_sum meters only (NULL for the others): the hour's earliest event (timestamp, id) and the
    # integral, in value x microseconds, of the values held from that event to the end of the hour (each
    # value until the next event of the hour). What is held before the first event is the value carried
    # in from an earlier hour, which the read takes from the previous row, so a late event changes only
    # its own hour's row.
    first_timestamp = models.DateTimeField(null=True)
    held_integral = models.DecimalField(max_digits=60, decimal_places=VALUE_PLACES, null=True)
    rolled_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["meter", "customer", "hour"], name="usage_hourly_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.meter_id} {self.customer_id} {self.hour:%Y-%m-%d %H}:00"


class UsageHourlyGroup(models.Model):
    """Roll-up of one hour of one meter for one customer, per distinct set of dimensions: exactly the
    non-canceled, filter-matching events of that hour whose `dimensions` equal this row's, as of the last
    roll-up. Reads with `group_by`, dimension filters or unique_count add these rows up (filtering and
    grouping on `dimensions`, counting distinct unique-key values across them) instead of the raw events;
    the rows per hour are the distinct dimension sets of the hour, at most its events. Kept exact by the
    same `UsageDirtyHour` rows as `UsageHourly`, rewritten by the same job in the same transaction.

    `latest_*` are filled for `latest` meters only (the others never read them).

    weighted_sum (the integral of a gauge over time) fits on these rows without reading raw events: add
    `first_timestamp` and `first_value` (the hour's earliest event) and `held_integral` (the sum of
    value x seconds each event's value is held until the next event of the same group or the hour's end).
    A period's integral is then, group by group and hour by hour, the value carried in from the previous
    hour's `latest_value` times (first_timestamp - hour start) plus `held_integral`, with the raw-edge
    hours computed the same way from events, as every other aggregation here is.
    """

    meter = models.ForeignKey(Meter, on_delete=models.CASCADE, related_name="+", db_index=False)
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="+", db_index=False)
    hour = models.DateTimeField()
    # MD5 of the canonical text of `dimensions`: equal sets of dimensions, equal hash.
    dimensions_hash = models.UUIDField()
    dimensions = models.JSONField(default=dict)
    event_count = models.BigIntegerField()
    value_sum = models.DecimalField(max_digits=VALUE_DIGITS, decimal_places=VALUE_PLACES)
    value_max = models.DecimalField(max_digits=VALUE_DIGITS, decimal_places=VALUE_PLACES)
    latest_value = models.DecimalField(max_digits=VALUE_DIGITS, decimal_places=VALUE_PLACES, null=True)
    latest_timestamp = models.DateTimeField(null=True)
    latest_event_id = models.BigIntegerField(null=True)
    rolled_at = models.DateTimeField()

    class Meta:
        constraints = [
            # Also the index of every read: one customer's groups of one meter over a range of hours.
            models.UniqueConstraint(
                fields=["customer", "meter", "hour", "dimensions_hash"], name="usage_hourly_group_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.meter_id} {self.customer_id} {self.hour:%Y-%m-%d %H}:00 {self.dimensions}"


class UsageDailyGroup(models.Model):
    """The day's `UsageHourlyGroup` rows added up per distinct set of dimensions (UTC days).

    Read only for whole days without a dirty hour: the roll-up job recomputes a day, under an advisory
    lock on (meter, customer, day), in every transaction that rolls up one of its hours, so a day whose
    hours are all clean was last recomputed after its last hour was. unique_count over a month then
    reads 31 days of distinct values instead of 744 hours of them."""

    meter = models.ForeignKey(Meter, on_delete=models.CASCADE, related_name="+", db_index=False)
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="+", db_index=False)
    day = models.DateTimeField()
    dimensions_hash = models.UUIDField()
    dimensions = models.JSONField(default=dict)
    event_count = models.BigIntegerField()
    value_sum = models.DecimalField(max_digits=VALUE_DIGITS, decimal_places=VALUE_PLACES)
    value_max = models.DecimalField(max_digits=VALUE_DIGITS, decimal_places=VALUE_PLACES)
    latest_value = models.DecimalField(max_digits=VALUE_DIGITS, decimal_places=VALUE_PLACES, null=True)
    latest_timestamp = models.DateTimeField(null=True)
    latest_event_id = models.BigIntegerField(null=True)
    rolled_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["customer", "meter", "day", "dimensions_hash"], name="usage_daily_group_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.meter_id} {self.customer_id} {self.day:%Y-%m-%d} {self.dimensions}"


class UsageUniqueSpan(models.Model):
    """unique_count meters only: the sorted distinct values of the meter's unique key (as text, what
    `dimensions ->> key` gives) among one customer's non-canceled, filter-matching events in
    [span_start, span_start + span_hours), and how many such events carry the key.

    Spans are an hour, a 6-hour block (aligned to 00/06/12/18 UTC) or a UTC day, so a period with partial
    days at both ends is covered by a few dozen rows instead of 24 hours x every distinct set of
    dimensions. A span with no such events has no row. The roll-up job rewrites an hour's span from the
    hour's `UsageHourlyGroup` rows, then its block's and its day's from the spans below them, under the
    day's advisory lock, in every transaction that rolls up one of its hours; so a span none of whose
    hours has a `UsageDirtyHour` row is exact, and reads use only such spans (dirty ones split down to
    their clean hours, dirty hours read raw)."""

    meter = models.ForeignKey(Meter, on_delete=models.CASCADE, related_name="+", db_index=False)
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="+", db_index=False)
    span_start = models.DateTimeField()
    span_hours = models.SmallIntegerField()
    event_count = models.BigIntegerField()
    # A JSON list of text, sorted by code point (jsonb on PostgreSQL, text on SQLite).
    unique_values = models.JSONField(default=list)

    class Meta:
        constraints = [
            # Also the index of every read: one customer's spans of one meter at given starts.
            models.UniqueConstraint(
                fields=["customer", "meter", "span_start", "span_hours"], name="usage_unique_span_unique"
            ),
            models.CheckConstraint(condition=Q(span_hours__in=[1, 6, 24]), name="usage_unique_span_hours"),
        ]

    def __str__(self) -> str:
        return f"{self.meter_id} {self.customer_id} {self.span_start:%Y-%m-%d %H}:00 +{self.span_hours}h"


class UsageDirtyHour(models.Model):
    """An hour whose roll-up is missing or stale: written in the same transaction as the events (or the
    cancellation) that changed it, removed by the roll-up job once it has recomputed the hour.

    Usage queries read dirty hours from raw events, so they are exact at every moment."""

    meter = models.ForeignKey(Meter, on_delete=models.CASCADE, related_name="+", db_index=False)
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="+", db_index=False)
    hour = models.DateTimeField()
    touched_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["meter", "customer", "hour"], name="usage_dirty_hour_unique"),
        ]

    def __str__(self) -> str:
        return f"dirty {self.meter_id} {self.customer_id} {self.hour:%Y-%m-%d %H}:00"


# The usage push's tables live in their own module; importing them here makes them this app's models.
from metering.alerts_models import UsageAlert, UsageAlertTrigger  # noqa: E402, F401
from metering.class_stats_models import UsageHourlyClassStats  # noqa: E402, F401
from metering.push.models import (  # noqa: E402, F401
    MeterMapping,
    UsagePush,
    UsagePushLane,
    UsagePushReconciliation,
)
