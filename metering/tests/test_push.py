"""The usage push against the fake Stripe through the real SDK: exactly one meter event per slice across
retries, crashes and lost answers; backoff on 429; slices in order, one call in flight per lane."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from billing_site.ids import new_id
from conftest import FAKE_STRIPE_KEY
from metering.push import services
from metering.push.models import UsagePush
from metering.push.services import LEASE, usage_push_lane_run
from metering.tests.push_support import (
    T0,
    Sleeps,
    at,
    events,
    lane_of,
    mapped_meter,
    provider,
    provider_customer,
    provider_total,
    pushes,
    run,
)

pytestmark = pytest.mark.django_db

METER_EVENTS = "/v1/billing/meter_events"


def test_a_closed_slice_is_pushed_once_with_its_row_written_before_the_call(fake_stripe, monkeypatch):
    meter, stripe_meter = mapped_meter(fake_stripe)
    customer = provider_customer()
    events(customer, meter, [(at(0, 5), "2.5"), (at(0, 40), "4")], now=at(0, 50))
    seen_before_call = []
    real_send = services.UsageProvider.send

    def send(self, *, kind, params, idempotency_key):
        row = UsagePush.objects.get(identifier=idempotency_key)
        seen_before_call.append((row.status, row.value, row.claimed_until is not None))
        return real_send(self, kind=kind, params=params, idempotency_key=idempotency_key)

    monkeypatch.setattr(services.UsageProvider, "send", send)

    assert run(fake_stripe, customer, meter, at(0, 59)).sent == 0  # the slice is still open
    result = run(fake_stripe, customer, meter, at(1, 3))

    assert result.sent == 1
    assert seen_before_call == [("pending", Decimal("6.5"), True)]
    (push,) = pushes(customer, meter)
    customer.refresh_from_db()
    assert push.kind == "push" and push.status == "sent" and push.settled_by == "answer"
    assert (push.slice_start, push.slice_end, push.value) == (T0, at(1), Decimal("6.5"))
    assert push.identifier == push.id and push.id.startswith("upush_")
    # The Stripe customer was created once, with our id as its idempotency key and in its metadata.
    (created,) = fake_stripe.received("POST", "/v1/customers")
    assert created.headers["idempotency-key"] == f"{customer.id}:customer:stripe"
    assert created.params["metadata"] == {"customer_id": customer.id}
    assert (
        customer.provider == "stripe"
        and customer.provider_customer_id == fake_stripe.customers[customer.provider_customer_id]["id"]
    )
    (request,) = fake_stripe.received("POST", METER_EVENTS)
    assert request.headers["idempotency-key"] == push.identifier
    assert request.headers["authorization"] == f"Bearer {FAKE_STRIPE_KEY}"
    assert request.params == {
        "event_name": stripe_meter["event_name"],
        "identifier": push.identifier,
        "timestamp": str(int(T0.timestamp())),
        "payload": {"stripe_customer_id": customer.provider_customer_id, "value": "6.5"},
    }
    assert provider_total(fake_stripe, stripe_meter, customer, T0, at(1)) == Decimal("6.5")

    # Running again (twice, as a duplicated task would) sends nothing more.
    assert run(fake_stripe, customer, meter, at(1, 30)).sent == 0
    assert run(fake_stripe, customer, meter, at(1, 30)).sent == 0
    assert len(fake_stripe.received("POST", METER_EVENTS)) == 1
    assert len(fake_stripe.counted_events()) == 1


def test_retries_after_errors_reuse_the_identifier_and_count_once(fake_stripe):
    meter, stripe_meter = mapped_meter(fake_stripe)
    customer = provider_customer()
    events(customer, meter, [(at(0, 10), 3)], now=at(0, 20))
    # Acted on, then a 500; then the answer to the retry is lost; the third attempt gets the answer.
    fake_stripe.fail_next(f"POST {METER_EVENTS}", "500_after", "timeout_after")
    sleeps = Sleeps()

    result = run(fake_stripe, customer, meter, at(1, 3), sleeps=sleeps)

    assert result.sent == 1 and len(sleeps) == 2
    (push,) = pushes(customer, meter)
    requests = fake_stripe.received("POST", METER_EVENTS)
    assert len(requests) == 3
    assert {r.params["identifier"] for r in requests} == {push.identifier}
    assert {r.headers["idempotency-key"] for r in requests} == {push.identifier}
    assert len(fake_stripe.counted_events()) == 1
    assert provider_total(fake_stripe, stripe_meter, customer, T0, at(1)) == 3


def test_a_lost_answer_is_retried_on_a_later_run_with_the_same_identifier(fake_stripe):
    meter, stripe_meter = mapped_meter(fake_stripe)
    customer = provider_customer()
    events(customer, meter, [(at(0, 10), 3)], now=at(0, 20))
    fake_stripe.fail_next(f"POST {METER_EVENTS}", "timeout_after", "crash", "timeout")

    first = run(fake_stripe, customer, meter, at(1, 3))

    (push,) = pushes(customer, meter)
    assert first.unknown == 1 and push.status == "unknown" and push.error_code == "no_answer"
    assert push.next_attempt_at == at(1, 4)  # one minute, then doubling
    assert first.retry_at == push.next_attempt_at
    assert (
        run(
            fake_stripe,
            customer,
            meter,
            at(
                1,
                3,
            ),
        ).state
        == "waiting"
    )

    second = run(fake_stripe, customer, meter, at(1, 5))

    push.refresh_from_db()
    assert second.sent == 1 and push.status == "sent" and push.attempts == 2
    assert len(fake_stripe.received("POST", METER_EVENTS)) == 4
    assert len(fake_stripe.counted_events()) == 1
    assert provider_total(fake_stripe, stripe_meter, customer, T0, at(1)) == 3


class Crash(BaseException):
    """The worker dies: not an error any code path handles."""


def test_a_crash_after_the_call_and_before_recording_sends_no_second_event(fake_stripe, monkeypatch):
    meter, stripe_meter = mapped_meter(fake_stripe)
    customer = provider_customer()
    events(customer, meter, [(at(0, 10), 8)], now=at(0, 20))
    real_record = services.push_record

    def crash(**kwargs):
        raise Crash

    monkeypatch.setattr(services, "push_record", crash)
    with pytest.raises(Crash):
        run(fake_stripe, customer, meter, at(1, 3))
    (push,) = pushes(customer, meter)
    assert push.status == "pending" and push.attempts == 1 and push.claimed_until == at(1, 3) + LEASE
    assert len(fake_stripe.counted_events()) == 1  # Stripe has it; we never heard

    monkeypatch.setattr(services, "push_record", real_record)
    # While the dead worker's claim lasts nobody else calls.
    assert run(fake_stripe, customer, meter, at(1, 5)).state == "busy"
    assert len(fake_stripe.received("POST", METER_EVENTS)) == 1

    recovered = run(fake_stripe, customer, meter, at(1, 3) + LEASE + timedelta(minutes=1))

    push.refresh_from_db()
    assert recovered.sent == 1 and push.status == "sent" and push.attempts == 2
    requests = fake_stripe.received("POST", METER_EVENTS)
    assert len(requests) == 2 and requests[1].params == requests[0].params
    assert len(fake_stripe.counted_events()) == 1
    assert provider_total(fake_stripe, stripe_meter, customer, T0, at(1)) == 8


@pytest.mark.parametrize(("fault", "recorded"), [("timeout_after", True), ("timeout", False)])
def test_a_timeout_is_settled_by_the_summary_read_after_the_uniqueness_window(fake_stripe, fault, recorded):
    meter, stripe_meter = mapped_meter(fake_stripe)
    customer = provider_customer()
    events(customer, meter, [(at(0, 10), 5)], now=at(0, 20))
    fake_stripe.fail_next(f"POST {METER_EVENTS}", fault, fault, fault)
    run(fake_stripe, customer, meter, at(1, 3))
    (push,) = pushes(customer, meter)
    assert push.status == "unknown"
    assert len(fake_stripe.counted_events()) == (1 if recorded else 0)

    # A day later Stripe's identifier window may have passed: resending could count twice. Read instead.
    result = run(fake_stripe, customer, meter, at(25))

    push.refresh_from_db()
    summaries = fake_stripe.received("GET", f"/v1/billing/meters/{stripe_meter['id']}/event_summaries")
    assert len(summaries) == 1
    assert summaries[0].params["start_time"] == str(int(T0.timestamp()))
    assert summaries[0].params["end_time"] == str(int(at(1).timestamp()))
    assert push.settled_by == "summary"
    if recorded:
        assert push.status == "sent" and result.settled == 1
        assert len(fake_stripe.received("POST", METER_EVENTS)) == 3  # never sent after the window
    else:
        # Never recorded: it changed nothing, and the slice goes out again under a new identifier.
        assert push.status == "failed" and push.error_code == "not_recorded"
        (_, again) = pushes(customer, meter)
        assert again.kind == "correction" and again.status == "sent" and again.value == 5
        assert again.identifier != push.identifier
    assert len(fake_stripe.counted_events()) == 1
    assert provider_total(fake_stripe, stripe_meter, customer, T0, at(1)) == 5


def test_429_is_retried_with_growing_backoff_within_the_call_and_then_across_runs(fake_stripe):
    meter, _stripe_meter = mapped_meter(fake_stripe)
    customer = provider_customer()
    events(customer, meter, [(at(0, 10), 1), (at(1, 10), 2)], now=at(1, 20))
    fake_stripe.fail_next(f"POST {METER_EVENTS}", "429", "429")
    sleeps = Sleeps()

    result = run(fake_stripe, customer, meter, at(1, 3), sleeps=sleeps)

    assert result.sent == 1 and len(fake_stripe.received("POST", METER_EVENTS)) == 3
    assert 0.25 <= sleeps[0] <= 0.5 and 0.5 <= sleeps[1] <= 1.0  # doubling, jittered

    # Every attempt of the next slice refused: nothing was recorded, the row waits and doubles its wait.
    fake_stripe.fail_next(f"POST {METER_EVENTS}", *["429"] * 6)
    limited = run(fake_stripe, customer, meter, at(2, 3))
    push = pushes(customer, meter)[1]
    assert limited.rate_limited == 1 and push.status == "pending" and push.error_code == "rate_limited"
    assert push.next_attempt_at == at(2, 4)
    assert (
        run(
            fake_stripe,
            customer,
            meter,
            at(
                2,
                3,
            ),
        ).state
        == "waiting"
    )
    again = run(fake_stripe, customer, meter, at(2, 5))
    push.refresh_from_db()
    assert again.rate_limited == 1 and push.next_attempt_at == at(2, 7)  # 2 minutes after the 2nd round
    assert run(fake_stripe, customer, meter, at(2, 8)).sent == 1
    assert [e.payload["value"] for e in fake_stripe.counted_events()] == ["1", "2"]


def test_slices_go_out_in_order_one_call_in_flight_per_lane(fake_stripe, monkeypatch):
    meter, _stripe_meter = mapped_meter(fake_stripe)
    customer = provider_customer()
    events(customer, meter, [(at(2, 30), 3), (at(0, 30), 1), (at(1, 30), 2)], now=at(2, 40))
    lane = lane_of(customer, meter, at(3, 3))
    nested = []
    real_send = services.UsageProvider.send

    def send(self, **kwargs):
        # Another worker starts on the same lane while this call is in flight: it must not call.
        nested.append(usage_push_lane_run(lane_id=lane.pk, now=at(3, 3), provider=provider()).state)
        return real_send(self, **kwargs)

    monkeypatch.setattr(services.UsageProvider, "send", send)
    fake_stripe.now = at(3, 3)
    result = usage_push_lane_run(lane_id=lane.pk, now=at(3, 3), provider=provider())

    assert result.sent == 3 and nested == ["busy", "busy", "busy"]
    rows = pushes(customer, meter)
    assert [(p.slice_start, p.value) for p in rows] == [(at(0), 1), (at(1), 2), (at(2), 3)]
    sent = fake_stripe.received("POST", METER_EVENTS)
    assert [r.params["timestamp"] for r in sent] == [str(int(at(h).timestamp())) for h in (0, 1, 2)]
    lane.refresh_from_db()
    assert lane.pushed_through == at(3)


def test_the_database_refuses_a_second_outstanding_push_and_a_second_push_of_a_slice(fake_stripe):
    meter, _ = mapped_meter(fake_stripe)
    customer = provider_customer()
    lane = lane_of(customer, meter, at(1))

    def row(**fields):
        push_id = new_id("upush")
        values = {
            "id": push_id,
            "identifier": push_id,
            "lane": lane,
            "customer": customer,
            "meter": meter,
            "kind": "push",
            "slice_start": T0,
            "slice_end": at(1),
            "value": 1,
            "created_at": T0,
            "updated_at": T0,
        }
        values.update(fields)
        return UsagePush.objects.create(**values)

    row(status="pending")
    with pytest.raises(IntegrityError), transaction.atomic():
        row(status="unknown", kind="correction", slice_start=at(1), slice_end=at(2))
    with pytest.raises(IntegrityError), transaction.atomic():
        row(status="failed")  # a second "push" of the same slice
    with pytest.raises(IntegrityError), transaction.atomic():
        row(status="failed", kind="push", slice_start=at(1), slice_end=at(2), value=-1)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_locked_lane_does_not_hold_up_the_other_lanes_of_its_meter(fake_stripe):
    import threading

    from django.db import connection

    from metering.push.services import lane_lock

    meter, _ = mapped_meter(fake_stripe)
    busy, free = provider_customer(), provider_customer()
    events(free, meter, [(at(0, 10), 2)], now=at(0, 20))
    busy_lane, free_lane = lane_of(busy, meter, at(1, 3)), lane_of(free, meter, at(1, 3))
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        try:
            with transaction.atomic():
                lane_lock(busy_lane.pk)
                locked.set()
                release.wait(10)
        finally:
            connection.close()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert locked.wait(5)
        fake_stripe.now = at(1, 3)
        results = []
        worker = threading.Thread(
            target=lambda: (
                results.append(usage_push_lane_run(lane_id=free_lane.pk, now=at(1, 3), provider=provider())),
                connection.close(),
            )
        )
        worker.start()
        worker.join(5)
        assert not worker.is_alive(), "a lane of the same meter waited for another lane's lock"
        assert results[0].sent == 1
    finally:
        release.set()
        holder.join(10)
