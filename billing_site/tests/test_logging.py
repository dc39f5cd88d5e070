from __future__ import annotations

import logging

import orjson
import pytest

from billing_site.logging import JsonFormatter, RequestIdFilter, request_id_var

pytestmark = pytest.mark.django_db


def _format(record: logging.LogRecord) -> dict:
    RequestIdFilter().filter(record)
    return orjson.loads(JsonFormatter().format(record))


def test_json_line_carries_request_id_and_extra_fields():
    token = request_id_var.set("req_abc")
    try:
        record = logging.LogRecord("billing", logging.INFO, __file__, 1, "hello %s", ("world",), None)
        record.customer = "cus_1"
        line = _format(record)
    finally:
        request_id_var.reset(token)
    assert line["message"] == "hello world"
    assert line["request_id"] == "req_abc"
    assert line["customer"] == "cus_1"
    assert line["level"] == "INFO"


def test_every_log_line_of_a_request_has_its_id(api, caplog):
    caplog.set_level(logging.INFO)
    api.get("/api/v1/customers", HTTP_X_REQUEST_ID="req-abcdef123")
    request_lines = [r for r in caplog.records if r.name == "billing.request"]
    assert request_lines
    assert all(_format(r)["request_id"] == "req-abcdef123" for r in request_lines)
