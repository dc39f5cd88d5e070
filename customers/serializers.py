from __future__ import annotations

from typing import Any

from rest_framework import serializers

from billing_site.api import InputSerializer
from billing_site.fields import (
    MetadataField,
    NullableCharField,
    OptionalCharField,
    OptionalCountryField,
    OptionalCurrencyField,
    OptionalEmailField,
)
from customers.models import Customer, CustomerUser, TestClock


class AddressSerializer(InputSerializer):
    line1 = OptionalCharField(max_length=255, required=False)
    line2 = OptionalCharField(max_length=255, required=False)
    city = OptionalCharField(max_length=255, required=False)
    state = OptionalCharField(max_length=255, required=False)
    postal_code = OptionalCharField(max_length=64, required=False)
    country = OptionalCountryField(required=False)


class TimezoneField(serializers.CharField):
    """An IANA time zone name ("America/New_York"); blank or null: none (UTC). The service checks the name."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_length=64, allow_blank=True, allow_null=True, required=False, **kwargs)


class CustomerCreateInput(InputSerializer):
    external_id = serializers.CharField(max_length=255)
    name = OptionalCharField(max_length=255, required=False)
    email = OptionalEmailField(max_length=254, required=False)
    currency = OptionalCurrencyField(required=False)
    address = AddressSerializer(required=False, allow_null=True)
    tax_exempt = serializers.ChoiceField(choices=Customer.TaxExempt.choices, required=False)
    timezone = TimezoneField()
    invoice_consolidation = serializers.BooleanField(required=False)
    metadata = MetadataField(required=False)
    billing_mode = serializers.ChoiceField(choices=Customer.BillingMode.choices, required=False)
    provider_customer_id = OptionalCharField(max_length=255, required=False)
    test_clock = serializers.CharField(max_length=64, required=False)


class CustomerUpdateInput(InputSerializer):
    external_id = serializers.CharField(required=False)
    name = OptionalCharField(max_length=255, required=False)
    email = OptionalEmailField(max_length=254, required=False)
    currency = OptionalCurrencyField(required=False)
    address = AddressSerializer(required=False, allow_null=True)
    tax_exempt = serializers.ChoiceField(choices=Customer.TaxExempt.choices, required=False)
    timezone = TimezoneField()
    invoice_consolidation = serializers.BooleanField(required=False)
    metadata = MetadataField(required=False)
    billing_mode = serializers.ChoiceField(choices=Customer.BillingMode.choices, required=False)
    provider_customer_id = serializers.CharField(max_length=255, required=False, allow_blank=True, allow_null=True)

    def validate_external_id(self, value: str) -> str:
        raise serializers.ValidationError(
            "external_id cannot change: it is the control plane's tenant id.", code="immutable"
        )


class AddressOutput(serializers.Serializer):
    line1 = NullableCharField()
    line2 = NullableCharField()
    city = NullableCharField()
    state = NullableCharField()
    postal_code = NullableCharField()
    country = NullableCharField()


class CustomerOutput(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.SerializerMethodField()
    external_id = serializers.CharField()
    name = NullableCharField()
    email = NullableCharField()
    currency = NullableCharField()
    address = AddressOutput()
    tax_exempt = serializers.CharField()
    timezone = NullableCharField()
    invoice_consolidation = serializers.BooleanField()
    metadata = MetadataField()
    status = serializers.CharField()
    billing_mode = serializers.CharField()
    billing_mode_since = serializers.DateTimeField(allow_null=True)
    provider_customer_id = NullableCharField()
    test_clock = serializers.CharField(source="test_clock_id", allow_null=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    def get_object(self, obj: Customer) -> str:
        return "customer"


class UserCreateInput(InputSerializer):
    external_id = OptionalCharField(max_length=255, required=False)
    email = serializers.EmailField(max_length=254)
    name = OptionalCharField(max_length=255, required=False)


class UserUpdateInput(InputSerializer):
    external_id = OptionalCharField(max_length=255, required=False)
    email = serializers.EmailField(max_length=254, required=False)
    name = OptionalCharField(max_length=255, required=False)


class UserOutput(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.SerializerMethodField()
    customer = serializers.CharField(source="customer_id")
    external_id = NullableCharField()
    email = serializers.EmailField()
    name = NullableCharField()
    status = serializers.CharField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    def get_object(self, obj: CustomerUser) -> str:
        return "customer_user"


class ControlPlaneEventInput(serializers.Serializer):
    """Documents the envelope for the schema; the service validates it (it must store even bad ones)."""

    id = serializers.CharField(required=False)
    source = serializers.CharField(required=False)
    detail = serializers.DictField()

    def get_fields(self) -> dict[str, Any]:
        fields = super().get_fields()
        fields["detail-type"] = serializers.CharField()
        return fields


class ControlPlaneEventOutput(serializers.Serializer):
    status = serializers.ChoiceField(choices=["applied", "no_effect", "duplicate", "ignored", "rejected"])
    detail_type = serializers.CharField()
    customer = serializers.CharField(allow_null=True)
    result = serializers.CharField()
    details = serializers.DictField(help_text="What the event did: subscriptions, invoices, usage outcomes.")


class ClockTimeField(serializers.DateTimeField):
    """A clock time: RFC 3339, or an integer of Unix seconds (as Stripe's `frozen_time`); stored in UTC."""

    def to_internal_value(self, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            from datetime import UTC, datetime

            try:
                return datetime.fromtimestamp(value, UTC)
            except (OverflowError, OSError, ValueError):
                self.fail("invalid", format="RFC 3339 or Unix seconds")
        return super().to_internal_value(value)


class TestClockCreateInput(InputSerializer):
    frozen_time = ClockTimeField()
    name = serializers.CharField(max_length=300, required=False, allow_blank=True)


class TestClockAdvanceInput(InputSerializer):
    frozen_time = ClockTimeField()


class TestClockOutput(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.SerializerMethodField()
    name = NullableCharField()
    frozen_time = serializers.DateTimeField()
    status = serializers.CharField()
    status_details = serializers.SerializerMethodField()
    livemode = serializers.SerializerMethodField()
    deletes_after = serializers.DateTimeField()
    customers = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()

    def get_object(self, obj: TestClock) -> str:
        return "test_clock"

    def get_livemode(self, obj: TestClock) -> bool:
        return False

    def get_status_details(self, obj: TestClock) -> dict[str, Any]:
        details: dict[str, Any] = {}
        if obj.status == TestClock.Status.ADVANCING and obj.target_frozen_time is not None:
            details["advancing"] = {
                "target_frozen_time": serializers.DateTimeField().to_representation(obj.target_frozen_time)
            }
        if obj.status == TestClock.Status.INTERNAL_FAILURE:
            details["internal_failure"] = {"message": obj.failure}
        return details

    def get_customers(self, obj: TestClock) -> int:
        annotated = getattr(obj, "customer_count", None)
        if annotated is not None:
            return annotated
        return obj.customers.exclude(status=Customer.Status.DELETED).count()
