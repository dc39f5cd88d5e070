"""`GET /invoices/{id}/pdf`, and the response every document endpoint shares."""

from __future__ import annotations

from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.request import Request

from billing_site.api import ApiView
from billing_site.tenancy import TENANT_SCOPED
from invoicing import selectors
from invoicing.documents.invoice import invoice_pdf
from invoicing.documents.store import Pdf

PDF_RESPONSES = {
    (200, "application/pdf"): OpenApiResponse(bytes, description="The document as PDF."),
    503: OpenApiResponse(description="PDF rendering is unavailable here (`pdf_renderer_unavailable`)."),
}


def pdf_response(pdf: Pdf) -> HttpResponse:
    response = HttpResponse(pdf.content, content_type="application/pdf")
    response["Content-Disposition"] = f'inline; filename="{pdf.filename}"'
    response["ETag"] = f'"{pdf.sha256}"'
    # A stored document never changes; a draft is only true for this moment.
    response["Cache-Control"] = "private, max-age=86400" if pdf.stored else "no-store"
    return response


class InvoicePdfApi(ApiView):
    scope_resource = "billing"
    tenant_access = {"GET": TENANT_SCOPED}

    @extend_schema(
        operation_id="invoices_pdf",
        summary="Download an invoice as PDF",
        description=(
            "A finalized invoice is rendered on its first download and stored: every later download returns "
            "the same bytes (the `ETag` is their SHA-256). A draft is rendered afresh each time and marked "
            "as a draft."
        ),
        responses=PDF_RESPONSES,
    )
    def get(self, request: Request, invoice_id: str) -> HttpResponse:
        invoice = selectors.invoice_get(invoice_id=invoice_id, tenant=self.tenant_scope)
        return pdf_response(invoice_pdf(invoice=invoice, now=timezone.now()))
