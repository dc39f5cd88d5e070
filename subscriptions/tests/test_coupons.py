"""Coupons on subscription invoices: duration once / repeating N / forever, percent and amount off,
never below zero, shown as `discount` lines, max_redemptions enforced."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.db import connection

from billing_site.errors import Conflict, InvalidRequest
from catalog.models import Coupon
from catalog.tests.factories import CouponFactory
from customers.tests.factories import CustomerFactory
from subscriptions.services.renewal import renew_subscriptions_job
from subscriptions.tests.support import T0, at, fixed_price, invoices_of, kinds, metered_price, subscribe, use

pytestmark = pytest.mark.django_db

BOUNDARIES = [at(2, 28), at(3, 31), at(4, 30)]


def discounts(sub) -> list[int]:
    """The discount of every invoice of the subscription, in order: the creation invoice and three renewals."""
    for boundary in BOUNDARIES:
        renew_subscriptions_job(now=boundary)
    return [invoice.discount for invoice in invoices_of(sub)]


def test_once_discounts_the_first_invoice_only():
    coupon = CouponFactory(name="Welcome", percent_off=Decimal("25"), duration=Coupon.Duration.ONCE)
    sub, invoice = subscribe(None, fixed_price("1000"), coupon=coupon)
    assert sub.coupon_periods_remaining == 0  # used up by the first invoice
    assert kinds(invoice) == [("fixed", 1000), ("discount", -250)]
    line = invoice.lines.get(kind="discount")
    assert line.description == "Welcome (25% off)"
    assert invoice.lines.get(kind="fixed").discount_amount == 250
    assert (invoice.subtotal, invoice.discount, invoice.total, invoice.amount_due) == (1000, 250, 750, 750)
    assert discounts(sub) == [250, 0, 0, 0]


def test_repeating_discounts_n_invoices():
    coupon = CouponFactory(percent_off=Decimal("10"), duration=Coupon.Duration.REPEATING, duration_in_periods=2)
    sub, _ = subscribe(None, fixed_price("1000"), coupon=coupon)
    assert discounts(sub) == [100, 100, 0, 0]


def test_forever_discounts_every_invoice():
    coupon = CouponFactory(percent_off=Decimal("12.5"), duration=Coupon.Duration.FOREVER)
    sub, _ = subscribe(None, fixed_price("1000"), coupon=coupon)
    assert sub.coupon_periods_remaining is None
    assert discounts(sub) == [125, 125, 125, 125]


def test_amount_off_is_allocated_to_lines_in_proportion():
    coupon = CouponFactory(percent_off=None, amount_off=1000, currency="usd", duration=Coupon.Duration.ONCE)
    _, invoice = subscribe(None, fixed_price("1000"), fixed_price("3000"), coupon=coupon)
    assert kinds(invoice) == [("fixed", 1000), ("fixed", 3000), ("discount", -1000)]
    assert [line.discount_amount for line in invoice.lines.all()] == [250, 750, 0]
    assert "$10.00 off" in invoice.lines.get(kind="discount").description
    assert invoice.total == 3000


def test_amount_off_larger_than_the_invoice_never_goes_below_zero():
    coupon = CouponFactory(percent_off=None, amount_off=5000, currency="usd", duration=Coupon.Duration.FOREVER)
    _, invoice = subscribe(None, fixed_price("1000"), coupon=coupon)
    assert kinds(invoice) == [("fixed", 1000), ("discount", -1000)]
    assert (invoice.subtotal, invoice.discount, invoice.total, invoice.amount_due) == (1000, 1000, 0, 0)
    assert invoice.status == "paid"


def test_a_hundred_percent_coupon_leaves_nothing_due():
    coupon = CouponFactory(percent_off=Decimal("100"), duration=Coupon.Duration.FOREVER)
    _, invoice = subscribe(None, fixed_price("999"), coupon=coupon)
    assert (invoice.total, invoice.amount_due) == (0, 0)


def test_percent_is_rounded_per_line_half_up():
    coupon = CouponFactory(percent_off=Decimal("15"), duration=Coupon.Duration.FOREVER)
    _, invoice = subscribe(None, fixed_price("1010"), fixed_price("30"), coupon=coupon)
    # 151.5 -> 152 and 4.5 -> 5: the discount line is the sum of the rounded lines.
    assert kinds(invoice) == [("fixed", 1010), ("fixed", 30), ("discount", -157)]


def test_discounts_apply_to_usage_and_late_usage_but_never_to_credits():
    coupon = CouponFactory(percent_off=Decimal("50"), duration=Coupon.Duration.FOREVER)
    calls = metered_price(unit="10")
    sub, _ = subscribe(None, fixed_price("1000"), calls, coupon=coupon)
    use(sub.customer, calls, 10, at(2, 1))
    renew_subscriptions_job(now=at(2, 28))
    assert kinds(invoices_of(sub)[-1]) == [("fixed", 1000), ("usage", 100), ("discount", -550)]


def test_a_zero_invoice_does_not_use_up_a_once_coupon():
    coupon = CouponFactory(percent_off=Decimal("50"), duration=Coupon.Duration.ONCE)
    calls = metered_price(unit="10")
    sub, first = subscribe(None, calls, coupon=coupon)
    assert first.discount == 0
    use(sub.customer, calls, 10, at(2, 1))
    renew_subscriptions_job(now=at(2, 28))
    assert kinds(invoices_of(sub)[-1]) == [("usage", 100), ("discount", -50)]


def test_max_redemptions_is_enforced():
    coupon = CouponFactory(max_redemptions=1)
    subscribe(None, fixed_price(), coupon=coupon)
    with pytest.raises(Conflict) as exc:
        subscribe(None, fixed_price(), coupon=coupon)
    assert exc.value.param == "coupon"
    coupon.refresh_from_db()
    assert coupon.times_redeemed == 1


def test_inactive_expired_and_foreign_currency_coupons_are_refused():
    for coupon in (
        CouponFactory(active=False),
        CouponFactory(redeem_by=T0),
        CouponFactory(percent_off=None, amount_off=100, currency="eur"),
    ):
        with pytest.raises(InvalidRequest) as exc:
            subscribe(None, fixed_price(), coupon=coupon)
        assert exc.value.param == "coupon"
        coupon.refresh_from_db()
        assert coupon.times_redeemed == 0


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_redemptions_never_pass_max_redemptions():
    coupon = CouponFactory(max_redemptions=2)
    price = fixed_price()
    customers = [CustomerFactory() for _ in range(6)]
    barrier = threading.Barrier(len(customers))
    outcomes: list[str] = []

    def redeem(customer) -> None:
        try:
            barrier.wait()
            subscribe(customer, price, coupon=coupon)
            outcomes.append("ok")
        except Conflict:
            outcomes.append("conflict")
        finally:
            connection.close()

    threads = [threading.Thread(target=redeem, args=(c,)) for c in customers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["conflict"] * 4 + ["ok"] * 2
    coupon.refresh_from_db()
    assert coupon.times_redeemed == 2
