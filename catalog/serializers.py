"""Request and response shapes of the catalog API. Shapes and types only: the rules (tiers, immutability,
coupon terms) are checked by the pricing engine and the services, so every caller gets them."""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.fields import empty

from billing_site.api import InputSerializer
from billing_site.fields import CurrencyField, DecimalString, MetadataField, NullableCharField
from catalog.models import Coupon, Feature, FeatureAttachment, Price, Product
from catalog.pricing import MAX_MINOR, PricingError, amount_to_dict, parse_quantity
from catalog.services import MAX_DURATION

_MAX_INT32 = 2**31 - 1


@extend_schema_field(OpenApiTypes.ANY)
class ImmutableField(serializers.Field):
    """A field a PATCH may not touch: any value, null included, is a 400 with code `immutable`."""

    def __init__(self, noun: str, **kwargs: Any) -> None:
        self.noun = noun
        kwargs.setdefault("required", False)
        kwargs.setdefault("help_text", f"Immutable: sending it is a 400 with code 'immutable'. Create a new {noun}.")
        super().__init__(**kwargs)

    def run_validation(self, data: Any = empty) -> Any:
        if data is empty:
            return super().run_validation(data)  # absent: skipped
        raise serializers.ValidationError(
            f"A {self.noun}'s {self.field_name} cannot change once it is created.", code="immutable"
        )


# --- Products -----------------------------------------------------------------------------------------


class ProductCreateInput(InputSerializer):
    name = serializers.CharField(max_length=255)
    description = serializers.CharField(max_length=5000, required=False, allow_blank=True, allow_null=True)
    active = serializers.BooleanField(required=False)
    metadata = MetadataField(required=False)


class ProductUpdateInput(InputSerializer):
    name = serializers.CharField(max_length=255, required=False)
    description = serializers.CharField(max_length=5000, required=False, allow_blank=True, allow_null=True)
    active = serializers.BooleanField(required=False, help_text="false archives the product.")
    metadata = MetadataField(required=False)


