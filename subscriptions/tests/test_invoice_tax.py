"""Tax on invoices (exclusive, inclusive, country + state, exempt, reverse charge) and the totals."""

from __future__ import annotations

from decimal import Decimal

import pytest

from catalog.models import Coupon
from catalog.tests.factories import CouponFactory
from customers.tests.factories import CustomerFactory
from invoicing.models import Invoice, TaxRate
from invoicing.services import tax_rate_create, tax_rate_update
from invoicing.tax import REVERSE_CHARGE_NOTE
from subscriptions.services.lifecycle import ItemSpec, subscription_cancel, subscription_change
from subscriptions.services.renewal import renew_subscriptions_job
from subscriptions.tests.support import T0, at, fixed_price, invoices_of, metered_price, subscribe, use

pytestmark = pytest.mark.django_db


def rate(percentage: str, country: str, *, state: str = "", inclusive: bool = False, name: str = "Tax"):
    return tax_rate_create(
        display_name=name, percentage=Decimal(percentage), country=country, state=state, inclusive=inclusive, now=T0
    )


def assert_totals(invoice: Invoice) -> None:
    """subtotal = sum of lines; total = subtotal - discount + exclusive tax; amount_due = max(total, 0)."""
    lines = list(invoice.lines.all())
    assert invoice.subtotal == sum(line.amount for line in lines if line.kind != "discount")
    assert invoice.discount == -sum(line.amount for line in lines if line.kind == "discount")
    assert invoice.discount == sum(line.discount_amount for line in lines)
    assert invoice.tax == sum(t["amount"] for line in lines for t in line.taxes)
    exclusive_ids = {r.id for r in TaxRate.objects.filter(inclusive=False)}
    exclusive = sum(t["amount"] for line in lines for t in line.taxes if t["tax_rate"] in exclusive_ids)
    assert invoice.total == invoice.subtotal - invoice.discount + exclusive
    assert invoice.amount_due == max(invoice.total, 0) >= 0


def test_exclusive_tax_is_added_on_top():
    vat = rate("19", "DE")
    _, invoice = subscribe(CustomerFactory(address_country="DE"), fixed_price("1000"))
    [line] = invoice.lines.all()
    assert line.taxes == [{"tax_rate": vat.id, "amount": 190}]
    assert (invoice.subtotal, invoice.tax, invoice.total, invoice.amount_due) == (1000, 190, 1190, 1190)
    assert invoice.tax_note == ""
    assert_totals(invoice)


def test_inclusive_tax_is_extracted_from_the_amount():
    vat = rate("19", "DE", inclusive=True)
    _, invoice = subscribe(CustomerFactory(address_country="DE"), fixed_price("1190"))
    assert invoice.lines.get().taxes == [{"tax_rate": vat.id, "amount": 190}]
    assert (invoice.subtotal, invoice.tax, invoice.total) == (1190, 190, 1190)
    assert_totals(invoice)


def test_country_and_state_rates_both_apply_and_other_regions_do_not():
    country = rate("5", "US", name="Federal")
    state = rate("8.875", "US", state="NY", name="NY")
    rate("7.25", "US", state="CA")
    rate("20", "FR")
    inactive = rate("50", "US")
    tax_rate_update(rate=inactive, changes={"active": False}, now=T0)
    customer = CustomerFactory(address_country="US", address_state="ny")
    _, invoice = subscribe(customer, fixed_price("1000"))
    assert invoice.lines.get().taxes == [
        {"tax_rate": country.id, "amount": 50},
        {"tax_rate": state.id, "amount": 89},  # 88.75 rounded half up, per line and rate
    ]
    assert (invoice.tax, invoice.total) == (139, 1139)
    assert_totals(invoice)


def test_a_customer_without_a_matching_rate_or_address_pays_no_tax():
    rate("19", "DE")
    for customer in (CustomerFactory(address_country="US"), CustomerFactory(address_country="")):
        _, invoice = subscribe(customer, fixed_price("1000"))
        assert (invoice.tax, invoice.total) == (0, 1000)
        assert invoice.lines.get().taxes == []


