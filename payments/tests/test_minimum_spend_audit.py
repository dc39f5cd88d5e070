"""The `minimum spend` billing_audit check (`payments.audit.audit_minimum_spend`): after every scenario of
late usage moving a billed period's minimum (subscriptions/tests/test_minimum_late_usage.py) and of
catch-up renewals consolidated (subscriptions/tests/test_consolidated_catch_up.py), every check holds;
a period billed below its minimum is reported, void invoices do not count."""

from __future__ import annotations

import pytest

from invoicing.models import Invoice, InvoiceLine
from payments.audit import CHECKS, audit_all, audit_minimum_spend
from subscriptions.services.renewal import renew_subscriptions_job
from subscriptions.tests import test_consolidated_catch_up as catch_up
from subscriptions.tests import test_minimum_late_usage as late
from subscriptions.tests.support import T0, at, invoices_of, use

pytestmark = pytest.mark.django_db
SCENARIOS = [(late, name) for name in dir(late) if name.startswith("test_")] + [
    (catch_up, name) for name in dir(catch_up) if name.startswith("test_")
]


def test_registered_in_audit_all():
    assert CHECKS["minimum spend"] is audit_minimum_spend


@pytest.mark.parametrize(("module", "name"), SCENARIOS, ids=[name for _, name in SCENARIOS])
def test_every_check_holds_after(module, name):
    getattr(module, name)()
    assert audit_minimum_spend() == []
    assert audit_all(now=at(6, 1)) == []


def test_audit_reports_a_period_below_its_minimum_and_skips_void_invoices():
    customer, sub, users = late._item_minimum()
    use(customer, users, 5000, at(2, 10))
    renew_subscriptions_job(now=late.FEB28)
    assert audit_minimum_spend() == []
    invoice = invoices_of(sub)[-1]
    Invoice.objects.filter(pk=invoice.pk).update(status=Invoice.Status.VOID)
    problems = audit_minimum_spend()
    assert len(problems) == 1 and sub.id in problems[0] and "below its minimum 10000" in problems[0]
    Invoice.objects.filter(pk=invoice.pk).update(status=invoice.status)
    assert audit_minimum_spend() == []
    InvoiceLine.objects.filter(invoice=invoice, kind="minimum").update(amount=4999)
    assert audit_minimum_spend() == [
        f"subscription {sub.id} period {T0.isoformat()}: item {sub.items.get().id} billed 9999, below its minimum 10000"
    ]
