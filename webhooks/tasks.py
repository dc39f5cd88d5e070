"""Thin tasks: take an id, call a service. Each is safe to run twice (the services claim their row by
compare-and-set first), acknowledged late, time-limited, and retried on transient database errors."""

from __future__ import annotations

from django.conf import settings
from django.utils import timezone

from billing_site.tasks import billing_task
from webhooks import delivery, inbound


@billing_task("webhooks.dispatch_events", time_limit=300)
def dispatch_events() -> dict[str, int]:
    return delivery.events_dispatch(now=timezone.now())


# Above the longest send (connect + read timeout and the body deadline), below the claim lease.
@billing_task("webhooks.deliver", time_limit=3 * settings.WEBHOOKS_TIMEOUT_SECONDS + 45, max_retries=3)
def deliver(delivery_id: str) -> str:
    return delivery.delivery_attempt(delivery_id=delivery_id, now=timezone.now())


@billing_task("webhooks.process_provider_event", time_limit=660, max_retries=3)
def process_provider_event(provider_event_id: int) -> str:
    return inbound.provider_event_process(provider_event_id=provider_event_id, now=timezone.now())
