"""In a real browser (Debian's chromium through pytest-playwright): an operator logs in to admin, opens a
customer, issues a credit note and a refund through the actions' confirmation pages, and sees the results;
the dashboard shows the figures; no list scrolls sideways at 1400 px. With SCREENSHOTS=1 the pages are
saved under docs/screenshots/ (README shows them)."""

from __future__ import annotations

import io
import os

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's sync API runs an event loop here

from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.utils import timezone

from customers.models import Customer
from payments.models import CollectionAttempt, CreditNote, Refund
from payments.services.collection import invoice_collect
from payments.services.methods import payment_method_create
from payments.tests.factories import ledger_invoice

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
PASSWORD = "pw-browser-tests-only"


def shot(page, name: str) -> None:
    if os.environ.get("SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


@pytest.fixture
def operator(live_server, page):
    get_user_model().objects.create_superuser("ops", "ops@example.com", PASSWORD)
    page.set_viewport_size({"width": 1400, "height": 900})
    page.goto(f"{live_server.url}/admin/")
    page.fill("#id_username", "ops")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#site-name")
    return page


def paid_customer_invoice():
    call_command("load_demo_data", stdout=io.StringIO(), stderr=io.StringIO())
    customer = Customer.objects.get(external_id="tenant-acme")
    invoice = ledger_invoice(customer, lines=(2020,))
    payment_method_create(customer=customer, token="tok_visa", default=True, now=timezone.now())
    invoice_collect(invoice=invoice, trigger=CollectionAttempt.Trigger.API, now=timezone.now())
    invoice.refresh_from_db()
    assert invoice.status == "paid"
    return customer, invoice


def messages_text(page) -> str:
    return page.inner_text("ul.messagelist") if page.query_selector("ul.messagelist") else ""


def test_operator_issues_a_credit_note_and_a_refund_from_a_customer_page(live_server, operator):
    page = operator
    customer, invoice = paid_customer_invoice()

    # Find the customer by search and open it.
    page.click("a[href='/admin/customers/customer/']")
    page.fill("#searchbar", "tenant-acme")
    page.press("#searchbar", "Enter")
    page.click("#result_list a:has-text('tenant-acme')")
    page.wait_for_selector("#object-actions")
    assert "Subscriptions (latest" in page.content() and "Balance history" in page.content()
    assert "4242" in page.inner_text("body")  # the card, inline
    shot(page, "admin-customer")

    # Its invoice, from the invoices inline.
    invoices = page.locator("fieldset[aria-labelledby='invoices-heading']")
    assert "$20.20" in invoices.inner_text()
    invoices.locator("a.inlineviewlink").first.click()
    page.wait_for_selector("#object-actions")
    assert invoice.number in page.inner_text("body")

    # Issue credit note: the confirmation page asks for the amounts.
    page.click("button[data-action='issue_credit_note']")
    page.wait_for_selector("#confirm-action-form")
    assert "are you sure" in page.inner_text("h1")
    shot(page, "admin-action-confirmation")
    page.fill("#id_amount", "5")
    page.fill("#id_credit_amount", "5")
    page.fill("#id_memo", "Outage on the 3rd")
    page.click("#confirm-action")
    page.wait_for_selector("ul.messagelist")
    assert "credit note" in messages_text(page) and "of $5.00 issued" in messages_text(page)
    notes = page.locator("fieldset.module:has(h2:text-is('Credit notes'))")
    assert "$5.00" in notes.inner_text()

    # Refund: a bad amount is a message on the same page, nothing refunded.
    page.click("button[data-action='refund']")
    page.fill("#id_amount", "100")
    page.click("#confirm-action")
    page.wait_for_selector("ul.messagelist")
    assert "more than" in messages_text(page)
    assert not Refund.objects.filter(credit_note__isnull=True).exists()
    # Then a good one.
    page.click("button[data-action='refund']")
    page.fill("#id_amount", "3.00")
    page.select_option("#id_reason", "requested_by_customer")
    page.click("#confirm-action")
    page.wait_for_selector("ul.messagelist")
    assert "$3.00 is succeeded" in messages_text(page)
    refunds = page.locator("fieldset.module:has(h2:text-is('Refunds'))")
    assert "$3.00" in refunds.inner_text()

    note = CreditNote.objects.get(invoice=invoice)
    assert (note.amount, note.credit_amount, note.memo) == (500, 500, "Outage on the 3rd")
    assert Refund.objects.get(invoice=invoice, credit_note__isnull=True).amount == 300

    # Back on the customer's page the balance shows the credit.
    page.goto(f"{live_server.url}/admin/customers/customer/{customer.pk}/change/")
    assert "$5.00" in page.locator(".field-balances").inner_text()


def test_dashboard_and_lists_fit_1400_px(live_server, operator):
    page = operator
    paid_customer_invoice()
    ledger_invoice(Customer.objects.get(external_id="tenant-globex"), lines=(3998,), currency="eur")
    page.click("#billing-dashboard-link a.section")
    page.wait_for_selector("#dashboard-open")
    assert "€39.98" in page.inner_text("#dashboard-open")
    assert "$87.00" in page.inner_text("#dashboard-mrr")  # the demo's 3 seats at $29.00
    shot(page, "admin-dashboard")

    from django.contrib import admin

    wide = []
    for model in admin.site._registry:
        opts = model._meta
        page.goto(f"{live_server.url}/admin/{opts.app_label}/{opts.model_name}/")
        width = page.evaluate("document.documentElement.scrollWidth")
        if width > 1400:
            wide.append(f"{opts.app_label}.{opts.model_name}: {width}px")
    assert wide == []
