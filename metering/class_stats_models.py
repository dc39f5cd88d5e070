"""The table of `metering.class_stats`: hourly event statistics per classifier (two thresholds)."""

from __future__ import annotations

from django.db import models

from customers.models import Customer
from metering.models import VALUE_DIGITS, VALUE_PLACES, Meter


class UsageHourlyClassStats(models.Model):
    """One hour of one meter for one customer, its events classed by one classifier (`classifier_key`,
    `metering.class_stats.Classifier.key`): how many fall below its low threshold, above its high one, and
    the count and value sum of the rest, with the hour's totals. Exactly the events `UsageHourly` counts for
    that hour: written in the same roll-up transaction, with the same `rolled_at` and `event_count`, and
    every row of an hour is deleted when the hour is recomputed (an hour whose classifier has no row is
    read from raw events). Hours without events have no row."""

    meter = models.ForeignKey(Meter, on_delete=models.CASCADE, related_name="+", db_index=False)
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="+", db_index=False)
    hour = models.DateTimeField()
    classifier_key = models.CharField(max_length=32)
    event_count = models.BigIntegerField()
    value_sum = models.DecimalField(max_digits=VALUE_DIGITS, decimal_places=VALUE_PLACES)
    below_count = models.BigIntegerField()
    above_count = models.BigIntegerField()
    middle_count = models.BigIntegerField()
    middle_sum = models.DecimalField(max_digits=VALUE_DIGITS, decimal_places=VALUE_PLACES)
    rolled_at = models.DateTimeField()

    class Meta:
        constraints = [
            # Also the index of the read: one customer's hours of one meter and classifier over a range.
            models.UniqueConstraint(
                fields=["customer", "meter", "classifier_key", "hour"], name="usage_hourly_class_stats_unique"
            ),
            models.CheckConstraint(
                condition=models.Q(below_count__gte=0, above_count__gte=0, middle_count__gte=0)
                & models.Q(event_count=models.F("below_count") + models.F("above_count") + models.F("middle_count")),
                name="usage_hourly_class_stats_counts",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.meter_id} {self.customer_id} {self.hour:%Y-%m-%d %H}:00 {self.classifier_key}"
