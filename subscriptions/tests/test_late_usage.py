"""Usage that changes after its period was invoiced (a late event, a canceled event) is billed on the
next invoice as a `late_usage` line for the difference between the re-rated amount and what was billed."""

from __future__ import annotations

from datetime import timedelta

import pytest

from catalog.tests.factories import GRADUATED_USD
from customers.tests.factories import CustomerFactory
from invoicing.models import InvoiceLine, UsageWatermark
from metering.rollups import usage_rollup_job
from metering.usage import usage_cancel
from subscriptions.services.lifecycle import subscription_cancel
from subscriptions.services.renewal import renew_subscriptions_job
from subscriptions.tests.support import T0, at, fixed_price, invoices_of, kinds, metered_price, subscribe, use

pytestmark = pytest.mark.django_db

FEB28 = at(2, 28)
MAR31 = at(3, 31)
APR30 = at(4, 30)


@pytest.fixture
def billed():
    """A subscription whose first period [Jan 31, Feb 28) was billed 10 units at 1.00 (100 minor units each)."""
    customer = CustomerFactory()
    seats, calls = fixed_price("1000"), metered_price(unit="100")
    sub, _ = subscribe(customer, seats, calls)
    event = use(customer, calls, 10, at(2, 10))
    renew_subscriptions_job(now=FEB28)
    assert [(line.kind, line.amount) for line in invoices_of(sub)[-1].lines.all()] == [("fixed", 1000), ("usage", 1000)]
    return customer, sub, calls, event


def late_lines(invoice) -> list[tuple]:
    return [
        (line.quantity, line.amount, line.period_start, line.period_end, line.price_id)
        for line in invoice.lines.filter(kind=InvoiceLine.Kind.LATE_USAGE)
    ]


def test_an_event_ingested_late_becomes_a_positive_late_usage_line_once(billed):
    customer, sub, calls, _ = billed
    use(customer, calls, 3, at(2, 27), now=at(3, 5))
    renew_subscriptions_job(now=MAR31)
    invoice = invoices_of(sub)[-1]
    assert late_lines(invoice) == [(3, 300, T0, FEB28, calls.id)]
    line = invoice.lines.get(kind="late_usage")
    assert "Late usage" in line.description and "+3" in line.description
    # The March usage line is unaffected.
    assert [(line.quantity, line.period_start) for line in invoice.lines.filter(kind="usage")] == [(0, FEB28)]
    current = UsageWatermark.objects.get(period_start=T0, superseded=False)
    assert (current.value, current.event_count, current.amount_billed, current.invoice_id) == (13, 2, 1300, invoice.id)
    assert UsageWatermark.objects.filter(period_start=T0, superseded=True).count() == 1
    # Never billed twice.
    renew_subscriptions_job(now=APR30)
    assert late_lines(invoices_of(sub)[-1]) == []


def test_an_event_canceled_after_billing_becomes_a_negative_late_usage_line(billed):
    _customer, sub, _, event = billed
    result = usage_cancel(reason="duplicate", now=at(3, 2), event_ids=[event])
    assert result.canceled == 1
    renew_subscriptions_job(now=MAR31)
    invoice = invoices_of(sub)[-1]
    assert [(q, a) for q, a, *_ in late_lines(invoice)] == [(-10, -1000)]
    assert invoice.subtotal == 1000 + 0 - 1000
    renew_subscriptions_job(now=APR30)
    assert late_lines(invoices_of(sub)[-1]) == []


def test_a_late_event_and_a_cancellation_in_the_same_period_net_out(billed):
    customer, sub, calls, event = billed
    use(customer, calls, 4, at(2, 20), now=at(3, 1))
    usage_cancel(reason="wrong", now=at(3, 2), event_ids=[event])
    renew_subscriptions_job(now=MAR31)
    assert [(q, a) for q, a, *_ in late_lines(invoices_of(sub)[-1])] == [(-6, -600)]


