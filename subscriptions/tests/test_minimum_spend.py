"""Minimum spend per subscription item and per subscription: a true-up line when a period's spending falls
short, billed with the period's usage, prorated for a partial period, and shown by the upcoming invoice.

Worked examples are Lago's (https://getlago.com/docs/guide/plans/charges/spending-minimum and
https://getlago.com/docs/guide/plans/commitment), as in catalog/tests/test_minimums.py:
- item: $0.010 per tracked user with a $100 minimum and $50 of usage gives a true-up of $50;
- subscription: a $50 fee plus 3 units at $10 with a $100 minimum gives a true-up of $20.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from customers.tests.factories import CustomerFactory
from invoicing.serializers import draft_data, invoice_data
from subscriptions.services.lifecycle import ItemSpec, subscription_cancel, subscription_create
from subscriptions.services.preview import subscription_upcoming_invoice
from subscriptions.services.renewal import renew_subscriptions_job
from subscriptions.tests.support import T0, at, fixed_price, invoices_of, metered_price, use

pytestmark = pytest.mark.django_db
FEB28, MAR31 = at(2, 28), at(3, 31)


def _lines(invoice):
    return [(line.kind, line.amount) for line in invoice.lines.order_by("position")]


def test_item_minimum_lago_tracked_users_example():
    customer = CustomerFactory()
    users = metered_price(unit="1")  # $0.010 per tracked user
    sub, _ = subscription_create(
        customer=customer, items=[ItemSpec(price=users, quantity=None, minimum_amount=10000)], now=T0
    )
    use(customer, users, 5000, at(2, 10))  # $50 of usage
    renew_subscriptions_job(now=FEB28)
    invoice = invoices_of(sub)[-1]
    assert _lines(invoice) == [("usage", 5000), ("minimum", 5000)]
    true_up = invoice.lines.get(kind="minimum")
    assert true_up.subscription_item_id == sub.items.get().id
    assert (true_up.period_start, true_up.period_end) == (T0, FEB28)
    assert invoice.total == 10000


def test_subscription_minimum_lago_commitment_example_counts_fees_and_usage():
    customer = CustomerFactory()
    fee, units = fixed_price("5000"), metered_price(unit="1000")
    sub, first = subscription_create(
        customer=customer,
        items=[ItemSpec(price=fee, quantity=Decimal(1)), ItemSpec(price=units, quantity=None)],
        minimum_amount=10000,
        now=T0,
    )
    assert _lines(first) == [("fixed", 5000)]  # nothing is owed before the period ends
    use(customer, units, 3, at(2, 10))
    renew_subscriptions_job(now=FEB28)
    assert _lines(invoices_of(sub)[-1]) == [("fixed", 5000), ("usage", 3000), ("minimum", 2000)]


def test_no_true_up_when_spending_reaches_the_minimum_and_item_true_ups_count_for_the_subscription():
    customer = CustomerFactory()
    users = metered_price(unit="1")
    sub, _ = subscription_create(
        customer=customer,
        items=[ItemSpec(price=users, quantity=None, minimum_amount=6000)],
        minimum_amount=6000,
        now=T0,
    )
    use(customer, users, 1000, at(2, 10))
    renew_subscriptions_job(now=FEB28)
    # The item's true-up (5000) lifts the subscription to its own minimum: no second true-up.
    assert _lines(invoices_of(sub)[-1]) == [("usage", 1000), ("minimum", 5000)]
    use(customer, users, 7000, at(3, 10))
    renew_subscriptions_job(now=MAR31)
    assert _lines(invoices_of(sub)[-1]) == [("usage", 7000)]


def test_minimum_is_prorated_when_the_subscription_ends_mid_period():
    customer = CustomerFactory()
    users = metered_price(unit="1")
    sub, _ = subscription_create(
        customer=customer, items=[ItemSpec(price=users, quantity=None, minimum_amount=3100)], now=T0
    )
    renew_subscriptions_job(now=FEB28)  # Feb: nothing used, the whole minimum is owed
    assert _lines(invoices_of(sub)[-1]) == [("usage", 0), ("minimum", 3100)]
    use(customer, users, 100, at(3, 5))
    # Mar: ends after 16 of the 31 days (Feb 28 12:00 to Mar 16 12:00): 16/31 of 3100 is 1600.
    _, final = subscription_cancel(subscription=sub, at_period_end=False, prorate=False, now=at(3, 16))
    assert _lines(final) == [("usage", 100), ("minimum", 1500)]


def test_a_partial_first_period_prorates_the_minimum_like_its_fee():
    customer = CustomerFactory()
    users = metered_price(unit="1")
    # Anchored on Feb 1, started Jan 31 12:00: the first period is 12 hours of January's cycle (31 days).
    sub, _ = subscription_create(
        customer=customer,
        items=[ItemSpec(price=users, quantity=None)],
        minimum_amount=7440,
        billing_cycle_anchor=at(2, 1, hour=0),
        now=T0,
    )
    renew_subscriptions_job(now=at(2, 1, hour=0))
    assert _lines(invoices_of(sub)[-1]) == [("usage", 0), ("minimum", 120)]  # 7440 x 12 h / 744 h


def test_upcoming_invoice_shows_the_true_up_renewal_bills():
    customer = CustomerFactory()
    users = metered_price(unit="1")
    sub, _ = subscription_create(
        customer=customer, items=[ItemSpec(price=users, quantity=None, minimum_amount=10000)], now=T0
    )
    use(customer, users, 2500, at(2, 10))
    preview = draft_data(subscription_upcoming_invoice(subscription=sub, now=at(2, 20)))
    renew_subscriptions_job(now=FEB28)
    billed = invoice_data(invoices_of(sub)[-1])
    assert [(line["kind"], line["amount"]) for line in preview["lines"]] == [("usage", 2500), ("minimum", 7500)]
    assert [(line["kind"], line["amount"]) for line in billed["lines"]] == [("usage", 2500), ("minimum", 7500)]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"minimum_amount": 0}, "minimum_amount"),
        ({"minimum_amount": "ten"}, "minimum_amount"),
        ({"items": [{"minimum_amount": -5}]}, "items[0].minimum_amount"),
        ({"items": [{"minimum_amount": 2**63}]}, "items[0].minimum_amount"),
    ],
)
def test_bad_minimum_is_a_400_naming_the_field(api, body, param):
    customer = CustomerFactory()
    price = fixed_price("1000")
    items = [{"price": price.id, **(body.get("items") or [{}])[0]}]
    request = {"customer": customer.id, "items": items, **{k: v for k, v in body.items() if k != "items"}}
    response = api.post("/api/v1/subscriptions", request, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["param"] == param
    assert not customer.subscriptions.exists()


def test_minimums_through_the_api(api):
    customer = CustomerFactory()
    price = fixed_price("1000")
    response = api.post(
        "/api/v1/subscriptions",
        {"customer": customer.id, "items": [{"price": price.id, "minimum_amount": 1500}], "minimum_amount": 2000},
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["minimum_amount"] == 2000
    assert body["items"][0]["minimum_amount"] == 1500
