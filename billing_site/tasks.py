from __future__ import annotations

from datetime import datetime

from celery import shared_task
from django.utils import timezone

from billing_site.jobs import job_run


@shared_task(name="billing.run_job")
def run_job(name: str, now: str | None = None) -> dict:
    """The one task beat sends: run the named job for `now` (RFC 3339), or for the current time."""
    when = datetime.fromisoformat(now) if now else timezone.now()
    return job_run(name, now=when)
