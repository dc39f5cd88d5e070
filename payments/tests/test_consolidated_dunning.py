"""A consolidated invoice's subscriptions share its fate: a failed payment makes every one of them
past_due, paying it makes them active again, and the end of dunning reaches all of them."""

from __future__ import annotations

from datetime import timedelta

import pytest

from customers.tests.factories import CustomerFactory
from invoicing.models import Invoice
from payments.services.collection import invoices_collect_job
from payments.services.methods import payment_method_create
from subscriptions.models import Subscription
from subscriptions.services.renewal import renew_subscriptions_job
from subscriptions.tests.support import T0, at, fixed_price, subscribe

pytestmark = pytest.mark.django_db
FEB28 = at(2, 28)


def _consolidated(token):
    customer = CustomerFactory(invoice_consolidation=True)
    payment_method_create(customer=customer, token="tok_visa", default=True, now=T0)
    first, _ = subscribe(customer, fixed_price("1000"))
    second, _ = subscribe(customer, fixed_price("600"))
    invoices_collect_job(now=T0)  # the two first invoices are paid
    payment_method_create(customer=customer, token=token, default=True, now=T0 + timedelta(hours=1))
    renew_subscriptions_job(now=FEB28)
    invoice = Invoice.objects.get(customer=customer, billing_reason="subscription_cycle")
    return customer, (first, second), invoice


def _statuses(subs):
    return [Subscription.objects.get(pk=s.pk).status for s in subs]


def test_a_failed_payment_makes_every_subscription_past_due_and_paying_recovers_them():
    customer, subs, invoice = _consolidated("tok_chargeDeclined")
    assert invoices_collect_job(now=FEB28)["failed"] == 1
    assert _statuses(subs) == ["past_due", "past_due"]
    later = FEB28 + timedelta(hours=2)
    payment_method_create(customer=customer, token="tok_visa", default=True, now=later)
    assert invoices_collect_job(now=later)["collected"] == 1
    invoice.refresh_from_db()
    assert invoice.status == "paid"
    assert _statuses(subs) == ["active", "active"]


def test_the_end_of_dunning_reaches_every_subscription(settings):
    settings.DUNNING_FINAL_ACTION = "unpaid"
    _, subs, invoice = _consolidated("tok_insufficientFunds")
    for day in (0, 1, 3, 5, 7):
        invoices_collect_job(now=FEB28 + timedelta(days=day))
    invoice.refresh_from_db()
    assert invoice.status == "uncollectible"
    assert _statuses(subs) == ["unpaid", "unpaid"]
