"""Row locks on subscriptions (after the customer, before its invoices: see `billing_site.locks`)."""

from __future__ import annotations

from django.db.models import QuerySet

from billing_site.locks import LockRank, lock_one, lock_rows
from customers.locks import lock_customer
from subscriptions.models import Subscription


def lock_subscription(subscription_id: str, *, customer_id: str) -> Subscription:
    """Lock the customer, then the subscription (with its customer and coupon loaded, not locked)."""
    lock_customer(customer_id)
    return lock_one(
        Subscription.objects.filter(pk=subscription_id).select_related("customer", "coupon"), LockRank.SUBSCRIPTION
    )


def claim_subscriptions(queryset: QuerySet[Subscription], *, limit: int) -> list[Subscription]:
    """Claim up to `limit` rows of `queryset` for a worker, passing over rows another worker holds. Only the
    subscription rows are locked: a locked customer must not make SKIP LOCKED pass over its subscriptions."""
    return lock_rows(
        queryset.select_related("customer", "coupon"),
        LockRank.SUBSCRIPTION,
        skip_locked=True,
        limit=limit,
        order_by=("current_period_end", "id"),
    )


def lock_customer_subscriptions(customer_id: str, *, statuses: tuple[str, ...]) -> list[Subscription]:
    """Lock the customer, then every one of its subscriptions in `statuses` (in id order): what ends all of
    a tenant's subscriptions at once takes them all before it writes anything else."""
    lock_customer(customer_id)
    return lock_rows(
        Subscription.objects.filter(customer_id=customer_id, status__in=statuses).select_related("customer", "coupon"),
        LockRank.SUBSCRIPTION,
    )
