"""Changing a subscription's items: proration by the second, and the three proration behaviors."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from billing_site.errors import Conflict, InvalidRequest
from catalog.models import Price
from catalog.services import price_create
from customers.tests.factories import CustomerFactory
from invoicing.models import Invoice, PendingInvoiceItem
from subscriptions.services.lifecycle import ItemSpec, subscription_cancel, subscription_change
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
MID = at(2, 14)  # [Jan 31, Feb 28) is 28 days: half of it is left at Feb 14 12:00


def change(sub, *specs, behavior="create_prorations", now=MID):
    items = [ItemSpec(price=p, quantity=q) for p, q in specs]
    return subscription_change(subscription=sub, items=items, proration_behavior=behavior, now=now)


def pending(sub):
    return [
        (p.description, p.amount, p.period_start, p.period_end)
        for p in PendingInvoiceItem.objects.filter(subscription=sub).order_by("id")
    ]


def live(sub):
    return [
        (i.price_id, i.quantity)
        for i in sub.items.filter(removed_at__isnull=True).order_by("added_at", "created_at", "id")
    ]


def test_upgrade_mid_period_with_create_prorations_bills_the_difference_on_the_next_renewal():
    basic, pro = fixed_price("2800"), fixed_price("5600")
    sub, _ = subscribe(None, basic)
    sub, invoice = change(sub, (pro, None))
    assert invoice is None
    assert live(sub) == [(pro.id, 1)]
    assert pending(sub) == [
        (f"Unused time on {basic.name}", -1400, MID, FEB28),
        (f"Remaining time on {pro.name}", 2800, MID, FEB28),
    ]
    assert "subscription.updated" in event_types(sub.id)

    renew_subscriptions_job(now=FEB28)
    renewal = invoices_of(sub)[-1]
    assert kinds(renewal) == [("fixed", 5600), ("proration", -1400), ("proration", 2800)]
    assert renewal.total == 7000
    fixed = renewal.lines.get(kind="fixed")
    assert (fixed.price_id, fixed.period_start, fixed.period_end) == (pro.id, FEB28, at(3, 31))
    assert not PendingInvoiceItem.objects.filter(invoice__isnull=True).exists()
    # Billed once: the next renewal has no proration lines.
    renew_subscriptions_job(now=at(3, 31))
    assert kinds(invoices_of(sub)[-1]) == [("fixed", 5600)]


def test_downgrade_mid_period_with_always_invoice_invoices_the_credit_now():
    basic, pro = fixed_price("2800"), fixed_price("5600")
    sub, _ = subscribe(None, pro)
    sub, invoice = change(sub, (basic, None), behavior="always_invoice")
    assert invoice.billing_reason == Invoice.BillingReason.SUBSCRIPTION_UPDATE
    assert kinds(invoice) == [("proration", -2800), ("proration", 1400)]
    assert (invoice.subtotal, invoice.total, invoice.amount_due) == (-1400, -1400, 0)
    assert invoice.cycle_period_start is None
    assert not PendingInvoiceItem.objects.exists()
    renew_subscriptions_job(now=FEB28)
    assert kinds(invoices_of(sub)[-1]) == [("fixed", 2800)]


def test_quantity_change_credits_the_old_quantity_and_charges_the_new():
    seats = fixed_price("2800")
    sub, _ = subscribe(None, seats, quantity=Decimal(1))
    sub, _ = change(sub, (seats, Decimal(3)))
    assert live(sub) == [(seats.id, 3)]
    assert [(d.split(" on ")[0], a) for d, a, *_ in pending(sub)] == [("Unused time", -1400), ("Remaining time", 4200)]
    renew_subscriptions_job(now=FEB28)
    assert kinds(invoices_of(sub)[-1]) == [("fixed", 8400), ("proration", -1400), ("proration", 4200)]


def test_an_unchanged_change_prorates_nothing():
    seats = fixed_price("2800")
    sub, _ = subscribe(None, seats, quantity=Decimal(2))
    sub, invoice = change(sub, (seats, Decimal("2.000")), behavior="always_invoice")
    assert invoice is None and not PendingInvoiceItem.objects.exists()


def test_change_at_the_first_second_of_the_period_prorates_the_whole_period():
    basic, pro = fixed_price("2800"), fixed_price("5600")
    sub, _ = subscribe(None, basic)
    _, invoice = change(sub, (pro, None), behavior="always_invoice", now=T0)
    assert kinds(invoice) == [("proration", -2800), ("proration", 5600)]
    assert {(line.period_start, line.period_end) for line in invoice.lines.all()} == {(T0, FEB28)}


def test_change_at_the_last_second_of_the_period_prorates_one_second():
    seconds = 28 * 24 * 3600
    basic, pro = fixed_price(str(seconds)), fixed_price(str(2 * seconds))  # one and two minor units a second
    sub, _ = subscribe(None, basic)
    last = FEB28 - timedelta(seconds=1)
    _, invoice = change(sub, (pro, None), behavior="always_invoice", now=last)
    assert kinds(invoice) == [("proration", -1), ("proration", 2)]
    assert {(line.period_start, line.period_end) for line in invoice.lines.all()} == {(last, FEB28)}


def test_a_fraction_of_a_second_is_dropped():
    seconds = 28 * 24 * 3600
    basic, pro = fixed_price(str(seconds)), fixed_price(str(2 * seconds))
    sub, _ = subscribe(None, basic)
    _, invoice = change(sub, (pro, None), behavior="always_invoice", now=FEB28 - timedelta(microseconds=1))
    assert kinds(invoice) == [("proration", -1), ("proration", 2)]


def test_proration_behavior_none_changes_the_items_without_any_proration():
    basic, pro = fixed_price("2800"), fixed_price("5600")
    sub, _ = subscribe(None, basic)
    sub, invoice = change(sub, (pro, None), behavior="none")
    assert invoice is None and not PendingInvoiceItem.objects.exists()
    assert live(sub) == [(pro.id, 1)]
    renew_subscriptions_job(now=FEB28)
    assert kinds(invoices_of(sub)[-1]) == [("fixed", 5600)]


def test_always_invoice_also_bills_prorations_still_pending():
    basic, pro, team = fixed_price("2800"), fixed_price("5600"), fixed_price("11200")
    sub, _ = subscribe(None, basic)
    change(sub, (pro, None), now=at(2, 7))  # 21 of 28 days left: -2100 / +4200, pending
    _, invoice = change(sub, (team, None), behavior="always_invoice")
    assert kinds(invoice) == [("proration", -2800), ("proration", 5600), ("proration", -2100), ("proration", 4200)]
    assert not PendingInvoiceItem.objects.filter(invoice__isnull=True).exists()
    renew_subscriptions_job(now=FEB28)
    assert kinds(invoices_of(sub)[-1]) == [("fixed", 11200)]


def test_metered_items_are_not_prorated_and_usage_is_split_by_time():
    customer = CustomerFactory()
    seats, calls = fixed_price("2800"), metered_price(unit="0.5")
    calls_v2 = price_create(
        type="standalone",
        duration_amount=1,
        duration_unit="month",
        amount={"model": "fixed", "currency": "usd", "unit": "1", "flat": 0},
        meter_id=calls.meter_id,
        now=T0,
    )
    sub, _ = subscribe(customer, seats, calls)
    use(customer, calls, 10, at(2, 10))
    use(customer, calls, 20, at(2, 20))
    sub, invoice = change(sub, (seats, None), (calls_v2, None), behavior="always_invoice")
    assert invoice is None and not PendingInvoiceItem.objects.exists()
    assert live(sub) == [(seats.id, 1), (calls_v2.id, None)]

    renew_subscriptions_job(now=FEB28)
    renewal = invoices_of(sub)[-1]
    usage = [
        (line.price_id, line.quantity, line.amount, line.period_start, line.period_end)
        for line in renewal.lines.filter(kind="usage")
    ]
    assert usage == [(calls.id, 10, 5, T0, MID), (calls_v2.id, 20, 20, MID, FEB28)]
    assert kinds(renewal) == [("fixed", 2800), ("usage", 5), ("usage", 20)]
    # In the next period only the new item bills usage.
    use(customer, calls, 4, at(3, 10))
    renew_subscriptions_job(now=at(3, 31))
    assert [(line.price_id, line.quantity) for line in invoices_of(sub)[-1].lines.filter(kind="usage")] == [
        (calls_v2.id, 4)
    ]


def test_changes_during_a_trial_are_not_prorated():
    basic, pro = fixed_price("2800"), fixed_price("5600")
    sub, _ = subscribe(None, basic, trial_end=at(2, 20))
    _, invoice = change(sub, (pro, None), behavior="always_invoice")
    assert invoice is None and not PendingInvoiceItem.objects.exists()
    renew_subscriptions_job(now=at(2, 20))
    assert kinds(invoices_of(sub)[-1]) == [("fixed", 5600)]


def test_change_refuses_mixed_intervals_currencies_and_ended_subscriptions():
    basic = fixed_price("2800")
    sub, _ = subscribe(None, basic)
    with pytest.raises(InvalidRequest) as exc:
        change(sub, (fixed_price(interval="year"), None))
    assert exc.value.param == "items[0].price"
    with pytest.raises(InvalidRequest) as exc:
        change(sub, (basic, None), (fixed_price(currency="eur"), None))
    assert exc.value.param == "items[1].price"
    with pytest.raises(InvalidRequest) as exc:
        change(sub, (metered_price(), Decimal(1)))
    assert exc.value.param == "items[0].quantity"
    subscription_cancel(subscription=sub, at_period_end=False, prorate=False, now=MID)
    with pytest.raises(Conflict):
        change(sub, (basic, Decimal(2)))


def test_prorations_in_a_partial_first_period_use_the_full_cycle():
    # Anchored on Feb 15: the first period [Jan 31, Feb 15) is 15 of the 31 days of [Jan 15, Feb 15) and
    # was billed 1500 of 3100. At Feb 8, 7 of those days are left: worth 700, not 7/15 of a month.
    basic, pro = fixed_price("3100"), fixed_price("6200")
    sub, first = subscribe(None, basic, billing_cycle_anchor=at(2, 15))
    assert kinds(first) == [("fixed", 1500)]
    _, invoice = change(sub, (pro, None), behavior="always_invoice", now=at(2, 8))
    assert kinds(invoice) == [("proration", -700), ("proration", 1400)]
    assert {(line.period_start, line.period_end) for line in invoice.lines.all()} == {(at(2, 8), at(2, 15))}


def test_cancel_with_prorate_in_a_partial_first_period_credits_what_was_paid_for_the_rest():
    sub, first = subscribe(None, fixed_price("3100"), billing_cycle_anchor=at(2, 15))
    _, invoice = subscription_cancel(subscription=sub, at_period_end=False, prorate=True, now=at(2, 8))
    assert kinds(invoice) == [("proration", -700)]
    # Canceled at the first second, the credit is exactly what the partial period was billed.
    sub, first = subscribe(None, fixed_price("3100"), billing_cycle_anchor=at(2, 15))
    _, invoice = subscription_cancel(subscription=sub, at_period_end=False, prorate=True, now=T0)
    assert kinds(invoice) == [("proration", -first.total)]


def test_an_archived_price_already_on_the_subscription_can_stay_but_not_be_added():
    legacy, seats = fixed_price("2800"), fixed_price("1000")
    sub, _ = subscribe(None, legacy)
    Price.objects.filter(pk=legacy.pk).update(active=False)
    legacy.refresh_from_db()
    sub, _ = change(sub, (legacy, None), (seats, Decimal(2)), behavior="none")
    assert live(sub) == [(legacy.id, 1), (seats.id, 2)]
    sub, _ = change(sub, (legacy, Decimal(3)), (seats, Decimal(2)), behavior="none")
    assert live(sub) == [(seats.id, 2), (legacy.id, 3)]
    other, _ = subscribe(None, seats)
    with pytest.raises(InvalidRequest) as exc:
        change(other, (seats, None), (legacy, None))
    assert exc.value.param == "items[1].price" and exc.value.code == "price_inactive"


# --- Proration from what was actually charged (issue 10, item 5) -----------------------------------


def test_unused_time_of_a_discounted_period_credits_what_it_paid_not_the_list_price():
    from catalog.models import Coupon
    from catalog.tests.factories import CouponFactory

    half = CouponFactory(percent_off=Decimal("50"), duration=Coupon.Duration.FOREVER)
    plan = fixed_price("2900")
    sub, first = subscribe(None, plan, coupon=half)
    assert first.total == 1450
    # Canceled at the first second: the whole period is unused, and it paid 1450 (not 2900).
    _, invoice = subscription_cancel(subscription=sub, at_period_end=False, prorate=True, now=T0)
    assert kinds(invoice) == [("proration", -1450)]
    # Half way through a period: half of what was paid.
    sub, _ = subscribe(None, plan, coupon=half)
    _, invoice = subscription_cancel(subscription=sub, at_period_end=False, prorate=True, now=MID)
    assert kinds(invoice) == [("proration", -725)]
    # A change half way: the credit is half of the 1450 paid (the charge for the new price is unchanged).
    sub, _ = subscribe(None, plan, coupon=half)
    _, invoice = change(sub, (fixed_price("5800"), None), behavior="always_invoice")
    assert kinds(invoice) == [("proration", -725), ("proration", 2900)]


def test_a_once_coupon_period_then_a_full_price_period():
    from catalog.models import Coupon
    from catalog.tests.factories import CouponFactory

    once = CouponFactory(percent_off=Decimal("50"), duration=Coupon.Duration.ONCE)
    plan = fixed_price("2800")
    sub, first = subscribe(None, plan, coupon=once)
    assert first.total == 1400
    renew_subscriptions_job(now=FEB28)  # the second period is billed at full price
    sub.refresh_from_db()
    _, invoice = subscription_cancel(subscription=sub, at_period_end=False, prorate=True, now=FEB28)
    assert kinds(invoice)[-1] == ("proration", -2800)


# --- The customer's currency (issue 10, item 8) -----------------------------------------------------


def test_a_customer_billed_in_jpy_is_never_given_a_usd_subscription():
    customer = CustomerFactory(currency="jpy")
    with pytest.raises(InvalidRequest) as error:
        subscribe(customer, fixed_price("1000", currency="usd"))
    assert (error.value.code, error.value.param) == ("currency_mismatch", "items[0].price")
    assert not customer.subscriptions.exists()
    sub, _ = subscribe(customer, fixed_price("1000", currency="jpy"))
    with pytest.raises(InvalidRequest) as error:
        change(sub, (fixed_price("2000", currency="usd"), None))
    assert error.value.code == "currency_mismatch"


def test_the_currency_mismatch_through_the_api(api):
    customer = CustomerFactory(currency="jpy")
    price = fixed_price("1000", currency="usd")
    response = api.post(
        "/api/v1/subscriptions", {"customer": customer.id, "items": [{"price": price.id}]}, format="json"
    )
    assert response.status_code == 400
    body = response.json()["error"]
    assert (body["code"], body["param"]) == ("currency_mismatch", "items[0].price")
