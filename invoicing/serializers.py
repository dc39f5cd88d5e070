from __future__ import annotations

from typing import Any

from rest_framework import serializers

from billing_site.api import InputSerializer
from billing_site.fields import CountryField, CurrencyField, DecimalString, MetadataField
from invoicing.drafts import Draft, DraftLine
from invoicing.hooks import hosted_invoice_url
from invoicing.models import Invoice, InvoiceLine

# --- Invoices -------------------------------------------------------------------------------------


class LineTaxOutput(serializers.Serializer):
    tax_rate = serializers.CharField()
    amount = serializers.IntegerField()


class InvoiceLineOutput(serializers.Serializer):
    id = serializers.CharField(allow_null=True)
    kind = serializers.CharField()
    description = serializers.CharField()
    price = serializers.CharField(allow_null=True)
    meter = serializers.CharField(allow_null=True)
    subscription = serializers.CharField(allow_null=True)
    quantity = DecimalString()
    unit_amount = DecimalString()
    amount = serializers.IntegerField()
    discount_amount = serializers.IntegerField()
    period_start = serializers.DateTimeField(allow_null=True)
    period_end = serializers.DateTimeField(allow_null=True)
    tax = LineTaxOutput(many=True)


def line_data(line: InvoiceLine | DraftLine) -> dict[str, Any]:
    if isinstance(line, InvoiceLine):
        taxes, start, end, line_id = line.taxes, line.period_start, line.period_end, line.id
        subscription = line.subscription_id
    else:
        taxes, line_id, subscription = line.taxes, None, line.subscription_id
        start, end = (line.period.start, line.period.end) if line.period else (None, None)
    return {
        "id": line_id,
        "kind": str(line.kind),
        "description": line.description,
        "price": line.price_id,
        "meter": line.meter_id,
        "subscription": subscription,
        "quantity": line.quantity,
        "unit_amount": line.unit_amount,
        "amount": line.amount,
        "discount_amount": line.discount_amount,
        "period_start": start,
        "period_end": end,
        "tax": taxes,
    }


class InvoiceOutput(serializers.Serializer):
    id = serializers.CharField(allow_null=True)
    object = serializers.CharField()
    number = serializers.CharField(allow_null=True)
    customer = serializers.CharField()
    subscription = serializers.CharField(allow_null=True)
    status = serializers.CharField()
    billing_reason = serializers.CharField()
    currency = serializers.CharField()
    period_start = serializers.DateTimeField(allow_null=True)
    period_end = serializers.DateTimeField(allow_null=True)
    lines = InvoiceLineOutput(many=True)
    subtotal = serializers.IntegerField()
    discount = serializers.IntegerField()
    tax = serializers.IntegerField()
    total = serializers.IntegerField()
    credits_applied = serializers.IntegerField()
    balance_applied = serializers.IntegerField()
    amount_due = serializers.IntegerField()
    amount_paid = serializers.IntegerField()
    amount_remaining = serializers.IntegerField()
    tax_note = serializers.CharField(allow_null=True)
    description = serializers.CharField(allow_null=True)
    due_date = serializers.DateTimeField(allow_null=True)
    finalized_at = serializers.DateTimeField(allow_null=True)
    paid_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField(allow_null=True)
    hosted_invoice_url = serializers.CharField(
        allow_null=True,
        help_text="The invoice's page for the customer (view, PDF, pay): unguessable, revocable; null for a "
        "draft or once the link is revoked.",
    )


def invoice_data(invoice: Invoice) -> dict[str, Any]:
    return {
        "id": invoice.id,
        "object": "invoice",
        "number": invoice.number,
        "customer": invoice.customer_id,
        "subscription": invoice.subscription_id,
        "status": invoice.status,
        "billing_reason": invoice.billing_reason,
        "currency": invoice.currency,
        "period_start": invoice.period_start,
        "period_end": invoice.period_end,
        "lines": [line_data(line) for line in invoice.lines.all()],
        "subtotal": invoice.subtotal,
        "discount": invoice.discount,
        "tax": invoice.tax,
        "total": invoice.total,
        "credits_applied": invoice.credits_applied,
        "balance_applied": invoice.balance_applied,
        "amount_due": invoice.amount_due,
        "amount_paid": invoice.amount_paid,
        "amount_remaining": invoice.amount_remaining,
        "tax_note": invoice.tax_note or None,
        "description": invoice.description or None,
        "due_date": invoice.due_date,
        "finalized_at": invoice.finalized_at,
        "paid_at": invoice.paid_at,
        "created_at": invoice.created_at,
        "hosted_invoice_url": hosted_invoice_url(invoice) if invoice.finalized_at else None,
    }


