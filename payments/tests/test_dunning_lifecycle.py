"""Dunning ends subscriptions through the lifecycle: what the customer used is billed exactly once whoever ends
the subscription, and every `subscription.*` event carries the same complete snapshot.

The bug this pins down: dunning used to cancel with a raw UPDATE, so the metered usage of the period it
ended in was never invoiced (only the fixed fee was), and its event carried two keys where the lifecycle's
carried seven.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from customers.tests.factories import CustomerFactory
from invoicing.models import Invoice, InvoiceLine
from payments.services.collection import invoices_collect_job
from payments.services.methods import payment_method_create
from subscriptions.models import Subscription
from subscriptions.serializers import SubscriptionOutput
from subscriptions.services.lifecycle import subscription_cancel, subscription_reactivate
from subscriptions.services.renewal import ended_late_usage_job, renew_subscriptions_job
from subscriptions.tests.support import T0, at, fixed_price, metered_price, subscribe, use
from webhooks.models import BillingEvent

pytestmark = pytest.mark.django_db

DAY = timedelta(days=1)


def _usage_billed(sub: Subscription) -> Decimal:
    lines = InvoiceLine.objects.filter(invoice__subscription=sub, kind__in=["usage", "late_usage"])
    return sum((line.quantity for line in lines), Decimal(0))


def _dun_to_the_end(now_start=T0) -> None:
    """Run the collection sweep at every retry of the default schedule (1, 3, 5, 7 days), and a bit after."""
    for day in (0, 1, 3, 5, 7):
        invoices_collect_job(now=now_start + day * DAY)


def _declining_subscription():
    customer = CustomerFactory(currency="usd")
    payment_method_create(customer=customer, token="tok_chargeDeclined", default=True, now=T0)
    calls = metered_price(unit="10")
    sub, first = subscribe(customer, fixed_price("1000"), calls)
    return customer, calls, sub, first


def test_dunning_that_cancels_bills_the_periods_usage_exactly_once(settings):
    settings.DUNNING_FINAL_ACTION = "canceled"
    customer, calls, sub, first = _declining_subscription()
    for day in range(2, 7):
        use(customer, calls, 20, at(2, day))  # 100 calls between the start and the end of dunning

    _dun_to_the_end()
    sub.refresh_from_db()
    first.refresh_from_db()
    assert sub.status == "canceled" and sub.cancellation_reason == "payment_failed"
    assert sub.ended_at == T0 + 7 * DAY
    assert first.status == "uncollectible"
    final = Invoice.objects.get(subscription=sub, billing_reason="subscription_cancel")
    assert [(line.kind, line.quantity, line.amount) for line in final.lines.all()] == [("usage", 100, 1000)]

    # The jobs that could bill it again run a month and two months later: nothing more is invoiced.
    for later in (T0 + 30 * DAY, T0 + 60 * DAY):
        renew_subscriptions_job(now=later)
        ended_late_usage_job(now=later)
    assert Invoice.objects.filter(subscription=sub).count() == 2
    assert _usage_billed(sub) == 100


def test_usage_that_arrives_after_dunning_ended_it_is_billed_once_as_late_usage(settings):
    settings.DUNNING_FINAL_ACTION = "canceled"
    customer, calls, sub, _ = _declining_subscription()
    use(customer, calls, 100, at(2, 3))
    _dun_to_the_end()
    # An event from before the end, ingested after it.
    use(customer, calls, 7, at(2, 6), now=T0 + 8 * DAY)
    for later in (T0 + 9 * DAY, T0 + 30 * DAY, T0 + 60 * DAY):
        renew_subscriptions_job(now=later)
        ended_late_usage_job(now=later)
    late = Invoice.objects.filter(subscription=sub, lines__kind="late_usage").distinct()
    assert late.count() == 1
    assert _usage_billed(sub) == 107


def test_dunning_and_an_operator_cancel_at_the_same_moment_bill_the_same(settings):
    settings.DUNNING_FINAL_ACTION = "canceled"
    dunned_customer, dunned_calls, dunned, _ = _declining_subscription()
    use(dunned_customer, dunned_calls, 100, at(2, 3))
    _dun_to_the_end()

    customer = CustomerFactory(currency="usd")
    calls = metered_price(unit="10")
    canceled, _ = subscribe(customer, fixed_price("1000"), calls)
    use(customer, calls, 100, at(2, 3))
    subscription_cancel(subscription=canceled, at_period_end=False, prorate=False, now=T0 + 7 * DAY)

    def final_lines(sub):
        invoice = Invoice.objects.get(subscription=sub, billing_reason="subscription_cancel")
        return [
            (line.kind, line.quantity, line.amount, line.period_start, line.period_end) for line in invoice.lines.all()
        ]

    assert final_lines(dunned) == final_lines(canceled)


def test_dunning_to_unpaid_keeps_the_subscription_and_its_usage_for_renewal(settings):
    settings.DUNNING_FINAL_ACTION = "unpaid"
    customer, calls, sub, _ = _declining_subscription()
    use(customer, calls, 100, at(2, 3))
    _dun_to_the_end()
    sub.refresh_from_db()
    assert sub.status == "unpaid"
    renew_subscriptions_job(now=at(2, 28))
    assert _usage_billed(sub) == 100


def test_every_subscription_event_carries_the_complete_snapshot(settings, api):
    """Created, updated (cancel at period end, reactivate, past_due, recovered), trial ended, renewed and
    canceled, from the lifecycle, renewal and dunning alike: the same keys as GET /subscriptions/{id}."""
    settings.DUNNING_FINAL_ACTION = "canceled"
    customer = CustomerFactory(currency="usd")
    payment_method_create(customer=customer, token="tok_chargeDeclined", default=True, now=T0)
    sub, _ = subscribe(customer, fixed_price("1000"), trial_end=T0 + 3 * DAY)
    subscription_cancel(subscription=sub, at_period_end=True, prorate=False, now=T0 + DAY)
    subscription_reactivate(subscription=sub, now=T0 + DAY)
    renew_subscriptions_job(now=T0 + 3 * DAY)  # trial ends: the first invoice, declined
    _dun_to_the_end(T0 + 3 * DAY)  # past_due, then canceled by dunning

    events = list(BillingEvent.objects.filter(object_id=sub.id).order_by("created_at", "id"))
    types = [event.type for event in events]
    assert types[0] == "subscription.created" and types[-1] == "subscription.canceled"
    assert {"subscription.updated", "subscription.trial_ended"} <= set(types)
    expected = set(SubscriptionOutput().fields)
    assert expected == set(api.get(f"/api/v1/subscriptions/{sub.id}").json())
    for event in events:
        assert set(event.data) == expected, event.type
        assert event.data["id"] == sub.id and event.data["customer"] == customer.id
    statuses = [event.data["status"] for event in events]
    assert "past_due" in statuses and statuses[-1] == "canceled"
    # The last event is the subscription as the API shows it now.
    assert events[-1].data == api.get(f"/api/v1/subscriptions/{sub.id}").json()
