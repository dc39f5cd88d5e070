"""The renewal batch's bulk writes (issue 9, "no loss"): the subscriptions' one UPDATE, the first payment
attempt written with the invoice, the entitlements invalidated once per batch."""

from __future__ import annotations

from datetime import timedelta

import pytest

from billing_site.bulk import bulk_update_rows
from customers.entitlements_cache import entitlements_state
from customers.tests.factories import CustomerFactory
from invoicing.models import Invoice
from invoicing.services import invoice_finalize
from subscriptions.models import Subscription
from subscriptions.services.renewal import renew_subscriptions_job
from subscriptions.tests.support import T0, at, fixed_price, invoices_of, metered_price, subscribe

pytestmark = pytest.mark.django_db
FEB28 = at(2, 28)


def test_bulk_update_rows_writes_each_row_its_own_values_nulls_included():
    subs = [subscribe(None, fixed_price())[0] for _ in range(3)]
    for n, sub in enumerate(subs):
        sub.current_period_end = FEB28 + timedelta(days=n)
        sub.cancel_at_period_end = n == 1
        sub.canceled_at = None if n == 0 else T0 + timedelta(hours=n)
        sub.coupon_periods_remaining = None if n == 2 else n + 3
        sub.cancellation_reason = ["", "requested", ""][n]
    untouched = subscribe(None, fixed_price())[0]
    fields = ["current_period_end", "cancel_at_period_end", "canceled_at", "coupon_periods_remaining"]
    assert bulk_update_rows(Subscription, subs, [*fields, "cancellation_reason"]) == 3
    for n, sub in enumerate(subs):
        row = Subscription.objects.get(pk=sub.pk)
        assert row.current_period_end == FEB28 + timedelta(days=n)
        assert row.cancel_at_period_end is (n == 1)
        assert row.canceled_at == (None if n == 0 else T0 + timedelta(hours=n))
        assert row.coupon_periods_remaining == (None if n == 2 else n + 3)
        assert row.cancellation_reason == ["", "requested", ""][n]
    row = Subscription.objects.get(pk=untouched.pk)
    assert (row.current_period_end, row.canceled_at) == (untouched.current_period_end, untouched.canceled_at)


def test_bulk_update_rows_of_nothing_writes_nothing_and_of_all_nulls_writes_nulls(django_assert_num_queries):
    with django_assert_num_queries(0):
        assert bulk_update_rows(Subscription, [], ["canceled_at"]) == 0
    subs = [subscribe(None, fixed_price())[0] for _ in range(2)]
    Subscription.objects.update(canceled_at=T0)
    for sub in subs:
        sub.canceled_at = None
    assert bulk_update_rows(Subscription, subs, ["canceled_at"]) == 2
    assert list(Subscription.objects.values_list("canceled_at", flat=True)) == [None, None]


def test_renewal_writes_the_first_payment_attempt_with_the_invoice():
    charged = subscribe(None, fixed_price("1000"))[0]
    sent = subscribe(None, fixed_price("1000"), collection_method="send_invoice", days_until_due=30)[0]
    free = subscribe(None, metered_price())[0]  # no usage: nothing due, paid on the spot
    assert renew_subscriptions_job(now=FEB28) == {"renewed": 3, "invoices": 3, "failed": 0}
    cycle = {sub.pk: invoices_of(sub)[-1] for sub in (charged, sent, free)}
    assert (cycle[charged.pk].status, cycle[charged.pk].next_payment_attempt) == ("open", FEB28)
    assert (cycle[sent.pk].status, cycle[sent.pk].next_payment_attempt) == ("open", None)
    assert (cycle[free.pk].status, cycle[free.pk].next_payment_attempt) == ("paid", None)
    # Run again: nothing is renewed twice, and no attempt is moved.
    assert renew_subscriptions_job(now=FEB28 + timedelta(minutes=5))["invoices"] == 0
    assert Invoice.objects.get(pk=cycle[charged.pk].pk).next_payment_attempt == FEB28


def test_a_single_finalization_writes_the_first_payment_attempt_too(settings):
    settings.INVOICE_AUTO_FINALIZE = False
    _, draft = subscribe(None, fixed_price("1000"))
    assert draft.next_payment_attempt is None
    invoice_finalize(invoice=draft, now=T0 + timedelta(hours=1))
    draft.refresh_from_db()
    assert (draft.status, draft.next_payment_attempt) == ("open", T0 + timedelta(hours=1))


def test_a_renewal_batch_drops_each_customers_cached_entitlements_after_its_commit(
    django_capture_on_commit_callbacks,
):
    customers = [CustomerFactory(), CustomerFactory()]
    other = CustomerFactory()
    with django_capture_on_commit_callbacks(execute=True):  # the subscriptions' creation commits
        for customer in customers:
            subscribe(customer, fixed_price())
        subscribe(other, fixed_price(), now=T0 + timedelta(days=10))  # not due on Feb 28
    before = {c.id: entitlements_state(c.id) for c in [*customers, other]}
    with django_capture_on_commit_callbacks(execute=False) as pending:
        assert renew_subscriptions_job(now=FEB28)["renewed"] == 2
    assert len(pending) == 1  # one invalidation for the whole batch, not one per subscription
    assert {c.id: entitlements_state(c.id) for c in [*customers, other]} == before  # not before the commit
    pending[0]()
    after = {c.id: entitlements_state(c.id) for c in [*customers, other]}
    assert all(after[c.id] != before[c.id] for c in customers)
    assert after[other.id] == before[other.id]
