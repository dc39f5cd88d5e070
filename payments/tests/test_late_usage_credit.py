"""Money that ended subscriptions give back reaches the customer: payments credits a negative late-usage
invoice to the balance, and registers its finalization hooks once."""

from __future__ import annotations

import pytest

from invoicing import hooks
from metering.usage import usage_cancel
from payments.selectors import balance_get
from subscriptions.services.lifecycle import subscription_cancel
from subscriptions.services.renewal import ended_late_usage_job
from subscriptions.tests.support import at, invoices_of, kinds, metered_price, subscribe, use

pytestmark = pytest.mark.django_db


def test_usage_canceled_after_the_end_is_credited():
    calls = metered_price(unit="10")
    sub, _ = subscribe(None, calls)
    event = use(sub.customer, calls, 4, at(2, 5))
    subscription_cancel(subscription=sub, at_period_end=False, prorate=False, now=at(2, 10))
    usage_cancel(event_ids=[event], reason="test traffic", now=at(2, 12))
    assert ended_late_usage_job(now=at(2, 12, hour=13))["invoices"] == 1
    credit = invoices_of(sub)[-1]
    assert kinds(credit) == [("late_usage", -40)]
    assert credit.total == -40 and credit.amount_due == 0
    assert balance_get(sub.customer, "usd") == 40  # a negative invoice credits the balance


def test_payments_registers_its_hook_once():
    from payments.services.ledger import invoices_negative_total_credit

    assert hooks.on_invoice_finalized.count(invoices_negative_total_credit) == 1
    hooks.hook_register(hooks.on_invoice_finalized, invoices_negative_total_credit)
    assert hooks.on_invoice_finalized.count(invoices_negative_total_credit) == 1
