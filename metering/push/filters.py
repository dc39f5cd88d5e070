from __future__ import annotations

import django_filters

from billing_site.filters import UtcDateTimeFilter
from metering.push.models import MeterMapping, UsagePush


class UsagePushFilter(django_filters.FilterSet):
    customer = django_filters.CharFilter(field_name="customer_id")
    meter = django_filters.CharFilter(field_name="meter_id")
    status = django_filters.ChoiceFilter(choices=UsagePush.Status.choices)
    kind = django_filters.ChoiceFilter(choices=UsagePush.Kind.choices)
    slice_start_gte = UtcDateTimeFilter(field_name="slice_start", lookup_expr="gte")
    slice_start_lt = UtcDateTimeFilter(field_name="slice_start", lookup_expr="lt")

    class Meta:
        model = UsagePush
        fields = ("customer", "meter", "status", "kind")


class MeterMappingFilter(django_filters.FilterSet):
    meter = django_filters.CharFilter(field_name="meter_id")
    customer = django_filters.CharFilter(field_name="customer_id")

    class Meta:
        model = MeterMapping
        fields = ("meter", "customer")
