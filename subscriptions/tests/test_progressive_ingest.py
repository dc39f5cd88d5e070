"""Progressive billing on ingestion: a committed batch enqueues `subscriptions.evaluate_progressive_billing`
for its customers with thresholds (once per burst), which bills a crossing at the batch's time; exactly
once whatever reruns, the job and concurrent batches do."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from customers.tests.factories import CustomerFactory
from invoicing.models import Invoice
from metering.ingest import usage_ingest
from subscriptions.models import ProgressiveBilling
from subscriptions.services.lifecycle import ItemSpec, subscription_create
from subscriptions.services.progressive import progressive_billing_job
from subscriptions.services.renewal import renew_subscriptions_job
from subscriptions.tasks import evaluate_progressive_billing
from subscriptions.tests.support import T0, at, fixed_price, metered_price, use

pytestmark = pytest.mark.django_db
JUST_AFTER = timedelta(microseconds=1)


def _subscribe(customer, *prices, thresholds=(1000, 5000)):
    specs = [ItemSpec(price=p, quantity=None if p.meter_id else 1) for p in prices]
    sub, _ = subscription_create(
        customer=customer, items=specs, progressive_billing_thresholds=list(thresholds), now=T0
    )
    return sub


def _threshold_invoices(sub):
    return list(
        Invoice.objects.filter(subscription=sub, billing_reason="subscription_threshold").order_by("created_at")
    )


def _lines(invoice):
    return [(line.kind, line.amount) for line in invoice.lines.order_by("position")]


def _send(customer, price, *values, when):
    body = [
        {"customer": customer.id, "meter": price.meter.code, "value": str(v), "timestamp": when.isoformat()}
        for v in values
    ]
    result = usage_ingest(events=body, now=when)
    assert result.created == len(values), result.results


@pytest.fixture
def enqueued(monkeypatch):
    """What ingestion enqueues, not run (the tests run it themselves, as a worker would)."""
    from billing_site import tasks

    sent: list[tuple] = []

    def record(task, *args):
        sent.append((task.name, *args))

    monkeypatch.setattr(tasks, "enqueue", record)
    return sent


def test_a_batch_crossing_a_threshold_issues_the_invoice_through_the_task_and_the_final_invoice_subtracts_it():
    customer = CustomerFactory()
    calls = metered_price(unit="1")
    sub = _subscribe(customer, fixed_price("500"), calls)
    use(customer, calls, 400, at(2, 3))  # below 1000: the task (run inline) bills nothing
    assert _threshold_invoices(sub) == []
    use(customer, calls, 700, at(2, 5))
    (first,) = _threshold_invoices(sub)
    assert _lines(first) == [("usage", 1100)]
    # At the batch's time (its own events counted), open as the job's threshold invoices are.
    assert (first.status, first.total, first.period_start, first.period_end) == (
        "open",
        1100,
        T0,
        at(2, 5) + JUST_AFTER,
    )
    assert progressive_billing_job(now=at(2, 6))["invoices"] == 0  # the job after the task adds nothing
    use(customer, calls, 5000, at(2, 10))  # 6100: the 5000 threshold, with what was billed subtracted
    second = _threshold_invoices(sub)[-1]
    assert _lines(second) == [("usage", 6100), ("progressive_credit", -1100)]
    assert progressive_billing_job(now=at(2, 11))["invoices"] == 0
    use(customer, calls, 100, at(2, 20))  # no threshold left: nothing
    assert len(_threshold_invoices(sub)) == 2
    renew_subscriptions_job(now=at(2, 28))
    final = Invoice.objects.get(subscription=sub, billing_reason="subscription_cycle")
    assert _lines(final) == [("fixed", 500), ("usage", 6200), ("progressive_credit", -6100)]
    assert sorted(ProgressiveBilling.objects.values_list("threshold", "amount")) == [(1000, 1100), (5000, 5000)]


def test_a_burst_enqueues_once_and_reruns_bill_nothing_twice(enqueued):
    customer = CustomerFactory()
    calls = metered_price(unit="1")
    sub = _subscribe(customer, calls)
    for _ in range(4):  # a burst: the evaluation is pending after the first batch
        _send(customer, calls, 300, when=at(2, 3))
    task_args = (customer.id, (at(2, 3) + JUST_AFTER).isoformat())
    assert enqueued == [("subscriptions.evaluate_progressive_billing", *task_args)]
    assert _threshold_invoices(sub) == []  # the batch itself never prices anything
    assert evaluate_progressive_billing.apply(args=task_args).get() == {"subscriptions": 1, "invoices": 1}
    assert evaluate_progressive_billing.apply(args=task_args).get() == {"subscriptions": 1, "invoices": 0}  # retry
    assert progressive_billing_job(now=at(2, 4))["invoices"] == 0
    (invoice,) = _threshold_invoices(sub)
    assert invoice.total == 1200
    _send(customer, calls, 1, when=at(2, 4))  # the task started: the next batch enqueues again
    assert len(enqueued) == 2
    assert evaluate_progressive_billing.apply(args=enqueued[1][1:]).get()["invoices"] == 0
    assert ProgressiveBilling.objects.filter(subscription=sub).count() == 1


def test_a_customer_without_progressive_subscriptions_enqueues_nothing_and_costs_no_statement(monkeypatch, enqueued):
    from metering import listeners

    customer = CustomerFactory()
    calls = metered_price(unit="1")
    _subscribe(customer, calls, thresholds=())
    _send(CustomerFactory(), calls, 1, when=at(2, 3))  # the meter's first event sets its flag once

    def statements():
        with CaptureQueriesContext(connection) as queries:
            _send(customer, calls, *[1] * 20, when=at(2, 3))
        return [q["sql"] for q in queries.captured_queries if "SAVEPOINT" not in q["sql"]]

    first = statements()  # not known yet: one indexed query, then cached
    second = statements()
    registered = list(listeners._listeners)
    monkeypatch.setattr(listeners, "_listeners", [])
    without_listener = statements()
    monkeypatch.setattr(listeners, "_listeners", registered)
    assert len(first) == len(second) + 1
    assert len(second) == len(without_listener)
    assert enqueued == []


def test_a_subscription_with_thresholds_created_later_is_evaluated_at_the_next_batch(
    enqueued, django_capture_on_commit_callbacks
):
    customer = CustomerFactory()
    calls = metered_price(unit="1")
    _send(customer, calls, 5, when=at(2, 2))  # no subscription: cached as without thresholds
    assert enqueued == []
    with django_capture_on_commit_callbacks(execute=True):  # the cached mark is dropped after the commit
        _subscribe(customer, calls, thresholds=(10,))
    _send(customer, calls, 5, when=at(2, 3))
    assert [args[1] for args in enqueued] == [customer.id]


def test_a_failing_enqueue_never_fails_the_batch(monkeypatch):
    from billing_site import tasks

    def broken(task, *args):
        raise ConnectionError("broker down")

    monkeypatch.setattr(tasks, "enqueue", broken)
    customer = CustomerFactory()
    calls = metered_price(unit="1")
    sub = _subscribe(customer, calls)
    _send(customer, calls, 2000, when=at(2, 3))  # answered as created; logged
    assert _threshold_invoices(sub) == []
    assert progressive_billing_job(now=at(2, 4))["invoices"] == 1  # the job catches up
    monkeypatch.undo()
    _send(customer, calls, 1, when=at(2, 5))  # not left pending: the next batch enqueues (inline) again
    assert len(_threshold_invoices(sub)) == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_batches_crossing_one_threshold_give_one_threshold_invoice():
    customer = CustomerFactory()
    calls = metered_price(unit="1")
    sub = _subscribe(customer, calls, thresholds=(40,))
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def batches():
        try:
            start.wait()
            for _ in range(3):
                _send(customer, calls, *[1] * 5, when=at(2, 3))
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=batches) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    # 8 x 3 x 5 = 120: the 40 billed once, by whichever evaluation saw it first.
    (invoice,) = _threshold_invoices(sub)
    assert invoice.total >= 40
    assert ProgressiveBilling.objects.filter(subscription=sub).count() == 1
    assert progressive_billing_job(now=at(2, 4))["invoices"] == 0
    assert len(_threshold_invoices(sub)) == 1
