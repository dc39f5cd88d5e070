"""The balance, credit grant and credit note endpoints: shapes, scopes, bad input, nothing half-written."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from customers.tests.factories import CustomerFactory
from metering.tests.factories import MeterFactory
from payments.audit import audit_all
from payments.models import BalanceTransaction, CreditGrant, CreditNote, CustomerBalance
from payments.tests.factories import CreditGrantFactory, ledger_invoice
from webhooks.models import BillingEvent

pytestmark = pytest.mark.django_db

GRANTS = "/api/v1/credit-grants"
NOTES = "/api/v1/credit-notes"


def balance_url(customer, suffix="balance"):
    return f"/api/v1/customers/{customer.id}/{suffix}"


def error_of(response):
    body = response.json()["error"]
    return body["type"], body["param"]


# --- Balances -------------------------------------------------------------------------------------


def test_adjust_and_read_a_balance(api):
    customer = CustomerFactory(currency="eur")
    response = api.post(
        balance_url(customer, "balance-transactions"), {"amount": 1500, "description": "goodwill"}, format="json"
    )
    assert response.status_code == 201
    body = response.json()
    assert body["id"].startswith("cbt_") and body["object"] == "customer_balance_transaction"
    assert {k: body[k] for k in ("customer", "currency", "type", "amount", "ending_balance", "description")} == {
        "customer": customer.id,
        "currency": "eur",  # the customer's currency by default
        "type": "adjustment",
        "amount": 1500,
        "ending_balance": 1500,
        "description": "goodwill",
    }
    assert (body["invoice"], body["credit_note"]) == (None, None)
    api.post(balance_url(customer, "balance-transactions"), {"amount": -500, "currency": "USD"}, format="json")
    assert api.get(balance_url(customer)).json() == {
        "object": "customer_balance",
        "customer": customer.id,
        "balances": [{"currency": "eur", "balance": 1500}, {"currency": "usd", "balance": -500}],
    }


def test_list_balance_transactions_newest_first_paginated_and_filtered(api):
    customer = CustomerFactory()
    for amount in (1, 2, 3):
        api.post(balance_url(customer, "balance-transactions"), {"amount": amount}, format="json")
    api.post(balance_url(customer, "balance-transactions"), {"amount": 9, "currency": "eur"}, format="json")
    page = api.get(balance_url(customer, "balance-transactions"), {"limit": 2}).json()
    assert [t["amount"] for t in page["data"]] == [9, 3] and page["has_more"] is True
    rest = api.get(balance_url(customer, "balance-transactions"), {"limit": 2, "cursor": page["next_cursor"]}).json()
    assert [t["amount"] for t in rest["data"]] == [2, 1] and rest["has_more"] is False
    usd = api.get(balance_url(customer, "balance-transactions"), {"currency": "USD", "type": "adjustment"}).json()
    assert [t["ending_balance"] for t in usd["data"]] == [6, 3, 1]
    assert api.get(balance_url(customer, "balance-transactions"), {"colour": "red"}).status_code == 400


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "amount"),
        ({"amount": 0}, "amount"),
        ({"amount": "ten"}, "amount"),
        ({"amount": 1.5}, "amount"),
        ({"amount": 10, "currency": "zzz"}, "currency"),
        ({"amount": 10, "type": "refund"}, "type"),
        ({"amount": 10, "description": "x" * 501}, "description"),
    ],
)
def test_bad_balance_adjustments_are_400_naming_the_field(api, body, param):
    customer = CustomerFactory()
    response = api.post(balance_url(customer, "balance-transactions"), body, format="json")
    assert response.status_code == 400
    assert error_of(response) == ("invalid_request", param)
    assert not BalanceTransaction.objects.exists()


def test_a_customer_without_a_currency_must_name_one(api):
    customer = CustomerFactory(currency="")
    response = api.post(balance_url(customer, "balance-transactions"), {"amount": 10}, format="json")
    assert (response.status_code, error_of(response)) == (400, ("invalid_request", "currency"))


def test_unknown_or_deleted_customers_are_404(api):
    assert api.get("/api/v1/customers/cus_nope/balance").status_code == 404
    gone = CustomerFactory(status="deleted", deleted_at=timezone.now())
    assert api.post(balance_url(gone, "balance-transactions"), {"amount": 5}, format="json").status_code == 404
    assert not CustomerBalance.objects.exists()


def test_balance_scopes(make_client):
    customer = CustomerFactory()
    url = balance_url(customer, "balance-transactions")
    assert make_client("payments:read").get(balance_url(customer)).status_code == 200
    assert make_client("payments:read").get(url).status_code == 200
    assert make_client("payments:read").post(url, {"amount": 5}, format="json").status_code == 403
    assert make_client("payments:write").post(url, {"amount": 5}, format="json").status_code == 201
    assert make_client("billing:read", "billing:write", "customers:read").get(balance_url(customer)).status_code == 403


# --- Credit grants --------------------------------------------------------------------------------


def test_create_read_list_and_void_a_grant(api):
    customer, meter = CustomerFactory(), MeterFactory()
    expires = (timezone.now() + timedelta(days=30)).replace(microsecond=0)
    response = api.post(
        GRANTS,
        {
            "customer": customer.id,
            "amount": 5000,
            "priority": 5,
            "expires_at": expires.isoformat(),
            "meters": [meter.id],
            "name": "Launch promo",
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["id"].startswith("cg_") and body["object"] == "credit_grant"
    assert (body["amount"], body["currency"], body["priority"], body["status"]) == (5000, "usd", 5, "active")
    assert (body["remaining"], body["burned"], body["meters"], body["prices"]) == (5000, 0, [meter.id], [])
    assert body["name"] == "Launch promo" and body["expires_at"].startswith(expires.strftime("%Y-%m-%dT%H:%M:%S"))

    assert api.get(f"{GRANTS}/{body['id']}").json()["remaining"] == 5000
    CreditGrantFactory(customer=customer, amount=70, status="voided")
    CreditGrantFactory()  # another customer's
    listed = api.get(GRANTS, {"customer": customer.id}).json()["data"]
    assert [(g["amount"], g["remaining"]) for g in listed] == [(70, 0), (5000, 5000)]
    assert [g["amount"] for g in api.get(GRANTS, {"customer": customer.id, "status": "active"}).json()["data"]] == [
        5000
    ]

    voided = api.post(f"{GRANTS}/{body['id']}/void")
    assert voided.status_code == 200
    assert (voided.json()["status"], voided.json()["remaining"]) == ("voided", 0)
    again = api.post(f"{GRANTS}/{body['id']}/void")
    assert (again.status_code, again.json()["error"]["type"]) == (409, "conflict")
    assert BillingEvent.objects.filter(object_id=body["id"]).count() == 2
    assert api.get(f"{GRANTS}/cg_nope").status_code == 404


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"customer": None}, "customer"),
        ({"customer": "cus_nope"}, "customer"),
        ({"amount": 0}, "amount"),
        ({"amount": None}, "amount"),
        ({"priority": -1}, "priority"),
        ({"currency": "nope"}, "currency"),
        ({"meters": ["mtr_nope"]}, "meters[0]"),
        ({"meters": "mtr_x"}, "meters"),
        ({"prices": ["price_nope"]}, "prices[0]"),
        ({"effective_at": "2026-05-01T00:00:00Z", "expires_at": "2026-04-01T00:00:00Z"}, "expires_at"),
        ({"expires_at": "tomorrow"}, "expires_at"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_grants_are_400_naming_the_field(api, change, param):
    body = {"customer": CustomerFactory().id, "amount": 100, **change}
    body = {k: v for k, v in body.items() if v is not None}
    response = api.post(GRANTS, body, format="json")
    assert response.status_code == 400, response.json()
    assert error_of(response) == ("invalid_request", param)
    assert not CreditGrant.objects.exists() and not BillingEvent.objects.filter(object_type="credit_grant").exists()


def test_grant_scopes(make_client):
    customer = CustomerFactory()
    body = {"customer": customer.id, "amount": 100}
    assert make_client("payments:read").post(GRANTS, body, format="json").status_code == 403
    grant_id = make_client("payments:write").post(GRANTS, body, format="json").json()["id"]
    assert make_client("payments:read").get(f"{GRANTS}/{grant_id}").status_code == 200
    assert make_client("payments:read").post(f"{GRANTS}/{grant_id}/void").status_code == 403
    assert make_client("billing:write").get(GRANTS).status_code == 403


# --- Credit notes ---------------------------------------------------------------------------------


def test_issue_read_list_and_void_credit_notes(api):
    invoice = ledger_invoice(lines=(600, 400))
    line = invoice.lines.get(position=1)
    response = api.post(
        NOTES,
        {"invoice": invoice.id, "lines": [{"invoice_line": line.id, "amount": 250}], "reason": "order_change"},
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["id"].startswith("cn_") and body["object"] == "credit_note" and body["number"] == "CN-000001"
    assert (body["invoice"], body["customer"], body["status"], body["amount"], body["invoice_amount"]) == (
        invoice.id,
        invoice.customer_id,
        "issued",
        250,
        250,
    )
    assert body["lines"] == [
        {"invoice_line": line.id, "description": "Line 1", "quantity": None, "amount": 250, "taxes": []}
    ]
    assert (body["reason"], body["memo"], body["voided_at"]) == ("order_change", None, None)
    invoice.refresh_from_db()
    assert (invoice.amount_due, invoice.amount_remaining, invoice.credited) == (750, 750, 250)

    second = api.post(NOTES, {"invoice": invoice.id, "amount": 100, "memo": "again"}, format="json").json()
    other = ledger_invoice(invoice.customer)
    api.post(NOTES, {"invoice": other.id, "amount": 5}, format="json")
    listed = api.get(NOTES, {"invoice": invoice.id}).json()["data"]
    assert [n["number"] for n in listed] == ["CN-000002", "CN-000001"]
    assert api.get(f"{NOTES}/{second['id']}").json()["memo"] == "again"

    voided = api.post(f"{NOTES}/{body['id']}/void")
    assert voided.status_code == 200 and voided.json()["status"] == "void" and voided.json()["voided_at"]
    assert api.post(f"{NOTES}/{body['id']}/void").status_code == 409
    assert [n["number"] for n in api.get(NOTES, {"invoice": invoice.id, "status": "issued"}).json()["data"]] == [
        "CN-000002"
    ]
    assert api.get(f"{NOTES}/cn_nope").status_code == 404
    assert audit_all() == []


def test_a_paid_invoice_credit_note_is_split(api):
    invoice = ledger_invoice(lines=(1000,), status="paid")
    mismatch = api.post(NOTES, {"invoice": invoice.id, "amount": 300, "credit_amount": 100}, format="json")
    assert (mismatch.status_code, error_of(mismatch)) == (400, ("invalid_request", "credit_amount"))
    assert mismatch.json()["error"]["code"] == "credit_note_split_mismatch"
    ok = api.post(
        NOTES, {"invoice": invoice.id, "amount": 300, "credit_amount": 200, "out_of_band_amount": 100}, format="json"
    )
    assert ok.status_code == 201
    assert (ok.json()["credit_amount"], ok.json()["out_of_band_amount"], ok.json()["invoice_amount"]) == (200, 100, 0)
    balance = api.get(balance_url(invoice.customer)).json()["balances"]
    assert balance == [{"currency": "usd", "balance": 200}]
    [txn] = api.get(balance_url(invoice.customer, "balance-transactions")).json()["data"]
    assert (txn["type"], txn["credit_note"], txn["invoice"]) == ("credit_note", ok.json()["id"], invoice.id)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"amount": 5}, "invoice"),
        ({"invoice": "in_nope", "amount": 5}, "invoice"),
        ({"invoice": "INV"}, "amount"),
        ({"invoice": "INV", "amount": 0}, "amount"),
        ({"invoice": "INV", "amount": 5000}, "amount"),
        ({"invoice": "INV", "lines": []}, "lines"),
        ({"invoice": "INV", "lines": [{"amount": 5}]}, "lines[0].invoice_line"),
        ({"invoice": "INV", "lines": [{"invoice_line": "LINE"}]}, "lines[0].amount"),
        ({"invoice": "INV", "lines": [{"invoice_line": "LINE", "amount": 5, "quantity": "1"}]}, "lines[0].amount"),
        ({"invoice": "INV", "lines": [{"invoice_line": "LINE", "amount": 601}]}, "lines[0].amount"),
        ({"invoice": "INV", "lines": [{"invoice_line": "il_nope", "amount": 5}]}, "lines[0].invoice_line"),
        ({"invoice": "INV", "lines": [{"invoice_line": "LINE", "amount": 5, "x": 1}]}, "lines[0].x"),
        ({"invoice": "INV", "amount": 5, "reason": "whim"}, "reason"),
        ({"invoice": "INV", "amount": 5, "refund_amount": -1}, "refund_amount"),
        ({"invoice": "INV", "amount": 5, "memo": "m" * 1001}, "memo"),
    ],
)
def test_bad_credit_notes_are_400_naming_the_field_and_write_nothing(api, body, param):
    invoice = ledger_invoice(lines=(600, 400))
    line = invoice.lines.get(position=1)
    body = {k: (invoice.id if v == "INV" else v) for k, v in body.items()}
    for spec in body.get("lines", []):
        if spec.get("invoice_line") == "LINE":
            spec["invoice_line"] = line.id
    response = api.post(NOTES, body, format="json")
    assert response.status_code == 400, response.json()
    assert error_of(response) == ("invalid_request", param)
    assert not CreditNote.objects.exists()
    invoice.refresh_from_db()
    assert (invoice.credited, invoice.amount_due) == (0, 1000)


def test_a_draft_invoice_is_409(api):
    draft = ledger_invoice(status="draft")
    response = api.post(NOTES, {"invoice": draft.id, "amount": 5}, format="json")
    assert (response.status_code, response.json()["error"]["code"]) == (409, "invoice_status_conflict")


def test_credit_notes_use_billing_scopes(make_client):
    invoice = ledger_invoice()
    body = {"invoice": invoice.id, "amount": 5}
    assert make_client("payments:write").post(NOTES, body, format="json").status_code == 403
    assert make_client("billing:read").post(NOTES, body, format="json").status_code == 403
    note = make_client("billing:write").post(NOTES, body, format="json").json()
    assert make_client("billing:read").get(f"{NOTES}/{note['id']}").status_code == 200
    assert make_client("billing:read").post(f"{NOTES}/{note['id']}/void").status_code == 403
    assert make_client("payments:read").get(NOTES).status_code == 403


def test_a_retried_credit_note_with_the_same_idempotency_key_is_issued_once(api):
    invoice = ledger_invoice()
    body = {"invoice": invoice.id, "amount": 100}
    first = api.post(NOTES, body, format="json", HTTP_IDEMPOTENCY_KEY="cn-1")
    second = api.post(NOTES, body, format="json", HTTP_IDEMPOTENCY_KEY="cn-1")
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json() and second["Idempotent-Replayed"] == "true"
    assert CreditNote.objects.count() == 1
