"""Subscriptions and their items. Every write goes through `subscriptions.services`: the lifecycle (create,
change, cancel, reactivate, renew, end) and the one function that changes a subscription's status."""

from __future__ import annotations

from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Lower

from billing_site.ids import PublicIdField, TimestampedModel
from catalog.models import Coupon, Price


class Subscription(TimestampedModel):
    """A customer's recurring purchase of one or more prices sharing a currency and a billing interval.

    `current_period_start/end` is the period being served now (half-open). Renewal bills licensed items
    in advance for a period and metered items in arrears once it has ended, then advances the period.
    Status changes go through `subscriptions.services.status.subscription_status_change` only.
    """

    class Status(models.TextChoices):
        TRIALING = "trialing"
        ACTIVE = "active"
        PAST_DUE = "past_due"
        UNPAID = "unpaid"
        CANCELED = "canceled"

    class CollectionMethod(models.TextChoices):
        CHARGE_AUTOMATICALLY = "charge_automatically"
        SEND_INVOICE = "send_invoice"

    class CancellationReason(models.TextChoices):
        REQUESTED = "requested"  # through the API or admin
        PAYMENT_FAILED = "payment_failed"  # dunning's final action
        TENANT_OFFBOARDED = "tenant_offboarded"  # the control plane's offboarding

    id = PublicIdField("sub")
    customer = models.ForeignKey("customers.Customer", on_delete=models.PROTECT, related_name="subscriptions")
    status = models.CharField(max_length=20, choices=Status.choices)
    currency = models.CharField(max_length=3)
    interval_unit = models.CharField(max_length=5, choices=Price.DurationUnit.choices)
    interval_amount = models.PositiveSmallIntegerField()
    start_date = models.DateTimeField()
    billing_cycle_anchor = models.DateTimeField()
    timezone = models.CharField(
        max_length=64,
        blank=True,
        help_text="The customer's IANA time zone when the subscription started: its periods follow that "
        "zone's calendar (stored in UTC). Blank: UTC.",
    )
    current_period_start = models.DateTimeField()
    current_period_end = models.DateTimeField()
    trial_start = models.DateTimeField(null=True, blank=True)
    trial_end = models.DateTimeField(null=True, blank=True)
    cancel_at_period_end = models.BooleanField(default=False)
    canceled_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    cancellation_reason = models.CharField(max_length=20, choices=CancellationReason.choices, blank=True)
    collection_method = models.CharField(
        max_length=20, choices=CollectionMethod.choices, default=CollectionMethod.CHARGE_AUTOMATICALLY
    )
    days_until_due = models.PositiveSmallIntegerField(null=True, blank=True)
    coupon = models.ForeignKey(Coupon, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    # How many more invoices the coupon discounts: 1 for "once", N for "repeating", NULL for "forever".
    coupon_periods_remaining = models.PositiveIntegerField(null=True, blank=True)
    # Minimum spend of the whole subscription per period, minor units of `currency` (catalog.minimums):
    # a period whose lines add up to less is billed a true-up line, prorated for a partial period.
    minimum_amount = models.BigIntegerField(null=True, blank=True)
    # Progressive billing: usage amounts (minor units, ascending) at which the period's usage so far is
    # invoiced at once; the period's final invoice subtracts what was billed. Empty: off.
    progressive_billing_thresholds = models.JSONField(default=list, blank=True)
    metadata = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(current_period_end__gt=F("current_period_start")), name="subscription_period_ordered"
            ),
            models.CheckConstraint(
                condition=Q(status="canceled") | Q(ended_at__isnull=True), name="subscription_ended_only_if_canceled"
            ),
            models.CheckConstraint(
                condition=~Q(collection_method="send_invoice") | Q(days_until_due__isnull=False),
                name="subscription_send_invoice_has_terms",
            ),
            models.CheckConstraint(
                condition=Q(minimum_amount__isnull=True) | Q(minimum_amount__gt=0), name="subscription_minimum_positive"
            ),
        ]
        indexes = [
            # The renewal job's scan: live subscriptions whose period has ended.
            models.Index(
                fields=["current_period_end"],
                condition=Q(status__in=["trialing", "active", "past_due", "unpaid"]),
                name="subscription_due_idx",
            ),
            models.Index(fields=["customer", "status"], name="subscription_customer_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.id} ({self.status})"


class SubscriptionItem(TimestampedModel):
    """One price on a subscription. A metered price takes its quantity from usage (quantity is NULL)."""

    id = PublicIdField("si")
    subscription = models.ForeignKey(Subscription, on_delete=models.CASCADE, related_name="items")
    price = models.ForeignKey(Price, on_delete=models.PROTECT, related_name="+")
    quantity = models.DecimalField(max_digits=20, decimal_places=6, null=True, blank=True)
    # When the item joined and left the subscription (a change mid-period): a metered item bills the usage
    # of its own part of the period. Removed items stay, since lines and watermarks refer to them.
    added_at = models.DateTimeField()
    removed_at = models.DateTimeField(null=True, blank=True)
    # This item's minimum spend per period (minor units), prorated by the part of the period it served.
    minimum_amount = models.BigIntegerField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(minimum_amount__isnull=True) | Q(minimum_amount__gt=0),
                name="subscription_item_minimum_positive",
            ),
            models.UniqueConstraint(
                fields=["subscription", "price"],
                condition=Q(removed_at__isnull=True),
                name="subscription_item_price_unique",
            ),
            models.CheckConstraint(
                condition=Q(quantity__isnull=True) | Q(quantity__gte=0), name="subscription_item_quantity_non_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.id} {self.price_id} x {self.quantity}"


class Tier(TimestampedModel):
    """A tier of the control plane (the `tier` of an onboarding event) and the plan a new tenant of that
    tier is subscribed to: prices by lookup key, a trial, how it pays and who bills it.

    Prices are named by lookup key, not id, so that replacing a price (a new price taking the key with
    `transfer_lookup_key`) moves every future tenant of the tier onto it without editing the tier; the
    key is resolved when a tenant is onboarded. Names are unique whatever their case: the control plane
    says `basic` in one place and `BASIC` in another.
    """

    class BillingMode(models.TextChoices):
        NATIVE = "native"  # we invoice and collect
        PROVIDER = "provider"  # the payment provider bills; we meter and push usage

    id = PublicIdField("tier")
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    trial_days = models.PositiveSmallIntegerField(default=0)
    billing_mode = models.CharField(max_length=10, choices=BillingMode.choices, default=BillingMode.NATIVE)
    collection_method = models.CharField(
        max_length=20,
        choices=Subscription.CollectionMethod.choices,
        default=Subscription.CollectionMethod.CHARGE_AUTOMATICALLY,
    )
    days_until_due = models.PositiveSmallIntegerField(null=True, blank=True)
    active = models.BooleanField(default=True)
    metadata = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(Lower("name"), name="tier_name_unique_ci"),
            models.CheckConstraint(condition=Q(trial_days__lte=730), name="tier_trial_days_max"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.id})"


class TierItem(models.Model):
    """One price of a tier's plan, by lookup key. A licensed price has a quantity (default 1); a metered
    price has none (its quantity is the usage)."""

    tier = models.ForeignKey(Tier, on_delete=models.CASCADE, related_name="items")
    lookup_key = models.CharField(max_length=200)
    quantity = models.DecimalField(max_digits=20, decimal_places=6, null=True, blank=True)
    position = models.PositiveSmallIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tier", "lookup_key"], name="tier_item_lookup_key_unique"),
            models.CheckConstraint(
                condition=Q(quantity__isnull=True) | Q(quantity__gte=0), name="tier_item_quantity_non_negative"
            ),
        ]
        ordering = ("tier", "position")

    def __str__(self) -> str:
        return f"{self.lookup_key} x {self.quantity}"


