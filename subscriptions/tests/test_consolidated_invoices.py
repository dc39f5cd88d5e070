"""Consolidated invoices: a customer's subscriptions with the same currency, collection method and aligned
cycle are billed on one invoice at renewal (a customer setting), each line carrying its subscription; the
upcoming invoice is that same invoice; once per period, whoever renews."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from catalog.tests.factories import CouponFactory
from customers.tests.factories import CustomerFactory
from invoicing.models import Invoice, InvoiceCycle
from invoicing.serializers import draft_data, invoice_data
from subscriptions.services.preview import subscription_upcoming_invoice
from subscriptions.services.renewal import renew_subscriptions_job
from subscriptions.tests.support import at, fixed_price, metered_price, subscribe, use

pytestmark = pytest.mark.django_db
FEB28, MAR31 = at(2, 28), at(3, 31)


def _cycle_invoices(customer):
    return list(Invoice.objects.filter(customer=customer, billing_reason="subscription_cycle").order_by("created_at"))


def _shape(data):
    return [(line["subscription"], line["kind"], line["price"], line["amount"]) for line in data["lines"]]


def test_two_subscriptions_on_one_invoice_each_line_carrying_its_subscription(api):
    customer = CustomerFactory(invoice_consolidation=True)
    seats, calls = fixed_price("1000"), metered_price(unit="1")
    first, _ = subscribe(customer, seats, quantity=Decimal(2))
    second, _ = subscribe(customer, calls)
    use(customer, calls, 300, at(2, 10))
    preview = draft_data(subscription_upcoming_invoice(subscription=second, now=at(2, 20)))

    assert renew_subscriptions_job(now=FEB28)["invoices"] == 1
    (invoice,) = _cycle_invoices(customer)
    data = invoice_data(invoice)
    expected = sorted(
        [(first.id, "fixed", seats.id, 2000), (second.id, "usage", calls.id, 300)], key=lambda row: row[0]
    )
    assert _shape(data) == expected
    assert (invoice.subtotal, invoice.total, invoice.amount_due) == (2300, 2300, 2300)
    assert invoice.subscription_id == min(first.id, second.id)
    assert (invoice.period_start, invoice.period_end) == (FEB28, MAR31)
    # The other subscription's period is guarded too.
    assert list(InvoiceCycle.objects.values_list("subscription_id", "cycle_period_start")) == [
        (max(first.id, second.id), FEB28)
    ]
    # The preview of either subscription was this very invoice.
    assert _shape(preview) == _shape(data)
    assert (preview["subtotal"], preview["total"]) == (data["subtotal"], data["total"])
    # Through the API too: every line names its subscription.
    body = api.get(f"/api/v1/invoices/{invoice.id}").json()
    assert {line["subscription"] for line in body["lines"]} == {first.id, second.id}
    # Both subscriptions moved on.
    for sub in (first, second):
        sub.refresh_from_db()
        assert sub.current_period_start == FEB28


def test_each_subscription_keeps_its_own_coupon_and_taxes_add_up():
    customer = CustomerFactory(invoice_consolidation=True)
    coupon = CouponFactory(percent_off=Decimal(50), duration="forever")
    first, _ = subscribe(customer, fixed_price("1000"), coupon=coupon)
    subscribe(customer, fixed_price("600"))
    renew_subscriptions_job(now=FEB28)
    (invoice,) = _cycle_invoices(customer)
    assert (invoice.subtotal, invoice.discount, invoice.total) == (1600, 500, 1100)
    discount = invoice.lines.get(kind="discount")
    assert discount.subscription_id == first.id


def test_not_consolidated_without_the_setting_or_when_cycles_differ():
    plain = CustomerFactory()
    subscribe(plain, fixed_price("1000"))
    subscribe(plain, fixed_price("600"))
    # No currency of its own yet, so it may be sold prices in two currencies (one with a currency is refused
    # the second: `currency_mismatch`).
    consolidating = CustomerFactory(invoice_consolidation=True, currency="")
    subscribe(consolidating, fixed_price("1000"))
    subscribe(consolidating, fixed_price("600", currency="eur"))  # another currency
    subscribe(consolidating, fixed_price("700"), collection_method="send_invoice", days_until_due=30)
    subscribe(consolidating, fixed_price("800"), now=at(2, 5))  # another cycle
    renew_subscriptions_job(now=FEB28)
    assert len(_cycle_invoices(plain)) == 2
    assert len(_cycle_invoices(consolidating)) == 3


def test_a_period_is_never_billed_twice_by_a_consolidated_invoice():
    customer = CustomerFactory(invoice_consolidation=True)
    first, _ = subscribe(customer, fixed_price("1000"))
    second, _ = subscribe(customer, fixed_price("600"))
    renew_subscriptions_job(now=FEB28)
    assert renew_subscriptions_job(now=FEB28)["invoices"] == 0  # a re-run finds nothing due
    # The database refuses a second cycle invoice of the other subscription's period.
    with pytest.raises(IntegrityError), transaction.atomic():
        InvoiceCycle.objects.create(
            invoice=_cycle_invoices(customer)[0], subscription_id=max(first.id, second.id), cycle_period_start=FEB28
        )
    assert len(_cycle_invoices(customer)) == 1
    renew_subscriptions_job(now=MAR31)
    assert len(_cycle_invoices(customer)) == 2


def test_the_setting_through_the_api(api):
    response = api.post("/api/v1/customers", {"external_id": "c-1", "invoice_consolidation": True}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["invoice_consolidation"] is True
    patched = api.patch(f"/api/v1/customers/{response.json()['id']}", {"invoice_consolidation": False}, format="json")
    assert patched.json()["invoice_consolidation"] is False
    bad = api.post("/api/v1/customers", {"external_id": "c-2", "invoice_consolidation": "sometimes"}, format="json")
    assert (bad.status_code, bad.json()["error"]["param"]) == (400, "invoice_consolidation")
