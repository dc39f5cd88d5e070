from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from customers.models import Customer
from customers.tests.factories import CustomerFactory
from metering.ids import parse_event_id
from metering.models import MeterEvent, UsageDirtyHour
from metering.tests.factories import MeterFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/events"


@pytest.fixture
def setup():
    customer = CustomerFactory(external_id="tenant-1")
    meter = MeterFactory(code="api-calls")
    return customer, meter


def post(api, body):
    return api.post(URL, body, format="json")


def test_single_event_defaults(api, setup):
    customer, meter = setup
    before = timezone.now()
    response = post(api, {"customer": customer.id, "meter": "api-calls"})
    assert response.status_code == 200
    body = response.json()
    assert (body["created"], body["duplicates"], body["rejected"]) == (1, 0, 0)
    result = body["results"][0]
    assert result["status"] == "created" and result["error"] is None
    event = MeterEvent.objects.get()
    assert parse_event_id(result["id"]) == (event.id, event.token)
    assert event.value == Decimal(1)
    assert event.timestamp >= before
    assert event.idempotency_key is None
    assert UsageDirtyHour.objects.filter(meter=meter, customer=customer).count() == 1


def test_batch_mixing_good_duplicate_and_bad_events(api, setup):
    customer, _ = setup
    now = timezone.now()
    events = [
        {"customer": customer.id, "meter": "api-calls", "value": "2.5", "idempotency_key": "k1"},
        {"external_id": "tenant-1", "meter": "api-calls", "value": 7, "idempotency_key": "k1"},  # in-batch dup
        {"external_id": "tenant-1", "meter": "no-such-meter"},
        {"external_id": "ghost", "meter": "api-calls"},
        {"external_id": "tenant-1", "meter": "api-calls", "value": "-1"},
        {
            "external_id": "tenant-1",
            "meter": "api-calls",
            "value": "0.5",
            "timestamp": int((now - timedelta(hours=2)).timestamp() * 1000),
            "dimensions": {"region": "eu", "n": 3},
        },
        "not an object",
    ]
    body = post(api, {"events": events}).json()
    assert (body["created"], body["duplicates"], body["rejected"]) == (2, 1, 4)
    statuses = [r["status"] for r in body["results"]]
    assert statuses == ["created", "duplicate", "rejected", "rejected", "rejected", "created", "rejected"]
    assert body["results"][1]["id"] == body["results"][0]["id"]
    codes = {r["index"]: r["error"]["code"] for r in body["results"] if r["error"]}
    assert codes == {2: "meter_not_found", 3: "customer_not_found", 4: "value_negative", 6: "parameter_invalid"}
    assert body["results"][3]["error"]["param"] == "external_id"
    assert MeterEvent.objects.count() == 2
    stored = MeterEvent.objects.get(idempotency_key__isnull=True)
    assert stored.dimensions == {"region": "eu", "n": 3}
    # The retry of the whole batch creates nothing new and names the originals.
    again = post(api, {"events": events}).json()
    assert (again["created"], again["duplicates"]) == (1, 2)  # the keyless event is never deduplicated
    assert [r["id"] for r in again["results"][:2]] == [body["results"][0]["id"]] * 2
    assert MeterEvent.objects.count() == 3


