from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db.models import QuerySet

from billing_site.errors import NotFound
from billing_site.selectors import apply_filters
from billing_site.tenancy import TenantScope, tenant_filter
from subscriptions.filters import SubscriptionFilter, TierFilter
from subscriptions.models import Subscription, Tier


def subscription_get(*, subscription_id: str, tenant: TenantScope | None = None) -> Subscription:
    """`tenant` (from the view): another tenant's subscription is missing, like one that does not exist."""
    queryset = Subscription.objects.select_related("customer", "coupon").filter(pk=subscription_id)
    sub = tenant_filter(queryset, tenant).first()
    if sub is None:
        raise NotFound(f"No such subscription: {subscription_id}", param="id")
    return sub


def subscription_list(
    *, filters: Mapping[str, Any] | None = None, tenant: TenantScope | None = None
) -> QuerySet[Subscription]:
    queryset = tenant_filter(Subscription.objects.prefetch_related("items"), tenant)
    return apply_filters(SubscriptionFilter, filters or {}, queryset)


def tier_get(*, tier_id: str) -> Tier:
    tier = Tier.objects.prefetch_related("items").filter(pk=tier_id).first()
    if tier is None:
        raise NotFound(f"No such tier: {tier_id}", param="id")
    return tier


def tier_get_by_name(*, name: str) -> Tier | None:
    """The tier a control-plane event names, whatever the case it is written in."""
    return Tier.objects.prefetch_related("items").filter(name__iexact=name).first()


def tier_list(*, filters: Mapping[str, Any] | None = None) -> QuerySet[Tier]:
    return apply_filters(TierFilter, filters or {}, Tier.objects.prefetch_related("items"))
