"""Progressive billing on ingestion: after a committed batch, the `subscriptions.evaluate_progressive_billing`
task is enqueued for each of its customers that has a live subscription with thresholds, once while one
is pending (registered with `metering.listeners` from `SubscriptionsConfig.ready()`).

Cost per batch: which customers have thresholds is a cache mark per customer (`_flag_key`: "1" or "0",
read for the whole batch with one `get_many`); only customers not cached cost one indexed query (for all
of them), so a customer without progressive subscriptions costs no SQL statement per batch once known.
The mark is dropped when a subscription with thresholds is created (`progressive_flag_drop`, after its
commit); a stale "1" (the subscription ended) only enqueues a task that finds nothing; it expires after
`FLAG_SECONDS` anyway.

Pending: as invoice-amount alerts do (`metering.alerts._enqueue_amount_evaluations`), a cache key added
with `cache.add` (one of concurrent batches wins) marks a customer's evaluation pending until the task
starts (it deletes the key before it reads the usage, so a batch committed after that read enqueues
again) or `PENDING_SECONDS` pass (a lost task). Failures are logged, never raised: the batch is
committed, and the `progressive_billing` job evaluates every subscription within 15 minutes.

The task evaluates as of one microsecond after the batch's time (the test clock's time for a customer on
one), so the batch's own events count; the threshold invoice's period ends there.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from django.core.cache import cache
from django.db import transaction

logger = logging.getLogger(__name__)

FLAG_SECONDS = 3600
PENDING_SECONDS = 300
JUST_AFTER = timedelta(microseconds=1)


def _flag_key(customer_id: str) -> str:
    return f"subscriptions:progressive:has:{customer_id}"


def _pending_key(customer_id: str) -> str:
    return f"subscriptions:progressive:pending:{customer_id}"


def progressive_flag_drop(customer_id: str) -> None:
    """The customer's subscriptions with thresholds changed: re-read them at its next batch (after commit)."""

    def drop() -> None:
        try:
            cache.delete(_flag_key(customer_id))
        except Exception:
            logger.exception("progressive billing flag not dropped; it expires within the hour")

    transaction.on_commit(drop)


def _with_thresholds(customer_ids: set[str]) -> set[str]:
    """The customers with a live subscription with thresholds: the cache, then one query for the rest."""
    from subscriptions.services.progressive import subscriptions_with_thresholds

    keys = {_flag_key(c): c for c in customer_ids}
    known = cache.get_many(list(keys))
    found = {keys[k] for k, v in known.items() if v == "1"}
    unknown = {c for k, c in keys.items() if k not in known}
    if unknown:
        having = set(
            subscriptions_with_thresholds().filter(customer_id__in=unknown).values_list("customer_id", flat=True)
        )
        cache.set_many({_flag_key(c): "1" if c in having else "0" for c in unknown}, timeout=FLAG_SECONDS)
        found |= having
    return found


def progressive_ingested(customer_ids: set[str], now: datetime) -> None:
    """The ingest listener: enqueue the evaluation of each of these customers with thresholds, not pending."""
    from billing_site.tasks import enqueue_unless_pending
    from subscriptions.tasks import evaluate_progressive_billing

    try:
        due = _with_thresholds(customer_ids)
        if not due:
            return
        # Just after the batch's time: usage windows are half-open, and a batch's events may be stamped at
        # its own time (a test clock's customers send theirs at the clock's frozen time).
        at = (now + JUST_AFTER).astimezone(UTC).isoformat()
        calls = {_pending_key(c): (c, at) for c in due}
        enqueue_unless_pending(evaluate_progressive_billing, calls, timeout=PENDING_SECONDS)
    except Exception:
        logger.exception("progressive billing evaluation not enqueued after a committed batch; the job will")


def progressive_pending_clear(customer_ids: Iterable[str]) -> None:
    """The task starts: batches committed from now on enqueue again."""
    cache.delete_many([_pending_key(c) for c in customer_ids])


def register() -> None:
    from metering.listeners import register_ingest_listener

    register_ingest_listener(progressive_ingested)
