"""DELETE /api/v1/usage: cancel by event ids or by customer + idempotency keys."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from customers.tests.factories import CustomerFactory
from metering.ids import event_public_id, parse_event_id
from metering.models import MeterEvent, UsageDirtyHour
from metering.rollups import usage_rollup_job
from metering.selectors import UsageValue, usage_aggregate
from metering.tests.usage_support import NOW, ingest, make_meter
from metering.usage import usage_cancel
from webhooks.models import BillingEvent

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 10, 8, 0, tzinfo=UTC)
PERIOD = {"start": T0, "end": T0 + timedelta(hours=3)}


@pytest.fixture
def events():
    customer = CustomerFactory(external_id="tenant-cancel")
    meter = make_meter("sum")
    ids = ingest(
        customer,
        meter,
        [(T0 + timedelta(minutes=10 * i), str(i + 1)) for i in range(4)],
        keys=["k1", "k2", "k3", "k4"],
    )
    usage_rollup_job(now=NOW)
    return customer, meter, ids


def cancel(client, body):
    return client.delete("/api/v1/usage", body, format="json")


def test_cancel_by_event_ids(api, events):
    customer, meter, ids = events
    response = cancel(api, {"event_ids": [ids[0], ids[2]], "reason": "sent twice"})
    assert response.status_code == 200, response.json()
    assert response.json() == {
        "canceled": 2,
        "already_canceled": 0,
        "not_found": 0,
        "results": [{"id": ids[0], "status": "canceled"}, {"id": ids[2], "status": "canceled"}],
    }
    canceled = MeterEvent.objects.filter(canceled_at__isnull=False)
    assert sorted(e.public_id for e in canceled) == sorted([ids[0], ids[2]])
    assert {(e.cancel_reason, e.canceled_at is not None) for e in canceled} == {("sent twice", True)}
    assert MeterEvent.objects.count() == 4  # kept
    assert UsageDirtyHour.objects.filter(meter=meter, customer=customer, hour=T0).exists()
    expected = UsageValue(Decimal(6), 2)  # 2 + 4
    assert usage_aggregate(meter=meter, customer=customer, **PERIOD) == expected
    usage_rollup_job(now=NOW)
    assert usage_aggregate(meter=meter, customer=customer, **PERIOD) == expected

    outbox = BillingEvent.objects.get(type="usage.canceled")
    assert outbox.customer_id == customer.id
    assert outbox.data["canceled"] == 2
    assert outbox.data["customer_ids"] == [customer.id]
    assert outbox.data["meter_ids"] == [meter.id]
    assert outbox.data["reason"] == "sent twice"


def test_canceling_twice_reports_already_canceled(api, events):
    _, _, ids = events
    assert cancel(api, {"event_ids": [ids[1]], "reason": "r"}).json()["canceled"] == 1
    body = cancel(api, {"event_ids": [ids[1], ids[3]], "reason": "again"}).json()
    assert body["results"] == [{"id": ids[1], "status": "already_canceled"}, {"id": ids[3], "status": "canceled"}]
    assert (body["canceled"], body["already_canceled"]) == (1, 1)
    assert MeterEvent.objects.get(pk=parse_event_id(ids[1])[0]).cancel_reason == "r"  # first reason kept
    body = cancel(api, {"event_ids": [ids[1]], "reason": "no-op"}).json()
    assert body["already_canceled"] == 1
    assert BillingEvent.objects.filter(type="usage.canceled").count() == 2  # nothing canceled, nothing emitted


def test_unknown_and_forged_ids_are_not_found(api, events):
    _, _, ids = events
    pk, token = parse_event_id(ids[0])
    forged = event_public_id(pk, ("0" if token[0] != "0" else "1") + token[1:])  # right key, wrong token
    missing = event_public_id(pk + 1000, token)
    body = cancel(api, {"event_ids": [forged, missing, "evt_garbage", "cus_123", ids[0], ids[0]], "reason": "r"})
    assert body.status_code == 200
    assert body.json()["results"] == [
        {"id": forged, "status": "not_found"},
        {"id": missing, "status": "not_found"},
        {"id": "evt_garbage", "status": "not_found"},
        {"id": "cus_123", "status": "not_found"},
        {"id": ids[0], "status": "canceled"},  # a repeated id is reported once
    ]
    assert MeterEvent.objects.filter(canceled_at__isnull=False).count() == 1


def test_cancel_by_customer_and_idempotency_keys(api, events):
    customer, meter, _ = events
    other = CustomerFactory()
    ingest(other, meter, [(T0, "50")], keys=["k3"])  # the same key under another customer is untouched
    body = cancel(api, {"customer": customer.id, "idempotency_keys": ["k3", "k9", "k3"], "reason": "r"}).json()
    assert body == {
        "canceled": 1,
        "already_canceled": 0,
        "not_found": 1,
        "results": [{"idempotency_key": "k3", "status": "canceled"}, {"idempotency_key": "k9", "status": "not_found"}],
    }
    body = cancel(api, {"external_id": "tenant-cancel", "idempotency_keys": ["k3", "k4"], "reason": "r"}).json()
    assert [r["status"] for r in body["results"]] == ["already_canceled", "canceled"]
    assert usage_aggregate(meter=meter, customer=customer, **PERIOD) == UsageValue(Decimal(3), 2)
    assert usage_aggregate(meter=meter, customer=other, **PERIOD) == UsageValue(Decimal(50), 1)


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"event_ids": ["evt_x"]}, "reason", "parameter_missing"),
        ({"event_ids": ["evt_x"], "reason": ""}, "reason", "parameter_missing"),
        ({"event_ids": ["evt_x"], "reason": "x" * 501}, "reason", "parameter_invalid"),
        ({"reason": "r"}, "event_ids", "parameter_missing"),
        ({"event_ids": [], "reason": "r"}, "event_ids", "parameter_invalid"),
        ({"event_ids": "evt_x", "reason": "r"}, "event_ids", "parameter_invalid"),
        ({"event_ids": [{"id": 1}], "reason": "r"}, "event_ids[0]", "parameter_invalid"),
        ({"event_ids": ["evt_x"] * 10_001, "reason": "r"}, "event_ids", "parameter_invalid"),
        ({"event_ids": ["evt_x"], "idempotency_keys": ["k"], "reason": "r"}, "event_ids", "parameter_invalid"),
        ({"event_ids": ["evt_x"], "customer": "cus_1", "reason": "r"}, "customer", "parameter_invalid"),
        ({"idempotency_keys": ["k1"], "reason": "r"}, "customer", "parameter_missing"),
        ({"customer": "cus_nobody", "idempotency_keys": ["k1"], "reason": "r"}, "customer", "resource_missing"),
        ({"external_id": "nobody", "idempotency_keys": ["k1"], "reason": "r"}, "external_id", "resource_missing"),
        ({"customer": "x", "idempotency_keys": ["k" * 256], "reason": "r"}, "idempotency_keys[0]", "parameter_invalid"),
        ({"event_ids": ["evt_x"], "reason": "r", "force": True}, "force", "unknown_field"),
    ],
)
def test_bad_input_is_400_naming_the_field(api, events, body, param, code):
    response = cancel(api, body)
    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    # List items are named `field[i]` (older cores said `field.i`).
    assert (error["param"].replace(".0", "[0]"), error["code"]) == (param, code), error
    assert not MeterEvent.objects.filter(canceled_at__isnull=False).exists()


def test_a_body_that_is_not_an_object_is_400(api, events):
    assert cancel(api, ["evt_x"]).status_code == 400


def test_scopes(make_client, events):
    _, _, ids = events
    body = {"event_ids": [ids[0]], "reason": "r"}
    assert cancel(make_client("usage:read"), body).status_code == 403
    assert not MeterEvent.objects.filter(canceled_at__isnull=False).exists()
    assert cancel(make_client("usage:write"), body).status_code == 200


def test_ten_thousand_ids_in_one_request(events):
    customer, meter, _ = events
    ids = ingest(customer, meter, [(T0 + timedelta(seconds=i), "1") for i in range(2_000)])
    result = usage_cancel(event_ids=ids + [f"evt_{i:026d}" for i in range(8_000)], reason="bulk", now=NOW)
    assert (result.canceled, result.not_found) == (2_000, 8_000)
    assert usage_aggregate(meter=meter, customer=customer, **PERIOD) == UsageValue(Decimal(10), 4)
