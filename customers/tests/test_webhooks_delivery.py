"""Fan-out and delivery against a real local HTTP server, under a controllable `now`."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
from django.db import connection, transaction
from django.test import override_settings
from django.utils import timezone
from standardwebhooks import Webhook

from billing_site.errors import Conflict, InvalidRequest
from customers.serializers import CustomerOutput
from customers.services import customer_create, customer_update
from webhooks import delivery as d
from webhooks.endpoints import endpoint_create, endpoint_secret_rotate, endpoint_update
from webhooks.models import BillingEvent, EventPayload, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from webhooks.services import event_emit
from webhooks.tests.helpers import Reply, local_server

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
NO_JITTER = override_settings(WEBHOOKS_RETRY_JITTER_PERCENT=0)


def _endpoint(server, events=("*",), now=T0) -> WebhookEndpoint:
    return endpoint_create(url=f"{server.url}/hook", enabled_events=list(events), now=now)


def _customer_event(external_id="tenant-1", now=T0) -> BillingEvent:
    customer = customer_create(external_id=external_id, name="Acme", email="ops@acme.test", now=now)
    return BillingEvent.objects.get(object_id=customer.id, type="customer.created")


def _one_delivery(server, now=T0, events=("customer.created",)) -> WebhookDelivery:
    endpoint = _endpoint(server, now=now, events=events)
    event = _customer_event(now=now)
    d.events_dispatch(now=now)
    return WebhookDelivery.objects.get(endpoint=endpoint, event=event)


# --- Fan-out ----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_fan_out_matches_types_prefixes_and_skips_disabled_endpoints():
    with local_server() as server:
        everything = _endpoint(server)
        created_only = _endpoint(server, events=["customer.created"])
        prefix = _endpoint(server, events=["customer.*"])
        invoices = _endpoint(server, events=["invoice.*"])
        off = _endpoint(server)
        endpoint_update(endpoint=off, changes={"status": "disabled"}, now=T0)
        customer = customer_create(external_id="t-1", name="A", now=T0)
        customer_update(customer=customer, changes={"name": "B"}, now=T0)
        result = d.events_dispatch(now=T0)
    pairs = set(WebhookDelivery.objects.values_list("endpoint_id", "event__type"))
    assert (everything.id, "customer.created") in pairs and (everything.id, "customer.updated") in pairs
    assert (created_only.id, "customer.created") in pairs and (created_only.id, "customer.updated") not in pairs
    assert (prefix.id, "customer.created") in pairs and (prefix.id, "customer.updated") in pairs
    assert not any(endpoint == invoices.id for endpoint, _ in pairs)
    assert not any(endpoint == off.id for endpoint, _ in pairs)
    assert result["events"] == BillingEvent.objects.count()
    assert not BillingEvent.objects.filter(dispatched_at__isnull=True).exists()


@pytest.mark.django_db
def test_fan_out_is_once_per_event_and_covers_bulk_inserted_events():
    with local_server() as server:
        endpoint = _endpoint(server, events=["thing.*"])
    BillingEvent.objects.bulk_create(
        [
            BillingEvent(type="thing.happened", object_type="thing", object_id=f"t_{i}", data={"n": i}, created_at=T0)
            for i in range(3)
        ]
    )
    first = d.events_dispatch(now=T0)
    second = d.events_dispatch(now=T0 + timedelta(seconds=1))
    assert first["deliveries"] == 3
    assert second == {"events": 0, "deliveries": 0}
    assert WebhookDelivery.objects.filter(endpoint=endpoint).count() == 3
    # an object type without a renderer falls back to the data stored with the event
    body = json.loads(EventPayload.objects.get(event__object_id="t_1").body)
    assert body["data"]["object"] == {"n": 1}


@pytest.mark.django_db
def test_payload_is_the_envelope_with_the_object_rendered_by_its_api_serializer():
    with local_server() as server:
        delivery = _one_delivery(server)
    customer_id = delivery.event.object_id
    from customers.models import Customer

    body = json.loads(EventPayload.objects.get(event=delivery.event).body)
    assert set(body) == {"id", "object", "type", "created", "customer", "data"}
    assert body["id"] == delivery.event_id
    assert body["type"] == "customer.created"
    assert body["object"] == "event"
    assert body["created"] == "2026-03-01T12:00:00Z"
    expected = json.loads(json.dumps(CustomerOutput(Customer.objects.get(pk=customer_id)).data))
    assert body["data"] == {"object": expected, "previous_attributes": None}


# --- One delivery through its retries --------------------------------------------------------------


@pytest.mark.django_db
@NO_JITTER
@override_settings(WEBHOOKS_TIMEOUT_SECONDS=1)
def test_fails_times_out_then_succeeds_with_exact_attempts_and_backoff():
    now = timezone.now().replace(microsecond=0)
    with local_server() as server:
        server.script = [Reply(500, b"boom"), Reply(200, b"late", delay=1.8), Reply(204, b"")]
        delivery = _one_delivery(server, now=now)
        secret = delivery.endpoint.secret

        assert d.delivery_attempt(delivery_id=delivery.id, now=now) == "retrying"
        delivery.refresh_from_db()
        assert delivery.next_attempt_at == now + timedelta(seconds=5)
        assert d.delivery_attempt(delivery_id=delivery.id, now=now + timedelta(seconds=4)) == "skipped"

        t1 = now + timedelta(seconds=5)
        assert d.delivery_attempt(delivery_id=delivery.id, now=t1) == "retrying"
        delivery.refresh_from_db()
        assert delivery.next_attempt_at == t1 + timedelta(minutes=5)

        t2 = t1 + timedelta(minutes=5)
        assert d.delivery_attempt(delivery_id=delivery.id, now=t2) == "succeeded"
        requests = list(server.requests)

    delivery.refresh_from_db()
    assert delivery.status == "succeeded"
    assert delivery.succeeded_at == t2 and delivery.next_attempt_at is None
    assert delivery.attempt_count == 3
    attempts = list(WebhookAttempt.objects.filter(delivery=delivery).order_by("number"))
    assert [(a.number, a.started_at, a.status_code, a.succeeded, a.retryable) for a in attempts] == [
        (1, now, 500, False, True),
        (2, t1, None, False, True),
        (3, t2, 204, True, False),
    ]
    assert attempts[0].response_body == "boom" and attempts[0].error == "HTTP 500"
    assert attempts[1].error == "timeout after 1s" and attempts[1].duration_ms >= 1000
    endpoint = WebhookEndpoint.objects.get(pk=delivery.endpoint_id)
    assert endpoint.failing_since is None and endpoint.last_success_at == t2

    # the same event id and the same bytes on every try; the first one verifies with the reference library
    assert len(requests) == 3
    assert {r.headers["webhook-id"] for r in requests} == {delivery.event_id}
    assert len({r.body for r in requests}) == 1
    assert [r.headers["webhook-timestamp"] for r in requests] == [str(int(t.timestamp())) for t in (now, t1, t2)]
    assert Webhook(secret).verify(requests[0].body, requests[0].headers)["id"] == delivery.event_id
    assert requests[0].path == "/hook" and requests[0].headers["content-type"] == "application/json"


@pytest.mark.django_db
def test_retry_delay_follows_the_schedule_with_bounded_reproducible_jitter():
    schedule = [
        timedelta(seconds=5),
        timedelta(minutes=5),
        timedelta(minutes=30),
        timedelta(hours=2),
        timedelta(hours=5),
        timedelta(hours=10),
        timedelta(hours=10),
    ]
    with override_settings(WEBHOOKS_RETRY_SCHEDULE=schedule, WEBHOOKS_RETRY_JITTER_PERCENT=10):
        for n, base in enumerate(schedule, start=1):
            delays = {d.retry_delay(failures=n, delivery_id=f"wd_{i}") for i in range(20)}
            assert all(base * 0.9 <= delay <= base * 1.1 for delay in delays)
            assert len(delays) > 10  # spread apart
            assert d.retry_delay(failures=n, delivery_id="wd_x") == d.retry_delay(failures=n, delivery_id="wd_x")
    with override_settings(WEBHOOKS_RETRY_SCHEDULE=schedule, WEBHOOKS_RETRY_JITTER_PERCENT=0):
        assert [d.retry_delay(failures=n, delivery_id="wd_x") for n in range(1, 8)] == schedule


@pytest.mark.django_db
@NO_JITTER
@pytest.mark.parametrize(
    ("status", "outcome"), [(400, "failed"), (410, "failed"), (408, "retrying"), (429, "retrying"), (503, "retrying")]
)
def test_4xx_is_final_except_408_and_429(status, outcome):
    with local_server() as server:
        server.script = [Reply(status, b"no")]
        delivery = _one_delivery(server)
        assert d.delivery_attempt(delivery_id=delivery.id, now=T0) == outcome
    delivery.refresh_from_db()
    assert delivery.status == ("failed" if outcome == "failed" else "pending")
    assert (delivery.next_attempt_at is None) == (outcome == "failed")


@pytest.mark.django_db
@NO_JITTER
@override_settings(WEBHOOKS_RETRY_SCHEDULE=[timedelta(seconds=5), timedelta(seconds=10)])
def test_delivery_fails_after_the_last_retry():
    with local_server() as server:
        server.script = [Reply(500)]
        delivery = _one_delivery(server)
        outcomes = [d.delivery_attempt(delivery_id=delivery.id, now=T0 + timedelta(seconds=s)) for s in (0, 5, 15)]
    assert outcomes == ["retrying", "retrying", "failed"]
    delivery.refresh_from_db()
    assert delivery.status == "failed" and delivery.attempt_count == 3


@pytest.mark.django_db
def test_redirects_are_not_followed_and_the_body_is_cut_at_4_kib():
    with local_server() as server:
        server.script = [Reply(302, b"", headers={"Location": f"{server.url}/elsewhere"})]
        delivery = _one_delivery(server)
        assert d.delivery_attempt(delivery_id=delivery.id, now=T0) == "failed"
        assert [r.path for r in server.requests] == ["/hook"]
        attempt = WebhookAttempt.objects.get(delivery=delivery)
        assert attempt.status_code == 302 and "redirect not followed" in attempt.error

        server.script = [Reply(200, b"x" * 10_000)]
        d.delivery_redeliver(delivery=delivery, now=T0)
        assert d.delivery_attempt(delivery_id=delivery.id, now=T0) == "succeeded"
    assert len(WebhookAttempt.objects.get(delivery=delivery, number=2).response_body) == 4096


@pytest.mark.django_db
def test_connection_refused_is_retried():
    with local_server() as server:
        delivery = _one_delivery(server)
    # the server is gone: nothing listens on that port any more
    assert d.delivery_attempt(delivery_id=delivery.id, now=T0) == "retrying"
    attempt = WebhookAttempt.objects.get(delivery=delivery)
    assert attempt.status_code is None and attempt.error.startswith("connection error")


@pytest.mark.django_db
def test_both_secrets_sign_during_the_rotation_overlap_then_only_the_new_one():
    now = timezone.now()
    with local_server() as server:
        delivery = _one_delivery(server, now=now)
        old = delivery.endpoint.secret
        endpoint = endpoint_secret_rotate(endpoint=delivery.endpoint, now=now)
        assert endpoint.secret != old
        d.delivery_attempt(delivery_id=delivery.id, now=now)
        during = server.requests[-1]
        assert len(during.headers["webhook-signature"].split(" ")) == 2
        assert Webhook(old).verify(during.body, during.headers)
        assert Webhook(endpoint.secret).verify(during.body, during.headers)

        later = now + timedelta(hours=24, seconds=1)
        event = _customer_event("tenant-2", now=later)
        d.events_dispatch(now=later)
        second = WebhookDelivery.objects.get(event=event, endpoint=endpoint)
        d.delivery_attempt(delivery_id=second.id, now=later)
        after = server.requests[-1]
    assert len(after.headers["webhook-signature"].split(" ")) == 1
    expected = Webhook(endpoint.secret).sign(second.event_id, later, after.body.decode())
    assert after.headers["webhook-signature"] == expected


# --- Auto-disable -----------------------------------------------------------------------------------


@pytest.mark.django_db
@NO_JITTER
def test_endpoint_failing_for_five_days_is_disabled_once_with_an_event():
    with local_server() as server:
        server.script = [Reply(500)]
        delivery = _one_delivery(server)
        endpoint = delivery.endpoint
        d.delivery_attempt(delivery_id=delivery.id, now=T0)
        endpoint.refresh_from_db()
        assert endpoint.failing_since == T0

        def fail_at(when: datetime, name: str) -> None:
            event = _customer_event(name, now=when)
            d.events_dispatch(now=when)
            d.delivery_attempt(delivery_id=WebhookDelivery.objects.get(event=event, endpoint=endpoint).id, now=when)

        fail_at(T0 + timedelta(days=4, hours=23), "tenant-2")
        endpoint.refresh_from_db()
        assert endpoint.status == "enabled"
        fail_at(T0 + timedelta(days=5), "tenant-3")
        endpoint.refresh_from_db()
        assert endpoint.status == "disabled"
        assert "5 days" in endpoint.disabled_reason

        # nothing more is sent to it, even when due
        sent = len(server.requests)
        assert d.delivery_attempt(delivery_id=delivery.id, now=T0 + timedelta(days=6)) == "skipped"
        assert d.deliveries_due_enqueue(now=T0 + timedelta(days=6)) == 0
        assert len(server.requests) == sent
    disabled = BillingEvent.objects.filter(type="webhook_endpoint.disabled", object_id=endpoint.id)
    assert disabled.count() == 1
    assert disabled.get().previous_attributes["status"] == "enabled"


@pytest.mark.django_db
@NO_JITTER
def test_a_success_resets_the_failing_clock():
    with local_server() as server:
        server.script = [Reply(500), Reply(200), Reply(500)]
        delivery = _one_delivery(server)
        endpoint = delivery.endpoint
        d.delivery_attempt(delivery_id=delivery.id, now=T0)
        d.delivery_attempt(delivery_id=delivery.id, now=T0 + timedelta(days=3))
        endpoint.refresh_from_db()
        assert endpoint.failing_since is None
        event = _customer_event("tenant-2", now=T0 + timedelta(days=6))
        d.events_dispatch(now=T0 + timedelta(days=6))
        later = WebhookDelivery.objects.get(event=event, endpoint=endpoint)
        d.delivery_attempt(delivery_id=later.id, now=T0 + timedelta(days=6))
    endpoint.refresh_from_db()
    assert endpoint.status == "enabled" and endpoint.failing_since == T0 + timedelta(days=6)


# --- Redelivery and resend ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_redeliver_a_failed_delivery_starts_the_schedule_again():
    with local_server() as server:
        server.script = [Reply(400, b"bad"), Reply(200)]
        delivery = _one_delivery(server)
        assert d.delivery_attempt(delivery_id=delivery.id, now=T0) == "failed"
        later = T0 + timedelta(hours=1)
        d.delivery_redeliver(delivery=delivery, now=later)
        delivery.refresh_from_db()
        assert (delivery.status, delivery.next_attempt_at, delivery.failures_in_row) == ("pending", later, 0)
        assert d.delivery_attempt(delivery_id=delivery.id, now=later) == "succeeded"
    assert list(WebhookAttempt.objects.filter(delivery=delivery).values_list("number", "status_code")) == [
        (1, 400),
        (2, 200),
    ]


@pytest.mark.django_db
def test_redeliver_is_refused_while_in_flight_or_when_the_endpoint_is_disabled():
    with local_server() as server:
        delivery = _one_delivery(server)
    assert d._claim(delivery.id, T0) is not None
    with pytest.raises(Conflict) as exc:
        d.delivery_redeliver(delivery=delivery, now=T0)
    assert exc.value.code == "delivery_in_progress"
    endpoint_update(endpoint=delivery.endpoint, changes={"status": "disabled"}, now=T0)
    with pytest.raises(Conflict) as exc:
        d.delivery_redeliver(delivery=delivery, now=T0 + timedelta(hours=1))
    assert exc.value.code == "endpoint_disabled"


@pytest.mark.django_db
def test_resend_since_queues_matching_events_old_and_new():
    with local_server() as server:
        before = _customer_event("tenant-0", now=T0 - timedelta(days=2))
        d.events_dispatch(now=T0)  # nobody listened then
        endpoint = _endpoint(server, events=["customer.*"])
        sent = _customer_event("tenant-1", now=T0 + timedelta(hours=1))
        d.events_dispatch(now=T0 + timedelta(hours=1))
        sent_delivery = WebhookDelivery.objects.get(event=sent)
        assert d.delivery_attempt(delivery_id=sent_delivery.id, now=T0 + timedelta(hours=1)) == "succeeded"
        with transaction.atomic():
            event_emit(type="invoice.paid", object_type="invoice", object_id="in_x", data={}, now=T0)

        now = T0 + timedelta(hours=2)
        result = d.endpoint_resend(endpoint=endpoint, since=T0 - timedelta(days=3), now=now)
        assert result == {"events": 2, "created": 1, "requeued": 1, "in_progress": 0}
        assert set(
            WebhookDelivery.objects.filter(endpoint=endpoint, status="pending").values_list("event_id", flat=True)
        ) == {
            before.id,
            sent.id,
        }
        assert d.deliveries_due_enqueue(now=now) == 2

        assert d.endpoint_resend(endpoint=endpoint, since=T0, now=now)["events"] == 1
    with pytest.raises(InvalidRequest) as exc:
        d.endpoint_resend(endpoint=endpoint, since=now + timedelta(minutes=1), now=now)
    assert exc.value.param == "since"
    with override_settings(WEBHOOKS_RESEND_MAX_EVENTS=1), pytest.raises(InvalidRequest) as exc:
        d.endpoint_resend(endpoint=endpoint, since=T0 - timedelta(days=3), now=now)
    assert exc.value.code == "too_many_events"


@pytest.mark.django_db
def test_test_event_goes_to_its_endpoint_only():
    with local_server() as server:
        target = _endpoint(server)
        other = _endpoint(server)
        delivery = d.endpoint_test(endpoint=target, now=T0)
        d.events_dispatch(now=T0)
        assert d.delivery_attempt(delivery_id=delivery.id, now=T0) == "succeeded"
        body = json.loads(server.requests[-1].body)
    assert body["type"] == "webhook_endpoint.test"
    assert body["data"]["object"]["id"] == target.id
    assert target.secret not in json.dumps(body) and '"secret"' not in json.dumps(body)
    assert not WebhookDelivery.objects.filter(endpoint=other, event__type="webhook_endpoint.test").exists()


# --- Crashes and concurrency ---------------------------------------------------------------------


class WorkerDied(BaseException):
    """Stands for the process being killed: nothing after it runs, no handler sees it."""


@pytest.mark.django_db
def test_worker_dying_mid_send_loses_nothing():
    with local_server() as server:
        delivery = _one_delivery(server)
        with mock.patch("webhooks.delivery.webhook_post", side_effect=WorkerDied), pytest.raises(WorkerDied):
            d.delivery_attempt(delivery_id=delivery.id, now=T0)
        delivery.refresh_from_db()
        assert delivery.status == "pending" and delivery.claim_token  # held by the dead worker
        assert d.deliveries_due_enqueue(now=T0 + timedelta(seconds=30)) == 0  # its lease is still live
        assert d.delivery_attempt(delivery_id=delivery.id, now=T0 + timedelta(seconds=30)) == "skipped"

        after_lease = delivery.lease_expires_at + timedelta(seconds=1)
        assert d.deliveries_due_enqueue(now=after_lease) == 1
        assert d.delivery_attempt(delivery_id=delivery.id, now=after_lease) == "succeeded"
        assert len(server.requests) == 1
    assert WebhookAttempt.objects.filter(delivery=delivery).count() == 1


@pytest.mark.django_db(transaction=True)
def test_crash_between_commit_and_send_loses_nothing():
    """The event commits but the fan-out request never reaches a worker (broker down, process killed):
    the outbox row is the to-do list, and the sweep delivers it."""
    with local_server() as server:
        endpoint = endpoint_create(url=f"{server.url}/hook", enabled_events=["customer.created"], now=timezone.now())
        with mock.patch("webhooks.tasks.dispatch_events.delay", side_effect=ConnectionError("broker down")):
            customer = customer_create(external_id="tenant-9", name="Nine", now=timezone.now())
        event = BillingEvent.objects.get(object_id=customer.id, type="customer.created")
        assert event.dispatched_at is None
        assert not WebhookDelivery.objects.exists()
        assert server.requests == []

        # the periodic sweep (run here through the job registry, tasks run eagerly in tests)
        from billing_site.jobs import job_run

        result = job_run("deliver_webhooks", now=timezone.now())
        assert result["deliveries"] == 1
        assert len(server.requests) == 1
        assert json.loads(server.requests[0].body)["id"] == event.id
        assert Webhook(endpoint.secret).verify(server.requests[0].body, server.requests[0].headers)
    assert WebhookDelivery.objects.get(event=event).status == "succeeded"


@pytest.mark.django_db(transaction=True)
def test_events_are_delivered_right_after_their_commit():
    with local_server() as server:
        endpoint_create(url=f"{server.url}/hook", enabled_events=["customer.created"], now=timezone.now())
        with transaction.atomic():
            customer_create(external_id="tenant-a", name="A", now=timezone.now())
            customer_create(external_id="tenant-b", name="B", now=timezone.now())
            assert server.requests == []  # nothing leaves before the commit
        types = sorted(json.loads(r.body)["data"]["object"]["external_id"] for r in server.requests)
    assert types == ["tenant-a", "tenant-b"]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_delivery_is_never_sent_by_two_workers_at_once():
    with local_server() as server:
        server.script = [Reply(200, delay=0.3)]
        with mock.patch("webhooks.tasks.dispatch_events.delay"):  # this test runs the fan-out itself
            endpoint = endpoint_create(url=f"{server.url}/hook", enabled_events=["thing.*"], now=T0)
            with transaction.atomic():
                event_emit(type="thing.happened", object_type="thing", object_id="t_1", data={}, now=T0)
        with mock.patch("webhooks.delivery._enqueue"):  # the workers below are the only senders
            d.events_dispatch(now=T0)
        delivery = WebhookDelivery.objects.get(endpoint=endpoint)
        barrier = threading.Barrier(6)
        outcomes: list[str] = []

        def worker() -> None:
            try:
                barrier.wait()
                outcomes.append(d.delivery_attempt(delivery_id=delivery.id, now=T0))
            finally:
                connection.close()

        threads = [threading.Thread(target=worker) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(outcomes) == ["skipped"] * 5 + ["succeeded"]
        assert len(server.requests) == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_fan_outs_split_the_outbox_without_duplicates():
    with local_server() as server:
        endpoint = endpoint_create(url=f"{server.url}/hook", enabled_events=["thing.*"], now=T0)
    BillingEvent.objects.bulk_create(
        [
            BillingEvent(type="thing.happened", object_type="thing", object_id=f"t_{i}", data={}, created_at=T0)
            for i in range(1200)
        ]
    )
    barrier = threading.Barrier(3)
    totals: list[int] = []

    def worker() -> None:
        try:
            barrier.wait()
            totals.append(d.events_dispatch(now=T0)["deliveries"])
        finally:
            connection.close()

    with mock.patch("webhooks.delivery._enqueue"):
        threads = [threading.Thread(target=worker) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert sum(totals) == 1200
    assert WebhookDelivery.objects.filter(endpoint=endpoint).count() == 1200
    assert not BillingEvent.objects.filter(dispatched_at__isnull=True).exists()
