from __future__ import annotations

import django_filters

from billing_site.filters import UtcDateTimeFilter
from customers.models import Customer, CustomerUser, TestClock


class CustomerFilter(django_filters.FilterSet):
    external_id = django_filters.CharFilter()
    email = django_filters.CharFilter(lookup_expr="iexact")
    status = django_filters.ChoiceFilter(
        choices=[(Customer.Status.ACTIVE, "active"), (Customer.Status.DEACTIVATED, "deactivated")]
    )
    created_gte = UtcDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_lt = UtcDateTimeFilter(field_name="created_at", lookup_expr="lt")
    test_clock = django_filters.CharFilter(field_name="test_clock_id")

    class Meta:
        model = Customer
        fields = ("external_id", "email", "status")


class CustomerUserFilter(django_filters.FilterSet):
    external_id = django_filters.CharFilter()
    email = django_filters.CharFilter(lookup_expr="iexact")
    status = django_filters.ChoiceFilter(choices=CustomerUser.Status.choices)

    class Meta:
        model = CustomerUser
        fields = ("external_id", "email", "status")


class TestClockFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=TestClock.Status.choices)

    class Meta:
        model = TestClock
        fields = ("status",)
