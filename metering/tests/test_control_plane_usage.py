"""ingestUsage events from the application plane, end to end through POST /api/v1/control-plane/events,
ingested by the same code as POST /events: the sbt-aws shape and the reference pipeline's, one or a list,
idempotent by the EventBridge event id plus index, per-event rejections recorded on the stored event."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from customers.models import ControlPlaneEvent
from customers.tests.factories import CustomerFactory
from metering.models import MeterEvent
from metering.tests.factories import MeterFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/control-plane/events"


def usage_event(detail, event_id: str | None = "eb-usage-1", detail_type: str = "sbt_aws_ingestUsage") -> dict:
    # What an application plane puts on the bus with put_events, as the API destination delivers it.
    body = {
        "version": "0",
        "detail-type": detail_type,
        "source": "sbt.application.plane",
        "account": "111111111111",
        "time": "2026-12-03T10:00:00Z",
        "region": "eu-west-1",
        "resources": [],
        "detail": detail,
    }
    if event_id is not None:
        body["id"] = event_id
    return body


@pytest.fixture
def tenant():
    return CustomerFactory(external_id="sbt-tenant-1")


@pytest.fixture
def meter():
    return MeterFactory(code="productsSold")


def values(customer) -> list[Decimal]:
    return sorted(MeterEvent.objects.filter(customer=customer).values_list("value", flat=True))


def test_one_sbt_usage_event_is_ingested(api, tenant, meter):
    detail = {"tenantId": "sbt-tenant-1", "meterApiName": "productsSold", "meterValue": 7}
    response = api.post(URL, usage_event(detail), format="json")
    assert response.status_code == 202
    body = response.json()
    assert (body["status"], body["detail_type"], body["customer"]) == ("applied", "sbt_aws_ingestUsage", tenant.id)
    assert body["details"]["usage"]["created"] == 1
    event = MeterEvent.objects.get(customer=tenant)
    assert (event.meter_id, event.value, event.idempotency_key) == (meter.id, Decimal(7), "eb-usage-1:0")
    assert body["details"]["usage"]["events"] == [event.public_id]
    stored = ControlPlaneEvent.objects.get()
    assert (stored.status, stored.tenant_id, stored.result) == (
        "applied",
        "sbt-tenant-1",
        "1 created, 0 duplicates, 0 rejected",
    )


def test_a_list_with_timestamps_dimensions_and_fractions(api, tenant, meter):
    now = timezone.now()
    detail = [
        {"tenantId": "sbt-tenant-1", "meterApiName": "productsSold", "meterValue": 1.5},
        {
            "tenantId": "sbt-tenant-1",
            "meterApiName": "productsSold",
            "meterValue": "2.25",
            "timestamp": (now - timedelta(hours=2)).isoformat(),
            "dimensions": {"region": "eu"},
        },
        {
            "tenantId": "sbt-tenant-1",
            "meterApiName": "productsSold",
            "meterValue": 3,
            "meterTimeInMillis": int((now - timedelta(hours=1)).timestamp() * 1000),
        },
    ]
    body = api.post(URL, usage_event(detail), format="json").json()
    assert body["details"]["usage"]["created"] == 3
    assert values(tenant) == [Decimal("1.5"), Decimal("2.25"), Decimal(3)]
    assert MeterEvent.objects.get(value=Decimal("2.25")).dimensions == {"region": "eu"}
    keys = sorted(MeterEvent.objects.values_list("idempotency_key", flat=True))
    assert keys == ["eb-usage-1:0", "eb-usage-1:1", "eb-usage-1:2"]


def test_the_reference_pipelines_shape(api, tenant, meter):
    millis = int((timezone.now() - timedelta(minutes=30)).timestamp() * 1000)
    detail = {"TenantID": "sbt-tenant-1", "ProductCode": "productsSold", "Quantity": 5, "Timestamp": millis}
    body = api.post(URL, usage_event(detail, detail_type="ingestUsage"), format="json").json()
    assert body["status"] == "applied"
    event = MeterEvent.objects.get()
    assert (event.value, int(event.timestamp.timestamp() * 1000)) == (Decimal(5), millis)


def test_a_redelivery_is_a_duplicate_and_a_new_put_of_the_same_usage_is_not_counted_twice(api, tenant, meter):
    detail = [{"tenantId": "sbt-tenant-1", "meterApiName": "productsSold", "meterValue": 2}] * 2
    api.post(URL, usage_event(detail), format="json")
    again = api.post(URL, usage_event(detail), format="json").json()  # EventBridge redelivers the event
    assert again["status"] == "duplicate"
    assert values(tenant) == [Decimal(2), Decimal(2)]  # two events of the list, once each


def test_an_own_key_wins_over_the_envelope_id(api, tenant, meter):
    item = {"tenantId": "sbt-tenant-1", "meterApiName": "productsSold", "meterValue": 4, "idempotencyKey": "k-1"}
    first = api.post(URL, usage_event(item, event_id="eb-a"), format="json").json()
    # The sender retried with a new put_events (a new EventBridge id) of the same usage.
    second = api.post(URL, usage_event(item, event_id="eb-b"), format="json").json()
    assert (first["status"], second["status"]) == ("applied", "no_effect")
    assert second["details"]["usage"]["duplicates"] == 1
    assert values(tenant) == [Decimal(4)]


def test_rejections_are_per_event_named_as_sent_and_recorded(api, tenant, meter):
    other = CustomerFactory(external_id="sbt-tenant-2")
    detail = {
        "events": [
            {"tenantId": "sbt-tenant-1", "meterApiName": "productsSold", "meterValue": 1},
            {"tenantId": "sbt-tenant-1", "meterApiName": "noSuchMeter", "meterValue": 1},
            {"tenantId": "unknown-tenant", "meterApiName": "productsSold", "meterValue": 1},
            {"tenantId": "sbt-tenant-1", "meterApiName": "productsSold", "meterValue": -3},
            {"tenantId": "sbt-tenant-1", "meterApiName": "productsSold", "meterValue": 0.12345678901234567},
            {"tenantId": "sbt-tenant-1", "meterApiName": "productsSold", "meterVal": 1},
            {"TenantID": "sbt-tenant-2", "ProductCode": "productsSold", "Quantity": "many"},
            "not an object",
        ]
    }
    response = api.post(URL, usage_event(detail), format="json")
    assert response.status_code == 202
    usage = response.json()["details"]["usage"]
    assert (usage["created"], usage["rejected"]) == (1, 7)
    assert [(r["index"], r["code"], r["param"]) for r in usage["rejections"]] == [
        (1, "meter_not_found", "detail[1].meterApiName"),
        (2, "customer_not_found", "detail[2].tenantId"),
        (3, "value_negative", "detail[3].meterValue"),
        (4, "value_imprecise", "detail[4].meterValue"),
        (5, "unknown_field", "detail[5].meterVal"),
        (6, "parameter_invalid", "detail[6].Quantity"),
        (7, "parameter_invalid", "detail[7]"),
    ]
    stored = ControlPlaneEvent.objects.get()
    assert stored.status == "applied" and stored.details["usage"]["rejections"] == usage["rejections"]
    assert values(tenant) == [Decimal(1)] and values(other) == []


def test_rejected_usage_is_visible_in_admin(api, tenant, meter, client):
    detail = {"tenantId": "sbt-tenant-1", "meterApiName": "noSuchMeter", "meterValue": 1}
    assert api.post(URL, usage_event(detail), format="json").json()["status"] == "rejected"
    client.force_login(get_user_model().objects.create_superuser("ops", "ops@example.com", "pw"))
    stored = ControlPlaneEvent.objects.get()
    listing = client.get("/admin/customers/controlplaneevent/")
    assert listing.status_code == 200 and b"sbt_aws_ingestUsage" in listing.content
    page = client.get(f"/admin/customers/controlplaneevent/{stored.pk}/change/")
    assert page.status_code == 200
    assert b"meter_not_found" in page.content and b"detail.meterApiName" in page.content


def test_a_deactivated_tenants_usage_is_refused_with_a_clear_code(api, tenant, meter):
    api.post(URL, usage_event({"tenantId": "sbt-tenant-1"}, None, "sbt_aws_deactivateRequest"), format="json")
    detail = {"tenantId": "sbt-tenant-1", "meterApiName": "productsSold", "meterValue": 1}
    usage = api.post(URL, usage_event(detail), format="json").json()["details"]["usage"]
    assert usage["rejections"][0]["code"] == "customer_deactivated"
    # POST /events refuses it the same way: one ingestion path.
    direct = api.post("/api/v1/events", {"external_id": "sbt-tenant-1", "meter": "productsSold"}, format="json")
    assert direct.json()["results"][0]["error"]["code"] == "customer_deactivated"
    api.post(URL, usage_event({"tenantId": "sbt-tenant-1"}, None, "sbt_aws_activateRequest"), format="json")
    again = api.post(URL, usage_event(detail, event_id="eb-usage-2"), format="json").json()
    assert again["details"]["usage"]["created"] == 1


@pytest.mark.parametrize(
    ("detail", "code", "param"),
    [
        ([], "parameter_missing", "detail"),
        ({"events": [], "extra": 1}, "unknown_field", "detail.extra"),
        ([{"tenantId": "t"}] * 10_001, "batch_too_large", "detail"),
    ],
)
def test_an_event_without_usable_usage_is_a_400(api, detail, code, param):
    response = api.post(URL, usage_event(detail), format="json")
    assert response.status_code == 400
    assert (response.json()["error"]["code"], response.json()["error"]["param"]) == (code, param)
    assert ControlPlaneEvent.objects.get().status == "rejected"


def test_usage_answers_name_the_rejections(api, tenant, meter, bus, django_capture_on_commit_callbacks):
    bus.accept(2)
    good = {"tenantId": "sbt-tenant-1", "meterApiName": "productsSold", "meterValue": 1}
    bad = {"tenantId": "sbt-tenant-1", "meterApiName": "nope", "meterValue": 1}
    with django_capture_on_commit_callbacks(execute=True):
        api.post(URL, usage_event(good, event_id="eb-1"), format="json")
    with django_capture_on_commit_callbacks(execute=True):
        api.post(URL, usage_event([good, bad], event_id="eb-2"), format="json")
    assert bus.detail_types() == ["sbt_aws_billingSuccess", "sbt_aws_billingFailure"]
    failure = bus.details()[1]
    assert failure["code"] == "usage_rejected"
    assert failure["reason"].startswith("1 of 2 usage events rejected: [1] meter_not_found")
    assert failure["details"]["usage"]["created"] == 1
