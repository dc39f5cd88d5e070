"""Issue 10 item 9: no input, however odd, is answered with a 5xx; each case is refused with a clear 4xx
(or, for a cache outage, served), at its root in the core so every endpoint gets the same answer."""

from __future__ import annotations

import logging
import secrets

import pytest
from rest_framework.test import APIClient

from billing_site.renderers import MAX_JSON_DEPTH, JsonTooDeep, loads

pytestmark = pytest.mark.django_db

OUT_OF_RANGE = "9999-12-31T23:59:59.999999-23:59"  # a valid local time that is year 10000 in UTC


def _customer(api: APIClient, external_id: str = "c-1") -> dict:
    response = api.post("/api/v1/customers", {"external_id": external_id, "name": "C"}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


# --- Deeply nested JSON --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["/api/v1/customers", "/api/v1/prices", "/api/v1/products", "/api/v1/coupons", "/api/v1/refunds"]
)
def test_json_nested_ten_thousand_levels_is_a_400(api, url):
    deep = "[" * 10_000 + "]" * 10_000
    response = api.post(url, deep, content_type="application/json")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "malformed_body"
    assert "nested" in response.json()["error"]["message"]


def test_objects_nested_past_the_limit_are_refused_and_within_it_accepted():
    inside = '{"a":' * (MAX_JSON_DEPTH - 1) + "1" + "}" * (MAX_JSON_DEPTH - 1)
    assert loads(inside, max_depth=MAX_JSON_DEPTH) is not None
    with pytest.raises(JsonTooDeep):
        loads('{"a":' * (MAX_JSON_DEPTH + 1) + "1" + "}" * (MAX_JSON_DEPTH + 1), max_depth=MAX_JSON_DEPTH)


def test_metadata_nested_deeply_is_a_400_not_a_500(api):
    body = '{"external_id": "deep", "metadata": ' + '{"a":' * 200 + "1" + "}" * 200 + "}"
    response = api.post("/api/v1/customers", body, content_type="application/json")
    assert response.status_code == 400
    assert api.get("/api/v1/customers", {"external_id": "deep"}).json()["data"] == []


# --- Control characters in path ids --------------------------------------------------------------

DETAIL_ROUTES = [
    "/api/v1/customers/{}",
    "/api/v1/invoices/{}",
    "/api/v1/invoices/{}/pdf",
    "/api/v1/invoice-items/{}",
    "/api/v1/prices/{}",
    "/api/v1/products/{}",
    "/api/v1/coupons/{}",
    "/api/v1/meters/{}",
    "/api/v1/subscriptions/{}",
    "/api/v1/payment-intents/{}",
    "/api/v1/payment-methods/{}",
    "/api/v1/refunds/{}",
    "/api/v1/credit-notes/{}",
    "/api/v1/credit-grants/{}",
    "/api/v1/tax-rates/{}",
    "/api/v1/users/{}",
    "/api/v1/events/{}",
    "/api/v1/webhook-endpoints/{}",
]


@pytest.mark.parametrize("route", DETAIL_ROUTES)
def test_a_nul_in_a_path_id_is_a_404_before_any_query(api, route, django_assert_num_queries):
    url = route.format("in_%00x")
    response = api.get(url)
    assert response.status_code == 404, response.content
    assert response.json()["error"]["type"] == "not_found"


def test_a_nul_in_a_path_id_still_needs_a_credential():
    assert APIClient().get("/api/v1/invoices/in_%00x").status_code == 401


# --- Timestamps that overflow once converted to UTC ----------------------------------------------


@pytest.mark.parametrize(
    ("url", "param"),
    [
        ("/api/v1/customers", "created_gte"),
        ("/api/v1/events", "created_lt"),
        ("/api/v1/usage-pushes", "slice_start_gte"),
    ],
)
def test_an_out_of_range_timestamp_in_a_filter_is_a_400_naming_it(api, url, param):
    response = api.get(url, {param: OUT_OF_RANGE})
    assert response.status_code == 400, response.content
    assert response.json()["error"]["param"] == param


def _meter(api: APIClient) -> dict:
    response = api.post("/api/v1/meters", {"code": "calls", "name": "Calls", "aggregation": "count"}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def test_an_out_of_range_event_timestamp_is_rejected_naming_it(api):
    customer = _customer(api)
    _meter(api)
    response = api.post(
        "/api/v1/events",
        {"meter": "calls", "customer": customer["id"], "timestamp": OUT_OF_RANGE, "idempotency_key": "k1"},
        format="json",
    )
    assert response.status_code == 200, response.content
    result = response.json()["results"][0]
    assert result["status"] == "rejected"
    assert (result["error"]["code"], result["error"]["param"]) == ("parameter_invalid", "timestamp")


def test_an_out_of_range_usage_range_is_a_400_naming_it(api):
    customer = _customer(api)
    meter = _meter(api)
    response = api.get(
        f"/api/v1/usage/{meter['id']}",
        {"customer": customer["id"], "start": "2026-01-01T00:00:00Z", "end": OUT_OF_RANGE},
    )
    assert response.status_code == 400, response.content
    assert response.json()["error"]["param"] == "end"


# --- The control plane ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        '{"detail-type": "onboardingRequest", "source": "sbt.control.plane", "detail": {"tenantId": 1.5}}',
        '{"detail-type": "onboardingRequest", "source": "sbt.control.plane", "detail": {"tenantId": "\\ud800"}}',
        '{"detail-type": "ingestUsage", "source": "sbt.application.plane", "detail": {"meterValue": 0.5}}',
    ],
)
def test_control_plane_payloads_with_fractions_or_lone_surrogates_are_not_a_5xx(api, body):
    response = api.post("/api/v1/control-plane/events", body, content_type="application/json")
    assert response.status_code < 500, response.content
    assert response.status_code in (202, 400)


