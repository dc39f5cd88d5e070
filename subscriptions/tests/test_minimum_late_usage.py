"""Late usage for a billed period moves its minimum spend true-up too: the late-usage invoice carries, next
to the `late_usage` line, a `minimum` correction (negative when the usage now covers more of the minimum,
positive when canceled usage leaves more of it owed), once, and the period always meets its minimum
(`payments.audit.audit_minimum_spend`, checked after each of these scenarios by
payments/tests/test_minimum_spend_audit.py)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from customers.tests.factories import CustomerFactory
from invoicing.models import Invoice, InvoiceLine
from metering.usage import usage_cancel
from subscriptions.services.lifecycle import ItemSpec, subscription_cancel, subscription_create
from subscriptions.services.renewal import ended_late_usage_job, renew_subscriptions_job
from subscriptions.tests.support import T0, at, fixed_price, invoices_of, kinds, metered_price, use

pytestmark = pytest.mark.django_db
FEB28, MAR31, APR30 = at(2, 28), at(3, 31), at(4, 30)


def _item_minimum(minimum: int = 10000):
    """A metered item at 1 minor unit per unit with an item minimum."""
    customer = CustomerFactory()
    users = metered_price(unit="1")
    sub, _ = subscription_create(
        customer=customer, items=[ItemSpec(price=users, quantity=None, minimum_amount=minimum)], now=T0
    )
    return customer, sub, users


def _period_total(sub) -> int:
    """What every live invoice billed of February's ([Jan 31, Feb 28)) usage and minimum."""
    lines = InvoiceLine.objects.filter(
        invoice__subscription=sub,
        kind__in=("usage", "late_usage", "minimum"),
        period_start__gte=T0,
        period_start__lt=FEB28,
    ).exclude(invoice__status=Invoice.Status.VOID)
    return sum(line.amount for line in lines)


def _corrections(invoice) -> list[tuple[int, object]]:
    return [(line.amount, line.period_start) for line in invoice.lines.filter(kind="minimum")]


def test_late_usage_below_the_minimum_takes_the_same_amount_off_the_true_up():
    customer, sub, users = _item_minimum()
    use(customer, users, 5000, at(2, 10))
    renew_subscriptions_job(now=FEB28)
    assert kinds(invoices_of(sub)[-1]) == [("usage", 5000), ("minimum", 5000)]
    use(customer, users, 2000, at(2, 20), now=at(3, 2))
    renew_subscriptions_job(now=MAR31)
    invoice = invoices_of(sub)[-1]
    late = invoice.lines.get(kind="late_usage")
    assert late.amount == 2000 and late.period_start == T0
    # March's own true-up (nothing used: the whole minimum) and February's correction.
    by_period = {line.period_start: line.amount for line in invoice.lines.filter(kind="minimum")}
    assert by_period == {FEB28: 10000, T0: -2000}
    correction = invoice.lines.get(kind="minimum", period_start=T0)
    assert correction.subscription_item_id == sub.items.get().id and correction.period_end == FEB28
    assert "Minimum spend correction" in correction.description
    assert _period_total(sub) == 10000  # the minimum, still exactly


def test_late_usage_crossing_the_minimum_gives_back_the_whole_true_up_and_bills_the_rest():
    customer, sub, users = _item_minimum()
    use(customer, users, 5000, at(2, 10))
    renew_subscriptions_job(now=FEB28)
    use(customer, users, 7000, at(2, 20), now=at(3, 2))
    renew_subscriptions_job(now=MAR31)
    invoice = invoices_of(sub)[-1]
    assert invoice.lines.get(kind="late_usage").amount == 7000
    assert invoice.lines.get(kind="minimum", period_start=T0).amount == -5000
    assert _period_total(sub) == 12000  # usage above the minimum is billed as it is


def test_late_usage_above_the_minimum_adds_no_correction():
    customer, sub, users = _item_minimum()
    use(customer, users, 12000, at(2, 10))
    renew_subscriptions_job(now=FEB28)
    assert kinds(invoices_of(sub)[-1]) == [("usage", 12000)]
    use(customer, users, 1000, at(2, 20), now=at(3, 2))
    use(customer, users, 10000, at(3, 10))
    renew_subscriptions_job(now=MAR31)
    invoice = invoices_of(sub)[-1]
    assert invoice.lines.get(kind="late_usage").amount == 1000
    assert not invoice.lines.filter(kind="minimum").exists()  # March used 10000 too: no true-up at all


def test_canceled_usage_dropping_below_the_minimum_bills_a_positive_correction():
    customer, sub, users = _item_minimum()
    use(customer, users, 5000, at(2, 10))
    event = use(customer, users, 7000, at(2, 11))
    renew_subscriptions_job(now=FEB28)
    assert kinds(invoices_of(sub)[-1]) == [("usage", 12000)]
    assert usage_cancel(reason="duplicate", now=at(3, 2), event_ids=[event]).canceled == 1
    renew_subscriptions_job(now=MAR31)
    invoice = invoices_of(sub)[-1]
    assert invoice.lines.get(kind="late_usage").amount == -7000
    assert invoice.lines.get(kind="minimum", period_start=T0).amount == 5000
    assert _period_total(sub) == 10000