def test_exempt_customers_pay_no_tax():
    rate("19", "DE")
    _, invoice = subscribe(CustomerFactory(address_country="DE", tax_exempt="exempt"), fixed_price("1000"))
    assert (invoice.tax, invoice.total, invoice.tax_note) == (0, 1000, "")


def test_reverse_charge_customers_pay_no_tax_and_the_invoice_says_so():
    rate("19", "DE")
    _, invoice = subscribe(CustomerFactory(address_country="DE", tax_exempt="reverse"), fixed_price("1000"))
    assert (invoice.tax, invoice.total) == (0, 1000)
    assert invoice.tax_note == REVERSE_CHARGE_NOTE


def test_tax_is_computed_after_the_discount():
    vat = rate("19", "DE")
    coupon = CouponFactory(percent_off=Decimal("25"), duration=Coupon.Duration.FOREVER)
    _, invoice = subscribe(CustomerFactory(address_country="DE"), fixed_price("1000"), coupon=coupon)
    fixed = invoice.lines.get(kind="fixed")
    assert fixed.taxes == [{"tax_rate": vat.id, "amount": 143}]  # 19% of 750 = 142.5
    assert invoice.lines.get(kind="discount").taxes == []
    assert (invoice.subtotal, invoice.discount, invoice.tax, invoice.total) == (1000, 250, 143, 893)
    assert_totals(invoice)


def test_inclusive_tax_after_a_discount():
    rate("20", "FR", inclusive=True)
    coupon = CouponFactory(percent_off=Decimal("50"), duration=Coupon.Duration.FOREVER)
    _, invoice = subscribe(CustomerFactory(address_country="FR"), fixed_price("1200"), coupon=coupon)
    assert (invoice.subtotal, invoice.discount, invoice.tax, invoice.total) == (1200, 600, 100, 600)
    assert_totals(invoice)


def test_a_full_renewal_invoice_adds_up():
    rate("5", "US")
    rate("8.875", "US", state="NY", inclusive=True)
    customer = CustomerFactory(address_country="US", address_state="NY")
    coupon = CouponFactory(percent_off=None, amount_off=333, currency="usd", duration=Coupon.Duration.FOREVER)
    basic, pro, calls = fixed_price("2800"), fixed_price("5600"), metered_price(unit="0.37")
    sub, first = subscribe(customer, basic, calls, coupon=coupon)
    assert_totals(first)
    use(customer, calls, 1234, at(2, 3))
    subscription_change(
        subscription=sub,
        items=[ItemSpec(price=pro, quantity=Decimal(2)), ItemSpec(price=calls, quantity=None)],
        proration_behavior="create_prorations",
        now=at(2, 9, hour=7, minute=13, second=5),
    )
    renew_subscriptions_job(now=at(2, 28))
    invoice = invoices_of(sub)[-1]
    assert {line.kind for line in invoice.lines.all()} == {"fixed", "usage", "proration", "discount"}
    credit = invoice.lines.get(kind="proration", amount__lt=0)
    assert all(t["amount"] <= 0 for t in credit.taxes) and credit.discount_amount == 0
    assert_totals(invoice)


def test_amount_due_is_never_below_zero():
    rate("19", "DE")
    basic = fixed_price("2800")
    sub, _ = subscribe(CustomerFactory(address_country="DE"), basic)
    _, invoice = subscription_cancel(subscription=sub, at_period_end=False, prorate=True, now=at(2, 14))
    # A credit of 1400 with its (negative) tax.
    assert (invoice.subtotal, invoice.tax, invoice.total, invoice.amount_due) == (-1400, -266, -1666, 0)
    assert invoice.amount_remaining == 0 and invoice.status == "paid"
    assert_totals(invoice)
