"""The API of provider billing: the customer's billing mode and provider id, meter mappings (with the
rules on what can be mapped), the unmapped-meter refusal, and the list of usage pushes."""

from __future__ import annotations

from decimal import Decimal

import pytest

from customers.models import BillingModeChange, Customer
from metering.push.models import MeterMapping
from metering.tests.push_support import at, events, mapped_meter, native_customer, provider_customer, run
from metering.tests.usage_support import make_meter
from webhooks.models import BillingEvent

pytestmark = pytest.mark.django_db


def test_a_customer_is_created_in_provider_mode_and_shows_it(api, fake_stripe):
    response = api.post(
        "/api/v1/customers",
        {"external_id": "t-stripe", "billing_mode": "provider", "provider_customer_id": "cus_Existing1"},
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["billing_mode"] == "provider" and body["provider_customer_id"] == "cus_Existing1"
    assert body["billing_mode_since"] is not None
    customer = Customer.objects.get(pk=body["id"])
    assert customer.provider == "stripe"
    (change,) = BillingModeChange.objects.filter(customer=customer)
    assert change.mode == "provider" and change.source == "api"

    native = api.post("/api/v1/customers", {"external_id": "t-native"}, format="json").json()
    assert native["billing_mode"] == "native" and native["billing_mode_since"] is None
    assert native["provider_customer_id"] is None


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"billing_mode": "stripe"}, "billing_mode", "parameter_invalid"),
        ({"provider_customer_id": "x" * 256}, "provider_customer_id", "parameter_invalid"),
    ],
)
def test_bad_billing_fields_are_400s_naming_the_field(api, body, param, code):
    response = api.post("/api/v1/customers", {"external_id": "t-bad", **body}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param and response.json()["error"]["code"] == code
    assert not Customer.objects.filter(external_id="t-bad").exists()


def test_provider_mode_needs_stripe_configured(api, settings):
    settings.STRIPE_API_KEY = None
    response = api.post("/api/v1/customers", {"external_id": "t-nokey", "billing_mode": "provider"}, format="json")
    assert response.status_code == 400
    assert response.json()["error"] | {"message": ""} == {
        "type": "invalid_request",
        "code": "provider_not_configured",
        "param": "billing_mode",
        "message": "",
    }
    assert not Customer.objects.filter(external_id="t-nokey").exists()


def test_a_patch_switches_mode_from_now_on_and_keeps_the_history(api, fake_stripe):
    customer = native_customer()
    response = api.patch(f"/api/v1/customers/{customer.id}", {"billing_mode": "provider"}, format="json")
    assert response.status_code == 200 and response.json()["billing_mode"] == "provider"
    api.patch(f"/api/v1/customers/{customer.id}", {"billing_mode": "native"}, format="json")
    assert list(BillingModeChange.objects.filter(customer=customer).order_by("id").values_list("mode", flat=True)) == [
        "provider",
        "native",
    ]
    event = BillingEvent.objects.filter(type="customer.updated", object_id=customer.id).order_by("id").first()
    assert event.previous_attributes == {"billing_mode": "native"}


def test_a_customer_with_usage_on_an_unmapped_meter_cannot_switch_to_provider(api, fake_stripe):
    customer = native_customer()
    unmapped = make_meter("sum", code="gpu-seconds")
    events(customer, unmapped, [(at(0, 10), 1)], now=at(0, 20))

    response = api.patch(f"/api/v1/customers/{customer.id}", {"billing_mode": "provider"}, format="json")

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "provider_mapping_missing" and error["param"] == "billing_mode"
    assert "gpu-seconds" in error["message"]
    customer.refresh_from_db()
    assert customer.billing_mode == "native" and not BillingModeChange.objects.filter(customer=customer).exists()

    mapping = api.post("/api/v1/meter-mappings", {"meter": unmapped.id, "event_name": "gpu_seconds"}, format="json")
    assert mapping.status_code == 201, mapping.json()
    assert api.patch(f"/api/v1/customers/{customer.id}", {"billing_mode": "provider"}, format="json").status_code == 200
    # Now the mapping is what sends that usage to the provider: it cannot go, even before anything was pushed.
    kept = api.delete(f"/api/v1/meter-mappings/{mapping.json()['id']}")
    assert kept.status_code == 409 and kept.json()["error"]["code"] == "mapping_in_use"
    assert MeterMapping.objects.filter(meter=unmapped).exists()


def test_the_push_job_reports_provider_usage_on_unmapped_meters(fake_stripe):
    from billing_site.jobs import job_run

    customer = provider_customer()
    unmapped = make_meter("sum", code="unmapped-after-switch")
    events(customer, unmapped, [(at(0, 10), 1)], now=at(0, 20))
    fake_stripe.now = at(1, 3)
    result = job_run("push_usage", now=at(1, 3))
    assert result["unmapped"] == [{"meter": unmapped.id, "code": "unmapped-after-switch", "customers": 1}]
    assert fake_stripe.received("POST", "/v1/billing/meter_events") == []


@pytest.mark.parametrize("aggregation", ["max", "latest", "unique_count"])
def test_only_meters_whose_slices_add_up_can_be_mapped(api, aggregation):
    extra = {"unique_key": "user"} if aggregation == "unique_count" else {}
    meter = make_meter(aggregation, **extra)
    response = api.post("/api/v1/meter-mappings", {"meter": meter.id, "event_name": "x"}, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "aggregation_not_pushable" and error["param"] == "meter"
    assert "only sum and count meters can be pushed" in error["message"]
    assert not MeterMapping.objects.exists()


def test_mapping_crud_and_its_conflicts(api, make_client):
    meter = make_meter("sum")
    customer = native_customer()
    created = api.post("/api/v1/meter-mappings", {"meter": meter.id, "event_name": "api_calls"}, format="json")
    assert created.status_code == 201
    body = created.json()
    assert body["object"] == "meter_mapping" and body["customer"] is None and body["provider_meter_id"] is None
    again = api.post("/api/v1/meter-mappings", {"meter": meter.id, "event_name": "other"}, format="json")
    assert again.status_code == 409 and again.json()["error"]["code"] == "mapping_exists"
    override = api.post(
        "/api/v1/meter-mappings",
        {"meter": meter.id, "event_name": "api_calls_acme", "customer": customer.id},
        format="json",
    )
    assert override.status_code == 201 and override.json()["customer"] == customer.id

    listed = api.get(f"/api/v1/meter-mappings?customer={customer.id}").json()["data"]
    assert [m["event_name"] for m in listed] == ["api_calls_acme"]
    patched = api.patch(f"/api/v1/meter-mappings/{body['id']}", {"event_name": "api_calls_v2"}, format="json")
    assert patched.status_code == 200 and patched.json()["event_name"] == "api_calls_v2"
    assert api.delete(f"/api/v1/meter-mappings/{body['id']}").status_code == 204
    assert api.get(f"/api/v1/meter-mappings/{body['id']}").status_code == 404

    reader = make_client("usage:read")
    assert reader.get("/api/v1/meter-mappings").status_code == 200
    denied = reader.post("/api/v1/meter-mappings", {"meter": meter.id, "event_name": "z"}, format="json")
    assert denied.status_code == 403 and denied.json()["error"]["scope"] == "catalog:write"


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"event_name": "x"}, "meter", "parameter_missing"),
        ({"meter": "mtr_nope", "event_name": "x"}, "meter", "resource_missing"),
        ({"meter": "METER", "event_name": "x" * 101}, "event_name", "parameter_invalid"),
        ({"meter": "METER", "event_name": "x", "customer": "cus_nope"}, "customer", "resource_missing"),
        ({"meter": "METER", "event_name": "x", "colour": "red"}, "colour", "unknown_field"),
    ],
)
def test_bad_mapping_input_is_a_400_naming_the_field(api, body, param, code):
    meter = make_meter("sum")
    body = {key: meter.id if value == "METER" else value for key, value in body.items()}
    response = api.post("/api/v1/meter-mappings", body, format="json")
    assert response.status_code == 400
    assert (response.json()["error"]["param"], response.json()["error"]["code"]) == (param, code)
    assert not MeterMapping.objects.exists()


