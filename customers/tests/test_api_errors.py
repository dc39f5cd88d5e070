"""The core's error handling, through the first app with an API: an uncaught exception is a 500 envelope with
the request id, and nothing of the internals."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_uncaught_exception_is_500_with_request_id_and_no_trace(api, monkeypatch):
    from customers import selectors

    def boom(**kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(selectors, "customer_list", boom)
    response = api.get("/api/v1/customers", HTTP_X_REQUEST_ID="req-test-12345")
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["type"] == "api_error"
    assert error["request_id"] == "req-test-12345"
    assert "secret internals" not in response.content.decode()
    assert "Traceback" not in response.content.decode()
    assert response["X-Request-Id"] == "req-test-12345"
