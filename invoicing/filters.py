from __future__ import annotations

import django_filters

from invoicing.models import Invoice, TaxRate
from subscriptions.models import Subscription


class SubscriptionFilter(django_filters.FilterSet):
    customer = django_filters.CharFilter(field_name="customer_id")
    status = django_filters.ChoiceFilter(choices=Subscription.Status.choices)

    class Meta:
        model = Subscription
        fields = ("customer", "status")


class InvoiceFilter(django_filters.FilterSet):
    customer = django_filters.CharFilter(field_name="customer_id")
    subscription = django_filters.CharFilter(field_name="subscription_id")
    status = django_filters.ChoiceFilter(choices=Invoice.Status.choices)

    class Meta:
        model = Invoice
        fields = ("customer", "subscription", "status")


class TaxRateFilter(django_filters.FilterSet):
    country = django_filters.CharFilter(lookup_expr="iexact")
    state = django_filters.CharFilter(lookup_expr="iexact")
    active = django_filters.BooleanFilter()

    class Meta:
        model = TaxRate
        fields = ("country", "state", "active")
