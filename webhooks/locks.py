"""Row locks of webhooks, through `billing_site.locks` (rank LEAF: nothing a customer owns is locked after
an outbox event, an endpoint or a delivery). Sweeps claim with SKIP LOCKED, so overlapping runs split the
work instead of waiting for each other."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from billing_site.locks import LockRank, lock_first, lock_one, lock_rows, lock_values
from webhooks.models import BillingEvent, WebhookDelivery, WebhookEndpoint


def claim_events(queryset: QuerySet[BillingEvent], *, limit: int) -> list[BillingEvent]:
    """Up to `limit` outbox events (oldest first) no other fan-out holds."""
    return lock_rows(queryset, LockRank.LEAF, skip_locked=True, limit=limit, order_by=("id",))


def claim_ids(queryset: QuerySet[Any], *, limit: int, order_by: tuple[str, ...]) -> list[Any]:
    """The primary keys of up to `limit` rows of `queryset` (deliveries, provider events) no other sweep
    holds; only the rows' own table is locked, never the endpoint a delivery joins."""
    return [
        row[0]
        for row in lock_values(queryset, LockRank.LEAF, ("pk",), skip_locked=True, limit=limit, order_by=order_by)
    ]


def lock_endpoint(endpoint_id: str) -> WebhookEndpoint:
    """The endpoint, locked (deleted ones too: endpoints are soft-deleted)."""
    return lock_one(WebhookEndpoint.objects.filter(pk=endpoint_id), LockRank.LEAF)


def lock_live_endpoint(endpoint_id: str) -> WebhookEndpoint | None:
    """The endpoint, locked, or None when it is deleted."""
    return lock_first(WebhookEndpoint.objects.filter(pk=endpoint_id, deleted_at__isnull=True), LockRank.LEAF)


def lock_delivery(delivery_id: str, *, with_endpoint: bool = False) -> WebhookDelivery:
    queryset = WebhookDelivery.objects.filter(pk=delivery_id)
    if with_endpoint:
        queryset = queryset.select_related("endpoint")
    return lock_one(queryset, LockRank.LEAF)


def lock_deliveries(queryset: QuerySet[WebhookDelivery]) -> list[WebhookDelivery]:
    return lock_rows(queryset, LockRank.LEAF)
