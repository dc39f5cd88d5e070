"""Credit note and receipt PDFs, and what the invoice PDF lists from payments (payments, refunds, credit
notes): rendered for real, read back with pypdf, figures asserted exactly."""

from __future__ import annotations

from decimal import Decimal

import pytest

from customers.tests.factories import CustomerFactory
from invoicing.documents.hooks import invoice_settlement_providers
from invoicing.documents.invoice import invoice_pdf
from invoicing.models import Invoice, StoredDocument
from invoicing.tests.documents_support import DOC_T0, at, invoice_with_lines, pdf_text
from payments.documents import invoice_receipt_pdf, invoice_settlement_read
from payments.models import CollectionAttempt, CreditNote, Refund
from payments.services.collection import invoice_collect
from payments.services.credit_notes import credit_note_create, credit_note_void
from payments.services.grants import credit_grant_create
from payments.services.ledger import balance_adjust
from payments.services.methods import payment_method_create
from payments.services.refunds import refund_create

pytestmark = pytest.mark.django_db

NOW = DOC_T0


@pytest.fixture(autouse=True)
def seller(settings):
    settings.SELLER_NAME = "Example Billing Inc."
    settings.SELLER_ADDRESS = ["1 Market St", "San Francisco, CA 94105"]
    settings.SELLER_TAX_ID = "US-EIN 12-3456789"


def paid_by_card(amount: int = 2020, *, currency: str = "usd", customer=None):
    customer = customer or CustomerFactory(name="Łukasz 東京", currency=currency)
    payment_method_create(customer=customer, token="tok_visa", default=True, now=NOW)
    invoice = invoice_with_lines(
        customer=customer,
        currency=currency,
        lines=[
            {"description": "Team plan", "amount": amount - 500},
            {
                "description": "Support hours",
                "amount": 500,
                "quantity": 2,
                "unit_amount": Decimal(250),
                "period_start": at(2025, 12, 3),
                "period_end": at(2026, 1, 3),
            },
        ],
    )
    result = invoice_collect(invoice=invoice, trigger=CollectionAttempt.Trigger.API, now=NOW)
    assert result.attempt.success, result.attempt.error
    return Invoice.objects.get(pk=invoice.pk)


def test_payments_registers_the_settlement_provider():
    assert invoice_settlement_read in invoice_settlement_providers


def test_a_fully_refunded_invoice_says_so(api):
    invoice = paid_by_card(2020)
    refund = refund_create(invoice=invoice, now=NOW)
    assert refund.status == Refund.Status.SUCCEEDED
    response = api.get(f"/api/v1/invoices/{invoice.id}/pdf")
    assert response.status_code == 200
    text = pdf_text(response.content)
    assert "Support hours Dec 3, 2025 – Jan 3, 2026 2 $2.50 $5.00" in text
    assert "Total (USD) $20.20 Amount due $20.20" in text
    assert (
        "Payment, Visa •••• 4242, Feb 3, 2026 $20.20 Amount paid $20.20 Refunded -$20.20 "
        "Net paid after refunds $0.00 Amount remaining $0.00"
    ) in text
    assert f"Refunds Date Reference Status Amount {_date(refund.created_at)} {refund.id} succeeded $20.20" in text
    assert "Paid on Feb 3, 2026." in text


def _date(value) -> str:
    return f"{value:%b} {value.day}, {value.year}"


def test_a_failed_refund_is_not_listed_and_a_pending_one_is_marked(api):
    invoice = paid_by_card(2020)
    refund_create(invoice=invoice, amount=500, now=NOW)
    pending = refund_create(invoice=invoice, amount=300, now=NOW)
    Refund.objects.filter(pk=pending.pk).update(status=Refund.Status.PENDING)
    failed = refund_create(invoice=invoice, amount=200, now=NOW)
    Refund.objects.filter(pk=failed.pk).update(status=Refund.Status.FAILED)
    text = pdf_text(invoice_pdf(invoice=invoice, now=NOW).content)
    assert (
        "Amount paid $20.20 Refunded -$5.00 Refund pending -$3.00 Net paid after refunds $15.20 Amount remaining $0.00"
    ) in text
    assert pending.id in text and failed.id not in text


