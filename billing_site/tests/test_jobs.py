from __future__ import annotations

from datetime import UTC, datetime, timedelta
from io import StringIO

import orjson
import pytest
from django.core.management import CommandError, call_command
from django_celery_beat.models import PeriodicTask

from billing_site.celery import app
from billing_site.jobs import JOBS, beat_schedule
from billing_site.models import IdempotencyRecord
from billing_site.services import api_key_create
from billing_site.tasks import run_job

pytestmark = pytest.mark.django_db


def test_list_prints_every_job_and_its_schedule():
    out = StringIO()
    call_command("run_job", "--list", stdout=out)
    text = out.getvalue()
    for job in JOBS:
        assert job.name in text
    assert "cron 17 * * * * (UTC)" in text


def _old_record(created_at: datetime) -> None:
    key, _ = api_key_create(name="k", scopes=["admin"])
    IdempotencyRecord.objects.create(
        api_key=key, key="k1", fingerprint="f", method="POST", path="/", locked_at=created_at, created_at=created_at
    )


def test_run_job_runs_for_the_chosen_time():
    _old_record(datetime(2026, 1, 1, tzinfo=UTC))
    out = StringIO()
    # For a time one hour later nothing is old enough yet; three days later the record is purged.
    call_command("run_job", "purge_idempotency_keys", "--now", "2026-01-01T01:00:00Z", stdout=out)
    assert orjson.loads(out.getvalue())["result"] == {"deleted": 0}
    out = StringIO()
    call_command("run_job", "purge_idempotency_keys", "--now", "2026-01-04T00:00:00Z", stdout=out)
    assert orjson.loads(out.getvalue())["result"] == {"deleted": 1}
    assert not IdempotencyRecord.objects.exists()


def test_run_job_refuses_unknown_names_and_bad_times():
    with pytest.raises(CommandError, match="Unknown job"):
        call_command("run_job", "no_such_job")
    with pytest.raises(CommandError, match="RFC 3339"):
        call_command("run_job", "purge_idempotency_keys", "--now", "yesterday")
    with pytest.raises(CommandError, match="UTC offset"):
        call_command("run_job", "purge_idempotency_keys", "--now", "2026-01-01T00:00:00")


def test_beat_sends_every_job_through_one_task():
    schedule = app.conf.beat_schedule
    assert set(schedule) == {job.name for job in JOBS}
    assert all(entry["task"] == "billing.run_job" for entry in schedule.values())
    assert schedule == beat_schedule()


def test_the_task_runs_the_job_with_the_given_now():
    now = datetime(2026, 3, 1, tzinfo=UTC)
    _old_record(now - timedelta(days=10))
    assert run_job.delay("purge_idempotency_keys", now.isoformat()).get() == {"deleted": 1}


def test_schedule_is_synced_into_admin_rows():
    out = StringIO()
    call_command("sync_periodic_tasks", stdout=out)
    call_command("sync_periodic_tasks", stdout=out)  # re-running changes nothing
    rows = PeriodicTask.objects.filter(task="billing.run_job")
    assert sorted(rows.values_list("name", flat=True)) == sorted(job.name for job in JOBS)
    PeriodicTask.objects.create(name="retired_job", task="billing.run_job", crontab=rows[0].crontab)
    call_command("sync_periodic_tasks", stdout=out)
    assert PeriodicTask.objects.get(name="retired_job").enabled is False


def test_every_queue_a_task_is_routed_to_has_a_worker(settings):
    """A task routed to a queue no worker consumes would wait forever: `make run`'s worker and the compose
    workers together consume every queue of CELERY_TASK_ROUTES."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    routed = {route["queue"] for route in settings.CELERY_TASK_ROUTES.values()} | {settings.CELERY_TASK_DEFAULT_QUEUE}
    assert routed <= set(settings.BILLING_QUEUES)
    dev_run = set(re.search(r"-Q (\S+)", (root / "bin" / "dev-run").read_text()).group(1).split(","))
    assert dev_run == set(settings.BILLING_QUEUES)
    compose = set()
    for queues in re.findall(r'"-Q", "([^"]+)"', (root / "docker-compose.yml").read_text()):
        compose |= set(queues.split(","))
    assert compose == set(settings.BILLING_QUEUES)


def test_the_celery_router_sends_each_task_to_its_queue():
    """Routing is read by Celery itself (a setting Celery misreads would break every send in production,
    where tasks are not eager), so ask Celery's own router."""
    from billing_site.celery import app

    router = app.amqp.router
    assert router.route({}, "payments.invoice_collect")["queue"].name == "collection"
    assert router.route({}, "subscriptions.renew_batch")["queue"].name == "billing"
    assert router.route({}, "webhooks.deliver")["queue"].name == "webhooks"
    assert router.route({}, "billing.run_job")["queue"].name == "default"