class PriceMigration(TimestampedModel):
    """An operator's move of every subscription on `from_price` to `to_price` (one action), now (through
    the change path, with prorations) or at each subscription's next renewal (`SubscriptionPriceMigration`
    rows, applied by renewal at the boundary)."""

    class When(models.TextChoices):
        NEXT_RENEWAL = "next_renewal"
        NOW = "now"

    id = PublicIdField("pmig")
    from_price = models.ForeignKey(Price, on_delete=models.PROTECT, related_name="+")
    to_price = models.ForeignKey(Price, on_delete=models.PROTECT, related_name="+")
    when = models.CharField(max_length=12, choices=When.choices)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=~Q(from_price=F("to_price")), name="price_migration_prices_differ"),
        ]


class SubscriptionPriceMigration(TimestampedModel):
    """One subscription item moved by a price migration: `pending` until renewal applies it at
    `effective_at` (its period's end), `applied` once its item moved, `skipped` when the item was gone by
    then (changed or ended). At most one pending move per item, by constraint."""

    class Status(models.TextChoices):
        PENDING = "pending"
        APPLIED = "applied"
        SKIPPED = "skipped"

    migration = models.ForeignKey(PriceMigration, on_delete=models.CASCADE, related_name="entries")
    subscription = models.ForeignKey(Subscription, on_delete=models.CASCADE, related_name="price_migrations")
    item = models.ForeignKey(SubscriptionItem, on_delete=models.CASCADE, related_name="+")
    to_price = models.ForeignKey(Price, on_delete=models.PROTECT, related_name="+")
    effective_at = models.DateTimeField()
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    applied_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["item"], condition=Q(status="pending"), name="subscription_price_migration_one_pending"
            ),
        ]
        indexes = [
            models.Index(fields=["subscription"], condition=Q(status="pending"), name="sub_price_migration_pending"),
        ]


class ProgressiveBilling(TimestampedModel):
    """A threshold crossed in one period of a subscription, and the invoice it issued (several thresholds
    crossed at once share one invoice). Once per (subscription, period, threshold), by constraint.
    `amount` is what that invoice billed (the period's usage so far less what earlier ones billed)."""

    subscription = models.ForeignKey(Subscription, on_delete=models.PROTECT, related_name="progressive_billings")
    period_start = models.DateTimeField()
    threshold = models.BigIntegerField()
    invoice = models.ForeignKey("invoicing.Invoice", on_delete=models.PROTECT, related_name="+")
    amount = models.BigIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["subscription", "period_start", "threshold"], name="progressive_billing_once_per_threshold"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.subscription_id} {self.period_start:%Y-%m-%d} >= {self.threshold}"