def test_roll_ups_in_between_change_nothing(billed):
    customer, sub, calls, _event = billed
    usage_rollup_job(now=at(3, 1))
    use(customer, calls, 2, at(2, 25), now=at(3, 3))
    usage_rollup_job(now=at(3, 4))
    renew_subscriptions_job(now=MAR31)
    assert [(q, a) for q, a, *_ in late_lines(invoices_of(sub)[-1])] == [(2, 200)]


def test_an_event_arriving_at_the_end_of_the_backfill_window_is_not_dropped(billed):
    # Feb 27 12:00 + 35 days = Apr 3 12:00: still accepted on Apr 2. The next renewal after that is at
    # Apr 30, more than a backfill window after the period ended; the event must still be billed.
    customer, sub, calls, _ = billed
    renew_subscriptions_job(now=MAR31)
    use(customer, calls, 5, at(2, 27), now=at(4, 2))
    renew_subscriptions_job(now=APR30)
    assert [(q, a, s) for q, a, s, *_ in late_lines(invoices_of(sub)[-1])] == [(5, 500, T0)]


def test_an_old_period_canceled_long_after_billing_is_still_credited(billed):
    _customer, sub, _, event = billed
    renew_subscriptions_job(now=APR30)
    usage_cancel(reason="refund", now=at(5, 20), event_ids=[event])
    renew_subscriptions_job(now=at(5, 31))
    invoice = invoices_of(sub)[-1]
    assert [(q, a, s) for q, a, s, *_ in late_lines(invoice)] == [(-10, -1000, T0)]


def test_late_usage_is_priced_as_re_rated_minus_billed_on_tiered_prices():
    customer = CustomerFactory()
    calls = metered_price(tiers=GRADUATED_USD["tiers"])
    sub, _ = subscribe(customer, calls)
    use(customer, calls, 900, at(2, 10))
    renew_subscriptions_job(now=FEB28)
    assert kinds(invoices_of(sub)[-1]) == [("usage", 450)]
    use(customer, calls, 200, at(2, 20), now=at(3, 1))
    renew_subscriptions_job(now=MAR31)
    # 1100 units re-rated: 1000 x 0.5 + 100 x 0.1 + flat 500 = 1010, of which 450 was billed.
    assert kinds(invoices_of(sub)[-1]) == [("usage", 0), ("late_usage", 560)]


def test_the_final_invoice_of_an_immediate_cancel_carries_late_usage(billed):
    customer, sub, calls, _ = billed
    use(customer, calls, 1, at(2, 27), now=at(3, 2))
    _, invoice = subscription_cancel(subscription=sub, at_period_end=False, prorate=False, now=at(3, 3))
    assert [(q, a, s) for q, a, s, *_ in late_lines(invoice)] == [(1, 100, T0)]


def test_late_usage_of_several_periods_is_billed_per_period(billed):
    customer, sub, calls, _ = billed
    use(customer, calls, 1, at(3, 20), now=at(3, 20))
    renew_subscriptions_job(now=MAR31)
    use(customer, calls, 2, at(2, 27), now=at(4, 1))
    use(customer, calls, 3, at(3, 30), now=at(4, 1))
    renew_subscriptions_job(now=APR30)
    lines = sorted(late_lines(invoices_of(sub)[-1]), key=lambda line: line[2])
    assert [(q, a, s) for q, a, s, *_ in lines] == [(2, 200, T0), (3, 300, FEB28)]
    assert invoices_of(sub)[-1].lines.filter(kind="late_usage").count() == 2


def test_usage_during_the_period_being_billed_is_never_also_late(billed):
    customer, sub, calls, _ = billed
    use(customer, calls, 7, MAR31 - timedelta(hours=1))
    renew_subscriptions_job(now=MAR31)
    invoice = invoices_of(sub)[-1]
    assert kinds(invoice) == [("fixed", 1000), ("usage", 700)]
