"""Inbound provider webhooks at POST /billing/stripe: Stripe's own example payloads, signed for real."""

from __future__ import annotations

import hmac
import json
import time
from datetime import UTC, datetime, timedelta
from io import StringIO
from unittest import mock

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client, override_settings
from django.utils import timezone

from customers.models import Customer
from customers.tests.factories import CustomerFactory
from webhooks import inbound
from webhooks.models import BillingEvent, ProviderEvent
from webhooks.tests.helpers import (
    STRIPE_SECRET,
    fake_stripe_events,
    local_server,
    stripe_event,
    stripe_fixture,
    stripe_signature,
)

pytestmark = pytest.mark.django_db
SIGNED = override_settings(STRIPE_WEBHOOK_SECRET=STRIPE_SECRET)
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _deleted_event(customer_id: str = "cus_QXg1o8vcGmoR32", event_id: str = "evt_1Deleted") -> str:
    obj = stripe_fixture("deleted_customer", id=customer_id)
    return json.dumps(stripe_event("customer.deleted", obj, event_id=event_id))


def _post(body: str, signature: str | None, provider: str = "stripe"):
    extra = {} if signature is None else {"HTTP_STRIPE_SIGNATURE": signature}
    return Client().post(f"/billing/{provider}", data=body, content_type="application/json", **extra)


@pytest.fixture
def handler():
    """A recording handler for a made-up type, removed afterwards."""
    calls: list[str] = []

    def handle(*, event: ProviderEvent, now: datetime) -> str:
        calls.append(event.provider_event_id)
        return f"saw {event.object_id}"

    inbound.provider_handler_register(provider="stripe", event_type="test.recorded", handler=handle)
    yield calls
    inbound._HANDLERS.pop(("stripe", "test.recorded"), None)


# --- The signature matrix ---------------------------------------------------------------------------


@SIGNED
def test_valid_signature_is_stored_once_and_answered_200():
    body = _deleted_event()
    response = _post(body, stripe_signature(body))
    assert response.status_code == 200
    assert response.json() == {"received": True, "duplicate": False, "id": "evt_1Deleted"}
    row = ProviderEvent.objects.get()
    assert (row.provider, row.type, row.object_id, row.status) == (
        "stripe",
        "customer.deleted",
        "cus_QXg1o8vcGmoR32",
        "pending",
    )
    assert row.payload == json.loads(body)
    assert row.livemode is False and row.api_version == "2025-09-30.clover"


@SIGNED
@pytest.mark.parametrize(
    "case",
    ["tampered", "wrong_secret", "expired", "future", "missing", "garbage_header", "no_v1", "empty"],
)
def test_bad_signatures_are_400_and_store_nothing(case):
    body = _deleted_event()
    now = int(time.time())
    signature = {
        "tampered": stripe_signature(body),
        "wrong_secret": stripe_signature(body, secret="whsec_someone_else"),
        "expired": stripe_signature(body, timestamp=now - 301),
        "future": stripe_signature(body, timestamp=now + 301),
        "missing": None,
        "garbage_header": "not a signature",
        "no_v1": f"t={now},v0=abc",
        "empty": "",
    }[case]
    sent = body.replace("customer.deleted", "customer.created") if case == "tampered" else body
    response = _post(sent, signature)
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "signature_invalid"
    assert not ProviderEvent.objects.exists()


@SIGNED
def test_timestamps_within_the_tolerance_are_accepted():
    body = _deleted_event()
    assert _post(body, stripe_signature(body, timestamp=int(time.time()) - 290)).status_code == 200
    body2 = _deleted_event(event_id="evt_2")
    assert _post(body2, stripe_signature(body2, timestamp=int(time.time()) + 60)).status_code == 200


@SIGNED
def test_several_v1_signatures_with_one_valid_are_accepted():
    """During a secret roll Stripe signs with the old and the new secret."""
    body = _deleted_event()
    timestamp = int(time.time())
    good = stripe_signature(body, timestamp=timestamp).split(",v1=")[1]
    other = stripe_signature(body, secret="whsec_old", timestamp=timestamp).split(",v1=")[1]
    response = _post(body, f"t={timestamp},v1={other},v1={good}")
    assert response.status_code == 200
    assert ProviderEvent.objects.count() == 1


@SIGNED
def test_signature_comparison_is_constant_time():
    body = _deleted_event()
    with mock.patch("stripe._util.hmac.compare_digest", wraps=hmac.compare_digest) as spy:
        assert _post(body, stripe_signature(body)).status_code == 200
        assert _post(body, stripe_signature(body, secret="whsec_x")).status_code == 400
    assert spy.call_count >= 2


@SIGNED
def test_a_signed_body_that_is_not_an_event_is_400():
    for body in ("not json", json.dumps({"object": "event", "type": "x.y"}), json.dumps([1, 2])):
        response = _post(body, stripe_signature(body))
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "malformed_event"
    assert not ProviderEvent.objects.exists()


