"""How webhooks render this app's objects: with the API's own Output serializers (see webhooks.rendering)."""

from __future__ import annotations

from webhooks.rendering import queryset_renderer, renderer_register


def register() -> None:
    from subscriptions.models import Subscription, Tier
    from subscriptions.serializers import SubscriptionOutput, TierOutput

    renderer_register(
        "subscription",
        queryset_renderer(lambda: Subscription.objects.prefetch_related("items"), lambda s: SubscriptionOutput(s).data),
    )
    renderer_register(
        "tier", queryset_renderer(lambda: Tier.objects.prefetch_related("items"), lambda t: TierOutput(t).data)
    )
