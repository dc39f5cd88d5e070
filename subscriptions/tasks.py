"""Subscription tasks: thin, by id, safe to run twice (see `billing_site.tasks`)."""

from __future__ import annotations

from billing_site.tasks import billing_task, parse_now
from subscriptions.services import progressive, renewal


@billing_task("subscriptions.renew_batch", time_limit=600)
def subscriptions_renew_batch(subscription_ids: list[str], now: str | None = None) -> dict[str, int]:
    """Renew these subscriptions up to the sweep's `now`: those already renewed are no longer due and
    those another worker holds are passed over, so a duplicate delivery of the task does nothing."""
    return renewal.subscriptions_renew(now=parse_now(now), ids=subscription_ids)


@billing_task("subscriptions.bill_ended_late_usage", time_limit=600)
def subscriptions_bill_ended_late_usage_batch(subscription_ids: list[str], now: str | None = None) -> dict[str, int]:
    return renewal.subscriptions_bill_ended_late_usage(now=parse_now(now), ids=subscription_ids)


@billing_task("subscriptions.evaluate_progressive_billing", time_limit=300)
def evaluate_progressive_billing(customer_id: str, now: str | None = None) -> dict[str, int]:
    """Progressive billing for one customer as of `now` (RFC 3339; the ingested batch's time, its test
    clock's for a customer on one), enqueued by ingestion once per burst of batches. The pending mark is
    cleared before the usage is read. Safe to run twice or concurrently: the unique (subscription, period,
    threshold) bills each crossing once."""
    from subscriptions.progressive_ingest import progressive_pending_clear

    progressive_pending_clear([customer_id])
    return progressive.customer_bill_thresholds(customer_id=customer_id, now=parse_now(now))