def test_credit_note_pdf_lists_lines_with_their_periods_and_where_the_money_went(
    api, django_capture_on_commit_callbacks
):
    invoice = paid_by_card(2020)
    support = invoice.lines.get(description="Support hours")
    with django_capture_on_commit_callbacks(execute=True):
        note = credit_note_create(
            invoice=invoice,
            lines=[{"invoice_line": support.id, "quantity": Decimal(1)}],
            refund_amount=150,
            credit_amount=100,
            reason=CreditNote.Reason.PRODUCT_UNSATISFACTORY,
            memo="One support hour was not delivered.",
            now=NOW,
        )
    response = api.get(f"/api/v1/credit-notes/{note.id}/pdf")
    assert response.status_code == 200
    assert response["Content-Disposition"] == f'inline; filename="{note.number}.pdf"'
    text = pdf_text(response.content)
    assert "Example Billing Inc. 1 Market St San Francisco, CA 94105 Tax ID: US-EIN 12-3456789 Credit note" in text
    assert f"Credit note number {note.number}" in text
    assert f"Credits invoice {invoice.number} Invoice date Feb 3, 2026 Reason Product unsatisfactory" in text
    assert "Bill to Łukasz 東京" in text
    assert "Support hours Dec 3, 2025 – Jan 3, 2026 1 $2.50" in text
    assert (
        "Total credited (USD) $2.50 Credited to the account balance $1.00 Refunded to the payment method $1.50"
    ) in text
    refund = Refund.objects.get(credit_note=note)
    assert f"{refund.id} succeeded $1.50" in text
    assert "One support hour was not delivered." in text

    # The invoice now lists the credit note and its refund.
    invoice_text = pdf_text(invoice_pdf(invoice=invoice, now=NOW).content)
    assert (
        f"Credit notes Number Date Applied as Amount {note.number} {_date(note.created_at)} "
        "$1.00 credited to the account balance, $1.50 refunded $2.50"
    ) in invoice_text
    assert f"{refund.id} ({note.number}) succeeded $1.50" in invoice_text
    assert "Amount paid $20.20 Refunded -$1.50 Net paid after refunds $18.70 Amount remaining $0.00" in invoice_text


def test_a_credit_note_on_an_open_invoice_shows_what_it_took_off_the_amount_due(api):
    invoice = invoice_with_lines(currency="eur", lines=[{"description": "Pro plan", "amount": 3998}])
    note = credit_note_create(invoice=invoice, amount=998, now=NOW)
    text = pdf_text(api.get(f"/api/v1/credit-notes/{note.id}/pdf").content)
    assert f"Credit on invoice {invoice.number} €9.98 Total credited (EUR) €9.98" in text
    assert f"Taken off the amount due on invoice {invoice.number} €9.98" in text
    invoice.refresh_from_db()
    invoice_text = pdf_text(invoice_pdf(invoice=invoice, now=NOW).content)
    assert "Total (EUR) €39.98 Credit notes off the amount due -€9.98 Amount due €30.00" in invoice_text
    assert "Amount paid €0.00 Amount remaining €30.00" in invoice_text
    assert f"{note.number} {_date(note.created_at)} €9.98 off the amount due €9.98" in invoice_text


def test_a_credit_note_pdf_is_stored_once_and_a_voided_note_is_not_listed(api):
    invoice = invoice_with_lines(lines=[{"description": "Seat", "amount": 1000}])
    note = credit_note_create(invoice=invoice, amount=400, now=NOW)
    first = api.get(f"/api/v1/credit-notes/{note.id}/pdf")
    credit_note_void(credit_note=note, now=NOW)
    customer = invoice.customer
    customer.name = "Renamed Corp"
    customer.save()
    second = api.get(f"/api/v1/credit-notes/{note.id}/pdf")
    assert second.content == first.content and "VOID" not in pdf_text(second.content)
    assert StoredDocument.objects.filter(kind="credit_note", object_id=note.id).count() == 1
    invoice.refresh_from_db()
    assert note.number not in pdf_text(invoice_pdf(invoice=invoice, now=NOW).content)


