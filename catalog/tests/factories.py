from __future__ import annotations

from decimal import Decimal

import factory

from catalog.models import Coupon, Price, Product
from catalog.pricing import generate_price_name, parse_amount

FIXED_USD = {"model": "fixed", "currency": "usd", "unit": "1000", "flat": 0}
# The example of API.md: 0.5 per unit up to 1000, then 0.1 per unit plus a 500 flat fee.
GRADUATED_USD = {
    "model": "tiered",
    "currency": "usd",
    "mode": "graduated",
    "tiers": [{"up_to": 1000, "unit": "0.5", "flat": 0}, {"up_to": None, "unit": "0.1", "flat": 500}],
}


class ProductFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Product

    name = factory.Sequence(lambda n: f"Product {n}")


class PriceFactory(factory.django.DjangoModelFactory):
    """A product price; `amount` is the API JSON shape, and the queryable columns follow from it."""

    class Meta:
        model = Price

    class Params:
        graduated = factory.Trait(amount=GRADUATED_USD)
        standalone = factory.Trait(type=Price.Type.STANDALONE, product=None)

    type = Price.Type.PRODUCT
    product = factory.SubFactory(ProductFactory)
    duration_amount = 1
    duration_unit = Price.DurationUnit.MONTH
    amount = FIXED_USD
    currency = factory.LazyAttribute(lambda o: o.amount["currency"])
    model = factory.LazyAttribute(lambda o: o.amount["model"])
    mode = factory.LazyAttribute(lambda o: o.amount.get("mode", ""))
    name = factory.LazyAttribute(
        lambda o: generate_price_name(parse_amount(o.amount), o.duration_amount, o.duration_unit)
    )


class CouponFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Coupon

    name = factory.Sequence(lambda n: f"Coupon {n}")
    percent_off = Decimal("25")
    duration = Coupon.Duration.ONCE