@pytest.mark.parametrize(
    ("event", "code", "param"),
    [
        ({"meter": "api-calls"}, "parameter_missing", "customer"),
        ({"external_id": "tenant-1"}, "parameter_missing", "meter"),
        ({"customer": "x", "external_id": "tenant-1", "meter": "api-calls"}, "parameter_invalid", "customer"),
        ({"external_id": "tenant-1", "meter": "api-calls", "value": True}, "parameter_invalid", "value"),
        ({"external_id": "tenant-1", "meter": "api-calls", "value": "abc"}, "parameter_invalid", "value"),
        ({"external_id": "tenant-1", "meter": "api-calls", "value": "1e5"}, "parameter_invalid", "value"),
        ({"external_id": "tenant-1", "meter": "api-calls", "value": "NaN"}, "parameter_invalid", "value"),
        ({"external_id": "tenant-1", "meter": "api-calls", "value": "-0.5"}, "value_negative", "value"),
        ({"external_id": "tenant-1", "meter": "api-calls", "value": "0.1234567890123"}, "too_many_decimals", "value"),
        ({"external_id": "tenant-1", "meter": "api-calls", "value": "1" * 27}, "value_too_large", "value"),
        ({"external_id": "tenant-1", "meter": "api-calls", "value": 0.12345678901234567}, "value_imprecise", "value"),
        ({"external_id": "tenant-1", "meter": "api-calls", "timestamp": "yesterday"}, "parameter_invalid", "timestamp"),
        (
            {"external_id": "tenant-1", "meter": "api-calls", "timestamp": "2026-01-01T00:00:00"},
            "parameter_invalid",
            "timestamp",
        ),
        (
            {"external_id": "tenant-1", "meter": "api-calls", "idempotency_key": ""},
            "parameter_invalid",
            "idempotency_key",
        ),
        (
            {"external_id": "tenant-1", "meter": "api-calls", "idempotency_key": "k" * 256},
            "parameter_invalid",
            "idempotency_key",
        ),
        (
            {"external_id": "tenant-1", "meter": "api-calls", "idempotency_key": "tab\there"},
            "parameter_invalid",
            "idempotency_key",
        ),
        ({"external_id": "tenant-1", "meter": "api-calls", "dimensions": ["a"]}, "parameter_invalid", "dimensions"),
        (
            {"external_id": "tenant-1", "meter": "api-calls", "dimensions": {"a": {"b": 1}}},
            "parameter_invalid",
            "dimensions.a",
        ),
        (
            {"external_id": "tenant-1", "meter": "api-calls", "dimensions": {f"k{i}": i for i in range(51)}},
            "too_many_dimensions",
            "dimensions",
        ),
        ({"external_id": "tenant-1", "meter": "api-calls", "colour": "red"}, "unknown_field", "colour"),
    ],
)
def test_each_validation_rule_rejects_only_that_event(api, setup, event, code, param):
    good = {"external_id": "tenant-1", "meter": "api-calls", "value": "1"}
    body = post(api, {"events": [event, good]}).json()
    assert body["results"][0]["status"] == "rejected"
    assert body["results"][0]["error"]["code"] == code
    assert body["results"][0]["error"]["param"] == param
    assert body["results"][1]["status"] == "created"
    assert MeterEvent.objects.count() == 1


def test_timestamp_window(api, setup):
    now = timezone.now()
    events = [
        {"external_id": "tenant-1", "meter": "api-calls", "timestamp": (now + timedelta(minutes=10)).isoformat()},
        {"external_id": "tenant-1", "meter": "api-calls", "timestamp": (now + timedelta(minutes=4)).isoformat()},
        {"external_id": "tenant-1", "meter": "api-calls", "timestamp": (now - timedelta(days=36)).isoformat()},
        {"external_id": "tenant-1", "meter": "api-calls", "timestamp": (now - timedelta(days=34)).isoformat()},
    ]
    body = post(api, {"events": events}).json()
    assert [r["status"] for r in body["results"]] == ["rejected", "created", "rejected", "created"]
    assert body["results"][0]["error"]["code"] == "timestamp_in_future"
    assert body["results"][2]["error"]["code"] == "timestamp_too_old"


def test_rfc3339_and_epoch_millis_mean_the_same_instant(api, setup):
    at = (timezone.now() - timedelta(hours=1)).replace(microsecond=123000)
    post(
        api,
        {
            "events": [
                {"external_id": "tenant-1", "meter": "api-calls", "timestamp": at.isoformat().replace("+00:00", "Z")},
                {"external_id": "tenant-1", "meter": "api-calls", "timestamp": int(at.timestamp() * 1000)},
            ]
        },
    )
    assert {e.timestamp for e in MeterEvent.objects.all()} == {at}


def test_deleted_customer_and_archived_meter_are_rejected(api, setup):
    customer, _ = setup
    Customer.objects.filter(pk=customer.pk).update(status="deleted", deleted_at=timezone.now())
    MeterFactory(code="old", active=False)
    body = post(
        api,
        {
            "events": [
                {"customer": customer.id, "meter": "api-calls"},
                {"external_id": CustomerFactory().external_id, "meter": "old"},
            ]
        },
    ).json()
    assert [r["error"]["code"] for r in body["results"]] == ["customer_deleted", "meter_inactive"]


def test_fractional_values_are_exact(api, setup):
    post(
        api,
        {
            "events": [
                {"external_id": "tenant-1", "meter": "api-calls", "value": "0.000000000001"},
                {"external_id": "tenant-1", "meter": "api-calls", "value": 0.1},
                {"external_id": "tenant-1", "meter": "api-calls", "value": "1234.5"},
            ]
        },
    )
    assert sorted(MeterEvent.objects.values_list("value", flat=True)) == [
        Decimal("0.000000000001"),
        Decimal("0.1"),
        Decimal("1234.5"),
    ]


