"""The catalog: products, prices and coupons. Subscriptions arrive with their own issue.

Writes go through `subscriptions.services`; these models hold the shape and the invariants the database
can enforce (named CheckConstraint/UniqueConstraint), not business rules.
"""

from __future__ import annotations

from django.db import models
from django.db.models import F, Q
from django.utils.functional import cached_property

from billing_site.ids import PublicIdField, TimestampedModel
from subscriptions.pricing import FixedAmount, TieredAmount, parse_amount


class Product(TimestampedModel):
    """Something the operator sells. Archived (`active=False`) products keep their prices and history."""

    id = PublicIdField("prod")
    name = models.CharField(max_length=255)
    description = models.TextField(blank=True)
    active = models.BooleanField(default=True)
    metadata = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=~Q(name=""), name="product_name_not_blank"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.id})"


class Price(TimestampedModel):
    """A price as the price-model seed describes it: type, duration, and a fixed or tiered amount.

    The amount is immutable once created (invoices and subscriptions point at it); to change what
    something costs, create a new price and archive the old one.

    `amount` is the canonical amount, exactly `pricing.amount_to_dict()`: unit prices and `up_to` as
    decimal strings, flats as integer minor units. It is JSON on purpose: SQLite (the dev and default test
    database) stores a `decimal` column as an 8-byte float, which keeps only ~15 significant digits, and
    a unit price has up to 12 decimal places on top of its integer part. Strings in JSON are exact on every
    backend; `engine_amount` re-validates them through the pricing engine on read. The columns `currency`,
    `model` and `mode` are written from the same parsed amount, in the same insert, so lists can filter
    on them (and on Postgres `amount` itself can be queried as JSONB).
    """

    class Type(models.TextChoices):
        STANDALONE = "standalone"
        PRODUCT = "product"

    class DurationUnit(models.TextChoices):
        DAY = "day"
        WEEK = "week"
        MONTH = "month"
        YEAR = "year"

    class AmountModel(models.TextChoices):
        FIXED = "fixed"
        TIERED = "tiered"

    class Mode(models.TextChoices):
        GRADUATED = "graduated"
        TOTAL = "total"

    id = PublicIdField("price")
    type = models.CharField(max_length=10, choices=Type.choices)
    product = models.ForeignKey(Product, null=True, blank=True, on_delete=models.PROTECT, related_name="prices")
    duration_amount = models.PositiveSmallIntegerField()
    duration_unit = models.CharField(max_length=5, choices=DurationUnit.choices)
    amount = models.JSONField(help_text="Canonical amount: pricing.amount_to_dict() of the parsed amount.")
    currency = models.CharField(max_length=3, help_text="ISO 4217, lower case; equals amount.currency.")
    model = models.CharField(max_length=6, choices=AmountModel.choices)
    mode = models.CharField(max_length=9, choices=Mode.choices, blank=True, help_text="Tiered prices only.")
    name = models.CharField(max_length=255, help_text="Customer-facing; generated from amount and duration if unset.")
    description = models.TextField(blank=True, help_text="Internal; never shown to customers.")
    # A metered price takes its quantity from this meter's usage; a licensed one (no meter) from the
    # subscription item.
    meter = models.ForeignKey("metering.Meter", null=True, blank=True, on_delete=models.PROTECT, related_name="prices")
    lookup_key = models.CharField(max_length=200, blank=True)
    active = models.BooleanField(default=True)
    metadata = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(type="product", product__isnull=False) | Q(type="standalone", product__isnull=True),
                name="price_type_matches_product",
            ),
            models.CheckConstraint(
                condition=Q(duration_amount__gte=1) & Q(duration_unit__in=["day", "week", "month", "year"]),
                name="price_duration_valid",
            ),
            models.CheckConstraint(
                condition=Q(model="fixed", mode="") | Q(model="tiered", mode__in=["graduated", "total"]),
                name="price_mode_matches_model",
            ),
            models.CheckConstraint(condition=~Q(currency=""), name="price_currency_set"),
            models.CheckConstraint(condition=~Q(name=""), name="price_name_not_blank"),
            # A lookup key names one live price ("the current pro-monthly price"); archived prices keep
            # their key for history, so it can be reused by their successor. This partial index also
            # serves `?lookup_key=...&active=true`.
            models.UniqueConstraint(
                fields=["lookup_key"],
                condition=Q(active=True) & ~Q(lookup_key=""),
                name="price_lookup_key_unique_active",
                violation_error_message="Another active price already has this lookup key.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.id})"

    @cached_property
    def engine_amount(self) -> FixedAmount | TieredAmount:
        """The amount as the pricing engine's dataclass, parsed (and validated) from the stored JSON."""
        return parse_amount(self.amount)


class Coupon(TimestampedModel):
    """A discount: a percentage or a fixed amount in one currency, applied once, for N periods, or forever.

    The discount terms are immutable once created (subscriptions that redeemed it rely on them); name,
    active, metadata, max_redemptions and redeem_by can change. `times_redeemed` is counted by the
    subscriptions that apply the coupon (compare-and-set against `max_redemptions`).
    """

    class Duration(models.TextChoices):
        ONCE = "once"
        REPEATING = "repeating"
        FOREVER = "forever"

    id = PublicIdField("cpn")
    name = models.CharField(max_length=255, blank=True)
    # Seven digits is far inside what every backend stores exactly (see Price for why that matters).
    percent_off = models.DecimalField(max_digits=7, decimal_places=4, null=True, blank=True)
    amount_off = models.BigIntegerField(null=True, blank=True, help_text="Minor units of `currency`.")
    currency = models.CharField(max_length=3, blank=True, help_text="ISO 4217, lower case; amount_off only.")
    duration = models.CharField(max_length=9, choices=Duration.choices)
    duration_in_periods = models.PositiveIntegerField(null=True, blank=True)
    max_redemptions = models.PositiveIntegerField(null=True, blank=True)
    redeem_by = models.DateTimeField(null=True, blank=True)
    times_redeemed = models.PositiveIntegerField(default=0)
    active = models.BooleanField(default=True)
    metadata = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(percent_off__isnull=False, amount_off__isnull=True, currency="")
                | (Q(percent_off__isnull=True, amount_off__isnull=False) & ~Q(currency="")),
                name="coupon_percent_xor_amount",
            ),
            models.CheckConstraint(
                condition=Q(percent_off__isnull=True) | Q(percent_off__gt=0, percent_off__lte=100),
                name="coupon_percent_off_range",
            ),
            models.CheckConstraint(
                condition=Q(amount_off__isnull=True) | Q(amount_off__gt=0), name="coupon_amount_off_positive"
            ),
            models.CheckConstraint(
                condition=Q(duration="repeating", duration_in_periods__gte=1)
                | (~Q(duration="repeating") & Q(duration_in_periods__isnull=True)),
                name="coupon_periods_iff_repeating",
            ),
            models.CheckConstraint(
                condition=Q(max_redemptions__isnull=True) | Q(max_redemptions__gte=1),
                name="coupon_max_redemptions_positive",
            ),
            models.CheckConstraint(
                condition=Q(max_redemptions__isnull=True) | Q(times_redeemed__lte=F("max_redemptions")),
                name="coupon_redemptions_within_max",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name or self.id} ({self.id})"


