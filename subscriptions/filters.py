from __future__ import annotations

import django_filters

from subscriptions.models import Coupon, Price, Product

# "true"/"false" only: django-filter's BooleanFilter silently ignores a value it cannot read ("yes"), which
# would turn `?active=yes` into "all rows" instead of a 400.
_BOOLEAN_CHOICES = [("true", "true"), ("false", "false")]


def _boolean_filter(field_name: str) -> django_filters.TypedChoiceFilter:
    return django_filters.TypedChoiceFilter(
        field_name=field_name, choices=_BOOLEAN_CHOICES, coerce=lambda value: value == "true"
    )


class ProductFilter(django_filters.FilterSet):
    active = _boolean_filter("active")

    class Meta:
        model = Product
        fields = ("active",)


class PriceFilter(django_filters.FilterSet):
    active = _boolean_filter("active")
    product = django_filters.CharFilter(field_name="product_id")
    currency = django_filters.CharFilter(lookup_expr="iexact")
    lookup_key = django_filters.CharFilter()
    type = django_filters.ChoiceFilter(choices=Price.Type.choices)

    class Meta:
        model = Price
        fields = ("active", "product", "currency", "lookup_key", "type")


class CouponFilter(django_filters.FilterSet):
    active = _boolean_filter("active")

    class Meta:
        model = Coupon
        fields = ("active",)
