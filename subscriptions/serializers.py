"""Input and Output serializers of the subscription API."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rest_framework import serializers

from billing_site.api import InputSerializer
from billing_site.fields import DecimalString, MetadataField
from billing_site.money import decimal_to_str
from subscriptions.models import Subscription, SubscriptionItem, Tier

MAX_MINOR = 2**63 - 1


class ItemInput(InputSerializer):
    price = serializers.CharField(max_length=40)
    quantity = serializers.DecimalField(max_digits=20, decimal_places=6, min_value=0, required=False, allow_null=True)
    minimum_amount = serializers.IntegerField(min_value=1, max_value=MAX_MINOR, required=False, allow_null=True)


class SubscriptionCreateInput(InputSerializer):
    customer = serializers.CharField(max_length=40)
    items = ItemInput(many=True, allow_empty=False)
    start_date = serializers.DateTimeField(required=False)
    trial_days = serializers.IntegerField(min_value=1, max_value=730, required=False)
    trial_end = serializers.DateTimeField(required=False)
    billing_cycle_anchor = serializers.DateTimeField(required=False)
    collection_method = serializers.ChoiceField(choices=Subscription.CollectionMethod.choices, required=False)
    days_until_due = serializers.IntegerField(min_value=0, max_value=365, required=False)
    coupon = serializers.CharField(max_length=40, required=False, allow_null=True)
    minimum_amount = serializers.IntegerField(min_value=1, max_value=MAX_MINOR, required=False, allow_null=True)
    progressive_billing_thresholds = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=MAX_MINOR), required=False, max_length=20
    )
    metadata = MetadataField(required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "trial_days" in attrs and "trial_end" in attrs:
            raise serializers.ValidationError({"trial_end": ["Give trial_days or trial_end, not both."]})
        return attrs


class CancelInput(InputSerializer):
    at_period_end = serializers.BooleanField(required=False, default=False)
    prorate = serializers.BooleanField(required=False, default=False)


class ChangeInput(InputSerializer):
    items = ItemInput(many=True, allow_empty=False)
    proration_behavior = serializers.ChoiceField(
        choices=["create_prorations", "none", "always_invoice"], required=False, default="create_prorations"
    )


class PriceMigrateInput(InputSerializer):
    to_price = serializers.CharField(max_length=40)
    when = serializers.ChoiceField(choices=["next_renewal", "now"], required=False, default="next_renewal")
    dry_run = serializers.BooleanField(required=False, default=False)


class PriceMigrationRowOutput(serializers.Serializer):
    subscription = serializers.CharField()
    item = serializers.CharField()
    quantity = serializers.CharField(allow_null=True)
    effective_at = serializers.DateTimeField()
    status = serializers.ChoiceField(
        choices=["would_migrate", "would_schedule", "migrated", "scheduled", "already_scheduled", "skipped", "failed"]
    )
    message = serializers.CharField(allow_null=True)


class PriceMigrationOutput(serializers.Serializer):
    object = serializers.CharField()
    id = serializers.CharField(allow_null=True)
    from_price = serializers.CharField()
    to_price = serializers.CharField()
    when = serializers.CharField()
    dry_run = serializers.BooleanField()
    subscriptions = PriceMigrationRowOutput(many=True)


class SubscriptionItemOutput(serializers.Serializer):
    id = serializers.CharField()
    price = serializers.CharField(source="price_id")
    quantity = DecimalString()
    minimum_amount = serializers.IntegerField(allow_null=True)


class SubscriptionOutput(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.SerializerMethodField()
    customer = serializers.CharField(source="customer_id")
    status = serializers.CharField()
    currency = serializers.CharField()
    items = serializers.SerializerMethodField()
    start_date = serializers.DateTimeField()
    billing_cycle_anchor = serializers.DateTimeField()
    current_period_start = serializers.DateTimeField()
    current_period_end = serializers.DateTimeField()
    trial_start = serializers.DateTimeField(allow_null=True)
    trial_end = serializers.DateTimeField(allow_null=True)
    cancel_at_period_end = serializers.BooleanField()
    canceled_at = serializers.DateTimeField(allow_null=True)
    ended_at = serializers.DateTimeField(allow_null=True)
    cancellation_reason = serializers.SerializerMethodField()
    collection_method = serializers.CharField()
    days_until_due = serializers.IntegerField(allow_null=True)
    coupon = serializers.CharField(source="coupon_id", allow_null=True)
    minimum_amount = serializers.IntegerField(allow_null=True)
    progressive_billing_thresholds = serializers.ListField(child=serializers.IntegerField())
    metadata = MetadataField()
    created_at = serializers.DateTimeField()

    def get_object(self, obj: Subscription) -> str:
        return "subscription"

    def get_cancellation_reason(self, obj: Subscription) -> str | None:
        return obj.cancellation_reason or None

    def get_items(self, obj: Subscription) -> list[dict[str, Any]]:
        live = [i for i in obj.items.all() if i.removed_at is None]
        return SubscriptionItemOutput(sorted(live, key=lambda i: (i.added_at, i.created_at, i.id)), many=True).data

    def to_representation(self, instance: Subscription) -> dict[str, Any]:
        # The fields above are the schema; the rendering is `subscription_data`, the same function every
        # subscription.* event uses (renewal renders thousands per batch: DRF's per-field machinery would
        # be a third of renewal's time). A test holds the two to the same output.
        return subscription_data(instance)


def _time(value: datetime | None) -> str | None:
    """A datetime as DRF renders it (ISO 8601, UTC as `Z`)."""
    if value is None:
        return None
    text = value.astimezone(UTC).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def subscription_data(sub: Subscription, items: list[SubscriptionItem] | None = None) -> dict[str, Any]:
    """The subscription as the API shows it. `items` (all of them, removed ones included) saves the query
    when the caller has them already."""
    every = list(sub.items.all()) if items is None else items
    live = sorted((i for i in every if i.removed_at is None), key=lambda i: (i.added_at, i.created_at, i.id))
    return {
        "id": sub.id,
        "object": "subscription",
        "customer": sub.customer_id,
        "status": sub.status,
        "currency": sub.currency,
        "items": [
            {
                "id": i.id,
                "price": i.price_id,
                "quantity": None if i.quantity is None else decimal_to_str(i.quantity),
                "minimum_amount": i.minimum_amount,
            }
            for i in live
        ],
        "start_date": _time(sub.start_date),
        "billing_cycle_anchor": _time(sub.billing_cycle_anchor),
        "current_period_start": _time(sub.current_period_start),
        "current_period_end": _time(sub.current_period_end),
        "trial_start": _time(sub.trial_start),
        "trial_end": _time(sub.trial_end),
        "cancel_at_period_end": sub.cancel_at_period_end,
        "canceled_at": _time(sub.canceled_at),
        "ended_at": _time(sub.ended_at),
        "cancellation_reason": sub.cancellation_reason or None,
        "collection_method": sub.collection_method,
        "days_until_due": sub.days_until_due,
        "coupon": sub.coupon_id,
        "minimum_amount": sub.minimum_amount,
        "progressive_billing_thresholds": list(sub.progressive_billing_thresholds or []),
        "metadata": sub.metadata,
        "created_at": _time(sub.created_at),
    }


# --- Tiers (the control plane's tier -> plan table) -------------------------------------------------


class TierItemInput(InputSerializer):
    lookup_key = serializers.CharField(max_length=200)
    quantity = serializers.DecimalField(max_digits=20, decimal_places=6, min_value=0, required=False, allow_null=True)


class TierCreateInput(InputSerializer):
    name = serializers.CharField(max_length=100)
    items = TierItemInput(many=True, allow_empty=False)
    trial_days = serializers.IntegerField(min_value=0, max_value=730, required=False, default=0)
    billing_mode = serializers.ChoiceField(choices=Tier.BillingMode.choices, required=False, default="native")
    collection_method = serializers.ChoiceField(
        choices=Subscription.CollectionMethod.choices, required=False, default="charge_automatically"
    )
    days_until_due = serializers.IntegerField(min_value=0, max_value=365, required=False, allow_null=True)
    description = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")
    metadata = MetadataField(required=False)


class TierUpdateInput(TierCreateInput):
    active = serializers.BooleanField(required=False)


class TierItemOutput(serializers.Serializer):
    lookup_key = serializers.CharField()
    quantity = DecimalString()


class TierOutput(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.SerializerMethodField()
    name = serializers.CharField()
    description = serializers.CharField()
    items = serializers.SerializerMethodField()
    trial_days = serializers.IntegerField()
    billing_mode = serializers.CharField()
    collection_method = serializers.CharField()
    days_until_due = serializers.IntegerField(allow_null=True)
    active = serializers.BooleanField()
    metadata = MetadataField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    def get_object(self, obj: Tier) -> str:
        return "tier"

    def get_items(self, obj: Tier) -> list[dict[str, Any]]:
        return TierItemOutput(sorted(obj.items.all(), key=lambda i: i.position), many=True).data


class EntitlementOutput(serializers.Serializer):
    """One feature the customer may use (the schema of `GET /customers/{id}/entitlements` rows)."""

    feature = serializers.CharField(help_text="The feature's lookup_key.")
    feature_id = serializers.CharField()
    name = serializers.CharField()
    type = serializers.ChoiceField(choices=["boolean", "static", "metered"])
    value = serializers.JSONField(help_text="true (boolean), the value (static), null (metered).")
    limit = serializers.CharField(allow_null=True, help_text="Metered: the allowance (decimal); null: unlimited.")
    usage = serializers.CharField(allow_null=True, help_text="Metered: usage of the current period so far.")
    remaining = serializers.CharField(allow_null=True)
    period_start = serializers.DateTimeField(allow_null=True)
    period_end = serializers.DateTimeField(allow_null=True)
    subscriptions = serializers.ListField(child=serializers.CharField())


class EntitlementsOutput(serializers.Serializer):
    object = serializers.CharField()
    customer = serializers.CharField()
    as_of = serializers.DateTimeField()
    data = EntitlementOutput(many=True)
