from __future__ import annotations

import os

from celery import Celery
from celery.signals import setup_logging, task_postrun, task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_site.settings")

app = Celery("billing")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_configure.connect
def _install_beat_schedule(sender: Celery, **kwargs: object) -> None:
    from billing_site.jobs import beat_schedule

    sender.conf.beat_schedule = beat_schedule()


@setup_logging.connect
def _use_django_logging(**kwargs: object) -> None:
    # Celery would install its own handlers; keep Django's LOGGING (JSON lines) for workers too.
    from logging.config import dictConfig

    from django.conf import settings

    dictConfig(settings.LOGGING)


_tokens: dict[str, object] = {}


@task_prerun.connect
def _bind_task_id(task_id: str | None = None, **kwargs: object) -> None:
    # A task's log lines carry its task id where a request's carry the request id.
    from billing_site.logging import request_id_var

    if task_id:
        _tokens[task_id] = request_id_var.set(f"task_{task_id}")


@task_postrun.connect
def _unbind_task_id(task_id: str | None = None, **kwargs: object) -> None:
    from billing_site.logging import request_id_var

    token = _tokens.pop(task_id or "", None)
    if token is not None:
        request_id_var.reset(token)  # type: ignore[arg-type]