class Subscription(TimestampedModel):
    """A customer's recurring purchase of one or more prices sharing a currency and a billing interval.

    `current_period_start/end` is the period being served now (half-open). Renewal bills licensed items
    in advance for a period and metered items in arrears once it has ended, then advances the period.
    Status changes are compare-and-set in `invoicing.billing` (which also issues the invoices they imply).
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

    id = PublicIdField("sub")
    customer = models.ForeignKey("customers.Customer", on_delete=models.PROTECT, related_name="subscriptions")
    status = models.CharField(max_length=20, choices=Status.choices)
    currency = models.CharField(max_length=3)
    interval_unit = models.CharField(max_length=5, choices=Price.DurationUnit.choices)
    interval_amount = models.PositiveSmallIntegerField()
    start_date = models.DateTimeField()
    billing_cycle_anchor = models.DateTimeField()
    current_period_start = models.DateTimeField()
    current_period_end = models.DateTimeField()
    trial_start = models.DateTimeField(null=True, blank=True)
    trial_end = models.DateTimeField(null=True, blank=True)
    cancel_at_period_end = models.BooleanField(default=False)
    canceled_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    collection_method = models.CharField(
        max_length=20, choices=CollectionMethod.choices, default=CollectionMethod.CHARGE_AUTOMATICALLY
    )
    days_until_due = models.PositiveSmallIntegerField(null=True, blank=True)
    coupon = models.ForeignKey(Coupon, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    # How many more invoices the coupon discounts: 1 for "once", N for "repeating", NULL for "forever".
    coupon_periods_remaining = models.PositiveIntegerField(null=True, blank=True)
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

    class Meta:
        constraints = [
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