def test_a_mapping_that_usage_went_through_stays_and_keeps_its_event_name(api, fake_stripe):
    meter, _ = mapped_meter(fake_stripe)
    customer = provider_customer()
    events(customer, meter, [(at(0, 10), 2)], now=at(0, 20))
    run(fake_stripe, customer, meter, at(1, 3))
    mapping = MeterMapping.objects.get(meter=meter)

    renamed = api.patch(f"/api/v1/meter-mappings/{mapping.id}", {"event_name": "elsewhere"}, format="json")
    assert renamed.status_code == 400 and renamed.json()["error"]["code"] == "immutable"
    deleted = api.delete(f"/api/v1/meter-mappings/{mapping.id}")
    assert deleted.status_code == 409 and deleted.json()["error"]["code"] == "mapping_in_use"
    split = api.post(
        "/api/v1/meter-mappings", {"meter": meter.id, "event_name": "o", "customer": customer.id}, format="json"
    )
    assert split.status_code == 409 and split.json()["error"]["code"] == "mapping_in_use"
    moved = api.patch(f"/api/v1/customers/{customer.id}", {"provider_customer_id": "cus_Other"}, format="json")
    assert moved.status_code == 400 and moved.json()["error"] == {
        "type": "invalid_request",
        "code": "immutable",
        "param": "provider_customer_id",
        "message": moved.json()["error"]["message"],
    }
    refused = api.patch(f"/api/v1/meters/{meter.id}", {"aggregation": "max"}, format="json")
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "aggregation"


