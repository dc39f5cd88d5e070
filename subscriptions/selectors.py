from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db.models import QuerySet

from billing_site.errors import NotFound
from billing_site.selectors import apply_filters
from subscriptions.filters import SubscriptionFilter
from subscriptions.models import Subscription


def subscription_get(*, subscription_id: str) -> Subscription:
    sub = Subscription.objects.select_related("customer", "coupon").filter(pk=subscription_id).first()
    if sub is None:
        raise NotFound(f"No such subscription: {subscription_id}", param="id")
    return sub


def subscription_list(*, filters: Mapping[str, Any] | None = None) -> QuerySet[Subscription]:
    return apply_filters(SubscriptionFilter, filters or {}, Subscription.objects.prefetch_related("items"))
