from __future__ import annotations

import django_filters

from billing_site.filters import boolean_filter
from catalog.models import Coupon, Feature, FeatureAttachment, Price, Product


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


class FeatureFilter(django_filters.FilterSet):
    active = boolean_filter("active")
    lookup_key = django_filters.CharFilter()
    type = django_filters.ChoiceFilter(choices=Feature.Type.choices)

    class Meta:
        model = Feature
        fields = ("active", "lookup_key", "type")


class FeatureAttachmentFilter(django_filters.FilterSet):
    feature = django_filters.CharFilter(field_name="feature_id")
    product = django_filters.CharFilter(field_name="product_id")
    price = django_filters.CharFilter(field_name="price_id")

    class Meta:
        model = FeatureAttachment
        fields = ("feature", "product", "price")
