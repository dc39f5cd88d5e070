"""How webhooks render this app's objects: with the API's own Output serializers (see webhooks.rendering)."""

from __future__ import annotations

from webhooks.rendering import queryset_renderer, renderer_register


def register() -> None:
    from customers.models import Customer, CustomerUser
    from customers.serializers import CustomerOutput, UserOutput

    renderer_register("customer", queryset_renderer(Customer.objects.all, lambda c: CustomerOutput(c).data))
    renderer_register("customer_user", queryset_renderer(CustomerUser.objects.all, lambda u: UserOutput(u).data))