class ProductOutput(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.SerializerMethodField()
    name = serializers.CharField()
    description = NullableCharField()
    active = serializers.BooleanField()
    metadata = MetadataField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    def get_object(self, obj: Product) -> str:
        return "product"


# --- Prices -------------------------------------------------------------------------------------------


class TierDoc(serializers.Serializer):
    up_to = serializers.CharField(allow_null=True, help_text="Cumulative, inclusive; null on the last tier.")
    unit = serializers.CharField(help_text="Minor units per unit, decimal string (up to 12 places).")
    flat = serializers.IntegerField(
        required=False, help_text="Minor units, once per tier that holds any units (default 0)."
    )


class AmountDoc(serializers.Serializer):
    """OpenAPI description of a price amount (every model); the pricing engine validates it."""

    model = serializers.ChoiceField(choices=Price.AmountModel.choices)
    currency = serializers.CharField()
    unit = serializers.CharField(required=False, help_text="fixed: minor units per unit, decimal string.")
    flat = serializers.IntegerField(required=False, help_text="fixed: minor units.")
    mode = serializers.ChoiceField(
        choices=[*Price.Mode.choices, ("volume", "Volume")],
        required=False,
        help_text="tiered only. `volume` is the common name of `total` (accepted, answered as `total`).",
    )
    tiers = TierDoc(many=True, required=False, help_text="tiered and graduated_percentage (rate instead of unit).")
    package_size = serializers.CharField(required=False, help_text="package: units per block.")
    amount = serializers.CharField(required=False, help_text="package: minor units per started block.")
    free_units = serializers.CharField(required=False, help_text="package: free units before the first block.")
    rate = serializers.CharField(required=False, help_text='percentage: percent of the volume, "2.9".')
    fixed_fee = serializers.CharField(required=False, help_text="percentage: minor units per event.")
    free_units_per_events = serializers.IntegerField(required=False, help_text="percentage: free events.")
    free_amount = serializers.CharField(required=False, help_text="percentage: free volume.")
    per_event_min = serializers.CharField(required=False, help_text="percentage: minimum charge per event.")
    per_event_max = serializers.CharField(required=False, help_text="percentage: maximum charge per event.")


@extend_schema_field(AmountDoc)
class AmountField(serializers.DictField):
    """A JSON object passed as-is (numbers stay Decimal/int) to the pricing engine, which names the bad path."""


class DurationInput(InputSerializer):
    amount = serializers.IntegerField(min_value=1, max_value=max(MAX_DURATION.values()))
    unit = serializers.ChoiceField(choices=Price.DurationUnit.choices)


class PriceCreateInput(InputSerializer):
    type = serializers.ChoiceField(choices=Price.Type.choices)
    product = serializers.CharField(source="product_id", max_length=40, required=False, allow_null=True)
    duration = DurationInput()
    amount = AmountField()
    name = serializers.CharField(max_length=255, required=False, allow_blank=True, allow_null=True)
    description = serializers.CharField(max_length=5000, required=False, allow_blank=True, allow_null=True)
    meter = serializers.CharField(
        source="meter_id", max_length=40, required=False, allow_null=True, help_text="mtr_…: a metered price"
    )
    lookup_key = serializers.CharField(max_length=200, required=False, allow_blank=True, allow_null=True)
    transfer_lookup_key = serializers.BooleanField(
        required=False, help_text="Take lookup_key from the active price that holds it (in one transaction)."
    )
    active = serializers.BooleanField(required=False)
    metadata = MetadataField(required=False)


class PriceUpdateInput(InputSerializer):
    name = serializers.CharField(
        max_length=255, required=False, allow_blank=True, allow_null=True, help_text="null regenerates the name."
    )
    description = serializers.CharField(max_length=5000, required=False, allow_blank=True, allow_null=True)
    lookup_key = serializers.CharField(max_length=200, required=False, allow_blank=True, allow_null=True)
    active = serializers.BooleanField(required=False, help_text="false archives the price.")
    metadata = MetadataField(required=False)
    amount = ImmutableField("price")
    currency = ImmutableField("price")
    duration = ImmutableField("price")
    type = ImmutableField("price")
    product = ImmutableField("price")
    meter = ImmutableField("price")


class DurationOutput(serializers.Serializer):
    amount = serializers.IntegerField(source="duration_amount")
    unit = serializers.CharField(source="duration_unit")


class PriceOutput(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.SerializerMethodField()
    type = serializers.CharField()
    product = serializers.CharField(source="product_id", allow_null=True)
    duration = DurationOutput(source="*")
    amount = serializers.SerializerMethodField()
    name = serializers.CharField()
    description = NullableCharField()
    meter = serializers.CharField(source="meter_id", allow_null=True)
    lookup_key = NullableCharField()
    active = serializers.BooleanField()
    metadata = MetadataField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    def get_object(self, obj: Price) -> str:
        return "price"

    @extend_schema_field(AmountDoc)
    def get_amount(self, obj: Price) -> dict[str, Any]:
        return amount_to_dict(obj.engine_amount)


@extend_schema_field(OpenApiTypes.STR)
class QuantityField(serializers.Field):
    """A non-negative decimal quantity: a decimal string ("1500", "0.5") or a JSON number."""

    def to_internal_value(self, data: Any) -> Any:
        try:
            return parse_quantity(data)
        except PricingError as exc:
            raise serializers.ValidationError(exc.message, code=exc.code) from None


class QuoteInput(InputSerializer):
    """`quantity` (the summed usage), or `events` (each event's value, in order): a percentage price with a
    fee per event, per-event bounds or free events is priced from its events."""

    quantity = QuantityField(required=False)
    events = serializers.ListField(child=QuantityField(), required=False, max_length=10000)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "quantity" not in attrs and "events" not in attrs:
            missing = serializers.ErrorDetail("This field is required.", "required")
            raise serializers.ValidationError({"quantity": missing})
        if "quantity" in attrs and "events" in attrs:
            raise serializers.ValidationError({"events": "Send quantity or events, not both."})
        return attrs


class BreakdownOutput(serializers.Serializer):
    tier = serializers.IntegerField(help_text="1-based; a fixed price reports tier 1.")
    quantity = serializers.CharField()
    unit = serializers.CharField()
    flat = serializers.IntegerField()
    amount = serializers.IntegerField()
    kind = serializers.CharField(
        required=False,
        help_text="Package and percentage lines: packages, free_units, rate, fixed_fee, per_event_min, "
        "per_event_max, free_value, free_events. Absent on tiers and fixed prices.",
    )


class QuoteOutput(serializers.Serializer):
    """OpenAPI only: the view renders `pricing.quote_to_dict()`."""

    amount = serializers.IntegerField()
    currency = serializers.CharField()
    breakdown = BreakdownOutput(many=True)


# --- Coupons ------------------------------------------------------------------------------------------


class CouponCreateInput(InputSerializer):
    name = serializers.CharField(max_length=255, required=False, allow_blank=True, allow_null=True)
    percent_off = serializers.DecimalField(
        max_digits=7, decimal_places=4, required=False, allow_null=True, help_text="0 < percent_off <= 100."
    )
    amount_off = serializers.IntegerField(min_value=1, max_value=MAX_MINOR, required=False, allow_null=True)
    currency = CurrencyField(required=False, allow_blank=True, allow_null=True, help_text="With amount_off.")
    duration = serializers.ChoiceField(choices=Coupon.Duration.choices)
    duration_in_periods = serializers.IntegerField(
        min_value=1, max_value=_MAX_INT32, required=False, allow_null=True, help_text="Repeating coupons only."
    )
    max_redemptions = serializers.IntegerField(min_value=1, max_value=_MAX_INT32, required=False, allow_null=True)
    redeem_by = serializers.DateTimeField(required=False, allow_null=True)
    active = serializers.BooleanField(required=False)
    metadata = MetadataField(required=False)


class CouponUpdateInput(InputSerializer):
    name = serializers.CharField(max_length=255, required=False, allow_blank=True, allow_null=True)
    active = serializers.BooleanField(required=False)
    metadata = MetadataField(required=False)
    max_redemptions = serializers.IntegerField(min_value=1, max_value=_MAX_INT32, required=False, allow_null=True)
    redeem_by = serializers.DateTimeField(required=False, allow_null=True)
    percent_off = ImmutableField("coupon")
    amount_off = ImmutableField("coupon")
    currency = ImmutableField("coupon")
    duration = ImmutableField("coupon")
    duration_in_periods = ImmutableField("coupon")


class CouponOutput(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.SerializerMethodField()
    name = NullableCharField()
    percent_off = serializers.DecimalField(max_digits=7, decimal_places=4, normalize_output=True, allow_null=True)
    amount_off = serializers.IntegerField(allow_null=True)
    currency = NullableCharField()
    duration = serializers.CharField()
    duration_in_periods = serializers.IntegerField(allow_null=True)
    max_redemptions = serializers.IntegerField(allow_null=True)
    redeem_by = serializers.DateTimeField(allow_null=True)
    times_redeemed = serializers.IntegerField()
    active = serializers.BooleanField()
    metadata = MetadataField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    def get_object(self, obj: Coupon) -> str:
        return "coupon"


# --- Features (entitlements) ------------------------------------------------------------------------


class FeatureCreateInput(InputSerializer):
    lookup_key = serializers.RegexField(r"^[A-Za-z0-9_.:\-]+$", max_length=200)
    name = serializers.CharField(max_length=255)
    type = serializers.ChoiceField(choices=Feature.Type.choices)
    meter = serializers.CharField(max_length=40, required=False, allow_null=True)
    metadata = MetadataField(required=False)


class FeatureUpdateInput(InputSerializer):
    name = serializers.CharField(max_length=255, required=False)
    active = serializers.BooleanField(required=False)
    metadata = MetadataField(required=False)


class FeatureOutput(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.SerializerMethodField()
    lookup_key = serializers.CharField()
    name = serializers.CharField()
    type = serializers.CharField()
    meter = serializers.CharField(source="meter_id", allow_null=True)
    active = serializers.BooleanField()
    metadata = MetadataField()
    created_at = serializers.DateTimeField()

    def get_object(self, obj: Feature) -> str:
        return "feature"


class FeatureAttachmentInput(InputSerializer):
    feature = serializers.CharField(max_length=40)
    product = serializers.CharField(max_length=40, required=False)
    price = serializers.CharField(max_length=40, required=False)
    value = serializers.CharField(max_length=500, required=False)
    limit = serializers.DecimalField(max_digits=30, decimal_places=12, min_value=0, required=False, allow_null=True)


class FeatureAttachmentOutput(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.SerializerMethodField()
    feature = serializers.CharField(source="feature_id")
    product = serializers.CharField(source="product_id", allow_null=True)
    price = serializers.CharField(source="price_id", allow_null=True)
    value = NullableCharField()
    limit = DecimalString(allow_null=True)
    created_at = serializers.DateTimeField()

    def get_object(self, obj: FeatureAttachment) -> str:
        return "feature_attachment"
