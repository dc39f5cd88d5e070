"""Request and response shapes of the balance, credit grant and credit note endpoints."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from billing_site.api import InputSerializer
from billing_site.fields import CurrencyField, MetadataField, NullableCharField
from invoicing.models import CreditNote
from invoicing.serializers import DecimalString
from payments.grants import MAX_PRIORITY, credit_grant_burned, credit_grant_remaining
from payments.models import BalanceTransaction, CreditGrant

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


class CreditNoteLineOutput(serializers.Serializer):
    invoice_line = serializers.CharField(source="invoice_line_id", allow_null=True)
    description = serializers.CharField()
    quantity = DecimalString()
    amount = serializers.IntegerField()


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
    reason = NullableCharField()
    memo = NullableCharField()
    lines = CreditNoteLineOutput(many=True, source="lines.all")
    created_at = serializers.DateTimeField()
    voided_at = serializers.DateTimeField(allow_null=True)

    def get_object(self, obj: CreditNote) -> str:
        return "credit_note"
