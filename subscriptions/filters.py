from __future__ import annotations

import django_filters

from subscriptions.models import Subscription, Tier


class SubscriptionFilter(django_filters.FilterSet):
    customer = django_filters.CharFilter(field_name="customer_id")
    status = django_filters.ChoiceFilter(choices=Subscription.Status.choices)

    class Meta:
        model = Subscription
        fields = ("customer", "status")


class TierFilter(django_filters.FilterSet):
    name = django_filters.CharFilter(field_name="name", lookup_expr="iexact")
    active = django_filters.BooleanFilter()

    class Meta:
        model = Tier
        fields = ("name", "active")
