"""What subscriptions gives usage alerts: the customer's billing period, and the amount of the current
period's upcoming invoice (invoice_amount alerts)."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.db import connection

from customers.tests.factories import CustomerFactory
from metering.alerts import usage_alert_create, usage_alerts_job
from metering.models import UsageAlertTrigger
from subscriptions.services.renewal import renew_subscriptions_job
from subscriptions.tests.support import T0, at, fixed_price, metered_price, subscribe, use
from webhooks.models import BillingEvent

pytestmark = pytest.mark.django_db


def test_usage_alerts_watch_the_billing_period_and_move_on_with_it():
    customer = CustomerFactory()
    calls = metered_price(unit="100")
    subscribe(customer, calls)
    alert = usage_alert_create(customer=customer, meter=calls.meter, threshold=Decimal(5), now=at(2, 1))
    assert (alert.period_start, alert.period_end) == (T0, at(2, 28))  # Jan 31 12:00 -> Feb 28 12:00
    use(customer, calls, 4, at(2, 10))
    use(customer, calls, 1, at(2, 27))  # 5 in the period: crossed
    assert UsageAlertTrigger.objects.filter(alert=alert, period_start=T0).count() == 1
    renew_subscriptions_job(now=at(2, 28))
    report = usage_alerts_job(now=at(3, 1))
    alert.refresh_from_db()
    assert report["periods_moved"] == 1 and (alert.period_start, alert.period_end) == (at(2, 28), at(3, 31))
    use(customer, calls, 5, at(3, 2))
    assert UsageAlertTrigger.objects.filter(alert=alert).count() == 2


def test_invoice_amount_alerts_price_the_upcoming_invoice():
    customer = CustomerFactory()
    seats, calls = fixed_price("1000"), metered_price(unit="100")
    subscribe(customer, seats, calls, quantity=Decimal(1))
    alert = usage_alert_create(customer=customer, kind="invoice_amount", threshold=Decimal(3000), now=at(2, 1))
    usage_alerts_job(now=at(2, 2))
    # The upcoming invoice: the next period's seats (1000) + this period's usage (0) < 3000.
    assert not UsageAlertTrigger.objects.filter(alert=alert).exists()
    use(customer, calls, 15, at(2, 3))  # + 1500 of usage: 2500, evaluated on ingestion (a task), not reached
    assert not UsageAlertTrigger.objects.filter(alert=alert).exists()
    use(customer, calls, 10, at(2, 3))  # + 1000: 3500, crossed on ingestion
    assert UsageAlertTrigger.objects.filter(alert=alert).count() == 1
    assert usage_alerts_job(now=at(2, 4))["triggered"] == 0  # the job finds nothing ingestion missed
    use(customer, calls, 10, at(2, 5))  # one_time: once per period
    event = BillingEvent.objects.get(type="usage_alert.triggered", object_id=alert.id)
    assert (event.data["kind"], event.data["value"], event.data["crossed"]) == ("invoice_amount", "3500", "3000")


def test_a_recurring_amount_alert_crosses_several_levels_in_one_batch():
    customer = CustomerFactory()
    calls = metered_price(unit="100")
    subscribe(customer, calls)
    alert = usage_alert_create(
        customer=customer, kind="invoice_amount", threshold=Decimal(1000), recurrence="recurring", now=at(2, 1)
    )
    use(customer, calls, 9, at(2, 2))  # 900
    assert not UsageAlertTrigger.objects.filter(alert=alert).exists()
    use(customer, calls, 26, at(2, 3))  # 3500: levels 1, 2 and 3 in one batch
    events = BillingEvent.objects.filter(type="usage_alert.triggered", object_id=alert.id).order_by("id")
    assert [(e.data["level"], e.data["crossed"], e.data["value"]) for e in events] == [
        (1, "1000", "3500"),
        (2, "2000", "3500"),
        (3, "3000", "3500"),
    ]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_batches_crossing_an_amount_threshold_give_one_alert():
    customer = CustomerFactory()
    calls = metered_price(unit="100")
    subscribe(customer, calls)
    alert = usage_alert_create(customer=customer, kind="invoice_amount", threshold=Decimal(2000), now=at(2, 1))
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def batch(thread: int):
        try:
            start.wait()
            for round_ in range(3):
                use(customer, calls, 1, at(2, 3), key=f"t{thread}-{round_}")
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=batch, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    # 24 units of 100 = 2400: the 2000 crossed once, on ingestion. A batch that found an evaluation pending
    # left it to that task, which reads the amount after it (the task clears the mark before it reads).
    assert UsageAlertTrigger.objects.filter(alert=alert).count() == 1
    assert BillingEvent.objects.filter(type="usage_alert.triggered", object_id=alert.id).count() == 1
    assert usage_alerts_job(now=at(2, 4))["triggered"] == 0
