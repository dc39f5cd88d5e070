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
from customers.models import Customer, CustomerUser


class AddressSerializer(InputSerializer):
    line1 = OptionalCharField(max_length=255, required=False)
    line2 = OptionalCharField(max_length=255, required=False)
    city = OptionalCharField(max_length=255, required=False)
    state = OptionalCharField(max_length=255, required=False)
    postal_code = OptionalCharField(max_length=64, required=False)
    country = OptionalCountryField(required=False)


class CustomerCreateInput(InputSerializer):
    external_id = serializers.CharField(max_length=255)
    name = OptionalCharField(max_length=255, required=False)
    email = OptionalEmailField(max_length=254, required=False)
    currency = OptionalCurrencyField(required=False)
    address = AddressSerializer(required=False, allow_null=True)
    tax_exempt = serializers.ChoiceField(choices=Customer.TaxExempt.choices, required=False)
    metadata = MetadataField(required=False)
    billing_mode = serializers.ChoiceField(choices=Customer.BillingMode.choices, required=False)
    provider_customer_id = OptionalCharField(max_length=255, required=False)


class CustomerUpdateInput(InputSerializer):
    external_id = serializers.CharField(required=False)
    name = OptionalCharField(max_length=255, required=False)
    email = OptionalEmailField(max_length=254, required=False)
    currency = OptionalCurrencyField(required=False)
    address = AddressSerializer(required=False, allow_null=True)
    tax_exempt = serializers.ChoiceField(choices=Customer.TaxExempt.choices, required=False)
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
    metadata = MetadataField()
    status = serializers.CharField()
    billing_mode = serializers.CharField()
    billing_mode_since = serializers.DateTimeField(allow_null=True)
    provider_customer_id = NullableCharField()
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
