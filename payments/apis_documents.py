"""`GET /credit-notes/{id}/pdf` and `GET /invoices/{id}/receipt`: the credit note and receipt PDFs."""

from __future__ import annotations

from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.request import Request

from billing_site.api import ApiView
from invoicing.documents.apis import PDF_RESPONSES, pdf_response
from invoicing.selectors import invoice_get
from payments.credit_notes import credit_note_get
from payments.documents import credit_note_pdf, invoice_receipt_pdf


class CreditNotePdfApi(ApiView):
    # Credit notes are invoice documents: the billing scope, like the invoice PDF.
    scope_resource = "billing"

    @extend_schema(
        operation_id="credit_notes_pdf",
        summary="Download a credit note as PDF",
        description="Rendered on its first download and stored: every later download returns the same bytes.",
        responses=PDF_RESPONSES,
    )
    def get(self, request: Request, credit_note_id: str) -> HttpResponse:
        note = credit_note_get(credit_note_id=credit_note_id)
        return pdf_response(credit_note_pdf(credit_note=note, now=timezone.now()))


class InvoiceReceiptApi(ApiView):
    scope_resource = "billing"

    @extend_schema(
        operation_id="invoices_receipt",
        summary="Download the receipt of a paid invoice as PDF",
        description=(
            "How the invoice was paid (credit grants, balance, payments) with its refunds and credit notes. "
            "Rendered on its first download and stored. 409 `invoice_not_paid` until the invoice is paid."
        ),
        responses={**PDF_RESPONSES, 409: OpenApiResponse(description="The invoice is not paid (`invoice_not_paid`).")},
    )
    def get(self, request: Request, invoice_id: str) -> HttpResponse:
        invoice = invoice_get(invoice_id=invoice_id)
        return pdf_response(invoice_receipt_pdf(invoice=invoice, now=timezone.now()))
