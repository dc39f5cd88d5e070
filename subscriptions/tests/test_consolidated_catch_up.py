"""Consolidated invoices when renewal catches up: a consolidating customer's subscriptions renewed long
after several periods ended (the job down for months) are renewed boundary by boundary, so every
catch-up period is one consolidated invoice, as the last one is."""

from __future__ import annotations

from decimal import Decimal

import pytest

from customers.tests.factories import CustomerFactory
from invoicing.models import Invoice, InvoiceCycle
from subscriptions.services.renewal import renew_subscriptions_job
from subscriptions.tests.support import T0, at, fixed_price, metered_price, subscribe, use

pytestmark = pytest.mark.django_db
FEB28, MAR31, APR30, MAY31 = at(2, 28), at(3, 31), at(4, 30), at(5, 31)


def _cycle_invoices(customer) -> list[Invoice]:
    return list(
        Invoice.objects.filter(customer=customer, billing_reason="subscription_cycle")
        .prefetch_related("lines")
        .order_by("period_start", "subscription_id")
    )


def _two_aligned(consolidation: bool):
    """Two monthly subscriptions of one customer, started together, with usage in every month."""
    customer = CustomerFactory(invoice_consolidation=consolidation)
    seats, calls = fixed_price("1000"), metered_price(unit="1")
    first, _ = subscribe(customer, seats, quantity=Decimal(2))
    second, _ = subscribe(customer, calls)
    for month, value in ((2, 100), (3, 200), (4, 300)):
        use(customer, calls, value, at(month, 10))
    return customer, first, second


def test_three_periods_late_gives_three_consolidated_invoices_equal_to_the_separate_ones():
    customer, first, second = _two_aligned(consolidation=True)
    alone, *_ = _two_aligned(consolidation=False)

    result = renew_subscriptions_job(now=APR30)  # nothing ran on Feb 28 nor Mar 31
    assert result["failed"] == 0
    invoices = _cycle_invoices(customer)
    assert [(i.period_start, i.period_end) for i in invoices] == [(FEB28, MAR31), (MAR31, APR30), (APR30, MAY31)]
    usage = {FEB28: 100, MAR31: 200, APR30: 300}  # the usage billed in arrears with each period's invoice
    for invoice in invoices:
        by_sub = sorted((line.subscription_id, line.kind, line.amount) for line in invoice.lines.all())
        ended = {FEB28: T0, MAR31: FEB28, APR30: MAR31}[invoice.period_start]
        assert by_sub == sorted([(first.id, "fixed", 2000), (second.id, "usage", usage[invoice.period_start])])
        assert invoice.lines.get(kind="usage").period_start == ended
        assert invoice.subscription_id == min(first.id, second.id)
    # The other subscription's periods are guarded, once each.
    assert sorted(
        InvoiceCycle.objects.filter(invoice__customer=customer).values_list("cycle_period_start", flat=True)
    ) == [
        FEB28,
        MAR31,
        APR30,
    ]
    # The same amounts as the non-consolidating customer's six invoices, period by period.
    separate = _cycle_invoices(alone)
    assert len(separate) == 6
    for invoice in invoices:
        same = [i for i in separate if i.period_start == invoice.period_start]
        assert len(same) == 2
        assert invoice.subtotal == sum(i.subtotal for i in same)
        assert invoice.total == sum(i.total for i in same)
    for sub in (first, second):
        sub.refresh_from_db()
        assert (sub.current_period_start, sub.current_period_end) == (APR30, MAY31)


def test_rerun_bills_nothing_more():
    customer, first, second = _two_aligned(consolidation=True)
    assert renew_subscriptions_job(now=APR30)["invoices"] == 3
    assert renew_subscriptions_job(now=APR30) == {"renewed": 0, "invoices": 0, "failed": 0}
    assert renew_subscriptions_job(now=at(5, 1)) == {"renewed": 0, "invoices": 0, "failed": 0}
    assert len(_cycle_invoices(customer)) == 3
    assert InvoiceCycle.objects.count() == 3
    # And the next boundary, on time, is one more consolidated invoice.
    use(customer, second.items.get().price, 50, at(5, 10))
    assert renew_subscriptions_job(now=MAY31)["invoices"] == 1
    last = _cycle_invoices(customer)[-1]
    assert (last.period_start, {line.subscription_id for line in last.lines.all()}) == (MAY31, {first.id, second.id})


def test_mixed_cycles_consolidate_only_what_shares_a_period():
    customer = CustomerFactory(invoice_consolidation=True)
    monthly, quarterly, calls = fixed_price("1000"), fixed_price("5000", every=3), metered_price(unit="1")
    first, _ = subscribe(customer, monthly)
    second, _ = subscribe(customer, calls)
    third, _ = subscribe(customer, quarterly)
    # Another anchor: its periods end on the 15th, never with the others.
    fourth, _ = subscribe(customer, fixed_price("700"), billing_cycle_anchor=at(2, 15))
    use(customer, calls, 40, at(3, 3))

    assert renew_subscriptions_job(now=APR30)["failed"] == 0
    invoices = _cycle_invoices(customer)
    shape = [(i.period_start, i.period_end, sorted({line.subscription_id for line in i.lines.all()})) for i in invoices]
    pair = sorted([first.id, second.id])
    assert sorted(shape) == sorted(
        [
            (FEB28, MAR31, pair),
            (MAR31, APR30, pair),
            (APR30, MAY31, pair),
            (APR30, at(7, 31), [third.id]),  # the quarter's next period: its own invoice
            (at(2, 15), at(3, 15), [fourth.id]),  # after its partial first period
            (at(3, 15), at(4, 15), [fourth.id]),
            (at(4, 15), at(5, 15), [fourth.id]),
        ]
    )
    march = next(i for i in invoices if i.period_start == MAR31)
    assert march.lines.get(kind="usage").amount == 40
    assert renew_subscriptions_job(now=APR30)["invoices"] == 0
