"""Celery tasks of the metering app: thin, each takes an id and calls a service."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from celery import shared_task
from django.db import InterfaceError, OperationalError
from django.utils import timezone

from billing_site.tasks import billing_task, parse_now
from metering.push.services import usage_push_lane_run


@shared_task(
    bind=True,
    name="metering.push_usage_lane",
    acks_late=True,
    soft_time_limit=540,
    time_limit=600,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
    retry_kwargs={"max_retries": 5},
)
def push_usage_lane(self: Any, lane_id: int, now: str | None = None) -> dict[str, Any]:
    """Push what is due on one (customer, meter) lane, as of `now` (RFC 3339; default the current time).

    Safe to run twice or concurrently: the lane's rows decide (a claimed push is left to its claimer).
    When the lane has to wait (a rate limit, a lost answer), the task comes back at that time; run eagerly
    (tests, `run_job`) there is no broker to hold a delayed task, and the next sweep takes the lane."""
    when = datetime.fromisoformat(now) if now else timezone.now()
    result = usage_push_lane_run(lane_id=lane_id, now=when)
    if result.retry_at is not None and result.retry_at > when and not self.request.is_eager:
        push_usage_lane.apply_async(args=[lane_id], eta=result.retry_at)
    return result.as_dict()


@billing_task("metering.evaluate_amount_alerts", time_limit=120)
def evaluate_amount_alerts(customer_id: str, now: str | None = None) -> dict[str, int]:
    """Evaluate the customer's invoice_amount alerts as of `now` (RFC 3339; the ingested batch's time,
    which is its test clock's for a customer on one), enqueued by ingestion once per burst of batches.
    Safe to run twice or concurrently: the trigger's unique constraint records each crossing once."""
    from metering.alerts import usage_alerts_evaluate_amounts  # alerts import the tasks lazily

    return {"triggered": usage_alerts_evaluate_amounts(customer_ids=[customer_id], now=parse_now(now))}
