"""How webhooks render this app's objects: with the API's own Output serializers (see webhooks.rendering)."""

from __future__ import annotations

from webhooks.rendering import queryset_renderer, renderer_register


def register() -> None:
    from catalog.models import Coupon, Price, Product
    from catalog.serializers import CouponOutput, PriceOutput, ProductOutput

    renderer_register("product", queryset_renderer(Product.objects.all, lambda p: ProductOutput(p).data))
    renderer_register("price", queryset_renderer(Price.objects.all, lambda p: PriceOutput(p).data))
    renderer_register("coupon", queryset_renderer(Coupon.objects.all, lambda c: CouponOutput(c).data))
