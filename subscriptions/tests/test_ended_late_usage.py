"""Usage that arrives, or is canceled, after a subscription ended is still billed exactly once."""

from __future__ import annotations

import pytest

from subscriptions.services.lifecycle import subscription_cancel
from subscriptions.services.renewal import ended_late_usage_job
from subscriptions.tests.support import T0, at, invoices_of, kinds, metered_price, subscribe, use

pytestmark = pytest.mark.django_db


def test_late_event_after_the_end_is_billed_once():
    calls = metered_price(unit="10")
    sub, _ = subscribe(None, calls)
    use(sub.customer, calls, 5, at(2, 5))
    subscription_cancel(subscription=sub, at_period_end=False, prorate=False, now=at(2, 10))
    final = invoices_of(sub)[-1]
    assert kinds(final) == [("usage", 50)]
    assert ended_late_usage_job(now=at(2, 11)) == {"subscriptions": 1, "invoices": 0}
    # An event from before the cancellation arrives a day after it.
    use(sub.customer, calls, 3, at(2, 9), now=at(2, 11, hour=13))
    assert ended_late_usage_job(now=at(2, 12))["invoices"] == 1
    late = invoices_of(sub)[-1]
    assert kinds(late) == [("late_usage", 30)]
    assert late.billing_reason == "subscription_cancel" and late.status == "open"
    assert ended_late_usage_job(now=at(2, 13))["invoices"] == 0  # the watermark moved: never twice


def test_subscriptions_ended_long_ago_are_not_looked_at():
    calls = metered_price()
    sub, _ = subscribe(None, calls)
    subscription_cancel(subscription=sub, at_period_end=False, prorate=False, now=T0)
    assert ended_late_usage_job(now=at(4, 30)) == {"subscriptions": 0, "invoices": 0}
