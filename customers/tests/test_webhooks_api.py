"""The REST API: /webhook-endpoints, /webhook-deliveries, /events."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from customers.services import customer_create, customer_update
from webhooks import delivery as d
from webhooks.models import BillingEvent, WebhookDelivery, WebhookEndpoint
from webhooks.tests.helpers import Reply, local_server

pytestmark = pytest.mark.django_db
URL = "https://hooks.example.test/in"  # private URLs are allowed in tests: no DNS lookup, never contacted


def _create(api, **body):
    payload = {"url": URL, "enabled_events": ["*"], **body}
    return api.post("/api/v1/webhook-endpoints", payload, format="json")


def test_create_shows_the_secret_once(api, caplog):
    caplog.set_level(logging.DEBUG)
    response = _create(
        api, description="ops", metadata={"team": "billing"}, enabled_events=["invoice.*", "customer.created"]
    )
    assert response.status_code == 201, response.content
    body = response.json()
    secret = body["secret"]
    assert secret.startswith("whsec_") and body["id"].startswith("we_")
    assert body["object"] == "webhook_endpoint" and body["status"] == "enabled"
    assert body["enabled_events"] == ["invoice.*", "customer.created"]
    listed = api.get("/api/v1/webhook-endpoints")
    fetched = api.get(f"/api/v1/webhook-endpoints/{body['id']}")
    assert listed.status_code == 200 and fetched.status_code == 200
    for text in (listed.content.decode(), fetched.content.decode()):
        assert secret not in text and '"secret"' not in text
    events = api.get("/api/v1/events").content.decode()
    assert secret not in events
    assert secret not in caplog.text


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"url": "not a url"}, "url", "url_invalid"),
        ({"url": "ftp://x.example/"}, "url", "url_invalid"),
        ({"enabled_events": []}, "enabled_events", "parameter_missing"),
        ({"enabled_events": ["invoice.payed", "invoce.paid"]}, "enabled_events", "unknown_event_type"),
        ({"enabled_events": ["Invoice Paid"]}, "enabled_events", "parameter_invalid"),
        ({"enabled_events": "*"}, "enabled_events", "parameter_invalid"),
        ({"colour": "red"}, "colour", "unknown_field"),
    ],
)
def test_bad_input_is_400_naming_the_field_and_writes_nothing(api, body, param, code):
    response = _create(api, **body)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["param"] == param
    if code != "parameter_invalid" or param != "enabled_events":
        assert error["code"] == code
    assert not WebhookEndpoint.objects.exists()


@override_settings(WEBHOOKS_ALLOW_PRIVATE_URLS=False)
def test_a_private_url_is_refused(api):
    response = _create(api, url="https://127.0.0.1/in")
    assert response.status_code == 400
    assert response.json()["error"] | {"message": ""} == {
        "type": "invalid_request",
        "code": "url_not_public",
        "param": "url",
        "message": "",
    }


@override_settings(WEBHOOKS_ALLOW_HTTP=False, DEBUG=False)
def test_http_is_refused_outside_debug(api):
    response = _create(api, url="http://hooks.example.test/in")
    assert response.status_code == 400 and response.json()["error"]["code"] == "url_insecure"


def test_scope_is_required(make_client):
    reader = make_client("billing:read")
    assert reader.get("/api/v1/webhook-endpoints").status_code == 403
    assert _create(reader).status_code == 403
    assert reader.get("/api/v1/events").status_code == 403
    manager = make_client("webhooks:manage")
    assert _create(manager).status_code == 201
    assert manager.get("/api/v1/events").status_code == 200


def test_update_delete_and_not_found(api):
    endpoint_id = _create(api).json()["id"]
    response = api.patch(
        f"/api/v1/webhook-endpoints/{endpoint_id}",
        {"status": "disabled", "enabled_events": ["invoice.paid"]},
        format="json",
    )
    assert response.status_code == 200
    assert response.json()["status"] == "disabled" and response.json()["disabled_reason"] == "disabled by request"
    assert api.post(f"/api/v1/webhook-endpoints/{endpoint_id}/test").status_code == 409
    enabled = api.patch(f"/api/v1/webhook-endpoints/{endpoint_id}", {"status": "enabled"}, format="json").json()
    assert enabled["status"] == "enabled" and enabled["disabled_reason"] is None
    bad = api.patch(f"/api/v1/webhook-endpoints/{endpoint_id}", {"status": "paused"}, format="json")
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "status"
    assert api.delete(f"/api/v1/webhook-endpoints/{endpoint_id}").status_code == 204
    assert api.get(f"/api/v1/webhook-endpoints/{endpoint_id}").status_code == 404
    assert api.get("/api/v1/webhook-endpoints/we_nope").status_code == 404
    assert BillingEvent.objects.filter(type="webhook_endpoint.deleted", object_id=endpoint_id).exists()


def test_rotate_secret_returns_the_new_one_with_the_overlap(api):
    created = _create(api).json()
    rotated = api.post(f"/api/v1/webhook-endpoints/{created['id']}/rotate-secret")
    assert rotated.status_code == 200
    body = rotated.json()
    assert body["secret"] != created["secret"] and body["secret"].startswith("whsec_")
    expires = datetime.fromisoformat(body["previous_secret_expires_at"].replace("Z", "+00:00"))
    assert timedelta(hours=23, minutes=59) < expires - timezone.now() <= timedelta(hours=24)
    endpoint = WebhookEndpoint.objects.get(pk=created["id"])
    assert endpoint.previous_secret == created["secret"]


def test_test_redeliver_and_deliveries_through_the_api(api):
    with local_server() as server:
        server.script = [Reply(500, b"nope"), Reply(200, b"ok")]
        endpoint_id = _create(api, url=f"{server.url}/hook").json()["id"]
        test = api.post(f"/api/v1/webhook-endpoints/{endpoint_id}/test")
        assert test.status_code == 202
        delivery_id = test.json()["id"]
        assert test.json()["event_type"] == "webhook_endpoint.test" and test.json()["status"] == "pending"
        d.delivery_attempt(delivery_id=delivery_id, now=timezone.now())

        detail = api.get(f"/api/v1/webhook-deliveries/{delivery_id}").json()
        assert detail["attempt_count"] == 1 and detail["last_status_code"] == 500
        assert detail["attempts"][0] | {"started_at": None, "duration_ms": 0} == {
            "number": 1,
            "started_at": None,
            "duration_ms": 0,
            "status_code": 500,
            "error": "HTTP 500",
            "response_body": "nope",
            "succeeded": False,
            "retryable": True,
        }
        redelivered = api.post(f"/api/v1/webhook-deliveries/{delivery_id}/redeliver")
        assert redelivered.status_code == 202 and redelivered.json()["status"] == "pending"
        assert d.delivery_attempt(delivery_id=delivery_id, now=timezone.now()) == "succeeded"

    listed = api.get(f"/api/v1/webhook-endpoints/{endpoint_id}/deliveries?status=succeeded")
    assert [row["id"] for row in listed.json()["data"]] == [delivery_id]
    assert api.get(f"/api/v1/webhook-endpoints/{endpoint_id}/deliveries?status=nope").status_code == 400
    assert api.get("/api/v1/webhook-deliveries/wd_nope").status_code == 404


def test_resend_since(api):
    endpoint_id = _create(api, enabled_events=["customer.*"]).json()["id"]
    customer_create(external_id="t-1", name="One", now=timezone.now())
    response = api.post(
        f"/api/v1/webhook-endpoints/{endpoint_id}/resend",
        {"since": (timezone.now() - timedelta(hours=1)).isoformat()},
        format="json",
    )
    assert response.status_code == 202, response.content
    assert response.json() == {"events": 1, "created": 1, "requeued": 0, "in_progress": 0}
    assert WebhookDelivery.objects.filter(endpoint_id=endpoint_id).count() == 1
    bad = api.post(f"/api/v1/webhook-endpoints/{endpoint_id}/resend", {"since": "soon"}, format="json")
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "since"
    missing = api.post(f"/api/v1/webhook-endpoints/{endpoint_id}/resend", {}, format="json")
    assert missing.status_code == 400 and missing.json()["error"]["code"] == "parameter_missing"


# --- Events -------------------------------------------------------------------------------------------


def test_events_list_filters_and_cursor(api):
    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    one = customer_create(external_id="t-1", name="One", now=t0)
    two = customer_create(external_id="t-2", name="Two", now=t0 + timedelta(days=1))
    customer_update(customer=one, changes={"name": "Uno"}, now=t0 + timedelta(days=2))

    page = api.get("/api/v1/events?limit=2").json()
    assert len(page["data"]) == 2 and page["has_more"] is True
    rest = api.get(f"/api/v1/events?limit=2&cursor={page['next_cursor']}").json()
    assert rest["has_more"] is False
    assert [e["type"] for e in page["data"] + rest["data"]] == [
        "customer.updated",
        "customer.created",
        "customer.created",
    ]

    updated = page["data"][0]
    assert updated["object"] == "event" and updated["customer"] == one.id
    assert updated["data"]["object"]["name"] == "Uno" and updated["data"]["object"]["object"] == "customer"
    assert updated["data"]["previous_attributes"] == {"name": "One"}

    def ids(query: str) -> list[str]:
        response = api.get(f"/api/v1/events?{query}")
        assert response.status_code == 200, response.content
        return [e["data"]["object"]["id"] for e in response.json()["data"]]

    assert ids(f"customer={two.id}") == [two.id]
    assert ids("type=customer.updated") == [one.id]
    assert ids("type=customer.*") == [one.id, two.id, one.id]
    assert ids("type=customer.updated,customer.deleted") == [one.id]
    assert ids("created_gte=2026-03-02T00:00:00Z&created_lt=2026-03-03T00:00:00Z") == [two.id]
    for bad in ("created_gte=yesterday", "colour=red", "limit=0", "cursor=%%%"):
        response = api.get(f"/api/v1/events?{bad}")
        assert response.status_code == 400, bad


def test_event_detail_matches_what_was_delivered(api):
    with local_server() as server:
        endpoint_id = _create(api, url=f"{server.url}/hook", enabled_events=["customer.created"]).json()["id"]
        customer = customer_create(external_id="t-1", name="One", now=timezone.now())
        d.events_dispatch(now=timezone.now())
        delivery = WebhookDelivery.objects.get(endpoint_id=endpoint_id)
        d.delivery_attempt(delivery_id=delivery.id, now=timezone.now())
        delivered = server.requests[-1].body
    # later changes do not rewrite what the event said was delivered
    customer_update(customer=customer, changes={"name": "Renamed"}, now=timezone.now())
    response = api.get(f"/api/v1/events/{delivery.event_id}")
    assert response.status_code == 200
    assert response.content == delivered
    assert api.get("/api/v1/events/bev_nope").status_code == 404


def test_events_path_keeps_usage_ingestion(make_client):
    writer = make_client("usage:write")
    assert writer.get("/api/v1/events").status_code == 403
    assert writer.post("/api/v1/events", {"events": []}, format="json").status_code != 405
    assert make_client("admin").get("/api/v1/events/billing-events").status_code == 405
