"""The catalog: products, prices and coupons.

Writes go through `catalog.services`; these models hold the shape and the invariants the database
can enforce (named CheckConstraint/UniqueConstraint), not business rules.
"""

from __future__ import annotations

from django.db import models
from django.db.models import F, Q
from django.utils.functional import cached_property

from billing_site.ids import PublicIdField, TimestampedModel
from catalog.pricing import Amount, parse_amount


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
    """A price as the price-model seed describes it: type, duration, and an amount of one of the pricing
    models (fixed, tiered, package, percentage, graduated_percentage; `catalog.amounts`).

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
        PACKAGE = "package"
        PERCENTAGE = "percentage"
        GRADUATED_PERCENTAGE = "graduated_percentage"

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
    model = models.CharField(max_length=20, choices=AmountModel.choices)
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
                condition=Q(model__in=["fixed", "package", "percentage", "graduated_percentage"], mode="")
                | Q(model="tiered", mode__in=["graduated", "total"]),
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
    def engine_amount(self) -> Amount:
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


class Feature(TimestampedModel):
    """Something a customer may use (issue 16's entitlements): `boolean` (on or off), `static` (a value
    such as a plan's seat count or support level) or `metered` (usage of `meter`, up to a limit). Attached
    to products or prices (`FeatureAttachment`); a customer is entitled to what its live subscriptions'
    prices carry. `lookup_key` is what the operator's application asks for."""

    class Type(models.TextChoices):
        BOOLEAN = "boolean"
        STATIC = "static"
        METERED = "metered"

    id = PublicIdField("feat")
    lookup_key = models.CharField(max_length=200, unique=True)
    name = models.CharField(max_length=255)
    type = models.CharField(max_length=10, choices=Type.choices)
    meter = models.ForeignKey("metering.Meter", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    active = models.BooleanField(default=True)
    metadata = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(type__in=["boolean", "static", "metered"]), name="feature_type_valid"),
            models.CheckConstraint(
                condition=Q(type="metered", meter__isnull=False) | (~Q(type="metered") & Q(meter__isnull=True)),
                name="feature_meter_iff_metered",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.lookup_key} ({self.type})"


class FeatureAttachment(models.Model):
    """A feature carried by a product (every price of it) or by one price. `value` is the static value;
    `limit` the metered allowance per period (null: unlimited). A price's own attachment overrides its
    product's for the same feature."""

    id = PublicIdField("fatt")
    feature = models.ForeignKey(Feature, on_delete=models.PROTECT, related_name="attachments")
    product = models.ForeignKey(Product, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    price = models.ForeignKey(Price, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    value = models.CharField(max_length=500, blank=True)
    limit = models.DecimalField(max_digits=30, decimal_places=12, null=True, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(product__isnull=False, price__isnull=True) | Q(product__isnull=True, price__isnull=False),
                name="feature_attachment_one_target",
            ),
            models.CheckConstraint(condition=Q(limit__isnull=True) | Q(limit__gte=0), name="feature_attachment_limit"),
            models.UniqueConstraint(
                fields=["feature", "product"],
                condition=Q(product__isnull=False),
                name="feature_attachment_product_unique",
            ),
            models.UniqueConstraint(
                fields=["feature", "price"], condition=Q(price__isnull=False), name="feature_attachment_price_unique"
            ),
        ]
        indexes = [
            models.Index(fields=["product"], condition=Q(product__isnull=False), name="feature_att_product_idx"),
            models.Index(fields=["price"], condition=Q(price__isnull=False), name="feature_att_price_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.feature_id} on {self.price_id or self.product_id}"
