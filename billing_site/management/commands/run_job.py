from __future__ import annotations

from datetime import UTC, datetime

import orjson
from celery.signals import task_postrun
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from billing_site.celery import app as celery_app
from billing_site.jobs import JOBS, describe_schedule, get_job, job_run
from billing_site.progress import Summary, progress_bar


def parse_rfc3339(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise CommandError(f"--now must be an RFC 3339 time such as 2026-01-31T00:00:00Z, got {value!r}") from None
    if parsed.tzinfo is None:
        raise CommandError("--now needs a UTC offset (for example a trailing Z)")
    return parsed.astimezone(UTC)


class Command(BaseCommand):
    help = "Run one periodic job now, in the foreground, optionally for a chosen time (--now)."

    def add_arguments(self, parser) -> None:  # type: ignore[no-untyped-def]
        parser.add_argument("name", nargs="?", help="the job's name (see --list)")
        parser.add_argument("--now", help="the time the job runs for, RFC 3339 (default: the current time)")
        parser.add_argument("--list", action="store_true", help="print the jobs and their schedules")
        parser.add_argument(
            "--enqueue",
            action="store_true",
            help="send the sweep's tasks to the broker for the workers, instead of running them here",
        )

    def handle(self, *args, **options) -> None:  # type: ignore[no-untyped-def]
        if options["list"]:
            width = max(len(job.name) for job in JOBS)
            for job in JOBS:
                self.stdout.write(f"{job.name:<{width}}  {describe_schedule(job.schedule):<32}  {job.description}")
            return
        name = options["name"]
        if not name:
            raise CommandError("Name a job, or use --list to see them.")
        try:
            get_job(name)
        except KeyError as exc:
            raise CommandError(str(exc.args[0])) from None
        now = parse_rfc3339(options["now"]) if options["now"] else timezone.now()
        summary = Summary(f"run_job {name}")
        tasks = {"run": 0, "failed": 0}
        bar = progress_bar(stream=self.stderr, desc=name, unit="task", disable=options["enqueue"])

        def ran(sender=None, state=None, **kwargs):  # type: ignore[no-untyped-def]
            tasks["run"] += 1
            tasks["failed"] += state == "FAILURE"
            bar.update(1)

        if not options["enqueue"]:
            # The sweep's tasks run inline, in order, in this process: what `run_job` prints is what was done.
            celery_app.conf.task_always_eager = True
            celery_app.conf.task_eager_propagates = True
        task_postrun.connect(ran, weak=False)
        try:
            result = job_run(name, now=now)
        finally:
            task_postrun.disconnect(ran)
            bar.close()
        self.stdout.write(orjson.dumps({"job": name, "now": now.isoformat(), "result": result}, default=str).decode())
        # stdout stays one JSON document (scripts read it); the summary is for the person at the terminal.
        counts = (
            {"tasks_run": tasks["run"], "failed": tasks["failed"]} if not options["enqueue"] else {"tasks": "enqueued"}
        )
        self.stderr.write(summary.line(**counts), style_func=str)
