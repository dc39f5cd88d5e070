from __future__ import annotations

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


def test_malformed_json_is_400_envelope(api):
    response = api.post("/api/v1/customers", data=b'{"external_id": ', content_type="application/json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request"
    assert error["code"] == "malformed_body"


def test_nan_is_not_json(api):
    response = api.post("/api/v1/customers", data=b'{"external_id": "x", "n": NaN}', content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_body"


def test_body_that_is_not_an_object_is_400(api):
    response = api.post("/api/v1/customers", data=b"[1, 2]", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_body"


def test_unknown_route_is_404_envelope():
    response = APIClient().get("/api/v1/no-such-thing")
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found"
    assert response.json()["error"]["code"] == "route_not_found"


def test_wrong_method_is_405_envelope(api):
    response = api.put("/api/v1/customers", {}, format="json")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_validation_errors_name_the_first_field_and_list_all(api):
    response = api.post(
        "/api/v1/customers",
        {"external_id": "t", "email": "nope", "currency": "xyz", "address": {"country": "ZZ"}},
        format="json",
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "email"
    params = {e["param"] for e in error["errors"]}
    assert params == {"email", "currency", "address.country"}
    codes = {e["param"]: e["code"] for e in error["errors"]}
    assert codes["currency"] == "unknown_currency"
    assert codes["address.country"] == "unknown_country"


def test_unknown_field_is_named(api):
    response = api.post("/api/v1/customers", {"external_id": "t", "nmae": "typo"}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "nmae"
    assert response.json()["error"]["code"] == "unknown_field"


@override_settings(MAX_REQUEST_BODY_BYTES=2048)
def test_body_over_the_limit_is_413(api):
    response = api.post("/api/v1/customers", {"external_id": "t", "name": "x" * 4000}, format="json")
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"


def test_every_response_carries_a_request_id(api):
    response = api.get("/api/v1/customers")
    assert response["X-Request-Id"].startswith("req_")


def test_unsafe_incoming_request_id_is_replaced(api):
    response = api.get("/api/v1/customers", HTTP_X_REQUEST_ID="bad id\nwith newline")
    assert response["X-Request-Id"].startswith("req_")


def test_nul_characters_are_refused_before_they_reach_the_database(api):
    response = api.post("/api/v1/customers", data=b'{"external_id": "t\\u0000x"}', content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_body"


def test_over_the_rate_limit_is_429_with_retry_after(make_client, settings):
    from django.core.cache import cache

    cache.clear()
    settings.API_RATE_LIMIT = (3, 3600)
    client, other = make_client("customers:read"), make_client("customers:read", name="other")
    assert [client.get("/api/v1/customers").status_code for _ in range(3)] == [200, 200, 200]
    response = client.get("/api/v1/customers")
    assert response.status_code == 429
    assert response.json()["error"]["type"] == "rate_limited"
    assert 0 < int(response["Retry-After"]) <= 3601
    assert other.get("/api/v1/customers").status_code == 200  # limits are per API key
    settings.API_RATE_LIMIT = (0, 60)
    assert client.get("/api/v1/customers").status_code == 200