@pytest.mark.postgres(reason="SQLite keeps 15 significant digits of a decimal")
def test_26_integer_and_12_fractional_digits_are_exact(api, setup):
    # SQLite (the development default) keeps 15 significant digits in a decimal column; PostgreSQL's
    # numeric keeps them all, and that is what production runs on.
    post(api, {"customer": setup[0].id, "meter": "api-calls", "value": "12345678901234567890123456.123456789012"})
    assert MeterEvent.objects.get().value == Decimal("12345678901234567890123456.123456789012")


@pytest.mark.parametrize(
    ("raw", "code", "status"),
    [
        (b"{not json", "malformed_body", 400),
        (b"[1, 2]", "malformed_body", 400),
        (b'{"events": []}', "parameter_missing", 400),
        (b'{"events": {"a": 1}}', "parameter_invalid", 400),
        (b'{"events": [], "extra": 1}', "unknown_field", 400),
    ],
)
def test_malformed_bodies_fail_the_request(api, setup, raw, code, status):
    response = api.post(URL, data=raw, content_type="application/json")
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


def test_oversize_batch_is_refused_whole(api, setup):
    events = [{"external_id": "tenant-1", "meter": "api-calls"}] * 10_001
    response = post(api, {"events": events})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "batch_too_large"
    assert not MeterEvent.objects.exists()


@override_settings(MAX_REQUEST_BODY_BYTES=4096)
def test_body_over_the_size_limit_is_413(api, setup):
    events = [{"external_id": "tenant-1", "meter": "api-calls"}] * 200
    assert post(api, {"events": events}).status_code == 413


def test_a_full_batch_of_10000_is_accepted(api, setup):
    events = [{"external_id": "tenant-1", "meter": "api-calls", "idempotency_key": f"k{i}"} for i in range(10_000)]
    body = post(api, {"events": events}).json()
    assert body["created"] == 10_000
    assert MeterEvent.objects.count() == 10_000


def test_scopes(make_client, setup):
    body = {"external_id": "tenant-1", "meter": "api-calls"}
    assert make_client("usage:read").post(URL, body, format="json").status_code == 403
    assert make_client("usage:write").post(URL, body, format="json").status_code == 200


def test_billing_events_compat_shape(api, setup):
    ts = int((timezone.now() - timedelta(minutes=30)).timestamp() * 1000)
    event = {"TenantID": "tenant-1", "ProductCode": "api-calls", "Quantity": 5, "Timestamp": ts}
    first = api.post(f"{URL}/billing-events", event, format="json").json()
    assert first["created"] == 1
    stored = MeterEvent.objects.get()
    assert stored.value == 5
    assert stored.timestamp == datetime.fromtimestamp(ts / 1000, tz=UTC).replace(microsecond=(ts % 1000) * 1000)
    # The key derives from the content: a redelivery is a duplicate, a different quantity is not.
    assert api.post(f"{URL}/billing-events", [event], format="json").json()["duplicates"] == 1
    other = {**event, "Quantity": 6}
    explicit = {**event, "IdempotencyKey": "mine"}
    body = api.post(f"{URL}/billing-events", [other, explicit, {"TenantID": "tenant-1"}], format="json").json()
    assert [r["status"] for r in body["results"]] == ["created", "created", "rejected"]
    assert body["results"][2]["error"]["param"] == "meter"
    assert MeterEvent.objects.filter(idempotency_key="mine").exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_overlapping_batches_create_each_key_once(make_client):
    CustomerFactory(external_id="tenant-c")
    MeterFactory(code="c")
    raw = make_client("usage:write").raw_key
    threads_n, keys_n = 8, 400
    totals = {"created": 0, "duplicates": 0}
    lock = threading.Lock()
    barrier = threading.Barrier(threads_n)

    def send(offset: int) -> None:
        from rest_framework.test import APIClient

        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
        # Every thread sends every key, each in its own order, so the batches overlap completely.
        keys = [f"k{(i * (offset + 1) + offset) % keys_n}" for i in range(keys_n)]
        events = [{"external_id": "tenant-c", "meter": "c", "idempotency_key": k} for k in keys]
        barrier.wait()
        try:
            body = client.post(URL, {"events": events}, format="json").json()
        finally:
            connection.close()
        with lock:
            totals["created"] += body["created"]
            totals["duplicates"] += body["duplicates"]

    threads = [threading.Thread(target=send, args=(i,)) for i in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert MeterEvent.objects.count() == keys_n
    assert totals["created"] == keys_n
    assert totals["duplicates"] == keys_n * (threads_n - 1)


def test_nul_characters_fail_the_request_not_the_database(api, setup):
    response = api.post(
        URL,
        data=b'{"external_id": "tenant-1", "meter": "api-calls", "dimensions": {"a": "x\\u0000"}}',
        content_type="application/json",
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_body"
    assert not MeterEvent.objects.exists()
