"""Progressive billing: an invoice as soon as the period's usage amount crosses a threshold, exactly once per
crossing, and the period's final invoice subtracting what was already billed."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction

from customers.tests.factories import CustomerFactory
from invoicing.models import Invoice
from subscriptions.models import ProgressiveBilling
from subscriptions.services.lifecycle import ItemSpec, subscription_create
from subscriptions.services.preview import subscription_upcoming_invoice
from subscriptions.services.progressive import progressive_billing_job
from subscriptions.services.renewal import renew_subscriptions_job
from subscriptions.tests.support import T0, at, fixed_price, metered_price, use

pytestmark = pytest.mark.django_db
FEB28 = at(2, 28)


@pytest.fixture(autouse=True)
def _job_only(monkeypatch):
    """These tests are the job's: ingestion's own evaluation (test_progressive_ingest.py) is off."""
    from metering import listeners

    monkeypatch.setattr(listeners, "_listeners", [])


def _subscribe(customer, *prices, thresholds=(1000, 5000)):
    specs = [ItemSpec(price=p, quantity=None if p.meter_id else 1) for p in prices]
    sub, _ = subscription_create(
        customer=customer, items=specs, progressive_billing_thresholds=list(thresholds), now=T0
    )
    return sub


def _threshold_invoices(sub):
    invoices = Invoice.objects.filter(subscription=sub, billing_reason="subscription_threshold")
    return list(invoices.order_by("created_at"))


def _lines(invoice):
    return [(line.kind, line.amount) for line in invoice.lines.order_by("position")]


def test_an_invoice_when_a_threshold_is_crossed_and_the_final_invoice_subtracts_it():
    customer = CustomerFactory()
    calls = metered_price(unit="1")
    sub = _subscribe(customer, fixed_price("500"), calls)
    use(customer, calls, 400, at(2, 3))
    assert progressive_billing_job(now=at(2, 4)) == {"subscriptions": 1, "invoices": 0}  # below 1000
    use(customer, calls, 700, at(2, 5))
    assert progressive_billing_job(now=at(2, 6))["invoices"] == 1
    (first,) = _threshold_invoices(sub)
    assert _lines(first) == [("usage", 1100)]
    assert (first.status, first.total, first.period_start, first.period_end) == ("open", 1100, T0, at(2, 6))
    # Exactly once: running again (or concurrently, below) bills nothing more for the same crossing.
    assert progressive_billing_job(now=at(2, 7))["invoices"] == 0
    use(customer, calls, 5000, at(2, 10))  # 6100: the 5000 threshold
    progressive_billing_job(now=at(2, 11))
    second = _threshold_invoices(sub)[-1]
    assert _lines(second) == [("usage", 6100), ("progressive_credit", -1100)]
    assert second.total == 5000
    use(customer, calls, 100, at(2, 20))
    # The upcoming invoice and the final invoice: the whole period's usage less the 6100 billed.
    preview = subscription_upcoming_invoice(subscription=sub, now=at(2, 21))
    renew_subscriptions_job(now=FEB28)
    final = Invoice.objects.get(subscription=sub, billing_reason="subscription_cycle")
    assert _lines(final) == [("fixed", 500), ("usage", 6200), ("progressive_credit", -6100)]
    assert [(line.kind, line.amount) for line in preview.lines] == _lines(final)
    assert sorted(ProgressiveBilling.objects.values_list("threshold", "amount")) == [(1000, 1100), (5000, 5000)]
    # The next period starts over: its thresholds are crossed anew.
    use(customer, calls, 1500, at(3, 2))
    assert progressive_billing_job(now=at(3, 3))["invoices"] == 1
    assert _lines(_threshold_invoices(sub)[-1]) == [("usage", 1500)]


def test_several_thresholds_crossed_at_once_give_one_invoice():
    customer = CustomerFactory()
    calls = metered_price(unit="1")
    sub = _subscribe(customer, calls, thresholds=(100, 200, 300))
    use(customer, calls, 250, at(2, 3))
    assert progressive_billing_job(now=at(2, 4))["invoices"] == 1
    (invoice,) = _threshold_invoices(sub)
    assert sorted(ProgressiveBilling.objects.values_list("threshold", flat=True)) == [100, 200]
    assert set(ProgressiveBilling.objects.values_list("invoice_id", flat=True)) == {invoice.id}


def test_the_database_refuses_a_second_invoice_for_one_crossing():
    customer = CustomerFactory()
    calls = metered_price(unit="1")
    sub = _subscribe(customer, calls)
    use(customer, calls, 2000, at(2, 3))
    progressive_billing_job(now=at(2, 4))
    row = ProgressiveBilling.objects.get()
    with pytest.raises(IntegrityError), transaction.atomic():
        ProgressiveBilling.objects.create(
            subscription=sub, period_start=row.period_start, threshold=1000, invoice=row.invoice, amount=1
        )


def test_without_thresholds_nothing_is_billed_early():
    customer = CustomerFactory()
    calls = metered_price(unit="1")
    sub = _subscribe(customer, calls, thresholds=())
    use(customer, calls, 100000, at(2, 3))
    assert progressive_billing_job(now=at(2, 4)) == {"subscriptions": 0, "invoices": 0}
    assert not _threshold_invoices(sub)


@pytest.mark.parametrize(
    ("thresholds", "param"),
    [([0], "progressive_billing_thresholds[0]"), ([500, 100], "progressive_billing_thresholds[1]"), ("x", None)],
)
def test_bad_thresholds_are_400_naming_the_field(api, thresholds, param):
    customer = CustomerFactory()
    price = metered_price(unit="1")
    response = api.post(
        "/api/v1/subscriptions",
        {"customer": customer.id, "items": [{"price": price.id}], "progressive_billing_thresholds": thresholds},
        format="json",
    )
    assert response.status_code == 400, response.content
    assert response.json()["error"]["param"].startswith(param or "progressive_billing_thresholds")
    assert not customer.subscriptions.exists()
    ok = api.post(
        "/api/v1/subscriptions",
        {"customer": customer.id, "items": [{"price": price.id}], "progressive_billing_thresholds": [100, 900]},
        format="json",
    )
    assert ok.status_code == 201 and ok.json()["progressive_billing_thresholds"] == [100, 900]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_evaluations_bill_each_crossing_once(settings):
    from subscriptions.tests.test_renewal import _in_threads

    settings.RENEWAL_BATCH_SIZE = 3
    customer = CustomerFactory()
    calls = metered_price(unit="1")
    subs = [_subscribe(customer, calls, thresholds=(100,)) for _ in range(8)]
    use(customer, calls, 500, at(2, 3))  # one customer: every subscription of it sees the same usage
    results = _in_threads(4, lambda _: progressive_billing_job(now=at(2, 4)))
    assert sum(r["invoices"] for r in results) == 8
    assert ProgressiveBilling.objects.count() == 8
    assert {s.id: len(_threshold_invoices(s)) for s in subs} == {s.id: 1 for s in subs}
