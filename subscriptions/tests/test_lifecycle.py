"""Subscription lifecycle: create (with and without trial, backdated, future anchor), cancel, reactivate,
and every illegal transition of subscriptions and invoices."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from fractions import Fraction

import pytest

from billing_site.errors import Conflict
from billing_site.money import round_fraction
from customers.tests.factories import CustomerFactory
from invoicing.models import Invoice
from invoicing.services import invoice_finalize, invoice_mark_uncollectible, invoice_void
from subscriptions.models import Subscription
from subscriptions.services.lifecycle import subscription_cancel, subscription_reactivate
from subscriptions.services.renewal import renew_subscriptions_job
from subscriptions.tests.support import (
    T0,
    at,
    event_types,
    fixed_price,
    invoices_of,
    kinds,
    metered_price,
    subscribe,
    use,
)

pytestmark = pytest.mark.django_db

FEB28 = at(2, 28)
MAR31 = at(3, 31)


# --- Create ---------------------------------------------------------------------------------------


def test_create_without_trial_is_active_and_bills_licensed_items_in_advance_at_once():
    seats, calls = fixed_price("1000"), metered_price()
    sub, invoice = subscribe(None, seats, calls, quantity=Decimal(3))
    assert sub.status == Subscription.Status.ACTIVE
    # Anchored on the 31st: the first period ends on Feb 28 (clamped), at the anchor's time of day.
    assert (sub.current_period_start, sub.current_period_end) == (T0, FEB28)
    assert sub.billing_cycle_anchor == T0 and sub.trial_start is None and sub.trial_end is None
    assert invoice.status == Invoice.Status.OPEN
    assert invoice.number == "INV-000001"
    assert invoice.billing_reason == Invoice.BillingReason.SUBSCRIPTION_CREATE
    assert invoice.finalized_at == T0 and invoice.cycle_period_start == T0
    # Only the licensed item: the metered one is billed in arrears.
    [line] = invoice.lines.all()
    assert (line.kind, line.amount, line.quantity, line.price_id) == ("fixed", 3000, 3, seats.id)
    assert (line.period_start, line.period_end) == (T0, FEB28)
    assert (invoice.period_start, invoice.period_end) == (T0, FEB28)
    assert (invoice.subtotal, invoice.total, invoice.amount_due, invoice.amount_remaining) == (3000, 3000, 3000, 3000)
    assert {"subscription.created"} <= set(event_types(sub.id))
    assert {"invoice.created", "invoice.finalized"} <= set(event_types(invoice.id))


def test_a_metered_only_subscription_starts_with_a_zero_invoice_that_is_paid_at_once():
    _sub, invoice = subscribe(None, metered_price())
    assert invoice.lines.count() == 0
    assert (invoice.total, invoice.amount_due, invoice.status) == (0, 0, Invoice.Status.PAID)
    assert invoice.paid_at == T0


def test_send_invoice_collection_gets_a_due_date_days_until_due_after_finalization():
    _, invoice = subscribe(None, fixed_price(), collection_method="send_invoice", days_until_due=14)
    assert invoice.collection_method == "send_invoice"
    assert invoice.due_date == T0 + timedelta(days=14)


def test_trial_starts_trialing_without_an_invoice_and_the_first_period_starts_at_trial_end():
    seats, calls = fixed_price("1000"), metered_price()
    customer = CustomerFactory()
    trial_end = T0 + timedelta(days=14)  # Feb 14 12:00
    sub, invoice = subscribe(customer, seats, calls, trial_end=trial_end)
    assert invoice is None and not Invoice.objects.exists()
    assert sub.status == Subscription.Status.TRIALING
    assert (sub.trial_start, sub.trial_end) == (T0, trial_end)
    assert (sub.current_period_start, sub.current_period_end) == (T0, trial_end)
    use(customer, calls, 100, T0 + timedelta(days=1))  # during the trial: never billed

    assert renew_subscriptions_job(now=trial_end - timedelta(seconds=1))["invoices"] == 0
    result = renew_subscriptions_job(now=trial_end)
    assert result == {"renewed": 1, "invoices": 1, "failed": 0}
    sub.refresh_from_db()
    assert sub.status == Subscription.Status.ACTIVE
    assert (sub.current_period_start, sub.current_period_end) == (trial_end, at(3, 14))
    [first] = invoices_of(sub)
    assert first.billing_reason == Invoice.BillingReason.SUBSCRIPTION_CREATE
    assert first.number == "INV-000001" and first.finalized_at == trial_end
    assert kinds(first) == [("fixed", 1000)]
    assert "subscription.trial_ended" in event_types(sub.id)

    # The first paid period bills only the usage after the trial.
    use(customer, calls, 10, at(2, 20), now=at(2, 20))
    renew_subscriptions_job(now=at(3, 14))
    second = invoices_of(sub)[1]
    usage = [line for line in second.lines.all() if line.kind == "usage"]
    assert [(u.quantity, u.amount, u.period_start, u.period_end) for u in usage] == [(10, 5, trial_end, at(3, 14))]


def test_trial_with_a_later_billing_cycle_anchor_prorates_the_first_period():
    price = fixed_price("3100")
    trial_end = at(2, 10)
    sub, _ = subscribe(None, price, trial_end=trial_end, billing_cycle_anchor=at(2, 20))
    renew_subscriptions_job(now=trial_end)
    sub.refresh_from_db()
    assert (sub.current_period_start, sub.current_period_end) == (trial_end, at(2, 20))
    [invoice] = invoices_of(sub)
    # [Jan 20, Feb 20) has 31 days; 10 of them are left at Feb 10.
    assert kinds(invoice) == [("fixed", 1000)]


def test_backdated_start_is_caught_up_by_the_next_renewal_one_invoice_per_period_in_order():
    customer = CustomerFactory()
    seats, calls = fixed_price("1000"), metered_price()
    start = at(10, 31, year=2025)
    sub, created = subscribe(customer, seats, calls, start_date=start)
    assert (sub.current_period_start, sub.current_period_end) == (start, at(11, 30, year=2025))
    assert created.period_start == start and created.finalized_at == T0
    use(customer, calls, 8, at(1, 5), now=T0)  # in [Dec 31, Jan 31)

    result = renew_subscriptions_job(now=T0)
    assert result == {"renewed": 1, "invoices": 3, "failed": 0}
    sub.refresh_from_db()
    assert (sub.current_period_start, sub.current_period_end) == (T0, FEB28)
    cycle = invoices_of(sub)[1:]
    assert [i.number for i in cycle] == ["INV-000002", "INV-000003", "INV-000004"]
    assert [(i.period_start, i.period_end) for i in cycle] == [
        (at(11, 30, year=2025), at(12, 31, year=2025)),
        (at(12, 31, year=2025), T0),
        (T0, FEB28),
    ]
    # Each invoice: the licensed item for its period in advance, the metered one for the period before.
    for invoice in cycle:
        fixed = [line for line in invoice.lines.all() if line.kind == "fixed"]
        usage = [line for line in invoice.lines.all() if line.kind == "usage"]
        assert [(f.period_start, f.amount) for f in fixed] == [(invoice.period_start, 1000)]
        assert len(usage) == 1 and usage[0].period_end == invoice.period_start
    assert [line.quantity for i in cycle for line in i.lines.all() if line.kind == "usage"] == [0, 0, 8]
    # A second run finds nothing to do.
    assert renew_subscriptions_job(now=T0)["invoices"] == 0


def test_catch_up_after_the_beat_was_stopped():
    sub, _ = subscribe(None, fixed_price())
    assert renew_subscriptions_job(now=at(4, 1))["invoices"] == 2  # Feb 28 and Mar 31 boundaries
    sub.refresh_from_db()
    assert (sub.current_period_start, sub.current_period_end) == (MAR31, at(4, 30))


def test_billing_cycle_anchor_in_the_future_prorates_a_partial_first_period():
    sub, invoice = subscribe(None, fixed_price("3100"), billing_cycle_anchor=at(2, 15))
    assert (sub.current_period_start, sub.current_period_end) == (T0, at(2, 15))
    [line] = invoice.lines.all()
    # The full period containing T0 is [Jan 15, Feb 15): 31 days, 15 of them left.
    assert line.amount == round_fraction(3100 * Fraction(15, 31)) == 1500
    assert "prorated" in line.description
    assert (line.period_start, line.period_end) == (T0, at(2, 15))
    renew_subscriptions_job(now=at(2, 15))
    sub.refresh_from_db()
    assert (sub.current_period_start, sub.current_period_end) == (at(2, 15), at(3, 15))
    assert kinds(invoices_of(sub)[1]) == [("fixed", 3100)]


# --- Cancel and reactivate ------------------------------------------------------------------------


def _metered_sub():
    customer = CustomerFactory()
    seats, calls = fixed_price("2800"), metered_price(unit="0.5")
    sub, _ = subscribe(customer, seats, calls)
    return customer, sub, seats, calls


def test_cancel_now_ends_the_subscription_with_a_final_usage_invoice():
    customer, sub, _, calls = _metered_sub()
    use(customer, calls, 100, at(2, 10))
    use(customer, calls, 40, at(2, 20), now=at(2, 20))  # after the cancellation: not billed
    sub, invoice = subscription_cancel(subscription=sub, at_period_end=False, prorate=False, now=at(2, 14))
    assert sub.status == Subscription.Status.CANCELED
    assert sub.ended_at == sub.canceled_at == at(2, 14) and not sub.cancel_at_period_end
    assert invoice.billing_reason == Invoice.BillingReason.SUBSCRIPTION_CANCEL
    [line] = invoice.lines.all()
    assert (line.kind, line.quantity, line.amount) == ("usage", 100, 50)
    assert (line.period_start, line.period_end) == (T0, at(2, 14))
    assert "subscription.canceled" in event_types(sub.id)
    # An ended subscription is never renewed again.
    assert renew_subscriptions_job(now=at(6, 1))["invoices"] == 0


def test_cancel_now_with_prorate_credits_the_unused_licensed_time():
    customer, sub, seats, calls = _metered_sub()
    use(customer, calls, 100, at(2, 10))
    _, invoice = subscription_cancel(subscription=sub, at_period_end=False, prorate=True, now=at(2, 14))
    # [Jan 31, Feb 28) has 28 days; 14 are unused.
    assert kinds(invoice) == [("usage", 50), ("proration", -1400)]
    credit = invoice.lines.get(kind="proration")
    assert credit.description == f"Unused time on {seats.name}"
    assert (credit.period_start, credit.period_end) == (at(2, 14), FEB28)
    assert invoice.subtotal == invoice.total == -1350
    assert invoice.amount_due == 0


def test_cancel_at_period_end_sets_a_flag_and_renewal_ends_it_with_a_final_usage_invoice():
    customer, sub, _, calls = _metered_sub()
    sub, invoice = subscription_cancel(subscription=sub, at_period_end=True, prorate=False, now=at(2, 5))
    assert invoice is None
    assert sub.status == Subscription.Status.ACTIVE and sub.cancel_at_period_end
    assert sub.canceled_at == at(2, 5) and sub.ended_at is None
    use(customer, calls, 60, at(2, 20), now=at(2, 20))

    result = renew_subscriptions_job(now=FEB28)
    assert result["invoices"] == 1
    sub.refresh_from_db()
    assert sub.status == Subscription.Status.CANCELED and sub.ended_at == FEB28
    final = invoices_of(sub)[-1]
    assert final.billing_reason == Invoice.BillingReason.SUBSCRIPTION_CANCEL
    assert kinds(final) == [("usage", 30)]  # no charge for a period that will not be served
    assert final.lines.get().period_end == FEB28
    assert renew_subscriptions_job(now=at(4, 1))["invoices"] == 0


def test_reactivate_clears_a_pending_cancellation_and_renewal_goes_on():
    _, sub, _, _ = _metered_sub()
    subscription_cancel(subscription=sub, at_period_end=True, prorate=False, now=at(2, 5))
    sub = subscription_reactivate(subscription=sub, now=at(2, 6))
    assert not sub.cancel_at_period_end and sub.canceled_at is None
    renew_subscriptions_job(now=FEB28)
    sub.refresh_from_db()
    assert sub.status == Subscription.Status.ACTIVE and sub.current_period_start == FEB28


def test_reactivate_without_a_pending_cancellation_or_after_the_end_is_409():
    _, sub, _, _ = _metered_sub()
    with pytest.raises(Conflict):
        subscription_reactivate(subscription=sub, now=at(2, 1))
    subscription_cancel(subscription=sub, at_period_end=False, prorate=False, now=at(2, 1))
    with pytest.raises(Conflict) as exc:
        subscription_reactivate(subscription=sub, now=at(2, 2))
    assert exc.value.status_code == 409


def test_canceling_twice_is_409():
    _, sub, _, _ = _metered_sub()
    subscription_cancel(subscription=sub, at_period_end=True, prorate=False, now=at(2, 1))
    with pytest.raises(Conflict):
        subscription_cancel(subscription=sub, at_period_end=True, prorate=False, now=at(2, 2))
    subscription_cancel(subscription=sub, at_period_end=False, prorate=False, now=at(2, 3))
    for at_period_end in (True, False):
        with pytest.raises(Conflict):
            subscription_cancel(subscription=sub, at_period_end=at_period_end, prorate=False, now=at(2, 4))


def test_cancel_during_the_trial_bills_no_trial_usage():
    customer = CustomerFactory()
    seats, calls = fixed_price(), metered_price()
    sub, _ = subscribe(customer, seats, calls, trial_end=at(2, 14))
    use(customer, calls, 100, at(2, 1))
    sub, invoice = subscription_cancel(subscription=sub, at_period_end=False, prorate=True, now=at(2, 5))
    assert sub.status == Subscription.Status.CANCELED
    assert invoice is None or invoice.total == 0
    assert not Invoice.objects.filter(total__gt=0).exists()


def test_cancel_at_period_end_during_the_trial_ends_at_trial_end_without_charging():
    customer = CustomerFactory()
    seats, calls = fixed_price(), metered_price()
    sub, _ = subscribe(customer, seats, calls, trial_end=at(2, 14))
    use(customer, calls, 100, at(2, 1))
    subscription_cancel(subscription=sub, at_period_end=True, prorate=False, now=at(2, 5))
    renew_subscriptions_job(now=at(2, 14))
    sub.refresh_from_db()
    assert sub.status == Subscription.Status.CANCELED and sub.ended_at == at(2, 14)
    assert not Invoice.objects.filter(total__gt=0).exists()


# --- Illegal invoice transitions ------------------------------------------------------------------


@pytest.fixture
def drafts(settings):
    settings.INVOICE_AUTO_FINALIZE = False

    def make() -> Invoice:
        _, invoice = subscribe(None, fixed_price())
        assert invoice.status == Invoice.Status.DRAFT and invoice.number is None
        return invoice

    return make


def test_draft_to_open_to_void(drafts):
    invoice = invoice_finalize(invoice=drafts(), now=T0)
    assert (invoice.status, invoice.number) == ("open", "INV-000001")
    invoice = invoice_void(invoice=invoice, now=T0)
    assert (invoice.status, invoice.voided_at, invoice.amount_remaining) == ("void", T0, 0)
    assert "invoice.voided" in event_types(invoice.id)


def test_a_draft_can_be_voided_without_taking_a_number(drafts):
    invoice = invoice_void(invoice=drafts(), now=T0)
    assert (invoice.status, invoice.number) == ("void", None)
    # The sequence is untouched: the next finalized invoice is still number one.
    assert invoice_finalize(invoice=drafts(), now=T0).number == "INV-000001"


def test_open_to_uncollectible(drafts):
    invoice = invoice_finalize(invoice=drafts(), now=T0)
    invoice = invoice_mark_uncollectible(invoice=invoice, now=T0)
    assert (invoice.status, invoice.marked_uncollectible_at) == ("uncollectible", T0)


@pytest.mark.parametrize(
    ("setup", "action"),
    [
        ("open", invoice_finalize),
        ("paid", invoice_finalize),
        ("void", invoice_finalize),
        ("paid", invoice_void),
        ("void", invoice_void),
        ("uncollectible", invoice_void),
        ("draft", invoice_mark_uncollectible),
        ("void", invoice_mark_uncollectible),
        ("paid", invoice_mark_uncollectible),
        ("uncollectible", invoice_mark_uncollectible),
        ("uncollectible", invoice_finalize),
    ],
)
def test_illegal_invoice_transitions_are_409_and_change_nothing(drafts, setup, action):
    invoice = drafts()
    if setup in ("open", "uncollectible", "void"):
        invoice = invoice_finalize(invoice=invoice, now=T0)
    if setup == "uncollectible":
        invoice = invoice_mark_uncollectible(invoice=invoice, now=T0)
    if setup == "void":
        invoice = invoice_void(invoice=invoice, now=T0)
    if setup == "paid":
        Invoice.objects.filter(pk=invoice.pk).update(status="paid", number="INV-999999", paid_at=T0)
        invoice.refresh_from_db()
    before = Invoice.objects.values().get(pk=invoice.pk)
    with pytest.raises(Conflict) as exc:
        action(invoice=invoice, now=T0 + timedelta(hours=1))
    assert exc.value.status_code == 409
    assert Invoice.objects.values().get(pk=invoice.pk) == before