@override_settings(STRIPE_WEBHOOK_SECRET=None)
def test_without_a_configured_secret_nothing_is_accepted():
    body = _deleted_event()
    response = _post(body, stripe_signature(body))
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "provider_not_configured"
    assert not ProviderEvent.objects.exists()


@SIGNED
def test_unknown_provider_and_wrong_method():
    assert _post("{}", "t=1,v1=x", provider="paypal").status_code == 404
    response = Client().get("/billing/stripe")
    assert response.status_code == 405 and response.json()["error"]["code"] == "method_not_allowed"


# --- Once per event, processing, ordering -----------------------------------------------------------


@SIGNED
def test_duplicates_are_200_and_stored_once():
    body = _deleted_event()
    first = _post(body, stripe_signature(body))
    again = _post(body, stripe_signature(body, timestamp=int(time.time()) - 5))
    assert first.json()["duplicate"] is False and again.json()["duplicate"] is True
    assert again.status_code == 200
    assert ProviderEvent.objects.count() == 1


@SIGNED
def test_unknown_types_are_stored_and_ignored():
    obj = stripe_fixture("plan")
    body = json.dumps(stripe_event("plan.created", obj, event_id="evt_plan"))
    assert _post(body, stripe_signature(body)).status_code == 200
    row = ProviderEvent.objects.get()
    now = timezone.now()
    assert inbound.provider_event_process(provider_event_id=row.pk, now=now) == "ignored"
    row.refresh_from_db()
    assert row.status == "ignored" and "no handler" in row.result and row.processed_at == now


def test_customer_deleted_detaches_our_customer_once_whatever_the_repeats():
    customer = CustomerFactory(provider="stripe", provider_customer_id="cus_QXg1o8vcGmoR32")
    bystander = CustomerFactory(provider="stripe", provider_customer_id="cus_other")
    event = json.loads(_deleted_event())
    row, created = inbound.provider_event_store(provider="stripe", event=event, source="webhook", now=T0)
    assert created
    assert inbound.provider_event_process(provider_event_id=row.pk, now=T0) == "processed"
    row.refresh_from_db()
    assert row.result == f"detached cus_QXg1o8vcGmoR32 from {customer.id}"
    customer.refresh_from_db()
    assert customer.provider_customer_id == "" and customer.status == Customer.Status.ACTIVE
    bystander.refresh_from_db()
    assert bystander.provider_customer_id == "cus_other"
    emitted = BillingEvent.objects.get(type="customer.provider_customer_deleted")
    assert emitted.previous_attributes == {"provider_customer_id": "cus_QXg1o8vcGmoR32"}

    # a redelivery (new row? no: the same id) and a reprocess give no second effect
    again, created = inbound.provider_event_store(provider="stripe", event=event, source="webhook", now=T0)
    assert not created and again.pk == row.pk
    assert inbound.provider_event_process(provider_event_id=row.pk, now=T0) == "skipped"
    assert inbound.provider_event_reprocess(provider_event=row, now=T0)
    assert inbound.provider_event_process(provider_event_id=row.pk, now=T0) == "processed"
    row.refresh_from_db()
    assert row.result == "no customer is linked to cus_QXg1o8vcGmoR32"
    assert BillingEvent.objects.filter(type="customer.provider_customer_deleted").count() == 1


def test_failing_handler_is_retried_with_backoff_then_failed(handler):
    def boom(*, event, now):
        raise RuntimeError("provider unreachable")

    inbound.provider_handler_register(provider="stripe", event_type="test.recorded", handler=boom)
    obj = stripe_fixture("customer", id="cus_1")
    row, _ = inbound.provider_event_store(
        provider="stripe", event=stripe_event("test.recorded", obj, event_id="evt_boom"), source="webhook", now=T0
    )
    now = T0
    for delay in inbound.PROCESS_RETRY_SCHEDULE:
        assert inbound.provider_event_process(provider_event_id=row.pk, now=now) == "pending"
        row.refresh_from_db()
        assert row.next_attempt_at == now + delay and "provider unreachable" in row.error
        assert inbound.provider_event_process(provider_event_id=row.pk, now=now) == "skipped"  # not due yet
        now = row.next_attempt_at
    assert inbound.provider_event_process(provider_event_id=row.pk, now=now) == "failed"
    row.refresh_from_db()
    assert row.status == "failed" and row.attempts == len(inbound.PROCESS_RETRY_SCHEDULE) + 1

    inbound.provider_handler_register(provider="stripe", event_type="test.recorded", handler=lambda **kw: "fine")
    assert inbound.provider_event_reprocess(provider_event=row, now=now)
    assert inbound.provider_event_process(provider_event_id=row.pk, now=now) == "processed"


