"""Row locks on the catalog (products, prices, coupons): first in the one lock order (`billing_site.locks`),
since no catalog write ever locks what a customer owns."""

from __future__ import annotations

from billing_site.locks import LockRank, lock_first
from catalog.models import Coupon, Price, Product


def lock_product(product_id: str) -> Product | None:
    return lock_first(Product.objects.filter(pk=product_id), LockRank.CATALOG)


def lock_price(price_id: str) -> Price | None:
    return lock_first(Price.objects.filter(pk=price_id), LockRank.CATALOG)


def lock_active_price_with_lookup_key(lookup_key: str) -> Price | None:
    """The live price holding `lookup_key`: taking it over (transfer_lookup_key) must not race another."""
    return lock_first(Price.objects.filter(lookup_key=lookup_key, active=True), LockRank.CATALOG)


def lock_coupon(coupon_id: str) -> Coupon | None:
    return lock_first(Coupon.objects.filter(pk=coupon_id), LockRank.CATALOG)
