"""An end customer in a real browser (Debian's chromium through Playwright, see the root conftest):
opens a hosted invoice and pays it with a test card, completes the 3-D Secure-like challenge of the
authentication-required card, and in the portal sees the usage the API reports and cannot open another
customer's objects. With SCREENSHOTS=1 the tests save the pages under docs/screenshots/ (README)."""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

import re
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from billing_site.services import api_key_create
from customers.tests.factories import CustomerFactory
from invoicing.models import Invoice
from payments.processors.sandbox import sandbox_charges
from payments.services.grants import credit_grant_create
from payments.services.ledger import balance_adjust
from payments.tests.factories import PaymentMethodFactory
from portal.services import portal_session_create
from portal.tests.support import finalized_invoice, metered_customer, path_of

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path(django_settings.BASE_DIR) / "docs" / "screenshots"


def _shot(page, name: str) -> None:
    if os.environ.get("SCREENSHOTS") == "1":
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


@pytest.fixture
def operator():
    from rest_framework.test import APIClient

    _, raw = api_key_create(name="browser", scopes=["admin"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


@pytest.fixture
def site(live_server, settings):
    settings.PUBLIC_BASE_URL = live_server.url
    settings.SELLER_NAME = "Northwind Analytics Ltd"
    settings.SELLER_ADDRESS = ["1 Harbour Street", "Dublin D02 XY45", "Ireland"]
    settings.SELLER_TAX_ID = "IE1234567T"
    return live_server.url


def test_a_customer_pays_a_hosted_invoice_with_a_test_card(site, operator, page):
    customer = CustomerFactory(name="Łukasz 東京", email="lukasz@example.com")
    invoice = finalized_invoice(operator, customer, amount=4999)
    assert invoice["hosted_invoice_url"].startswith(site)
    page.goto(invoice["hosted_invoice_url"])
    assert page.get_by_test_id("invoice-status").inner_text() == "Open"
    html = page.content()
    assert "Łukasz 東京" in html
    assert "Northwind Analytics Ltd" in html
    _shot(page, "hosted-invoice-open")
    page.get_by_label("Visa 4242: succeeds").check()
    page.get_by_test_id("pay-button").dblclick()  # a double click pays once
    page.wait_for_url(re.compile(r"\?payment=pi_"))
    assert page.get_by_test_id("payment-result").inner_text() == "Payment received: thank you."
    assert page.get_by_test_id("paid-banner").is_visible()
    assert page.get_by_test_id("invoice-status").inner_text() == "Paid"
    assert page.get_by_test_id("pay-button").count() == 0
    _shot(page, "hosted-invoice-paid")
    assert Invoice.objects.get(pk=invoice["id"]).status == "paid" and sandbox_charges() == 1
    # The PDF link serves the document.
    pdf = page.request.get(page.url.split("?")[0] + "/pdf")
    assert pdf.status == 200 and pdf.body().startswith(b"%PDF")


def test_a_declined_card_then_the_authentication_challenge(site, operator, page):
    invoice = finalized_invoice(operator, amount=1250)
    page.goto(invoice["hosted_invoice_url"])
    page.get_by_label("Visa 0002: declined").check()
    page.get_by_test_id("pay-button").click()
    page.wait_for_url(re.compile(r"\?payment=pi_"))
    assert "Your card was declined." in page.get_by_test_id("payment-result").inner_text()

    page.get_by_label("Visa 3184: asks for authentication (3-D Secure)").check()
    page.get_by_test_id("pay-button").click()
    page.wait_for_url(re.compile(r"/authenticate/pi_"))
    assert "$12.50" in page.content()
    _shot(page, "hosted-invoice-challenge")
    page.get_by_test_id("approve").click()
    page.wait_for_url(re.compile(r"\?payment=pi_"))
    assert page.get_by_test_id("payment-result").inner_text() == "Payment received: thank you."
    assert page.get_by_test_id("invoice-status").inner_text() == "Paid"
    assert Invoice.objects.get(pk=invoice["id"]).status == "paid" and sandbox_charges() == 1


def test_the_portal_shows_the_usage_the_api_reports_and_nothing_of_another_customer(site, operator, page):
    now = timezone.now()
    customer, price, sub = metered_customer(now, values=(120, 75, 310))
    price.meter.name = "API requests"
    price.meter.save(update_fields=["name"])
    balance_adjust(customer=customer, amount=1500, currency="usd", type="adjustment", description="Goodwill", now=now)
    credit_grant_create(customer=customer, amount=5000, currency="usd", name="Launch credit", now=now)
    mine = finalized_invoice(operator, customer, amount=1900)
    PaymentMethodFactory(customer=customer, is_default=True)
    other = CustomerFactory()
    foreign_invoice = finalized_invoice(operator, other)
    foreign_method = PaymentMethodFactory(customer=other, last4="1881", is_default=True)
    _, url = portal_session_create(customer=customer, now=now)

    page.goto(url)
    shown = page.get_by_test_id("usage-total").inner_text()
    api_value = operator.get(
        f"/api/v1/usage/{price.meter_id}",
        {
            "customer": customer.id,
            "start": sub.current_period_start.isoformat(),
            "end": sub.current_period_end.isoformat(),
        },
    ).json()["data"][0]["value"]
    assert Decimal(shown) == Decimal(api_value) == 505
    assert page.locator("svg.usage-chart rect.bar").count() >= 28
    assert "API requests" in page.content() and page.get_by_test_id("balance").inner_text() == "$15.00"
    _shot(page, "portal-overview")

    page.get_by_role("link", name="Invoices").click()
    finalized = Invoice.objects.filter(customer=customer, finalized_at__isnull=False).count()
    assert page.locator("tr[data-invoice]").count() == finalized >= 1
    assert page.locator(f'tr[data-invoice="{mine["id"]}"]').count() == 1
    assert foreign_invoice["number"] not in page.content()

    page.get_by_role("link", name="Payment methods").click()
    page.get_by_label("Mastercard 4444: succeeds").check()
    page.get_by_test_id("add-card").click()
    assert page.get_by_test_id("added").is_visible()
    assert page.locator("tr[data-method]").count() == 2
    _shot(page, "portal-payment-methods")
    assert "1881" not in page.content()

    # Another customer's objects, asked for by id with this session: 404, and nothing changes.
    root = path_of(url)
    assert page.request.get(f"{site}{root}invoices/{foreign_invoice['id']}/pdf").status == 404
    csrf = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    answer = page.request.post(
        f"{site}{root}payment-methods/{foreign_method.id}/remove",
        headers={"X-CSRFToken": csrf, "Referer": site + root},
    )
    assert answer.status == 404
    foreign_method.refresh_from_db()
    assert foreign_method.detached_at is None
