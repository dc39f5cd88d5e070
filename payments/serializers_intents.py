"""Request and response shapes of payment methods, setup intents, payment intents and refunds."""

from __future__ import annotations

from typing import Any

import django_filters
from rest_framework import serializers

from billing_site.api import InputSerializer
from billing_site.fields import CurrencyField, NullableCharField
from payments.models import PaymentIntent, PaymentMethod, Refund, SetupIntent

MAX_AMOUNT = 2**53 - 1  # exact in every JSON parser


class AmountField(serializers.IntegerField):
    """A positive integer in the currency's minor unit; strings, floats and booleans are refused."""

    default_error_messages = {"not_integer": "Must be an integer amount in the currency's minor unit."}

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", MAX_AMOUNT)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("not_integer")
        return super().to_internal_value(data)


_CANCEL_REASONS = ["duplicate", "fraudulent", "requested_by_customer", "abandoned"]


# --- inputs ---------------------------------------------------------------------------------------


class PaymentMethodCreateInput(InputSerializer):
    customer = serializers.CharField(max_length=40)
    token = serializers.CharField(max_length=255, help_text="A provider token, e.g. tok_visa (sandbox test tokens).")
    default = serializers.BooleanField(required=False, default=False)


class SetupIntentCreateInput(InputSerializer):
    customer = serializers.CharField(max_length=40)
    token = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")
    usage = serializers.ChoiceField(choices=["off_session", "on_session"], required=False, default="off_session")


class SetupIntentConfirmInput(InputSerializer):
    token = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")
    payment_method = serializers.CharField(max_length=40, required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs.get("token") and attrs.get("payment_method"):
            raise serializers.ValidationError({"token": ["Pass either token or payment_method, not both."]})
        return attrs


class IntentCancelInput(InputSerializer):
    cancellation_reason = serializers.ChoiceField(choices=_CANCEL_REASONS, required=False, default="")


class PaymentIntentCreateInput(InputSerializer):
    customer = serializers.CharField(max_length=40)
    amount = AmountField()
    currency = CurrencyField(max_length=3)
    payment_method = serializers.CharField(max_length=40, required=False)
    capture_method = serializers.ChoiceField(choices=["automatic", "manual"], required=False, default="automatic")
    invoice = serializers.CharField(max_length=40, required=False)
    description = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


class PaymentIntentConfirmInput(InputSerializer):
    payment_method = serializers.CharField(max_length=40, required=False)


class PaymentIntentCaptureInput(InputSerializer):
    amount = AmountField(required=False, help_text="Default: all that is authorized. The rest is released.")


class RefundCreateInput(InputSerializer):
    payment_intent = serializers.CharField(max_length=40, required=False)
    invoice = serializers.CharField(max_length=40, required=False)
    amount = AmountField(required=False, help_text="Default: all that is left to refund.")
    reason = serializers.ChoiceField(choices=Refund.Reason.choices, required=False, default="")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs.get("payment_intent") and not attrs.get("invoice"):
            raise serializers.ValidationError(
                {"payment_intent": [serializers.ErrorDetail("Name a payment_intent or an invoice.", code="required")]}
            )
        return attrs


# --- list filters ---------------------------------------------------------------------------------


class PaymentMethodFilter(django_filters.FilterSet):
    customer = django_filters.CharFilter(field_name="customer_id")

    class Meta:
        model = PaymentMethod
        fields = ("customer",)


class PaymentIntentFilter(django_filters.FilterSet):
    customer = django_filters.CharFilter(field_name="customer_id")
    invoice = django_filters.CharFilter(field_name="invoice_id")
    status = django_filters.ChoiceFilter(choices=PaymentIntent.Status.choices)

    class Meta:
        model = PaymentIntent
        fields = ("customer", "invoice", "status")


class RefundFilter(django_filters.FilterSet):
    payment_intent = django_filters.CharFilter(field_name="payment_intent_id")
    invoice = django_filters.CharFilter(field_name="invoice_id")

    class Meta:
        model = Refund
        fields = ("payment_intent", "invoice")


# --- outputs --------------------------------------------------------------------------------------


class LastErrorOutput(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField(required=False)
    decline_code = serializers.CharField(required=False)


class PaymentMethodOutput(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.SerializerMethodField()
    customer = serializers.CharField(source="customer_id")
    provider = serializers.CharField()
    type = serializers.CharField()
    brand = NullableCharField()
    last4 = NullableCharField()
    exp_month = serializers.IntegerField(allow_null=True)
    exp_year = serializers.IntegerField(allow_null=True)
    default = serializers.BooleanField(source="is_default")
    detached_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()

    def get_object(self, obj: PaymentMethod) -> str:
        return "payment_method"


class SetupIntentOutput(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.SerializerMethodField()
    customer = serializers.CharField(source="customer_id")
    status = serializers.ChoiceField(choices=SetupIntent.Status.choices)
    usage = serializers.CharField()
    payment_method = serializers.CharField(source="payment_method_id", allow_null=True)
    provider = serializers.CharField()
    last_error = LastErrorOutput(allow_null=True)
    cancellation_reason = NullableCharField()
    canceled_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    def get_object(self, obj: SetupIntent) -> str:
        return "setup_intent"


class PaymentIntentOutput(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.SerializerMethodField()
    customer = serializers.CharField(source="customer_id")
    invoice = serializers.CharField(source="invoice_id", allow_null=True)
    amount = serializers.IntegerField()
    currency = serializers.CharField()
    capture_method = serializers.CharField()
    payment_method = serializers.CharField(source="payment_method_id", allow_null=True)
    status = serializers.ChoiceField(choices=PaymentIntent.Status.choices)
    amount_capturable = serializers.IntegerField()
    amount_received = serializers.IntegerField()
    amount_refunded = serializers.IntegerField()
    description = NullableCharField()
    provider = serializers.CharField()
    provider_ref = NullableCharField()
    attempts = serializers.IntegerField()
    last_error = LastErrorOutput(allow_null=True)
    cancellation_reason = NullableCharField()
    canceled_at = serializers.DateTimeField(allow_null=True)
    succeeded_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    def get_object(self, obj: PaymentIntent) -> str:
        return "payment_intent"


class RefundOutput(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.SerializerMethodField()
    payment_intent = serializers.CharField(source="payment_intent_id")
    invoice = serializers.CharField(source="invoice_id", allow_null=True)
    credit_note = serializers.CharField(source="credit_note_id", allow_null=True)
    amount = serializers.IntegerField()
    currency = serializers.CharField()
    reason = NullableCharField()
    status = serializers.ChoiceField(choices=Refund.Status.choices)
    provider_ref = NullableCharField()
    last_error = LastErrorOutput(allow_null=True)
    created_at = serializers.DateTimeField()

    def get_object(self, obj: Refund) -> str:
        return "refund"
