from __future__ import annotations

import django_filters

from metering.models import Meter


class MeterFilter(django_filters.FilterSet):
    code = django_filters.CharFilter()
    aggregation = django_filters.ChoiceFilter(choices=Meter.Aggregation.choices)
    active = django_filters.BooleanFilter()

    class Meta:
        model = Meter
        fields = ("code", "aggregation", "active")
