"""Renewal prices a weighted_sum meter (seat-time) like other metered usage, in arrears: the period's
time-weighted value, carried over from the previous period, and re-rated when a late event changes it."""

from __future__ import annotations

from decimal import Decimal

import pytest

from catalog.services import price_create
from customers.tests.factories import CustomerFactory
from invoicing.models import InvoiceLine
from metering.rollups import usage_rollup_job
from metering.tests.factories import MeterFactory
from subscriptions.services.renewal import renew_subscriptions_job
from subscriptions.tests.support import T0, at, invoices_of, subscribe, use

pytestmark = pytest.mark.django_db

FEB28 = at(2, 28)
MAR31 = at(3, 31)
APR30 = at(4, 30)


@pytest.fixture
def seats():
    meter = MeterFactory(aggregation="weighted_sum")
    # 10.00 per seat-month.
    return price_create(
        type="standalone",
        duration_amount=1,
        duration_unit="month",
        amount={"model": "fixed", "currency": "usd", "unit": "1000", "flat": 0},
        meter_id=meter.id,
        now=T0,
    )


def usage_lines(invoice):
    return [(line.kind, line.quantity, line.amount) for line in invoice.lines.order_by("id")]


def test_seat_time_is_billed_prorated_and_carried_over(seats):
    customer = CustomerFactory()
    sub, _ = subscribe(customer, seats)
    # Period [Jan 31 12:00, Feb 28 12:00) is 28 days: 2 seats from the start, 6 from Feb 14 12:00.
    use(customer, seats, 2, T0)
    use(customer, seats, 6, at(2, 14))
    usage_rollup_job(now=at(2, 15))
    renew_subscriptions_job(now=FEB28)
    # (2 x 14 + 6 x 14) / 28 = 4 seat-months = 40.00.
    assert usage_lines(invoices_of(sub)[-1]) == [("usage", Decimal(4), 4000)]
    # March has no event: the 6 seats are carried over for the whole period.
    renew_subscriptions_job(now=MAR31)
    assert usage_lines(invoices_of(sub)[-1]) == [("usage", Decimal(6), 6000)]


def test_a_late_event_before_the_period_re_rates_it(seats):
    customer = CustomerFactory()
    sub, _ = subscribe(customer, seats)
    use(customer, seats, 2, T0)
    renew_subscriptions_job(now=FEB28)
    assert usage_lines(invoices_of(sub)[-1]) == [("usage", Decimal(2), 2000)]
    # Reported late (on Mar 1): from Feb 14 12:00 there were 4 seats. The February period is re-rated
    # on the next invoice; March is billed with the corrected carried value.
    use(customer, seats, 4, at(2, 14), now=at(3, 1))
    renew_subscriptions_job(now=MAR31)
    lines = {line.kind: (line.quantity, line.amount) for line in invoices_of(sub)[-1].lines.all()}
    assert lines[InvoiceLine.Kind.USAGE] == (Decimal(4), 4000)
    assert lines[InvoiceLine.Kind.LATE_USAGE] == (Decimal(1), 1000)  # (2 x 14 + 4 x 14) / 28 = 3, billed 2
    renew_subscriptions_job(now=APR30)
    assert InvoiceLine.objects.filter(invoice=invoices_of(sub)[-1], kind="late_usage").count() == 0
