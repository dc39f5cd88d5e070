from __future__ import annotations

import django_filters

from billing_site.filters import boolean_filter
from metering.models import Meter


class MeterFilter(django_filters.FilterSet):
    code = django_filters.CharFilter()
    aggregation = django_filters.ChoiceFilter(choices=Meter.Aggregation.choices)
    active = boolean_filter("active")

    class Meta:
        model = Meter
        fields = ("code", "aggregation", "active")
