"""billing_audit's progressive-billing invariant: what threshold invoices billed of a period is what its
final invoice takes off, no more, no less."""

from __future__ import annotations

import pytest

from customers.tests.factories import CustomerFactory
from invoicing.models import InvoiceLine
from payments.audit import audit_all, audit_progressive_billing
from subscriptions.services.lifecycle import ItemSpec, subscription_create
from subscriptions.services.progressive import progressive_billing_job
from subscriptions.services.renewal import renew_subscriptions_job
from subscriptions.tests.support import T0, at, metered_price, use

pytestmark = pytest.mark.django_db


def test_the_final_invoice_takes_off_exactly_what_threshold_invoices_billed():
    customer = CustomerFactory()
    calls = metered_price(unit="1")
    subscription_create(
        customer=customer, items=[ItemSpec(price=calls, quantity=None)], progressive_billing_thresholds=[1000], now=T0
    )
    use(customer, calls, 1500, at(2, 3))
    progressive_billing_job(now=at(2, 4))
    assert audit_progressive_billing() == []  # not finally billed yet: nothing to compare
    renew_subscriptions_job(now=at(2, 28))
    assert audit_progressive_billing() == []
    assert not [p for p in audit_all() if p.startswith("progressive")]
    credit = InvoiceLine.objects.get(kind="progressive_credit")
    InvoiceLine.objects.filter(pk=credit.pk).update(amount=-1400)
    (problem,) = audit_progressive_billing()
    assert "billed 1500" in problem and "took off 1400" in problem
