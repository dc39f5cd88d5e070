from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from django.db.models import QuerySet

from billing_site.errors import InvalidRequest, NotFound
from billing_site.selectors import apply_filters
from catalog.filters import CouponFilter, PriceFilter, ProductFilter
from catalog.models import Coupon, Price, Product
from catalog.pricing import MAX_MINOR, PricingError, Quote, quote, quote_events


def product_get(*, product_id: str) -> Product:
    product = Product.objects.filter(pk=product_id).first()
    if product is None:
        raise NotFound(f"No such product: {product_id}", param="id")
    return product


def product_list(*, filters: Mapping[str, Any] | None = None) -> QuerySet[Product]:
    return apply_filters(ProductFilter, filters or {}, Product.objects.all())


def price_get(*, price_id: str) -> Price:
    price = Price.objects.filter(pk=price_id).first()
    if price is None:
        raise NotFound(f"No such price: {price_id}", param="id")
    return price


def price_list(*, filters: Mapping[str, Any] | None = None) -> QuerySet[Price]:
    return apply_filters(PriceFilter, filters or {}, Price.objects.all())


def price_quote(*, price: Price, quantity: Decimal | None = None, events: list[Decimal] | None = None) -> Quote:
    """What `quantity` units of `price` cost (or a period of `events`, each event's value in order), with the
    breakdown: tiers, or the parts of the package and percentage models. Archived prices still quote:
    subscriptions that already use them are billed with them."""
    try:
        result = quote(price.engine_amount, quantity) if events is None else quote_events(price.engine_amount, events)
    except PricingError as exc:
        raise InvalidRequest(exc.message, code=exc.code, param=exc.param) from None
    # The engine computes any amount exactly; what leaves the service must fit a BIGINT column (and a
    # JSON integer every client can read), so a larger total is the caller's quantity being out of range.
    if result.amount > MAX_MINOR:
        raise InvalidRequest(
            f"At this quantity the amount exceeds the largest amount we can bill ({MAX_MINOR} minor units).",
            code="quantity_out_of_range",
            param="quantity",
        )
    return result


def coupon_get(*, coupon_id: str) -> Coupon:
    coupon = Coupon.objects.filter(pk=coupon_id).first()
    if coupon is None:
        raise NotFound(f"No such coupon: {coupon_id}", param="id")
    return coupon


def coupon_list(*, filters: Mapping[str, Any] | None = None) -> QuerySet[Coupon]:
    return apply_filters(CouponFilter, filters or {}, Coupon.objects.all())