def test_a_worker_dying_while_processing_loses_nothing(handler):
    obj = stripe_fixture("customer", id="cus_1")
    row, _ = inbound.provider_event_store(
        provider="stripe", event=stripe_event("test.recorded", obj, event_id="evt_x"), source="webhook", now=T0
    )
    assert inbound._claim(row.pk, T0) is not None  # a worker took it, then died
    with mock.patch("webhooks.inbound._enqueue"):
        assert inbound.provider_events_process_job(now=T0 + timedelta(minutes=1)) == {"queued": 0}
        assert inbound.provider_events_process_job(now=T0 + inbound.PROCESS_LEASE) == {"queued": 1}
    assert inbound.provider_event_process(provider_event_id=row.pk, now=T0 + inbound.PROCESS_LEASE) == "processed"
    assert handler == ["evt_x"]


def test_superseded_tells_a_handler_about_later_events_on_the_same_object(handler):
    obj = stripe_fixture("customer", id="cus_1")
    older, _ = inbound.provider_event_store(
        provider="stripe",
        event=stripe_event("test.recorded", obj, event_id="evt_old", created=1_700_000_000),
        source="webhook",
        now=T0,
    )
    newer, _ = inbound.provider_event_store(
        provider="stripe",
        event=stripe_event("test.recorded", obj, event_id="evt_new", created=1_700_000_100),
        source="webhook",
        now=T0,
    )
    # the newer arrives first and is processed first
    inbound.provider_event_process(provider_event_id=newer.pk, now=T0)
    older.refresh_from_db()
    newer.refresh_from_db()
    assert inbound.provider_event_superseded(older) is True
    assert inbound.provider_event_superseded(newer) is False


@pytest.mark.django_db(transaction=True)
@SIGNED
def test_a_received_event_is_processed_right_after_its_commit():
    customer = CustomerFactory(provider="stripe", provider_customer_id="cus_QXg1o8vcGmoR32")
    body = _deleted_event()
    assert _post(body, stripe_signature(body)).status_code == 200
    assert ProviderEvent.objects.get().status == "processed"
    customer.refresh_from_db()
    assert customer.provider_customer_id == ""


# --- Resync ---------------------------------------------------------------------------------------


def test_resync_reads_stripes_event_list_and_feeds_the_same_handlers(handler):
    customer = CustomerFactory(provider="stripe", provider_customer_id="cus_gone")
    now = int(timezone.now().timestamp())
    known = stripe_event(
        "test.recorded", stripe_fixture("customer", id="cus_a"), event_id="evt_known", created=now - 50
    )
    listed = [
        known,
        stripe_event(
            "customer.deleted", stripe_fixture("deleted_customer", id="cus_gone"), event_id="evt_del", created=now - 40
        ),
        stripe_event("plan.created", stripe_fixture("plan"), event_id="evt_plan", created=now - 30),
        stripe_event("test.recorded", stripe_fixture("customer", id="cus_b"), event_id="evt_new", created=now - 20),
        stripe_event("test.recorded", stripe_fixture("customer", id="cus_c"), event_id="evt_old", created=now - 99_999),
    ]
    row, _ = inbound.provider_event_store(provider="stripe", event=known, source="webhook", now=T0)
    inbound.provider_event_process(provider_event_id=row.pk, now=T0)
    assert handler == ["evt_known"]

    with local_server() as server:
        server.responder = fake_stripe_events(listed)
        with override_settings(STRIPE_API_KEY="sk_test_resync", STRIPE_API_BASE=server.url):
            out, err = StringIO(), StringIO()
            call_command("provider_resync", "--since", "1h", stdout=out, stderr=err)
            counts = json.loads(out.getvalue())  # stdout stays one JSON document; the summary is on stderr
            assert err.getvalue().startswith("provider_resync: 4 listed, 3 stored, 2 processed, 1 ignored, 0 failed")
            again = StringIO()
            call_command("provider_resync", "--since", "1h", stdout=again)
        paths = [r.path for r in server.requests]
    assert counts == {"listed": 4, "stored": 3, "processed": 2, "ignored": 1, "failed": 0, "already_done": 1}
    assert json.loads(again.getvalue())["already_done"] == 4
    assert handler == ["evt_known", "evt_new"]  # oldest first, the known one not run again
    customer.refresh_from_db()
    assert customer.provider_customer_id == ""
    assert ProviderEvent.objects.get(provider_event_id="evt_del").source == "resync"
    assert all(p.startswith("/v1/events?") and "created%5Bgte%5D=" in p for p in paths)
    assert server.requests[0].headers["authorization"] == "Bearer sk_test_resync"


def test_resync_refuses_bad_arguments_and_a_missing_key():
    with pytest.raises(CommandError, match="RFC 3339"):
        call_command("provider_resync", "--since", "yesterday")
    with pytest.raises(CommandError, match="future"):
        call_command("provider_resync", "--since", (timezone.now() + timedelta(hours=1)).isoformat())
    with override_settings(STRIPE_API_KEY=None), pytest.raises(CommandError, match="STRIPE_API_KEY"):
        call_command("provider_resync", "--since", "2h")
