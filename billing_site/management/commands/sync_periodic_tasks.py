from __future__ import annotations

from django.core.management.base import BaseCommand
from django_celery_beat.models import PeriodicTask
from django_celery_beat.schedulers import ModelEntry

from billing_site.celery import app
from billing_site.jobs import beat_schedule


class Command(BaseCommand):
    help = "Write the beat schedule of billing_site/jobs.py into the database, where admin shows it."

    def handle(self, *args, **options) -> None:  # type: ignore[no-untyped-def]
        schedule = beat_schedule()
        for name, entry in schedule.items():
            ModelEntry.from_entry(name, app=app, **entry)
        # A job removed from the registry must not keep running from a stale row.
        stale = PeriodicTask.objects.filter(task="billing.run_job").exclude(name__in=list(schedule))
        disabled = stale.update(enabled=False)
        self.stdout.write(f"{len(schedule)} periodic jobs in sync; {disabled} stale disabled.")
