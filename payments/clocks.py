"""Advancing a test clock: every per-customer job, for the clock's customers, at each due moment in order.

This module sits at the top (payments imports every app below it) because advancing runs the jobs of
several apps: renewal and trial ends and late usage (subscriptions), grant expiry, collection and dunning
(payments), and any other job that `billing_site.jobs` marks `per_customer`. It names none of them: it
walks `per_customer_jobs()`, so a new per-customer job (alerts, say) is advanced by adding it there with
its `next_due`.

`test_clock_advance` (the API) only checks and marks the clock `advancing` toward its target, then
enqueues `test_clock_run`, which steps:

1. run every per-customer job at the clock's current frozen time (work due then: the first invoice of a
   subscription created at that time is collected);
2. ask every job's `next_due` for its next moment after the current one; take the soonest; if it is
   before the target, run every job at it (again while something is still due at exactly that moment:
   a dunning end issues a final invoice due at once), record it as the clock's frozen time, repeat;
3. run every job at the target; the clock is `ready` at the target.

Each job is idempotent (the database decides what is left to do), so a run that dies midway is taken up
again from the last moment recorded, and running a moment twice changes nothing. The jobs' tasks run in
this process (`inline_tasks`): each moment's work is done before the next is looked for.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Value
from django.db.models.functions import Greatest
from django.utils import timezone
from django.utils.module_loading import import_string

from billing_site.errors import Conflict, InvalidRequest
from billing_site.jobs import job_run, per_customer_jobs
from billing_site.tasks import enqueue, inline_tasks
from customers.clocks import MAX_DISTANCE, test_clock_lifetime_end, test_clock_snapshot, test_clocks_enabled_check
from customers.models import TestClock
from webhooks.services import object_event_emit

logger = logging.getLogger(__name__)

Status = TestClock.Status
# How often one moment is run while work is still due at exactly that moment.
PASSES_PER_MOMENT = 3
EPSILON = timedelta(microseconds=1)
RUN_TASK = "payments.tasks.test_clock_run_task"


class TooManySteps(RuntimeError):
    pass


def test_clock_advance(*, clock: TestClock, frozen_time: datetime, now: datetime) -> TestClock:
    """Start moving `clock` forward to `frozen_time`. The same time as now is a no-op (a retried advance
    changes nothing); an earlier one is refused; a clock already advancing is a 409."""
    test_clocks_enabled_check()
    clock.refresh_from_db()
    if clock.status == Status.ADVANCING:
        raise Conflict(
            f"Test clock {clock.pk} is already advancing; wait until it is ready.", code="test_clock_advancing"
        )
    if frozen_time == clock.frozen_time and clock.status == Status.READY:
        return clock
    if frozen_time < clock.frozen_time:
        raise InvalidRequest(
            f"A test clock only moves forward: frozen_time must be at or after {clock.frozen_time.isoformat()}.",
            code="test_clock_backwards",
            param="frozen_time",
        )
    if frozen_time - now > MAX_DISTANCE:
        raise InvalidRequest(
            f"frozen_time must be within {MAX_DISTANCE.days} days of the current time.",
            code="parameter_invalid",
            param="frozen_time",
        )
    with transaction.atomic():
        # Compare-and-set: of two advances racing, one wins; a failed clock may be advanced again.
        changed = (
            TestClock.objects.filter(
                pk=clock.pk,
                deleted_at__isnull=True,
                status__in=[Status.READY, Status.INTERNAL_FAILURE],
                frozen_time=clock.frozen_time,
            )
            .exclude(frozen_time__gte=frozen_time)
            .update(
                status=Status.ADVANCING,
                target_frozen_time=frozen_time,
                failure="",
                # A clock in use is kept: at least TEST_CLOCK_LIFETIME_DAYS from this advance.
                deletes_after=Greatest(F("deletes_after"), Value(test_clock_lifetime_end(now))),
                updated_at=now,
            )
        )
        if changed != 1:
            raise Conflict(f"Test clock {clock.pk} changed meanwhile; read it again.", code="test_clock_advancing")
        clock.refresh_from_db()
        object_event_emit(
            type="test_clock.advancing", obj=clock, data=test_clock_snapshot(clock), now=now, customer_id=""
        )
    # After the commit: the task must see the clock advancing. By name (payments.tasks imports this module).
    enqueue(import_string(RUN_TASK), clock.pk)
    clock.refresh_from_db()
    return clock


def _run_jobs(clock_id: str, at: datetime) -> dict[str, Any]:
    return {job.name: job_run(job.name, now=at, clock=clock_id) for job in per_customer_jobs()}


def _next_moment(clock_id: str, after: datetime) -> datetime | None:
    moments = []
    for job in per_customer_jobs():
        if job.next_due:
            moment = import_string(job.next_due)(clock=clock_id, after=after)
            if moment is not None:
                moments.append(moment)
    return min(moments) if moments else None


def _run_moment(clock_id: str, at: datetime) -> None:
    for _ in range(PASSES_PER_MOMENT):
        _run_jobs(clock_id, at)
        again = _next_moment(clock_id, at - EPSILON)
        if again is None or again > at:
            return


def test_clock_run(*, clock_id: str) -> dict[str, Any]:
    """The advance itself (the task's service); see the module docstring. Does nothing unless the clock
    is advancing, so a duplicate task is harmless."""
    clock = TestClock.objects.filter(pk=clock_id, deleted_at__isnull=True).first()
    if clock is None or clock.status != Status.ADVANCING or clock.target_frozen_time is None:
        return {"skipped": 1}
    target = clock.target_frozen_time
    at = clock.frozen_time
    moments = 0
    try:
        with inline_tasks():
            _run_moment(clock_id, at)
            while True:
                moment = _next_moment(clock_id, at)
                if moment is None or moment >= target:
                    break
                moments += 1
                if moments > settings.TEST_CLOCK_MAX_STEPS:
                    raise TooManySteps(
                        f"more than TEST_CLOCK_MAX_STEPS={settings.TEST_CLOCK_MAX_STEPS} due moments before "
                        f"{target.isoformat()}; advance by shorter steps"
                    )
                _run_moment(clock_id, moment)
                at = moment
                # Progress, so a run that dies resumes here (every job is idempotent at `at`).
                TestClock.objects.filter(pk=clock_id, status=Status.ADVANCING).update(frozen_time=at)
            _run_moment(clock_id, target)
    except Exception as exc:
        logger.exception("test clock %s failed advancing to %s", clock_id, target.isoformat())
        with transaction.atomic():
            TestClock.objects.filter(pk=clock_id, status=Status.ADVANCING).update(
                status=Status.INTERNAL_FAILURE,
                target_frozen_time=None,
                failure=str(exc)[:500],
                updated_at=timezone.now(),
            )
            clock.refresh_from_db()
            object_event_emit(
                type="test_clock.internal_failure",
                obj=clock,
                data=test_clock_snapshot(clock),
                now=timezone.now(),
                customer_id="",
            )
        return {"failed": 1, "moments": moments}
    with transaction.atomic():
        TestClock.objects.filter(pk=clock_id, status=Status.ADVANCING).update(
            status=Status.READY, frozen_time=target, target_frozen_time=None, updated_at=timezone.now()
        )
        clock.refresh_from_db()
        object_event_emit(
            type="test_clock.ready", obj=clock, data=test_clock_snapshot(clock), now=timezone.now(), customer_id=""
        )
    return {"moments": moments + 1, "frozen_time": target.isoformat()}