def draft_data(draft: Draft) -> dict[str, Any]:
    """A preview in the invoice's own shape: no id or number, status "draft"."""
    return {
        "id": None,
        "object": "invoice",
        "number": None,
        "customer": draft.customer.id,
        "subscription": draft.subscription_id,
        "status": "draft",
        "billing_reason": draft.billing_reason,
        "currency": draft.currency,
        "period_start": draft.period.start if draft.period else None,
        "period_end": draft.period.end if draft.period else None,
        "lines": [
            {**line_data(line), "subscription": line.subscription_id or draft.subscription_id} for line in draft.lines
        ],
        "subtotal": draft.subtotal,
        "discount": draft.discount,
        "tax": draft.tax,
        "total": draft.total,
        "credits_applied": 0,
        "balance_applied": 0,
        "amount_due": draft.amount_due,
        "amount_paid": 0,
        "amount_remaining": draft.amount_due,
        "tax_note": draft.tax_note or None,
        "description": draft.description or None,
        "due_date": None,
        "finalized_at": None,
        "paid_at": None,
        "created_at": None,
        "hosted_invoice_url": None,
    }


# --- Manual invoices and invoice items ------------------------------------------------------------


class InvoiceLineInput(InputSerializer):
    description = serializers.CharField(max_length=500)
    amount = serializers.IntegerField()
    quantity = serializers.DecimalField(max_digits=38, decimal_places=12, min_value=0, required=False, allow_null=True)


class InvoiceCreateInput(InputSerializer):
    customer = serializers.CharField(max_length=40)
    currency = CurrencyField(required=False)
    lines = InvoiceLineInput(many=True, required=False)
    include_pending = serializers.BooleanField(required=False, default=True)
    collection_method = serializers.ChoiceField(choices=["charge_automatically", "send_invoice"], required=False)
    days_until_due = serializers.IntegerField(min_value=0, max_value=365, required=False)
    description = serializers.CharField(max_length=500, required=False, allow_blank=True)
    finalize = serializers.BooleanField(required=False, default=False)


class InvoiceItemCreateInput(InputSerializer):
    customer = serializers.CharField(max_length=40)
    amount = serializers.IntegerField()
    currency = CurrencyField(required=False)
    description = serializers.CharField(max_length=500)
    quantity = serializers.DecimalField(max_digits=38, decimal_places=12, min_value=0, required=False, allow_null=True)
    period_start = serializers.DateTimeField(required=False)
    period_end = serializers.DateTimeField(required=False)
    metadata = MetadataField(required=False)


class InvoiceItemOutput(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.SerializerMethodField()
    customer = serializers.CharField(source="customer_id")
    subscription = serializers.CharField(source="subscription_id", allow_null=True)
    invoice = serializers.CharField(source="invoice_id", allow_null=True)
    kind = serializers.CharField()
    currency = serializers.CharField()
    description = serializers.CharField()
    amount = serializers.IntegerField()
    quantity = DecimalString()
    period_start = serializers.DateTimeField(allow_null=True)
    period_end = serializers.DateTimeField(allow_null=True)
    metadata = MetadataField()
    created_at = serializers.DateTimeField()

    def get_object(self, obj: Any) -> str:
        return "invoice_item"


# --- Tax rates ------------------------------------------------------------------------------------


class TaxRateCreateInput(InputSerializer):
    display_name = serializers.CharField(max_length=100)
    description = serializers.CharField(max_length=255, required=False, allow_blank=True)
    percentage = serializers.DecimalField(max_digits=7, decimal_places=4, min_value=0, max_value=100)
    inclusive = serializers.BooleanField(required=False, default=False)
    country = CountryField()
    state = serializers.CharField(max_length=100, required=False, allow_blank=True)
    active = serializers.BooleanField(required=False, default=True)

    def validate_country(self, value: str) -> str:
        if not value:
            raise serializers.ValidationError("A tax rate needs a country.", code="required")
        return value


class TaxRateUpdateInput(InputSerializer):
    display_name = serializers.CharField(max_length=100, required=False)
    description = serializers.CharField(max_length=255, required=False, allow_blank=True)
    active = serializers.BooleanField(required=False)


class TaxRateOutput(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.SerializerMethodField()
    display_name = serializers.CharField()
    description = serializers.CharField()
    percentage = DecimalString()
    inclusive = serializers.BooleanField()
    country = serializers.CharField()
    state = serializers.SerializerMethodField()
    active = serializers.BooleanField()
    created_at = serializers.DateTimeField()

    def get_object(self, obj: Any) -> str:
        return "tax_rate"

    def get_state(self, obj: Any) -> str | None:
        return obj.state or None
