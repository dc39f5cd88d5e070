"""Late and canceled usage after a slice was pushed: corrections with exact values, cancels inside
Stripe's window, `unreconcilable` outside it; billing mode switches; who is never pushed."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from billing_site.jobs import job_run
from metering.push.models import UsagePush, UsagePushLane
from metering.rollups import usage_rollup_job
from metering.tests.push_support import (
    T0,
    at,
    events,
    mapped_meter,
    native_customer,
    provider_customer,
    provider_total,
    pushes,
    run,
    switch,
)
from metering.usage import usage_cancel
from webhooks.models import BillingEvent

pytestmark = pytest.mark.django_db

METER_EVENTS = "/v1/billing/meter_events"
ADJUSTMENTS = "/v1/billing/meter_event_adjustments"


def rows(customer, meter):
    return [(p.kind, p.status, p.value) for p in pushes(customer, meter)]


def test_late_events_and_cancellations_after_a_push_are_corrected_exactly(fake_stripe):
    meter, stripe_meter = mapped_meter(fake_stripe)
    customer = provider_customer()
    events(customer, meter, [(at(0, 10), 6), (at(0, 20), 4)], now=at(0, 30), keys=["a", "b"])
    run(fake_stripe, customer, meter, at(1, 3))
    assert rows(customer, meter) == [("push", "sent", Decimal(10))]

    # A late event for the pushed slice (rolled up before the next run, so it is found through the roll-up).
    events(customer, meter, [(at(0, 30), "3.25")], now=at(1, 20), keys=["late"])
    usage_rollup_job(now=at(1, 25))
    run(fake_stripe, customer, meter, at(2, 3))
    assert rows(customer, meter)[1:] == [("correction", "sent", Decimal("3.25"))]
    assert provider_total(fake_stripe, stripe_meter, customer, T0, at(1)) == Decimal("13.25")

    # A cancellation: the slice falls to 9.25. The pushed 10 is canceled at Stripe (its 24 h window is
    # still open) and what remains of it goes out again.
    usage_cancel(reason="duplicate", customer=customer, idempotency_keys=["b"], now=at(2, 10))
    run(fake_stripe, customer, meter, at(3, 3))
    assert rows(customer, meter)[2:] == [("cancel", "sent", Decimal(-10)), ("correction", "sent", Decimal(6))]
    (adjustment,) = fake_stripe.received("POST", ADJUSTMENTS)
    first = pushes(customer, meter)[0]
    assert adjustment.params == {
        "event_name": stripe_meter["event_name"],
        "type": "cancel",
        "cancel": {"identifier": first.identifier},
    }
    assert provider_total(fake_stripe, stripe_meter, customer, T0, at(1)) == Decimal("9.25")

    # Nothing changed since: running again adds nothing.
    run(fake_stripe, customer, meter, at(4, 3))
    assert len(pushes(customer, meter)) == 4

    # A day and more later nothing pushed can be canceled any more: the difference is kept, flagged, once.
    usage_cancel(reason="fraud", customer=customer, idempotency_keys=["a"], now=at(30))
    run(fake_stripe, customer, meter, at(30, 3))
    flagged = pushes(customer, meter)[4]
    assert (flagged.kind, flagged.status, flagged.value) == ("correction", "unreconcilable", Decimal(-6))
    assert "canceled" in flagged.error_message
    event = BillingEvent.objects.get(type="usage_push.unreconcilable")
    assert event.object_id == flagged.id and event.data["difference"] == "-6"
    run(fake_stripe, customer, meter, at(31, 3))
    assert len(pushes(customer, meter)) == 5
    assert BillingEvent.objects.filter(type="usage_push.unreconcilable").count() == 1
    # The provider still holds 9.25 for a slice that is now 3.25: the flag carries exactly that.
    assert provider_total(fake_stripe, stripe_meter, customer, T0, at(1)) - flagged.value == Decimal("15.25")


def test_a_late_event_in_a_slice_that_was_empty_is_its_first_push(fake_stripe):
    meter, stripe_meter = mapped_meter(fake_stripe)
    customer = provider_customer()
    events(customer, meter, [(at(1, 10), 1)], now=at(1, 20))
    run(fake_stripe, customer, meter, at(2, 3))  # [10:00, 11:00) was empty, [11:00, 12:00) holds 1
    events(customer, meter, [(at(0, 45), 7)], now=at(2, 30))
    run(fake_stripe, customer, meter, at(3, 3))
    assert [(p.kind, p.slice_start, p.value) for p in pushes(customer, meter)] == [
        ("push", at(1), Decimal(1)),
        ("push", at(0), Decimal(7)),
    ]
    assert provider_total(fake_stripe, stripe_meter, customer, T0, at(1)) == 7


def test_a_count_meter_pushes_event_counts(fake_stripe):
    meter, _stripe_meter = mapped_meter(fake_stripe, "count")
    customer = provider_customer()
    events(customer, meter, [(at(0, m), 100) for m in (1, 2, 3)], now=at(0, 30))
    run(fake_stripe, customer, meter, at(1, 3))
    assert rows(customer, meter) == [("push", "sent", Decimal(3))]


def test_a_switch_in_the_middle_of_a_slice_pushes_only_the_provider_part(fake_stripe):
    meter, stripe_meter = mapped_meter(fake_stripe)
    customer = native_customer()
    events(customer, meter, [(at(0, 10), 5)], now=at(0, 15))
    switch(customer, "provider", at(0, 30))
    events(customer, meter, [(at(0, 40), 7), (at(1, 15), 2)], now=at(1, 20))
    switch(customer, "native", at(1, 30))
    events(customer, meter, [(at(1, 45), 3), (at(2, 15), 11)], now=at(2, 20))

    run(fake_stripe, customer, meter, at(3, 3))

    assert [(p.slice_start, p.value) for p in pushes(customer, meter)] == [(at(0), Decimal(7)), (at(1), Decimal(2))]
    lane = UsagePushLane.objects.get(customer=customer, meter=meter)
    assert lane.started_at == T0
    assert provider_total(fake_stripe, stripe_meter, customer, T0, at(3)) == 9
    # Late usage of native time is never pushed either.
    events(customer, meter, [(at(0, 5), 100), (at(1, 50), 100)], now=at(3, 10))
    run(fake_stripe, customer, meter, at(4, 3))
    assert len(pushes(customer, meter)) == 2


def test_a_native_customer_is_never_pushed(fake_stripe):
    meter, _ = mapped_meter(fake_stripe)
    customer = native_customer()
    events(customer, meter, [(at(0, 10), 5)], now=at(0, 15))

    fake_stripe.now = at(1, 3)
    result = job_run("push_usage", now=at(1, 3))

    assert result["lanes_created"] == 0 and result["lanes_started"] == 0
    assert not UsagePushLane.objects.filter(customer=customer).exists()
    assert not UsagePush.objects.exists()
    assert fake_stripe.requests == []


def test_the_job_pushes_every_lane_through_its_task(fake_stripe):
    meter_a, _stripe_a = mapped_meter(fake_stripe)
    meter_b, _stripe_b = mapped_meter(fake_stripe, "count")
    first, second = provider_customer(), provider_customer()
    events(first, meter_a, [(at(0, 10), 2)], now=at(0, 20))
    events(second, meter_a, [(at(0, 10), 3)], now=at(0, 20))
    events(second, meter_b, [(at(0, 10), 1), (at(0, 11), 1)], now=at(0, 20))

    fake_stripe.now = at(1, 3)
    result = job_run("push_usage", now=at(1, 3))

    assert result["lanes_created"] == 4 and result["lanes_started"] == 4
    # The two provider meters were looked up once each, by the sweep, not by each of their lanes.
    assert result["mappings_resolved"] == 2 and len(fake_stripe.received("GET", "/v1/billing/meters")) == 2
    assert {(p.customer_id, p.meter_id, p.value) for p in UsagePush.objects.all()} == {
        (first.id, meter_a.id, Decimal(2)),
        (second.id, meter_a.id, Decimal(3)),
        (second.id, meter_b.id, Decimal(2)),
    }
    assert all(p.status == "sent" for p in UsagePush.objects.all())
    # Once each, however often the job runs.
    job_run("push_usage", now=at(1, 30))
    assert len(fake_stripe.received("POST", METER_EVENTS)) == 3


def test_a_refused_push_blocks_its_lane_until_an_operator_unblocks_it(fake_stripe):
    from metering.push.services import usage_push_lane_unblock

    meter, stripe_meter = mapped_meter(fake_stripe)
    customer = provider_customer()
    events(customer, meter, [(at(0, 10), 4), (at(1, 10), 1)], now=at(1, 20))
    fake_stripe.fail_next(f"POST {METER_EVENTS}", "400")

    result = run(fake_stripe, customer, meter, at(2, 3))

    (push,) = pushes(customer, meter)
    assert result.failed == 1 and push.status == "failed" and push.error_code == "parameter_invalid"
    lane = UsagePushLane.objects.get(customer=customer, meter=meter)
    assert lane.blocked_at == at(2, 3) and push.id in lane.error
    assert BillingEvent.objects.filter(type="usage_push.failed", object_id=push.id).exists()
    assert run(fake_stripe, customer, meter, at(3, 3)).state == "blocked"
    assert len(fake_stripe.received("POST", METER_EVENTS)) == 1

    usage_push_lane_unblock(lane=lane, now=at(3, 10))
    run(fake_stripe, customer, meter, at(3, 13))

    # The refused slice goes out again first (corrections come before new slices), then the next slice.
    assert [(p.kind, p.status, p.slice_start, p.value) for p in pushes(customer, meter)] == [
        ("push", "failed", at(0), Decimal(4)),
        ("correction", "sent", at(0), Decimal(4)),
        ("push", "sent", at(1), Decimal(1)),
    ]
    assert provider_total(fake_stripe, stripe_meter, customer, T0, at(2)) == 5


def test_a_provider_meter_that_does_not_sum_is_not_pushed_to(fake_stripe):
    meter, stripe_meter = mapped_meter(fake_stripe)
    stripe_meter["default_aggregation"] = {"formula": "count"}
    customer = provider_customer()
    events(customer, meter, [(at(0, 10), 4)], now=at(0, 20))

    result = run(fake_stripe, customer, meter, at(1, 3))

    assert result.state == "waiting" and "only a sum meter" in result.errors[0]
    assert not UsagePush.objects.exists()
    assert fake_stripe.received("POST", METER_EVENTS) == []


def test_usage_older_than_stripe_accepts_is_flagged_not_sent(fake_stripe):
    meter, _ = mapped_meter(fake_stripe)
    customer = provider_customer()
    events(customer, meter, [(at(0, 10), 4)], now=at(0, 20))
    run(fake_stripe, customer, meter, at(1, 3))
    events(customer, meter, [(at(0, 50), 1)], now=at(0, 55) + timedelta(days=34, hours=23))
    run(fake_stripe, customer, meter, at(1, 3) + timedelta(days=35))
    assert rows(customer, meter) == [("push", "sent", Decimal(4)), ("correction", "unreconcilable", Decimal(1))]
    assert len(fake_stripe.received("POST", METER_EVENTS)) == 1
