"""Celery tasks: the one task beat sends (`billing.run_job`), and the conventions every app's tasks follow.

A periodic job is a sweep: it finds due work and enqueues one task per object (or per batch, where a
batch is the efficient unit, as in renewal) with `enqueue`, which sends after the sweep's transaction
commits. The tasks are thin: they take ids (and the sweep's `now`), call a service, and own retries. They
are declared with `billing_task`, which gives each one the same guarantees:

- `acks_late` with `reject_on_worker_lost`: a worker killed mid-task leaves the message to be delivered
  again, so a crash never loses work; every task is therefore safe to run twice (the database state
  decides what is left to do);
- a hard time limit (and a soft one a little earlier), so a hung provider call cannot hold a worker;
- automatic retries with exponential backoff and jitter for transient errors (a dropped database
  connection, a deadlock victim, a provider timeout), never for bugs or bad input.

Which worker runs a task is routing, not code: `CELERY_TASK_ROUTES` (settings) sends each app's tasks to
its queue, so the slow ones (provider calls, webhook deliveries, PDFs) can get workers of their own.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import Any

from celery import shared_task
from celery.result import EagerResult
from django.db import InterfaceError, OperationalError, transaction
from django.utils import timezone

from billing_site.jobs import job_run

# Errors worth another try: the database went away or picked this transaction as a deadlock victim.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (OperationalError, InterfaceError)


def billing_task(
    name: str,
    *,
    time_limit: int = 300,
    max_retries: int = 5,
    retry_for: tuple[type[BaseException], ...] = (),
) -> Callable[[Callable[..., Any]], Any]:
    options: dict[str, Any] = {
        "name": name,
        "acks_late": True,
        "reject_on_worker_lost": True,
        "time_limit": time_limit,
        "soft_time_limit": max(time_limit - 10, 1),
        "autoretry_for": TRANSIENT_ERRORS + retry_for,
        "retry_backoff": 5,
        "retry_backoff_max": 600,
        "retry_jitter": True,
        "max_retries": max_retries,
    }
    return shared_task(**options)


# Set by `inline_tasks()`: tasks run here, in order, instead of going to the broker.
_INLINE: ContextVar[bool] = ContextVar("billing_inline_tasks", default=False)


@contextmanager
def inline_tasks() -> Iterator[None]:
    """Within the block, `enqueue` runs each task in this process (still after the enclosing transaction
    commits), so a sweep's work is done when the sweep returns. A test clock's advance needs this: each
    due moment's work must be finished before the next moment is looked for."""
    token = _INLINE.set(True)
    try:
        yield
    finally:
        _INLINE.reset(token)


def enqueue(task: Any, *args: Any) -> dict[str, int] | None:
    """Send `task(*args)` once the current transaction commits (at once outside one): a task must never
    start before the rows it reads exist, nor run for a change that rolled back.

    The atomic blocks the test suite wraps each test in (`_from_testcase`, the marker Django's own
    durable-block check uses) do not count as a transaction of ours: they never commit, so a task
    deferred to their commit would never run, and inside them the rows are already visible to the task."""
    connection = transaction.get_connection()
    if _INLINE.get():
        if all(getattr(block, "_from_testcase", False) for block in connection.atomic_blocks):
            applied = task.apply(args=args, throw=True)
            return applied.result if isinstance(applied.result, dict) else None
        transaction.on_commit(lambda: task.apply(args=args, throw=True))
        return None
    if all(getattr(block, "_from_testcase", False) for block in connection.atomic_blocks):
        result = task.delay(*args)
        # Run inline (`run_job`, the test suite): the sweep can report what its tasks did.
        if isinstance(result, EagerResult) and isinstance(result.result, dict):
            return result.result
        return None
    transaction.on_commit(lambda: task.delay(*args))
    return None


def enqueue_unless_pending(task: Any, calls: Mapping[str, tuple[Any, ...]], *, timeout: int) -> int:
    """Enqueue `task(*args)` for each cache key of `calls` not already pending, so a burst of callers
    (ingest batches) enqueues once: one `get_many`, then `cache.add`, so one of concurrent callers wins.
    The task clears its keys when it starts (`cache.delete_many`), so callers after that enqueue again; a
    lost task's key expires after `timeout` seconds. A failed enqueue drops its key (the next caller may
    try again) and raises. Returns how many were enqueued."""
    from django.core.cache import cache

    pending = cache.get_many(list(calls))
    enqueued = 0
    for key in sorted(calls):
        if key in pending or not cache.add(key, "1", timeout=timeout):
            continue
        try:
            enqueue(task, *calls[key])
        except Exception:
            cache.delete(key)
            raise
        enqueued += 1
    return enqueued


def enqueue_each(task: Any, arguments: Iterable[tuple[Any, ...]]) -> Counter[str]:
    """`enqueue` for every argument tuple; what inline tasks returned, summed (empty when they went to the
    broker: then the workers do the work, and their task results say what they did)."""
    totals: Counter[str] = Counter()
    for args in arguments:
        result = enqueue(task, *args)
        if result:
            totals.update(result)
    return totals


def parse_now(now: str | None) -> datetime:
    return datetime.fromisoformat(now) if now else timezone.now()


@billing_task("billing.run_job", time_limit=900)
def run_job(name: str, now: str | None = None) -> dict:
    """The one task beat sends: run the named sweep for `now` (RFC 3339), or for the current time."""
    return job_run(name, now=parse_now(now))