# --- The rate limiter when the cache is down -----------------------------------------------------


UNREACHABLE_CACHE = {
    "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://127.0.0.1:1/0"}
}


def test_the_rate_limiter_fails_open_and_logs_when_the_cache_is_down(api, settings, caplog):
    import billing_site.throttling as throttling

    throttling._last_logged = 0.0
    settings.API_RATE_LIMIT = (5, 60)
    settings.API_ANON_RATE_LIMIT = (1, 60)
    settings.CACHES = UNREACHABLE_CACHE
    with caplog.at_level(logging.ERROR, logger="billing.throttling"):
        answers = [api.get("/api/v1/customers").status_code for _ in range(8)]
        anonymous = [APIClient().get("/api/v1/customers").status_code for _ in range(3)]
    assert answers == [200] * 8  # over the limit, but nothing can be counted: served, not refused or 500
    assert anonymous == [401] * 3
    assert [r for r in caplog.records if "Rate limiter cache unreachable" in r.getMessage()]


# --- Unauthenticated requests are rate limited ---------------------------------------------------


def test_unauthenticated_requests_are_rate_limited_per_client_address(settings):
    settings.API_ANON_RATE_LIMIT = (3, 3600)
    # Addresses of this run only: a shared Redis keeps the window of an earlier run for an hour.
    net = f"10.{secrets.randbelow(250)}.{secrets.randbelow(250)}"
    here, there = APIClient(REMOTE_ADDR=f"{net}.1"), APIClient(REMOTE_ADDR=f"{net}.2")
    statuses = [here.get("/api/v1/customers").status_code for _ in range(4)]
    assert statuses == [401, 401, 401, 429]
    wrong_key = here.get("/api/v1/customers", HTTP_AUTHORIZATION="Bearer sk_nope")
    assert wrong_key.status_code == 429  # guessing keys counts against the same address
    assert wrong_key.json()["error"]["code"] == "rate_limited"
    assert "Retry-After" in wrong_key
    assert there.get("/api/v1/customers").status_code == 401  # another address has its own window
    # A forwarded-for header does not pick a new address unless proxies are declared (API_NUM_PROXIES)
    assert here.get("/api/v1/customers", HTTP_X_FORWARDED_FOR=f"{net}.9").status_code == 429


def test_authenticated_requests_are_not_counted_against_the_address(api, settings):
    settings.API_ANON_RATE_LIMIT = (1, 60)
    assert [api.get("/api/v1/customers").status_code for _ in range(3)] == [200, 200, 200]


# --- Bodies and parameters -----------------------------------------------------------------------


def test_pay_refuses_unknown_body_fields(api):
    response = api.post("/api/v1/invoices/in_missing/pay", {"amount": 1}, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "unknown_field"
    assert response.json()["error"]["param"] == "amount"


@pytest.mark.parametrize(
    "url",
    ["/api/v1/invoices/in_x/void", "/api/v1/invoices/in_x/finalize", "/api/v1/subscriptions/sub_x/reactivate"],
)
def test_every_bodyless_action_refuses_a_body(api, url):
    response = api.post(url, {"force": True}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "force"
    assert api.post(url, {}, format="json").status_code == 404  # an empty object is no body: on to the lookup


@pytest.mark.parametrize("url", ["/api/v1/prices", "/api/v1/products", "/api/v1/coupons", "/api/v1/tax-rates"])
def test_an_invalid_boolean_is_a_400_naming_the_parameter(api, url):
    response = api.get(url, {"active": "-1"})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "active"


@pytest.mark.parametrize("method", ["put", "options", "trace"])
def test_a_method_a_route_lacks_is_405_and_unauthenticated_still_401(api, method):
    call = (lambda c, u: c.generic("TRACE", u)) if method == "trace" else (lambda c, u: getattr(c, method)(u))
    response = call(api, "/api/v1/customers")
    assert response.status_code == 405, response.content
    assert response.json()["error"]["code"] == "method_not_allowed"
    assert call(APIClient(), "/api/v1/customers").status_code == 401


@pytest.mark.parametrize("method", ["PUT", "OPTIONS", "TRACE", "DELETE"])
def test_a_missing_method_is_405_even_without_the_scope_or_for_a_tenant(make_client, oidc, method):
    reader = make_client("customers:read")
    tenant = oidc.client(sub="t", scope="admin", **{"custom:tenantId": "tenant-x"})
    for client in (reader, tenant):
        response = client.generic(method, "/api/v1/customers")
        assert response.status_code == 405, (method, response.content)
        assert response.json()["error"]["code"] == "method_not_allowed"
    # A method the route has still needs its scope.
    assert reader.post("/api/v1/customers", {"external_id": "x"}, format="json").status_code == 403


def test_null_is_accepted_wherever_get_answers_null(api):
    response = api.post(
        "/api/v1/customers",
        {
            "external_id": "nulls",
            "name": None,
            "email": None,
            "currency": None,
            "address": {"line1": "1 Main St", "state": None, "postal_code": None, "country": "US"},
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["name"] is None and body["email"] is None and body["address"]["state"] is None
    assert body["address"]["line1"] == "1 Main St"
    # What GET answers can be sent back as it is.
    again = api.get(f"/api/v1/customers/{body['id']}").json()
    patch = api.patch(f"/api/v1/customers/{body['id']}", {"address": again["address"], "name": None}, format="json")
    assert patch.status_code == 200, patch.content
    assert patch.json()["address"] == again["address"]


def test_a_customer_created_without_a_name_reads_null(api):
    body = api.post("/api/v1/customers", {"external_id": "anon"}, format="json").json()
    assert body["name"] is None
    assert api.get(f"/api/v1/customers/{body['id']}").json()["name"] is None