def test_usage_pushes_are_listed_and_filtered(api, make_client, fake_stripe):
    meter, _ = mapped_meter(fake_stripe)
    first, second = provider_customer(), provider_customer()
    events(first, meter, [(at(0, 10), "1.5"), (at(1, 10), 2)], now=at(1, 20))
    events(second, meter, [(at(0, 10), 7)], now=at(1, 20))
    fake_stripe.fail_next("POST /v1/billing/meter_events", "timeout", "timeout", "timeout")
    run(fake_stripe, second, meter, at(2, 3))
    run(fake_stripe, first, meter, at(2, 3))

    body = api.get(f"/api/v1/usage-pushes?customer={first.id}&meter={meter.id}").json()
    assert [(p["slice_start"], p["value"], p["status"]) for p in body["data"]] == [
        ("2026-03-02T11:00:00Z", "2", "sent"),
        ("2026-03-02T10:00:00Z", "1.5", "sent"),
    ]
    push = body["data"][0]
    assert push["object"] == "usage_push" and push["kind"] == "push" and push["identifier"] == push["id"]
    assert push["error"] is None and push["cancels"] is None and push["sent_at"].endswith("Z")
    unknown = api.get("/api/v1/usage-pushes?status=unknown").json()["data"]
    assert [(p["customer"], p["value"], p["error"]["code"]) for p in unknown] == [(second.id, "7", "no_answer")]
    assert api.get(f"/api/v1/usage-pushes/{push['id']}").json()["value"] == "2"
    assert isinstance(Decimal(push["value"]), Decimal)

    assert api.get("/api/v1/usage-pushes?status=lost").status_code == 400
    bad = api.get("/api/v1/usage-pushes?custmer=x")
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "custmer"
    assert api.get("/api/v1/usage-pushes/upush_nope").status_code == 404
    assert make_client("billing:read").get("/api/v1/usage-pushes").status_code == 403
    assert make_client("usage:read").get("/api/v1/usage-pushes").status_code == 200
