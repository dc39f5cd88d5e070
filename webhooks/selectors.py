from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db.models import QuerySet

from billing_site.errors import NotFound
from billing_site.renderers import loads
from billing_site.selectors import apply_filters
from billing_site.tenancy import TenantScope, tenant_filter
from webhooks.filters import DeliveryFilter, EndpointFilter, EventFilter
from webhooks.models import BillingEvent, EventPayload, WebhookDelivery, WebhookEndpoint
from webhooks.rendering import envelope, event_objects_render


def event_get(*, event_id: str, tenant: TenantScope | None = None) -> BillingEvent:
    """A tenant-bound caller reads only the events of its own customer (`tenant`, from the view)."""
    event = tenant_filter(BillingEvent.objects.filter(pk=event_id), tenant).first()
    if event is None:
        raise NotFound(f"No such event: {event_id}", param="id")
    return event


def event_list(
    *, filters: Mapping[str, Any] | None = None, tenant: TenantScope | None = None
) -> QuerySet[BillingEvent]:
    return apply_filters(EventFilter, filters or {}, tenant_filter(BillingEvent.objects.all(), tenant))


def event_envelopes(events: list[BillingEvent]) -> list[dict[str, Any]]:
    """Events as consumers see them: the body that was delivered when there is one (so the API and the
    webhooks agree), otherwise rendered now (one query per object type for the whole page)."""
    stored = {p.event_id: p.body for p in EventPayload.objects.filter(event_id__in=[e.pk for e in events])}
    rendered = event_objects_render([e for e in events if e.pk not in stored])
    return [loads(stored[e.pk]) if e.pk in stored else envelope(e, rendered[e.pk]) for e in events]


def endpoint_get(*, endpoint_id: str) -> WebhookEndpoint:
    endpoint = WebhookEndpoint.objects.filter(pk=endpoint_id, deleted_at__isnull=True).first()
    if endpoint is None:
        raise NotFound(f"No such webhook endpoint: {endpoint_id}", param="id")
    return endpoint


def endpoint_list(*, filters: Mapping[str, Any] | None = None) -> QuerySet[WebhookEndpoint]:
    return apply_filters(EndpointFilter, filters or {}, WebhookEndpoint.objects.filter(deleted_at__isnull=True))


def delivery_get(*, delivery_id: str) -> WebhookDelivery:
    delivery = (
        WebhookDelivery.objects.select_related("event", "endpoint")
        .filter(pk=delivery_id, endpoint__deleted_at__isnull=True)
        .first()
    )
    if delivery is None:
        raise NotFound(f"No such webhook delivery: {delivery_id}", param="id")
    return delivery


def delivery_list(*, endpoint: WebhookEndpoint, filters: Mapping[str, Any] | None = None) -> QuerySet[WebhookDelivery]:
    queryset = WebhookDelivery.objects.select_related("event").filter(endpoint=endpoint)
    return apply_filters(DeliveryFilter, filters or {}, queryset)