def test_a_credit_note_first_rendered_after_its_void_is_stamped_void():
    from payments.documents import credit_note_pdf

    invoice = invoice_with_lines(lines=[{"description": "Seat", "amount": 1000}])
    note = credit_note_void(credit_note=credit_note_create(invoice=invoice, amount=400, now=NOW), now=NOW)
    text = pdf_text(credit_note_pdf(credit_note=note, now=NOW).content)
    assert "VOID" in text and "This credit note was voided on Feb 3, 2026." in text


def test_receipt_of_an_invoice_paid_by_credit_balance_and_card(api):
    customer = CustomerFactory(name="Receipt Customer", currency="usd")
    credit_grant_create(customer=customer, amount=500, currency="usd", now=NOW, effective_at=at(2026, 1, 1))
    balance_adjust(customer=customer, amount=300, currency="usd", type="adjustment", description="goodwill", now=NOW)
    invoice = paid_by_card(2020, customer=customer)
    assert (invoice.credits_applied, invoice.balance_applied, invoice.amount_paid) == (500, 300, 2020)
    response = api.get(f"/api/v1/invoices/{invoice.id}/receipt")
    assert response.status_code == 200
    assert response["Content-Disposition"] == f'inline; filename="receipt-{invoice.number}.pdf"'
    text = pdf_text(response.content)
    assert "Receipt" in text and "Received from Receipt Customer" in text
    assert (
        f"Receipt for invoice {invoice.number} Invoice date Feb 3, 2026 Date paid Feb 3, 2026 Amount paid $20.20"
    ) in text
    assert "Team plan Jan 3 – Feb 3, 2026 $15.20 Support hours Dec 3, 2025 – Jan 3, 2026 $5.00" in text
    assert (
        "Paid with credit grants $5.00 Paid from the account balance $3.00 Payment, Visa •••• 4242, Feb 3, 2026 "
        "$12.20 Amount paid $20.20 Amount remaining $0.00"
    ) in text
    assert "Example Billing Inc." in text

    # Stored once: a later download is the same document, whatever changed since.
    customer.name = "Renamed"
    customer.save()
    refund_create(invoice=invoice, amount=100, now=NOW)
    again = api.get(f"/api/v1/invoices/{invoice.id}/receipt")
    assert again.content == response.content
    assert StoredDocument.objects.filter(kind="receipt", object_id=invoice.id).count() == 1


def test_a_receipt_needs_a_paid_invoice(api):
    invoice = invoice_with_lines(lines=[{"description": "Seat", "amount": 1000}])
    response = api.get(f"/api/v1/invoices/{invoice.id}/receipt")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "invoice_not_paid"
    with pytest.raises(Exception, match="a receipt is issued once it is paid"):
        invoice_receipt_pdf(invoice=invoice, now=NOW)
    assert api.get("/api/v1/invoices/in_nope/receipt").status_code == 404


def test_document_endpoints_need_billing_read(make_client):
    invoice = paid_by_card(2020)
    note = credit_note_create(invoice=invoice, amount=100, out_of_band_amount=100, now=NOW)
    for path in (f"/api/v1/credit-notes/{note.id}/pdf", f"/api/v1/invoices/{invoice.id}/receipt"):
        assert make_client("payments:read").get(path).status_code == 403
        assert make_client("billing:read").get(path).status_code == 200
    missing = make_client("billing:read").get("/api/v1/credit-notes/cn_nope/pdf")
    assert missing.status_code == 404 and missing.json()["error"]["param"] == "id"
