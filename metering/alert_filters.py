from __future__ import annotations

import django_filters

from billing_site.filters import boolean_filter
from metering.alerts_models import UsageAlert


class AlertFilter(django_filters.FilterSet):
    customer = django_filters.CharFilter(field_name="customer_id")
    meter = django_filters.CharFilter(field_name="meter_id")
    kind = django_filters.ChoiceFilter(choices=UsageAlert.Kind.choices)
    active = boolean_filter("active")

    class Meta:
        model = UsageAlert
        fields = ("customer", "meter", "kind", "active")
