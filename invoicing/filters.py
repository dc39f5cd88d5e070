from __future__ import annotations

import django_filters

from billing_site.filters import boolean_filter
from invoicing.models import Invoice, PendingInvoiceItem, TaxRate


class InvoiceFilter(django_filters.FilterSet):
    customer = django_filters.CharFilter(field_name="customer_id")
    subscription = django_filters.CharFilter(field_name="subscription_id")
    status = django_filters.ChoiceFilter(choices=Invoice.Status.choices)

    class Meta:
        model = Invoice
        fields = ("customer", "subscription", "status")


class PendingInvoiceItemFilter(django_filters.FilterSet):
    customer = django_filters.CharFilter(field_name="customer_id")
    subscription = django_filters.CharFilter(field_name="subscription_id")
    pending = boolean_filter("invoice", lookup_expr="isnull")

    class Meta:
        model = PendingInvoiceItem
        fields = ("customer", "subscription", "pending")


class TaxRateFilter(django_filters.FilterSet):
    country = django_filters.CharFilter(lookup_expr="iexact")
    state = django_filters.CharFilter(lookup_expr="iexact")
    active = boolean_filter("active")

    class Meta:
        model = TaxRate
        fields = ("country", "state", "active")


class InvoiceExportFilter(django_filters.FilterSet):
    """`GET /exports/invoices.csv` (and the lines' export, through `invoice__`)."""

    customer = django_filters.CharFilter(field_name="customer_id")
    subscription = django_filters.CharFilter(field_name="subscription_id")
    status = django_filters.ChoiceFilter(choices=Invoice.Status.choices)
    currency = django_filters.CharFilter(lookup_expr="iexact")
    created_gte = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_lt = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Invoice
        fields = ("customer", "subscription", "status", "currency")