def test_subscription_minimum_is_corrected_with_licensed_items_counting():
    customer = CustomerFactory()
    fee, units = fixed_price("5000"), metered_price(unit="1000")
    sub, _ = subscription_create(
        customer=customer,
        items=[ItemSpec(price=fee, quantity=Decimal(1)), ItemSpec(price=units, quantity=None)],
        minimum_amount=10000,
        now=T0,
    )
    use(customer, units, 3, at(2, 10))
    renew_subscriptions_job(now=FEB28)
    assert kinds(invoices_of(sub)[-1]) == [("fixed", 5000), ("usage", 3000), ("minimum", 2000)]
    use(customer, units, 1, at(2, 20), now=at(3, 2))  # below: 5000 + 4000 still short of 10000
    use(customer, units, 6, at(3, 10))
    renew_subscriptions_job(now=MAR31)
    march = invoices_of(sub)[-1]
    correction = march.lines.get(kind="minimum", period_start=T0)
    assert (correction.amount, correction.subscription_item_id, correction.price_id) == (-1000, None, None)
    assert not march.lines.filter(kind="minimum", period_start=FEB28).exists()  # 5000 + 6000 in March
    use(customer, units, 3, at(2, 27), now=at(4, 1))  # crossing: 5000 + 7000, the 1000 left goes back
    renew_subscriptions_job(now=APR30)
    april = invoices_of(sub)[-1]
    assert [(line.amount, line.period_start) for line in april.lines.filter(kind="late_usage")] == [(3000, T0)]
    assert sorted(_corrections(april)) == [(-1000, T0), (5000, MAR31)]  # April: only the fee


def test_item_and_subscription_minimums_are_both_corrected():
    customer = CustomerFactory()
    users = metered_price(unit="1")
    sub, _ = subscription_create(
        customer=customer,
        items=[ItemSpec(price=users, quantity=None, minimum_amount=6000)],
        minimum_amount=8000,
        now=T0,
    )
    use(customer, users, 1000, at(2, 10))
    renew_subscriptions_job(now=FEB28)
    # The item's true-up (5000) counts for the subscription: 6000, short of 8000 by 2000.
    assert kinds(invoices_of(sub)[-1]) == [("usage", 1000), ("minimum", 5000), ("minimum", 2000)]
    use(customer, users, 6000, at(2, 20), now=at(3, 2))  # 7000: the item's true-up goes, 1000 still owed
    use(customer, users, 9000, at(3, 10))
    renew_subscriptions_job(now=MAR31)
    invoice = invoices_of(sub)[-1]
    lines = {(line.subscription_item_id, line.amount) for line in invoice.lines.filter(kind="minimum")}
    assert lines == {(sub.items.get().id, -5000), (None, -1000)}
    assert _period_total(sub) == 8000


def test_running_the_jobs_twice_corrects_once():
    customer, sub, users = _item_minimum()
    use(customer, users, 5000, at(2, 10))
    renew_subscriptions_job(now=FEB28)
    use(customer, users, 2000, at(2, 20), now=at(3, 2))
    renew_subscriptions_job(now=MAR31)
    assert renew_subscriptions_job(now=MAR31)["invoices"] == 0  # nothing due again
    renew_subscriptions_job(now=APR30)  # the next renewal re-rates February again: nothing changed
    assert not invoices_of(sub)[-1].lines.filter(period_start=T0).exists()
    assert InvoiceLine.objects.filter(invoice__subscription=sub, kind="minimum", period_start=T0).count() == 2
    assert _period_total(sub) == 10000


def test_ended_subscription_late_usage_job_corrects_the_prorated_minimum_once():
    customer, sub, users = _item_minimum(minimum=3100)
    renew_subscriptions_job(now=FEB28)
    use(customer, users, 100, at(3, 5))
    # Ends after 16 of March's 31 days: 16/31 of 3100 is 1600, 100 of it used.
    _, final = subscription_cancel(subscription=sub, at_period_end=False, prorate=False, now=at(3, 16))
    assert kinds(final) == [("usage", 100), ("minimum", 1500)]
    use(customer, users, 400, at(3, 10), now=at(3, 17))
    assert ended_late_usage_job(now=at(3, 18))["invoices"] == 1
    late = invoices_of(sub)[-1]
    assert kinds(late) == [("late_usage", 400), ("minimum", -400)]
    assert ended_late_usage_job(now=at(3, 19))["invoices"] == 0
    assert ended_late_usage_job(now=at(3, 20))["invoices"] == 0
    assert InvoiceLine.objects.filter(invoice__subscription=sub, kind="minimum", period_start=FEB28).count() == 2
