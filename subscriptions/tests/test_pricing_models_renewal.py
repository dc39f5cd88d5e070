"""Renewal prices metered usage with every model: package, graduated percentage, and percentage, whose
per-event terms are priced event by event (the Lago and Stripe worked examples of
catalog/tests/test_price_models_api.py, now billed on real invoices), and late usage re-rated the same way."""

from __future__ import annotations

from datetime import timedelta

import pytest

from catalog.services import price_create
from catalog.tests.test_price_models_api import LAGO_GRADUATED_PERCENTAGE, LAGO_PACKAGE, LAGO_PERCENTAGE, STRIPE_CARD
from customers.tests.factories import CustomerFactory
from metering.tests.factories import MeterFactory
from subscriptions.services.renewal import renew_subscriptions_job
from subscriptions.tests.support import T0, at, invoices_of, subscribe, use

pytestmark = pytest.mark.django_db
FEB28, MAR31 = at(2, 28), at(3, 31)


def _metered(amount, *, meter_filters=None):
    meter = MeterFactory(aggregation="sum", filters=meter_filters or {})
    return price_create(
        type="standalone", duration_amount=1, duration_unit="month", amount=amount, meter_id=meter.id, now=T0
    )


def _usage_line(sub):
    (line,) = [line for line in invoices_of(sub)[-1].lines.all() if line.kind in ("usage", "late_usage")]
    return line


def test_package_usage_is_billed_per_started_block_after_the_free_units():
    customer = CustomerFactory()
    price = _metered(LAGO_PACKAGE)
    sub, _ = subscribe(customer, price)
    use(customer, price, 150, at(2, 3))
    use(customer, price, 51, at(2, 20))
    renew_subscriptions_job(now=FEB28)
    line = _usage_line(sub)
    assert (line.quantity, line.amount) == (201, 1000)  # Lago: 201 units cost $10


def test_graduated_percentage_usage_is_billed_by_tier():
    customer = CustomerFactory()
    price = _metered(LAGO_GRADUATED_PERCENTAGE)
    sub, _ = subscribe(customer, price)
    for value in (50000, 55000, 400000):
        use(customer, price, value, at(2, 5))
    renew_subscriptions_job(now=FEB28)
    assert _usage_line(sub).amount == 20500 + 30600 + 8000  # Lago's three transactions


def test_percentage_per_event_fee_and_bounds_are_billed_event_by_event():
    customer = CustomerFactory()
    card = _metered({**STRIPE_CARD, "per_event_max": "500"})
    sub, _ = subscribe(customer, card)
    use(customer, card, 10000, at(2, 2))  # $100: $2.90 + $0.30
    use(customer, card, 2550, at(2, 3))  # $25.50: 73.95 + 30 cents
    use(customer, card, 100000, at(2, 4))  # $1,000: $29.30, capped at $5
    use(customer, card, 10000, FEB28)  # the next period's
    renew_subscriptions_job(now=FEB28)
    line = _usage_line(sub)
    assert line.quantity == 112550
    assert line.amount == 320 + 104 + 500  # 103.95 rounds with the rest: 923.95 -> 924


def test_percentage_free_events_are_the_periods_first_events_and_late_usage_is_re_rated():
    customer = CustomerFactory()
    price = _metered(LAGO_PERCENTAGE)
    sub, _ = subscribe(customer, price)
    for day, value in ((2, 20000), (3, 10000), (4, 10000), (5, 5000)):
        use(customer, price, value, at(2, day))
    renew_subscriptions_job(now=FEB28)
    assert _usage_line(sub).amount == 70  # Lago: the 4th transaction costs $0.70
    # A late event of Feb 1, earlier than the others, takes one of the three free events: the second $100
    # transaction is now charged too.
    use(customer, price, 1000, at(2, 1), now=FEB28 + timedelta(hours=1))
    renew_subscriptions_job(now=MAR31)
    late = [line for line in invoices_of(sub)[-1].lines.all() if line.kind == "late_usage"]
    # Order: $10 (free), $200 (free), $100 (free), then $100 + $50 charged: 1.2 % of $150 + 2 x $0.10 = $2.00.
    assert [line.amount for line in late] == [200 - 70]


def test_meter_filters_apply_to_per_event_pricing():
    customer = CustomerFactory()
    price = _metered(STRIPE_CARD, meter_filters={"region": ["eu"]})
    sub, _ = subscribe(customer, price)
    from metering.ingest import usage_ingest

    for region in ("eu", "us"):
        body = {
            "customer": customer.id,
            "meter": price.meter.code,
            "value": "10000",
            "timestamp": at(2, 2).isoformat(),
            "dimensions": {"region": region},
        }
        assert usage_ingest(events=[body], now=at(2, 2)).created == 1
    renew_subscriptions_job(now=FEB28)
    assert (_usage_line(sub).quantity, _usage_line(sub).amount) == (10000, 320)


def test_percentage_with_bounds_and_free_events_is_billed_from_rolled_up_hours():
    from catalog.pricing import quote_events
    from metering.class_stats_models import UsageHourlyClassStats
    from metering.rollups import usage_rollup_job
    from metering.selectors import usage_event_values

    customer = CustomerFactory()
    price = _metered({**LAGO_PERCENTAGE, "per_event_min": "20", "per_event_max": "500"})
    sub, _ = subscribe(customer, price)
    for day in range(2, 12):
        for hour in (3, 9, 15):
            use(customer, price, 1000 * day + hour, at(2, day, hour))
    usage_rollup_job(now=at(2, 20))
    assert UsageHourlyClassStats.objects.filter(customer_id=customer.id).count() == 30
    use(customer, price, 777, at(2, 5, 3, minute=30), now=at(2, 21))  # late, into a rolled-up hour
    renew_subscriptions_job(now=FEB28)
    values = usage_event_values(meter=price.meter, customer_id=customer.id, start=at(1, 31), end=FEB28)
    assert len(values) == 31
    assert _usage_line(sub).amount == quote_events(price.engine_amount, values).amount > 0
