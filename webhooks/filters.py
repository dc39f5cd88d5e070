from __future__ import annotations

import django_filters
from django.db.models import Q, QuerySet

from billing_site.filters import UtcDateTimeFilter
from webhooks.models import BillingEvent, WebhookDelivery, WebhookEndpoint


class EventFilter(django_filters.FilterSet):
    # `type=invoice.paid`, a prefix `type=invoice.*`, or several separated by commas.
    type = django_filters.CharFilter(method="filter_type")
    customer = django_filters.CharFilter(field_name="customer_id")
    object_id = django_filters.CharFilter()
    created_gte = UtcDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_gt = UtcDateTimeFilter(field_name="created_at", lookup_expr="gt")
    created_lte = UtcDateTimeFilter(field_name="created_at", lookup_expr="lte")
    created_lt = UtcDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = BillingEvent
        fields = ("type", "customer", "object_id")

    def filter_type(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        q = Q(pk__in=[])
        for item in (v.strip() for v in value.split(",")):
            if item:
                q |= Q(type__startswith=item[:-1]) if item.endswith(".*") else Q(type=item)
        return queryset.filter(q)


class EndpointFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=WebhookEndpoint.Status.choices)

    class Meta:
        model = WebhookEndpoint
        fields = ("status",)


class DeliveryFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=WebhookDelivery.Status.choices)
    event = django_filters.CharFilter(field_name="event_id")

    class Meta:
        model = WebhookDelivery
        fields = ("status", "event")
