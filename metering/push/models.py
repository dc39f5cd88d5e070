"""Tables of the usage push (imported by `metering.models`, so they belong to the metering app)."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from billing_site.ids import PublicIdField, TimestampedModel
from customers.models import Customer
from metering.models import VALUE_DIGITS, VALUE_PLACES, Meter

# Aggregations whose slice values add up to the period's value, so they can be pushed as increments.
PUSHABLE_AGGREGATIONS = (Meter.Aggregation.SUM, Meter.Aggregation.COUNT)


class MeterMapping(TimestampedModel):
    """Which provider meter a meter's usage goes to: the default for every provider customer (no
    `customer`), or one customer's override (the reference pipeline's tenant -> product code ->
    subscription item table). On Stripe a meter is named by its `event_name`; its id and payload keys are
    read from Stripe on first use (summaries are read by meter id)."""

    id = PublicIdField("mmap")
    meter = models.ForeignKey(Meter, on_delete=models.PROTECT, related_name="provider_mappings")
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    provider = models.CharField(max_length=32, default="stripe")
    event_name = models.CharField(max_length=100, help_text="The provider meter's event_name.")
    provider_meter_id = models.CharField(max_length=255, blank=True)
    customer_payload_key = models.CharField(max_length=100, blank=True)
    value_payload_key = models.CharField(max_length=100, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolve_error = models.CharField(max_length=500, blank=True)
    resolve_failed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["meter"], condition=Q(customer__isnull=True), name="meter_mapping_default_unique"
            ),
            models.UniqueConstraint(
                fields=["meter", "customer"], condition=Q(customer__isnull=False), name="meter_mapping_override_unique"
            ),
            models.CheckConstraint(condition=~Q(event_name=""), name="meter_mapping_event_name_set"),
        ]

    def __str__(self) -> str:
        scope = self.customer_id or "every customer"
        return f"{self.meter_id} -> {self.provider}:{self.event_name} ({scope})"

    @property
    def resolved(self) -> bool:
        return bool(self.provider_meter_id)


class UsagePushLane(models.Model):
    """One (customer, meter) whose usage is pushed, and how far the push has got.

    Slices go out in order and one at a time (Stripe allows one concurrent call per customer and meter):
    `pushed_through` is the end of the last slice planned, and at most one push row per lane is
    outstanding, by constraint. `changes_checked_at` says up to when late and canceled usage of planned
    slices has been compared with what was pushed. `blocked_at` is set by a refusal that retrying the
    same request cannot fix; an operator clears it (admin) once the cause is fixed."""

    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="+")
    meter = models.ForeignKey(Meter, on_delete=models.PROTECT, related_name="+")
    started_at = models.DateTimeField(help_text="Start of the lane's first slice.")
    pushed_through = models.DateTimeField()
    changes_checked_at = models.DateTimeField()
    blocked_at = models.DateTimeField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)
    last_run_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["customer", "meter"], name="usage_push_lane_unique"),
            models.CheckConstraint(
                condition=Q(pushed_through__gte=models.F("started_at")), name="usage_push_lane_forward"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.customer_id} / {self.meter_id} through {self.pushed_through:%Y-%m-%d %H:%M}"


class UsagePush(models.Model):
    """One call to the provider that changes a slice's total, written before the call.

    `value` is what the row adds to the provider's total of [slice_start, slice_end): the slice's usage
    (`push`, the first row of a slice), a later increment (`correction`), or minus the value of an event
    it cancels (`cancel`, a meter event adjustment). The identifier is the row id, and `params` is the
    exact request, so every retry is the same request with the same identifier and idempotency key.

    status: `pending` (written; not sent yet, or in flight) -> `sent` (the provider took it) | `failed`
    (the provider refused it, or it was found never recorded: it changed nothing) | `unknown` (the answer
    was lost: retried with the same identifier while the provider's 24 h uniqueness window holds, then
    settled by reading the provider's meter event summaries, never sent again blindly). `unreconcilable`
    rows are never sent: a difference the provider cannot take (a negative one outside the cancel window,
    a slice older than the provider accepts), kept with its amount for an operator."""

    class Kind(models.TextChoices):
        PUSH = "push"
        CORRECTION = "correction"
        CANCEL = "cancel"

    class Status(models.TextChoices):
        PENDING = "pending"
        SENT = "sent"
        FAILED = "failed"
        UNKNOWN = "unknown"
        UNRECONCILABLE = "unreconcilable"

    class SettledBy(models.TextChoices):
        ANSWER = "answer"
        SUMMARY = "summary"
        OPERATOR = "operator"

    OUTSTANDING = (Status.PENDING, Status.UNKNOWN)

    id = PublicIdField("upush")
    lane = models.ForeignKey(UsagePushLane, on_delete=models.PROTECT, related_name="pushes")
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="+", db_index=False)
    meter = models.ForeignKey(Meter, on_delete=models.PROTECT, related_name="+", db_index=False)
    kind = models.CharField(max_length=12, choices=Kind.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    slice_start = models.DateTimeField()
    slice_end = models.DateTimeField()
    value = models.DecimalField(max_digits=VALUE_DIGITS, decimal_places=VALUE_PLACES)
    identifier = models.CharField(max_length=100, unique=True)
    cancels = models.ForeignKey("self", on_delete=models.PROTECT, null=True, blank=True, related_name="canceled_by")
    event_name = models.CharField(max_length=100, blank=True)
    params = models.JSONField(default=dict, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    first_attempt_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    claimed_until = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    settled_by = models.CharField(max_length=10, choices=SettledBy.choices, blank=True)
    error_code = models.CharField(max_length=100, blank=True)
    error_message = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [
            # One call in flight per (customer, meter), and slices strictly in order: a lane plans its next
            # row only once the previous one is settled.
            models.UniqueConstraint(
                fields=["customer", "meter"],
                condition=Q(status__in=["pending", "unknown"]),
                name="usage_push_one_outstanding",
            ),
            # A slice's usage is pushed once; anything later is a correction of it.
            models.UniqueConstraint(
                fields=["customer", "meter", "slice_start"], condition=Q(kind="push"), name="usage_push_once_per_slice"
            ),
            # An event is canceled once (a cancel the provider refused does not count).
            models.UniqueConstraint(
                fields=["cancels"],
                condition=Q(cancels__isnull=False) & ~Q(status="failed"),
                name="usage_push_cancel_once",
            ),
            models.CheckConstraint(condition=Q(slice_start__lt=models.F("slice_end")), name="usage_push_slice_order"),
            models.CheckConstraint(
                condition=Q(kind__in=["push", "correction"], value__gt=0, cancels__isnull=True)
                | Q(kind="cancel", value__lt=0, cancels__isnull=False)
                | Q(kind="correction", status="unreconcilable", cancels__isnull=True) & ~Q(value=0),
                name="usage_push_value_matches_kind",
            ),
            models.CheckConstraint(
                condition=~Q(status="sent") | Q(sent_at__isnull=False), name="usage_push_sent_has_time"
            ),
        ]
        indexes = [
            # A slice's rows (corrections, settlement, reconciliation).
            models.Index(fields=["customer", "meter", "slice_start"], name="usage_push_slice_idx"),
            # The API's list filtered by customer, newest first.
            models.Index(fields=["customer", "-id"], name="usage_push_customer_idx"),
            # What needs an operator's eye: everything not plainly sent, a small part of the table.
            models.Index(fields=["status"], condition=~Q(status="sent"), name="usage_push_attention_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.id} {self.kind} {self.value} [{self.slice_start:%Y-%m-%d %H:%M}) {self.status}"


class UsagePushReconciliation(models.Model):
    """One run of `usage_push_reconcile`: our per-slice totals against the provider's meter event
    summaries, with every slice that differs."""

    class Status(models.TextChoices):
        RUNNING = "running"
        OK = "ok"
        MISMATCH = "mismatch"
        ERROR = "error"

    id = PublicIdField("urec")
    start = models.DateTimeField()
    end = models.DateTimeField()
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    lanes = models.PositiveIntegerField(default=0)
    slices = models.PositiveIntegerField(default=0)
    mismatches = models.PositiveIntegerField(default=0)
    rows = models.JSONField(default=list, blank=True, help_text="The slices that differ.")
    error = models.TextField(blank=True)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"reconciliation {self.start:%Y-%m-%d %H:%M} - {self.end:%Y-%m-%d %H:%M}: {self.status}"
