"""Ingest listeners: what a higher app (subscriptions: progressive billing) does after a batch of usage
events is committed. metering imports no higher app, so the higher app registers its listener here from
its `AppConfig.ready()`, and ingestion calls `ingest_committed` after the batch's commit.

A listener gets `(customer_ids, now)`: the customers with events created by the batch, and the batch's
time (a test clock customer's clock time: one call per distinct time). It must be cheap (ingestion waits
for it: enqueue a task, don't price an invoice) and must not raise: a failure is logged here, the batch
is committed and answered as such (the listener's own job catches up).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import datetime

from django.db import connection

logger = logging.getLogger(__name__)

IngestListener = Callable[[set[str], datetime], None]

_listeners: list[IngestListener] = []


def register_ingest_listener(listener: IngestListener) -> None:
    """Call `listener(customer_ids, now)` after every committed batch that created events."""
    if listener not in _listeners:
        _listeners.append(listener)


def ingest_committed(customer_ids: Iterable[str], now: datetime, clock_now: dict[str, datetime]) -> None:
    """Ingestion's hook, after the batch's commit: each listener once per batch time."""
    if not _listeners:
        return
    by_time: dict[datetime, set[str]] = {}
    for customer_id in customer_ids:
        by_time.setdefault(clock_now.get(customer_id, now), set()).add(customer_id)
    for listener in _listeners:
        for at, some in by_time.items():
            try:
                listener(some, at)
            except Exception:
                if connection.in_atomic_block and connection.needs_rollback:
                    raise  # inside a caller's transaction, which the error has broken: theirs to handle
                logger.exception("ingest listener %r failed after a committed batch", listener)
