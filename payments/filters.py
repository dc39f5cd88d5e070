"""The list filters of payments' endpoints (unknown or bad parameters are 400s: `apply_filters`)."""

from __future__ import annotations

import django_filters
from django.db.models import QuerySet

from payments.models import (
    BalanceTransaction,
    CreditGrant,
    CreditNote,
    Dispute,
    PaymentIntent,
    PaymentMethod,
    Refund,
)


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


class BalanceTransactionFilter(django_filters.FilterSet):
    currency = django_filters.CharFilter(method="_currency")
    type = django_filters.ChoiceFilter(choices=BalanceTransaction.Type.choices)

    class Meta:
        model = BalanceTransaction
        fields = ("currency", "type")

    def _currency(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(currency=value.lower())


class CreditGrantFilter(django_filters.FilterSet):
    customer = django_filters.CharFilter(field_name="customer_id")
    currency = django_filters.CharFilter(method="_currency")
    status = django_filters.ChoiceFilter(choices=CreditGrant.Status.choices)

    class Meta:
        model = CreditGrant
        fields = ("customer", "currency", "status")

    def _currency(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(currency=value.lower())


class CreditNoteFilter(django_filters.FilterSet):
    invoice = django_filters.CharFilter(field_name="invoice_id")
    customer = django_filters.CharFilter(field_name="customer_id")
    status = django_filters.ChoiceFilter(choices=CreditNote.Status.choices)

    class Meta:
        model = CreditNote
        fields = ("invoice", "customer", "status")


class DisputeFilter(django_filters.FilterSet):
    customer = django_filters.CharFilter(field_name="customer_id")
    payment_intent = django_filters.CharFilter(field_name="payment_intent_id")
    invoice = django_filters.CharFilter(field_name="invoice_id")
    status = django_filters.ChoiceFilter(choices=Dispute.Status.choices)

    class Meta:
        model = Dispute
        fields = ("customer", "payment_intent", "invoice", "status")
