"""Usage alerts' tables (imported by `metering.models`)."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from billing_site.ids import PublicIdField, TimestampedModel
from customers.models import Customer

VALUE_DIGITS = 38
VALUE_PLACES = 12


class UsageAlert(TimestampedModel):
    """A threshold on a customer's usage of one meter (`kind=usage`), or on the amount of its current
    period's upcoming invoice (`kind=invoice_amount`, threshold in minor units), within each period.

    one_time: one trigger per period, when the value reaches the threshold. recurring: one trigger per
    multiple of the threshold reached in the period (threshold, 2 x threshold, ...).
    `period_start/end` is the period being watched now (the customer's current billing period, or the UTC
    calendar month without one), moved on by the `evaluate_usage_alerts` job."""

    class Kind(models.TextChoices):
        USAGE = "usage"
        INVOICE_AMOUNT = "invoice_amount"

    class Recurrence(models.TextChoices):
        ONE_TIME = "one_time"
        RECURRING = "recurring"

    id = PublicIdField("alrt")
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="+")
    meter = models.ForeignKey("metering.Meter", on_delete=models.PROTECT, related_name="+", null=True, blank=True)
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.USAGE)
    name = models.CharField(max_length=255, blank=True)
    threshold = models.DecimalField(max_digits=VALUE_DIGITS, decimal_places=VALUE_PLACES)
    recurrence = models.CharField(max_length=20, choices=Recurrence.choices, default=Recurrence.ONE_TIME)
    active = models.BooleanField(default=True)
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    metadata = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(threshold__gt=0), name="usage_alert_threshold_positive"),
            models.CheckConstraint(
                condition=Q(kind="usage", meter__isnull=False) | Q(kind="invoice_amount", meter__isnull=True),
                name="usage_alert_meter_matches_kind",
            ),
            models.CheckConstraint(condition=Q(period_end__gt=models.F("period_start")), name="usage_alert_period"),
        ]
        indexes = [
            # Ingestion's lookup: the active alerts of a batch's (customer, meter) pairs.
            models.Index(fields=["customer", "meter"], condition=Q(active=True), name="usage_alert_active_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.id} {self.kind} >= {self.threshold}"


class UsageAlertTrigger(models.Model):
    """One crossing: the alert reached `level` x threshold in the period starting at `period_start`.
    The unique constraint is what makes it happen once, whoever evaluates (concurrent ingestion batches,
    the job); the `usage_alert.triggered` event is written in the transaction that inserts the row."""

    id = models.BigAutoField(primary_key=True)
    alert = models.ForeignKey(UsageAlert, on_delete=models.CASCADE, related_name="triggers")
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="+", db_index=False)
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    level = models.PositiveIntegerField()
    threshold = models.DecimalField(max_digits=VALUE_DIGITS, decimal_places=VALUE_PLACES)
    value = models.DecimalField(max_digits=VALUE_DIGITS, decimal_places=VALUE_PLACES)
    triggered_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["alert", "period_start", "level"], name="usage_alert_trigger_once"),
        ]

    def __str__(self) -> str:
        return f"{self.alert_id} level {self.level} at {self.triggered_at:%Y-%m-%d %H:%M}"
