"""Manual invoices (POST /invoices) from one-off items (/invoice-items) and given lines: invoicing's own
invoices, built and tested without a subscription."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.utils import timezone

from customers.tests.factories import CustomerFactory
from invoicing.models import Invoice, PendingInvoiceItem
from invoicing.services import tax_rate_create
from webhooks.models import BillingEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def customer():
    return CustomerFactory(currency="eur", address_country="DE")


def _item(api, customer, amount=2500, **extra):
    body = {"customer": customer.id, "amount": amount, "description": "Onboarding workshop", **extra}
    return api.post("/api/v1/invoice-items", body, format="json")


def test_an_item_waits_for_the_next_manual_invoice_which_bills_it_once(api, customer):
    item = _item(api, customer)
    assert item.status_code == 201, item.json()
    body = item.json()
    assert body["id"].startswith("ii_") and body["object"] == "invoice_item"
    assert (body["currency"], body["amount"], body["invoice"], body["kind"]) == ("eur", 2500, None, "invoice_item")
    listed = api.get("/api/v1/invoice-items", {"customer": customer.id, "pending": "true"}).json()
    assert [row["id"] for row in listed["data"]] == [body["id"]]

    created = api.post(
        "/api/v1/invoices",
        {"customer": customer.id, "lines": [{"description": "Extra seat", "amount": 1000, "quantity": "2"}]},
        format="json",
    )
    assert created.status_code == 201, created.json()
    invoice = created.json()
    assert invoice["status"] == "draft" and invoice["billing_reason"] == "manual" and invoice["subscription"] is None
    assert [(line["kind"], line["description"], line["amount"]) for line in invoice["lines"]] == [
        ("invoice_item", "Onboarding workshop", 2500),
        ("invoice_item", "Extra seat", 1000),
    ]
    assert invoice["total"] == 3500 and invoice["currency"] == "eur"
    assert api.get(f"/api/v1/invoice-items/{body['id']}").json()["invoice"] == invoice["id"]

    # The item is consumed: the next manual invoice does not bill it again.
    again = api.post("/api/v1/invoices", {"customer": customer.id}, format="json")
    assert again.status_code == 400 and again.json()["error"]["code"] == "invoice_empty"
    assert again.json()["error"]["param"] == "lines"

    finalized = api.post(f"/api/v1/invoices/{invoice['id']}/finalize")
    assert finalized.status_code == 200 and finalized.json()["status"] == "open"
    assert finalized.json()["number"].startswith("INV-")


def test_a_manual_invoice_is_taxed_like_every_invoice(api, customer):
    tax_rate_create(display_name="USt", percentage=Decimal("19"), country="DE", now=timezone.now())
    invoice = api.post(
        "/api/v1/invoices",
        {"customer": customer.id, "lines": [{"description": "Consulting", "amount": 10000}], "finalize": True},
        format="json",
    ).json()
    assert (invoice["subtotal"], invoice["tax"], invoice["total"], invoice["amount_due"]) == (10000, 1900, 11900, 11900)
    assert invoice["status"] == "open"
    assert invoice["lines"][0]["tax"][0]["amount"] == 1900


def test_send_invoice_terms_default_and_due_date(api, customer, settings):
    settings.INVOICE_DAYS_UNTIL_DUE = 14
    invoice = api.post(
        "/api/v1/invoices",
        {
            "customer": customer.id,
            "lines": [{"description": "Audit", "amount": 500}],
            "collection_method": "send_invoice",
            "finalize": True,
        },
        format="json",
    ).json()
    row = Invoice.objects.get(pk=invoice["id"])
    assert row.days_until_due == 14
    assert (row.due_date - row.finalized_at).days == 14


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"currency": "usd", "lines": [{"description": "x", "amount": 100}]}, "currency", "currency_mismatch"),
        ({"lines": [{"description": "x", "amount": 0}]}, "lines[0].amount", "amount_invalid"),
        ({"lines": [{"description": "x", "amount": 2**63}]}, "lines[0].amount", "amount_invalid"),
        ({"lines": [{"description": "x", "amount": 100, "price": "p"}]}, "lines[0].price", "unknown_field"),
        ({"lines": [{"amount": 100}]}, "lines[0].description", None),
        ({"collection_method": "cash", "lines": [{"description": "x", "amount": 1}]}, "collection_method", None),
    ],
)
def test_bad_manual_invoices_are_400_naming_the_field_and_write_nothing(api, customer, body, param, code):
    response = api.post("/api/v1/invoices", {"customer": customer.id, **body}, format="json")
    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert error["param"] == param
    if code:
        assert error["code"] == code
    assert not Invoice.objects.exists()


def test_unknown_and_deleted_customers_are_refused(api, customer):
    unknown = api.post("/api/v1/invoices", {"customer": "cus_nope", "lines": []}, format="json")
    assert unknown.status_code == 400 and unknown.json()["error"]["param"] == "customer"
    assert api.delete(f"/api/v1/customers/{customer.id}").status_code == 204
    deleted = _item(api, customer)
    assert deleted.status_code == 400 and deleted.json()["error"]["code"] in ("customer_deleted", "resource_missing")
    assert not PendingInvoiceItem.objects.exists()


def test_bad_items_are_400(api, customer):
    assert _item(api, customer, amount=0).json()["error"]["param"] == "amount"
    blank = _item(api, customer, description=" ")
    assert blank.status_code == 400 and blank.json()["error"]["param"] == "description"
    period = _item(api, customer, period_start="2026-02-01T00:00:00Z")
    assert period.status_code == 400 and period.json()["error"]["param"] == "period_end"
    assert not PendingInvoiceItem.objects.exists()


def test_an_item_can_be_deleted_until_it_is_invoiced(api, customer):
    first = _item(api, customer).json()
    assert api.delete(f"/api/v1/invoice-items/{first['id']}").status_code == 204
    assert api.get(f"/api/v1/invoice-items/{first['id']}").status_code == 404
    second = _item(api, customer).json()
    api.post("/api/v1/invoices", {"customer": customer.id}, format="json")
    refused = api.delete(f"/api/v1/invoice-items/{second['id']}")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "invoice_item_invoiced"
    types = set(BillingEvent.objects.values_list("type", flat=True))
    assert {"invoice_item.created", "invoice_item.deleted", "invoice.created"} <= types


def test_a_retried_create_with_the_same_key_makes_one_invoice(api, customer):
    _item(api, customer)
    body = {"customer": customer.id, "lines": [{"description": "Setup", "amount": 900}]}
    first = api.post("/api/v1/invoices", body, format="json", HTTP_IDEMPOTENCY_KEY="manual-1")
    second = api.post("/api/v1/invoices", body, format="json", HTTP_IDEMPOTENCY_KEY="manual-1")
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] == second.json()["id"]
    assert Invoice.objects.count() == 1


def test_scopes(make_client, customer):
    reader = make_client("billing:read")
    assert reader.post("/api/v1/invoices", {"customer": customer.id}, format="json").status_code == 403
    assert reader.post("/api/v1/invoice-items", {"customer": customer.id}, format="json").status_code == 403
    assert reader.get("/api/v1/invoice-items").status_code == 200
