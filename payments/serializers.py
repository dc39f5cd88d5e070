"""Request and response shapes of payments: payment methods, setup intents, payment intents, refunds,
balances, credit grants and credit notes."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from billing_site.api import InputSerializer
from billing_site.fields import CurrencyField, DecimalString, MetadataField, NullableCharField
from payments.models import (
    BalanceTransaction,
    CreditGrant,
    CreditNote,
    Dispute,
    PaymentIntent,
    PaymentMethod,
    Refund,
    SetupIntent,
)
from payments.selectors import credit_grant_burned, credit_grant_remaining
from payments.services.grants import MAX_PRIORITY

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
    next_action = serializers.JSONField(
        allow_null=True,
        help_text="While requires_action: what the customer must do, as the processor says it (Stripe's "
        '`next_action`, e.g. `{"type": "use_stripe_sdk", ...}`; the sandbox\'s '
        '`{"type": "sandbox_authenticate"}`); null otherwise.',
    )
    client_secret = NullableCharField(
        help_text="The processor's client secret of the current attempt (Stripe.js `handleNextAction`)."
    )
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


class DisputeOutput(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.SerializerMethodField()
    customer = serializers.CharField(source="customer_id")
    payment_intent = serializers.CharField(source="payment_intent_id")
    invoice = serializers.CharField(source="invoice_id", allow_null=True)
    amount = serializers.IntegerField()
    currency = serializers.CharField()
    reason = NullableCharField()
    status = serializers.ChoiceField(choices=Dispute.Status.choices)
    amount_lost = serializers.IntegerField(help_text="Returned to the cardholder: the amount of a lost dispute.")
    evidence_due_by = serializers.DateTimeField(allow_null=True)
    provider = serializers.CharField()
    provider_ref = serializers.CharField()
    closed_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    def get_object(self, obj: Dispute) -> str:
        return "dispute"


# --- Balances -------------------------------------------------------------------------------------


class BalanceEntryOutput(serializers.Serializer):
    currency = serializers.CharField()
    balance = serializers.IntegerField(help_text="Positive: owed to the customer (credit for its invoices).")


class CustomerBalanceOutput(serializers.Serializer):
    object = serializers.CharField(default="customer_balance")
    customer = serializers.CharField()
    balances = BalanceEntryOutput(many=True)


class BalanceTransactionCreateInput(InputSerializer):
    amount = serializers.IntegerField(
        help_text="Positive credits the customer, negative debits it; never 0.",
        min_value=-(2**62),
        max_value=2**62,
    )
    currency = CurrencyField(required=False, help_text="Defaults to the customer's currency.")
    description = serializers.CharField(max_length=500, required=False, allow_blank=True)

    def validate_amount(self, value: int) -> int:
        if value == 0:
            raise serializers.ValidationError("amount must not be 0.", code="invalid")
        return value


class BalanceTransactionOutput(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.SerializerMethodField()
    customer = serializers.CharField(source="customer_id")
    currency = serializers.CharField()
    type = serializers.ChoiceField(choices=BalanceTransaction.Type.choices)
    amount = serializers.IntegerField()
    ending_balance = serializers.IntegerField()
    description = NullableCharField()
    invoice = serializers.CharField(source="invoice_id", allow_null=True)
    credit_note = serializers.CharField(source="credit_note_id", allow_null=True)
    payment_intent = serializers.CharField(source="payment_intent_id", allow_null=True)
    refund = serializers.CharField(source="refund_id", allow_null=True)
    created_at = serializers.DateTimeField()

    def get_object(self, obj: BalanceTransaction) -> str:
        return "customer_balance_transaction"


# --- Credit grants --------------------------------------------------------------------------------


class CreditGrantCreateInput(InputSerializer):
    customer = serializers.CharField(max_length=40)
    amount = serializers.IntegerField(min_value=1, max_value=2**62)
    currency = CurrencyField(required=False, help_text="Defaults to the customer's currency.")
    priority = serializers.IntegerField(
        min_value=0, max_value=MAX_PRIORITY, required=False, help_text="Lower burns first (default 50)."
    )
    effective_at = serializers.DateTimeField(required=False, help_text="Defaults to now.")
    expires_at = serializers.DateTimeField(required=False, allow_null=True)
    meters = serializers.ListField(
        child=serializers.CharField(max_length=40), required=False, max_length=100, help_text="Eligible meter ids."
    )
    prices = serializers.ListField(
        child=serializers.CharField(max_length=40), required=False, max_length=100, help_text="Eligible price ids."
    )
    name = serializers.CharField(max_length=255, required=False, allow_blank=True)
    metadata = MetadataField(required=False)


class CreditGrantOutput(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.SerializerMethodField()
    customer = serializers.CharField(source="customer_id")
    name = NullableCharField()
    amount = serializers.IntegerField()
    currency = serializers.CharField()
    priority = serializers.IntegerField()
    effective_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField(allow_null=True)
    meters = serializers.ListField(child=serializers.CharField(), source="eligible_meters")
    prices = serializers.ListField(child=serializers.CharField(), source="eligible_prices")
    status = serializers.ChoiceField(choices=CreditGrant.Status.choices)
    burned = serializers.SerializerMethodField()
    remaining = serializers.SerializerMethodField()
    voided_at = serializers.DateTimeField(allow_null=True)
    expired_at = serializers.DateTimeField(allow_null=True)
    metadata = MetadataField()
    created_at = serializers.DateTimeField()

    def get_object(self, obj: CreditGrant) -> str:
        return "credit_grant"

    def get_burned(self, obj: CreditGrant) -> int:
        return credit_grant_burned(obj)

    def get_remaining(self, obj: CreditGrant) -> int:
        """What can still be burned: amount - burned while active, 0 once voided or expired."""
        return credit_grant_remaining(obj)


# --- Credit notes ---------------------------------------------------------------------------------


class CreditNoteLineInput(InputSerializer):
    invoice_line = serializers.CharField(max_length=40)
    amount = serializers.IntegerField(min_value=1, max_value=2**62, required=False)
    quantity = serializers.DecimalField(max_digits=38, decimal_places=12, min_value=0, required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("amount" in attrs) == ("quantity" in attrs):
            raise serializers.ValidationError({"amount": ["Give amount or quantity (one of them)."]})
        return attrs


class CreditNoteCreateInput(InputSerializer):
    invoice = serializers.CharField(max_length=40)
    lines = CreditNoteLineInput(many=True, required=False, allow_empty=False)
    amount = serializers.IntegerField(min_value=1, max_value=2**62, required=False)
    reason = serializers.ChoiceField(choices=CreditNote.Reason.choices, required=False, allow_blank=True)
    memo = serializers.CharField(max_length=1000, required=False, allow_blank=True)
    refund_amount = serializers.IntegerField(min_value=0, max_value=2**62, required=False, default=0)
    credit_amount = serializers.IntegerField(min_value=0, max_value=2**62, required=False, default=0)
    out_of_band_amount = serializers.IntegerField(min_value=0, max_value=2**62, required=False, default=0)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "lines" not in attrs and "amount" not in attrs:
            raise serializers.ValidationError(
                {"amount": [serializers.ErrorDetail("Give lines or amount.", code="required")]}
            )
        return attrs


class CreditNoteTaxOutput(serializers.Serializer):
    tax_rate = serializers.CharField()
    amount = serializers.IntegerField()
    inclusive = serializers.BooleanField()


class CreditNoteLineOutput(serializers.Serializer):
    invoice_line = serializers.CharField(source="invoice_line_id", allow_null=True)
    description = serializers.CharField()
    quantity = DecimalString()
    amount = serializers.IntegerField(help_text="Credited of the invoice line's amount (exclusive tax on top).")
    taxes = CreditNoteTaxOutput(many=True, help_text="The line's tax credited with it, per rate.")


class CreditNoteOutput(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.SerializerMethodField()
    number = serializers.CharField()
    invoice = serializers.CharField(source="invoice_id")
    customer = serializers.CharField(source="customer_id")
    status = serializers.ChoiceField(choices=CreditNote.Status.choices)
    currency = serializers.CharField()
    amount = serializers.IntegerField()
    invoice_amount = serializers.IntegerField(help_text="Taken off the open invoice's amount due.")
    credit_amount = serializers.IntegerField(help_text="Credited to the customer's balance.")
    refund_amount = serializers.IntegerField(help_text="Refunded to the payment method.")
    out_of_band_amount = serializers.IntegerField(help_text="Returned outside this system.")
    tax = serializers.IntegerField(help_text="Tax credited with the lines, every rate (exclusive tax is in amount).")
    taxes = CreditNoteTaxOutput(many=True, help_text="Tax credited per rate.")
    reason = NullableCharField()
    memo = NullableCharField()
    lines = CreditNoteLineOutput(many=True, source="lines.all")
    created_at = serializers.DateTimeField()
    voided_at = serializers.DateTimeField(allow_null=True)

    def get_object(self, obj: CreditNote) -> str:
        return "credit_note"
