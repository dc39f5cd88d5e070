"""Every periodic job, in one place.

A job is a sweep, a function `fn(*, now: datetime) -> dict` (what it did, for the log and for `run_job`).
A sweep only finds due work: where the work is slow (provider calls) or heavy (renewal), it enqueues one
task per object, or per batch where the batch is the efficient unit (`billing_site.tasks.enqueue`), and
the tasks do it, each safe to run twice; where the work is one cheap statement per batch (expiring
grants, purging keys, roll-ups) the sweep does it itself. Beat runs each sweep through the one task
`billing.run_job` with the job's name; `python manage.py run_job NAME --now T` runs the same sweep in the
foreground for a chosen time, with its tasks inline. Jobs are named by dotted path, so this module imports
no app and the import direction (core at the bottom) holds.

Per-customer jobs (`per_customer=True`) bill or collect on a customer's time. Their sweep takes
`clock=`: None (beat, `run_job`) is real time and must leave customers on a test clock alone; a clock id
runs the sweep for that clock's customers only (`customers.clocks.clock_scope` is the filter). `next_due`
names a function `fn(*, clock, after) -> datetime | None`: the first moment after `after` at which the
job has work for the clock's customers; a test clock's advance (`payments.clocks`) steps through these
moments in order and runs every per-customer job at each.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from celery.schedules import crontab
from django.utils.module_loading import import_string

logger = logging.getLogger("billing.jobs")


@dataclass(frozen=True)
class Job:
    name: str
    function: str
    schedule: crontab | timedelta
    description: str
    per_customer: bool = False
    next_due: str | None = None


JOBS: tuple[Job, ...] = (
    Job(
        name="purge_idempotency_keys",
        function="billing_site.services.idempotency_keys_purge_job",
        schedule=crontab(minute="17"),
        description="Delete stored Idempotency-Key responses older than IDEMPOTENCY_KEY_TTL_HOURS.",
    ),
    Job(
        name="rollup_usage",
        function="metering.rollups.usage_rollup_job",
        schedule=timedelta(minutes=5),
        description="Recompute the hourly usage roll-ups of dirty hours (new, late or canceled events).",
    ),
    Job(
        name="ensure_event_partitions",
        function="metering.partitions.event_partitions_ensure_job",
        schedule=crontab(minute="3"),
        description="PostgreSQL: create the usage-events partitions from the backfill window's start to "
        "METERING_PARTITIONS_AHEAD intervals ahead.",
    ),
    Job(
        name="renew_subscriptions",
        function="subscriptions.services.renewal.renew_subscriptions_job",
        schedule=timedelta(minutes=5),
        description="End trials, bill every ended period (catching up missed ones), end subscriptions "
        "canceled at period end.",
        per_customer=True,
        next_due="subscriptions.services.renewal.renewal_next_due",
    ),
    Job(
        name="progressive_billing",
        function="subscriptions.services.progressive.progressive_billing_job",
        schedule=timedelta(minutes=15),
        description="Progressive billing: invoice the current period's usage of subscriptions whose usage "
        "amount crossed one of their thresholds.",
        per_customer=True,
    ),
    # After renewal: an advance at a period's end moves the alerts on to the period renewal just started.
    Job(
        name="evaluate_usage_alerts",
        function="metering.alerts.usage_alerts_job",
        schedule=timedelta(minutes=5),
        description="Move usage alerts' ended periods on and evaluate every active alert (usage and invoice amount).",
        per_customer=True,
        next_due="metering.alerts.usage_alerts_next_due",
    ),
    Job(
        name="bill_ended_late_usage",
        function="subscriptions.services.renewal.ended_late_usage_job",
        schedule=crontab(minute="37"),
        description="Invoice usage that arrived late (or was canceled) for the last periods of subscriptions "
        "that have ended.",
        per_customer=True,
    ),
    Job(
        name="expire_credit_grants",
        function="payments.services.grants.credit_grants_expire_job",
        schedule=crontab(minute="7"),
        description="Expire active credit grants whose expires_at has passed (their remaining credit becomes "
        "unusable); emits credit_grant.expired.",
        per_customer=True,
        next_due="payments.services.grants.grants_next_due",
    ),
    Job(
        name="resolve_unknown_payments",
        function="payments.services.intents.payment_intent_resolve_unknown_job",
        schedule=timedelta(minutes=10),
        description="Settle payments whose provider answer was lost (status unknown, or processing whose "
        "caller died) by reading the provider's records; never charges again.",
        per_customer=True,
    ),
    Job(
        name="push_usage",
        function="metering.push.sweep.usage_push_job",
        schedule=crontab(minute="3"),
        description="Billing mode provider: push each closed slice (USAGE_PUSH_SLICE) of usage, and corrections "
        "for late or canceled usage, to Stripe Billing exactly once; one task per (customer, meter).",
    ),
    Job(
        name="collect_invoices",
        function="payments.services.collection.invoices_collect_job",
        schedule=timedelta(minutes=5),
        description="Collect open charge_automatically invoices whose first attempt or dunning retry is due "
        "(credits, balance, then the provider); mark overdue send_invoice subscriptions past_due.",
        per_customer=True,
        next_due="payments.services.collection.collection_next_due",
    ),
    Job(
        name="expire_test_clocks",
        function="customers.clocks.test_clocks_expire_job",
        schedule=crontab(minute="29"),
        description="Soft-delete the test clocks (and their customers) whose deletes_after has passed, as "
        "DELETE /test-clocks/{id} does; a clock that is advancing is left until it is ready.",
    ),
    # --- control plane (sbt-aws) ---
    Job(
        name="send_control_plane_answers",
        function="customers.control_plane.answers.answers_send_job",
        schedule=timedelta(minutes=1),
        description="Queue every billingSuccess/billingFailure answer to the control plane's EventBridge bus "
        "that is due: retries, and anything a crash or a broker outage left unsent.",
    ),
    # --- portal ---
    Job(
        name="purge_portal_rows",
        function="portal.services.portal_rows_purge_job",
        schedule=crontab(minute="23"),
        description="Delete portal sessions expired more than a day ago and form submissions (the nonces that "
        "make a double click act once) older than a week.",
    ),
    # --- webhooks ---
    Job(
        name="deliver_webhooks",
        function="webhooks.delivery.deliver_webhooks_job",
        schedule=timedelta(seconds=10),
        description="Fan out outbox events not yet turned into webhook deliveries, then queue every delivery "
        "that is due (retries, and anything a crashed worker left behind).",
    ),
    Job(
        name="process_provider_events",
        function="webhooks.inbound.provider_events_process_job",
        schedule=timedelta(minutes=1),
        description="Queue received provider webhook events whose processing retry is due, or whose worker "
        "died while processing them.",
    ),
)

_BY_NAME = {job.name: job for job in JOBS}


def job_names() -> list[str]:
    return [job.name for job in JOBS]


def get_job(name: str) -> Job:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"Unknown job {name!r}. Known jobs: {', '.join(job_names())}") from None


def describe_schedule(schedule: crontab | timedelta) -> str:
    if isinstance(schedule, timedelta):
        return f"every {int(schedule.total_seconds())}s"
    return (
        f"cron {schedule._orig_minute} {schedule._orig_hour} {schedule._orig_day_of_month} "
        f"{schedule._orig_month_of_year} {schedule._orig_day_of_week} (UTC)"
    )


def per_customer_jobs() -> list[Job]:
    return [job for job in JOBS if job.per_customer]


def job_run(name: str, *, now: datetime, clock: str | None = None) -> dict[str, Any]:
    """Run the named sweep for `now`; `clock` (per-customer jobs only) runs it for that test clock's
    customers instead of real time's."""
    job = get_job(name)
    function = import_string(job.function)
    started = time.perf_counter()
    if clock is not None:
        if not job.per_customer:
            raise ValueError(f"Job {name!r} is not per customer; it has no test clock scope")
        result = function(now=now, clock=clock) or {}
    else:
        result = function(now=now) or {}
    logger.info(
        "job %s done",
        name,
        extra={
            "job": name,
            "now": now.isoformat(),
            "clock": clock,
            "result": result,
            "duration_ms": round((time.perf_counter() - started) * 1000, 1),
        },
    )
    return result


def beat_schedule() -> dict[str, dict[str, Any]]:
    return {job.name: {"task": "billing.run_job", "schedule": job.schedule, "args": [job.name]} for job in JOBS}
