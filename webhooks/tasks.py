"""Thin tasks: take an id, call a service. Each is safe to run twice (the services claim their row by
compare-and-set first), acknowledged late, time-limited, and retried on transient database errors."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.utils import timezone

from webhooks import delivery, inbound

_TRANSIENT = (OperationalError, InterfaceError)


@shared_task(
    name="webhooks.dispatch_events",
    acks_late=True,
    soft_time_limit=240,
    time_limit=300,
    autoretry_for=_TRANSIENT,
    retry_backoff=True,
    max_retries=5,
)
def dispatch_events() -> dict[str, int]:
    return delivery.events_dispatch(now=timezone.now())


@shared_task(
    name="webhooks.deliver",
    acks_late=True,
    # Above the longest send (connect + read timeout and the body deadline), below the claim lease.
    soft_time_limit=3 * settings.WEBHOOKS_TIMEOUT_SECONDS + 30,
    time_limit=3 * settings.WEBHOOKS_TIMEOUT_SECONDS + 45,
    autoretry_for=_TRANSIENT,
    retry_backoff=True,
    max_retries=3,
)
def deliver(delivery_id: str) -> str:
    return delivery.delivery_attempt(delivery_id=delivery_id, now=timezone.now())


@shared_task(
    name="webhooks.process_provider_event",
    acks_late=True,
    soft_time_limit=600,
    time_limit=660,
    autoretry_for=_TRANSIENT,
    retry_backoff=True,
    max_retries=3,
)
def process_provider_event(provider_event_id: int) -> str:
    return inbound.provider_event_process(provider_event_id=provider_event_id, now=timezone.now())
