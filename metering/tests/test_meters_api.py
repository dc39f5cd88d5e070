from __future__ import annotations

import pytest
from django.utils import timezone

from metering.ingest import usage_ingest
from metering.models import Meter
from metering.tests.factories import MeterFactory
from webhooks.models import BillingEvent

pytestmark = pytest.mark.django_db


def test_create_and_read_a_meter(api):
    response = api.post(
        "/api/v1/meters",
        {"code": "api-calls", "name": "API calls", "aggregation": "sum", "filters": {"region": ["eu", "us"]}},
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["id"].startswith("mtr_")
    assert body["object"] == "meter"
    assert body["filters"] == {"region": ["eu", "us"]}
    assert body["unique_key"] is None
    assert api.get(f"/api/v1/meters/{body['id']}").json()["code"] == "api-calls"
    assert [m["code"] for m in api.get("/api/v1/meters", {"code": "api-calls"}).json()["data"]] == ["api-calls"]
    assert BillingEvent.objects.filter(type="meter.created", object_id=body["id"]).exists()


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"name": "x", "aggregation": "sum"}, "code"),
        ({"code": "has space", "name": "x", "aggregation": "sum"}, "code"),
        ({"code": "c", "name": "x", "aggregation": "median"}, "aggregation"),
        ({"code": "c", "name": "x", "aggregation": "unique_count"}, "unique_key"),
        ({"code": "c", "name": "x", "aggregation": "sum", "unique_key": "user"}, "unique_key"),
        ({"code": "c", "name": "x", "aggregation": "sum", "filters": {"region": "eu"}}, "filters"),
        ({"code": "c", "name": "x", "aggregation": "sum", "filters": {"region": []}}, "filters"),
        ({"code": "c", "name": "x", "aggregation": "sum", "colour": "red"}, "colour"),
    ],
)
def test_bad_meter_input_is_400(api, body, param):
    response = api.post("/api/v1/meters", body, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["param"] == param
    assert not Meter.objects.exists()


def test_duplicate_code_is_409(api):
    MeterFactory(code="dup")
    response = api.post("/api/v1/meters", {"code": "dup", "name": "x", "aggregation": "count"}, format="json")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "meter_exists"


def test_defining_fields_are_fixed_once_the_meter_has_events(api):
    from customers.tests.factories import CustomerFactory

    meter = MeterFactory(code="calls")
    url = f"/api/v1/meters/{meter.id}"
    assert api.patch(url, {"code": "calls-v2"}, format="json").json()["code"] == "calls-v2"
    usage_ingest(events=[{"customer": CustomerFactory().id, "meter": "calls-v2"}], now=timezone.now())
    for field, value in [("code", "calls-v3"), ("aggregation", "max"), ("filters", {"a": ["b"]})]:
        response = api.patch(url, {field: value}, format="json")
        assert response.status_code == 400
        assert response.json()["error"]["param"] == field
        assert response.json()["error"]["code"] == "immutable"
    response = api.patch(url, {"name": "Calls", "active": False}, format="json")
    assert response.status_code == 200
    assert response.json()["active"] is False


def test_put_replaces_the_meter(api):
    meter = MeterFactory(description="old", metadata={"a": "1"})
    response = api.put(
        f"/api/v1/meters/{meter.id}", {"code": meter.code, "name": "Renamed", "aggregation": "max"}, format="json"
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["name"], body["aggregation"], body["description"], body["metadata"]) == ("Renamed", "max", "", {})
    assert api.put(f"/api/v1/meters/{meter.id}", {"name": "no code"}, format="json").status_code == 400


def test_delete_only_when_unused(api):
    from customers.tests.factories import CustomerFactory

    unused = MeterFactory()
    assert api.delete(f"/api/v1/meters/{unused.id}").status_code == 204
    assert api.get(f"/api/v1/meters/{unused.id}").status_code == 404
    used = MeterFactory(code="used")
    usage_ingest(events=[{"customer": CustomerFactory().id, "meter": "used"}], now=timezone.now())
    response = api.delete(f"/api/v1/meters/{used.id}")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "meter_in_use"


def test_meter_scopes(make_client):
    meter = MeterFactory()
    reader = make_client("usage:read")
    assert reader.get(f"/api/v1/meters/{meter.id}").status_code == 200
    body = {"code": "x", "name": "x", "aggregation": "count"}
    assert reader.post("/api/v1/meters", body, format="json").status_code == 403
    assert make_client("usage:write").post("/api/v1/meters", body, format="json").status_code == 403
    assert make_client("catalog:write").post("/api/v1/meters", body, format="json").status_code == 201
