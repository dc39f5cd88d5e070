from __future__ import annotations

import django_filters

from billing_site.filters import boolean_filter
from catalog.models import Coupon, Price, Product


class ProductFilter(django_filters.FilterSet):
    active = boolean_filter("active")

    class Meta:
        model = Product
        fields = ("active",)


class PriceFilter(django_filters.FilterSet):
    active = boolean_filter("active")
    product = django_filters.CharFilter(field_name="product_id")
    currency = django_filters.CharFilter(lookup_expr="iexact")
    lookup_key = django_filters.CharFilter()
    type = django_filters.ChoiceFilter(choices=Price.Type.choices)

    class Meta:
        model = Price
        fields = ("active", "product", "currency", "lookup_key", "type")


class CouponFilter(django_filters.FilterSet):
    active = boolean_filter("active")

    class Meta:
        model = Coupon
        fields = ("active",)
