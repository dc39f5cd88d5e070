"""The upcoming invoice is what renewal then creates (same builder), and computing it writes nothing."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.apps import apps

from billing_site.errors import Conflict
from catalog.models import Coupon
from catalog.tests.factories import CouponFactory
from customers.tests.factories import CustomerFactory
from invoicing.serializers import draft_data, invoice_data
from invoicing.services import tax_rate_create
from subscriptions.services.lifecycle import ItemSpec, subscription_cancel, subscription_change
from subscriptions.services.preview import subscription_upcoming_invoice as upcoming_invoice
from subscriptions.services.renewal import renew_subscriptions_job
from subscriptions.tests.support import T0, at, fixed_price, invoices_of, metered_price, subscribe, use

pytestmark = pytest.mark.django_db

FEB28 = at(2, 28)
MAR31 = at(3, 31)
COMPARED = ("billing_reason", "currency", "period_start", "period_end", "subtotal", "discount", "tax", "total")
COMPARED += ("amount_due", "tax_note", "subscription", "customer")


def shape(data: dict) -> dict:
    """What must agree between a preview and the invoice: everything but ids, numbers, status and times."""
    lines = [{k: v for k, v in line.items() if k != "id"} for line in data["lines"]]
    return {**{k: data[k] for k in COMPARED}, "lines": lines}


def row_counts() -> dict[str, int]:
    return {model._meta.label: model.objects.count() for model in apps.get_models()}


def snapshot(sub) -> tuple:
    sub.refresh_from_db()
    return row_counts(), sub.updated_at, sub.coupon_periods_remaining, sub.current_period_start


@pytest.fixture
def busy():
    """A subscription with everything an invoice can hold: licensed and metered items, a pending proration,
    a coupon, two tax rates and late usage of the previous period."""
    tax_rate_create(display_name="VAT", percentage=Decimal("19"), country="DE", now=T0)
    tax_rate_create(display_name="Local", percentage=Decimal("2.5"), country="DE", state="BE", inclusive=True, now=T0)
    customer = CustomerFactory(address_country="DE", address_state="BE")
    coupon = CouponFactory(percent_off=Decimal("10"), duration=Coupon.Duration.REPEATING, duration_in_periods=3)
    basic, pro, calls = fixed_price("2800"), fixed_price("5600"), metered_price(unit="3")
    sub, _ = subscribe(customer, basic, calls, coupon=coupon)
    use(customer, calls, 10, at(2, 10))
    renew_subscriptions_job(now=FEB28)
    use(customer, calls, 4, at(2, 27), now=at(3, 2))  # late for February
    use(customer, calls, 25, at(3, 5))
    subscription_change(
        subscription=sub,
        items=[ItemSpec(price=pro, quantity=None), ItemSpec(price=calls, quantity=None)],
        proration_behavior="create_prorations",
        now=at(3, 15),
    )
    return sub


def test_the_upcoming_invoice_equals_the_invoice_renewal_creates(busy):
    preview = upcoming_invoice(subscription=busy, now=at(3, 20))
    kinds = {line.kind for line in preview.lines}
    assert kinds == {"fixed", "usage", "late_usage", "proration", "discount"}
    before = snapshot(busy)
    renew_subscriptions_job(now=MAR31)
    assert snapshot(busy) != before  # the renewal did write
    invoice = invoices_of(busy)[-1]
    assert invoice.cycle_period_start == MAR31
    assert shape(draft_data(preview)) == shape(invoice_data(invoice))


def test_computing_the_upcoming_invoice_writes_nothing(busy):
    before = snapshot(busy)
    upcoming_invoice(subscription=busy, now=at(3, 20))
    upcoming_invoice(subscription=busy, now=MAR31 + timedelta(days=3))
    assert snapshot(busy) == before


def test_the_upcoming_invoice_of_a_trial_is_the_first_invoice():
    customer = CustomerFactory()
    calls = metered_price()
    sub, _ = subscribe(customer, fixed_price("1000"), calls, trial_end=at(2, 14))
    use(customer, calls, 100, at(2, 1))
    preview = upcoming_invoice(subscription=sub, now=at(2, 1))
    renew_subscriptions_job(now=at(2, 14))
    assert shape(draft_data(preview)) == shape(invoice_data(invoices_of(sub)[-1]))
    assert [line["kind"] for line in draft_data(preview)["lines"]] == ["fixed"]


def test_the_upcoming_invoice_of_a_pending_cancellation_is_the_final_usage_invoice():
    customer = CustomerFactory()
    calls = metered_price()
    sub, _ = subscribe(customer, fixed_price("1000"), calls)
    use(customer, calls, 100, at(2, 1))
    subscription_cancel(subscription=sub, at_period_end=True, prorate=False, now=at(2, 2))
    preview = upcoming_invoice(subscription=sub, now=at(2, 3))
    renew_subscriptions_job(now=FEB28)
    assert shape(draft_data(preview)) == shape(invoice_data(invoices_of(sub)[-1]))
    assert [line["kind"] for line in draft_data(preview)["lines"]] == ["usage"]


def test_an_ended_subscription_has_no_upcoming_invoice():
    sub, _ = subscribe(None, fixed_price())
    subscription_cancel(subscription=sub, at_period_end=False, prorate=False, now=at(2, 2))
    with pytest.raises(Conflict):
        upcoming_invoice(subscription=sub, now=at(2, 3))


def test_a_trial_canceled_at_its_end_has_no_upcoming_invoice():
    sub, _ = subscribe(None, fixed_price(), trial_end=at(2, 14))
    subscription_cancel(subscription=sub, at_period_end=True, prorate=False, now=at(2, 2))
    with pytest.raises(Conflict):
        upcoming_invoice(subscription=sub, now=at(2, 3))
