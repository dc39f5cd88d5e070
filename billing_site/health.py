"""Liveness and readiness probes. No authentication: they reveal nothing but up or down."""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse

logger = logging.getLogger(__name__)


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def _check_database() -> str | None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any failure means "not ready"; the reason goes to the log and the body
        logger.warning("readiness: database unreachable: %s", exc)
        return type(exc).__name__
    return None


def _check_broker() -> str | None:
    from billing_site.celery import app

    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
    except Exception as exc:
        logger.warning("readiness: broker unreachable: %s", exc)
        return type(exc).__name__
    return None


def _check_cache() -> str | None:
    from django.core.cache import cache

    try:
        cache.set("readyz", "1", timeout=5)
    except Exception as exc:
        logger.warning("readiness: redis unreachable: %s", exc)
        return type(exc).__name__
    return None


def readyz(request: HttpRequest) -> JsonResponse:
    checks = {"database": _check_database(), "broker": _check_broker()}
    if settings.REDIS_URL:
        checks["redis"] = _check_cache()
    ready = all(error is None for error in checks.values())
    body = {
        "status": "ok" if ready else "unavailable",
        "checks": {name: ("ok" if error is None else f"error: {error}") for name, error in checks.items()},
    }
    return JsonResponse(body, status=200 if ready else 503)
