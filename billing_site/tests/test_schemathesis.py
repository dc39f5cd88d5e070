"""Schemathesis against our own OpenAPI schema (issue 10): every operation is called with a few generated
requests through the WSGI app (no network) with a valid API key: 0 server errors, and every answer matches
the schema (documented status, content type and body, the error envelope for 4xx).

Bounded for CI: SCHEMATHESIS_EXAMPLES examples per operation (default 5). `SCHEMATHESIS_EXAMPLES=100
.venv/bin/pytest billing_site/tests/test_schemathesis.py` runs it longer.
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from billing_site.services import api_key_create
from billing_site.wsgi import application

EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "5"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


# Loaded from the app at collection (drf-spectacular renders it; no database, no network).
schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", application)
# The coverage phase (boundary values of every field) costs minutes on 117 operations; CI runs the examples
# and fuzzing phases, SCHEMATHESIS_COVERAGE=true adds it.
schema.config.phases.coverage.enabled = os.environ.get("SCHEMATHESIS_COVERAGE", "").lower() in ("1", "true")


@pytest.fixture
def api_key(db: None) -> str:
    _, raw = api_key_create(name="schemathesis", scopes=["admin"])
    return raw


@pytest.fixture
def _connection_kept() -> object:
    """As Django's test client does: the requests run inside the test's transaction, so the per-request
    connection cleanup must not close (and reopen) the connection in the middle of it (PostgreSQL)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@pytest.mark.django_db
def test_every_operation_answers_without_a_server_error_and_as_documented(case, api_key, settings, _connection_kept):
    settings.API_RATE_LIMIT = (0, 60)
    settings.API_ANON_RATE_LIMIT = (0, 60)
    case.call_and_validate(headers={"Authorization": f"Bearer {api_key}"}, checks=CHECKS)
