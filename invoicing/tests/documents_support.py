"""Builders for document tests: invoices written line by line, finalized by the real service, and the
PDF's text as a reader (pypdf) extracts it."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from decimal import Decimal

from pypdf import PdfReader

from customers.tests.factories import CustomerFactory
from invoicing.models import Invoice, InvoiceLine
from invoicing.services import invoice_finalize

DOC_T0 = datetime(2026, 2, 3, 9, 30, tzinfo=UTC)


def at(year: int, month: int, day: int) -> datetime:
    return datetime(year, month, day, 9, 30, tzinfo=UTC)


def pdf_text(content: bytes) -> str:
    """The PDF's text with every run of whitespace (no-break and thin spaces included) as one space, so
    assertions read "39,98 €" whatever space the locale puts there."""
    assert content.startswith(b"%PDF-")
    reader = PdfReader(io.BytesIO(content))
    return " ".join(" ".join(page.extract_text() for page in reader.pages).split())


def invoice_with_lines(
    *,
    customer=None,
    currency: str = "usd",
    lines: list[dict],
    period: tuple[datetime, datetime] = (at(2026, 1, 3), at(2026, 2, 3)),
    tax: int = 0,
    finalize: bool = True,
    now: datetime = DOC_T0,
    **invoice_fields,
) -> Invoice:
    """A manual invoice with `lines` (dicts of InvoiceLine fields; `amount` required, lines of kind
    discount carry a negative amount) whose totals add up, finalized by `invoice_finalize` unless told."""
    customer = customer or CustomerFactory(currency=currency)
    subtotal = sum(spec["amount"] for spec in lines if spec.get("kind") != InvoiceLine.Kind.DISCOUNT)
    discount = -sum(spec["amount"] for spec in lines if spec.get("kind") == InvoiceLine.Kind.DISCOUNT)
    total = subtotal - discount + tax
    invoice = Invoice.objects.create(
        customer=customer,
        billing_reason=Invoice.BillingReason.MANUAL,
        currency=currency,
        period_start=period[0],
        period_end=period[1],
        subtotal=subtotal,
        discount=discount,
        tax=tax + sum(t["amount"] for spec in lines for t in spec.get("taxes", []) if spec.get("inclusive_tax")),
        total=total,
        amount_due=max(total, 0),
        amount_remaining=max(total, 0),
        collection_method="send_invoice",
        **invoice_fields,
    )
    for position, spec in enumerate(lines, start=1):
        spec = {k: v for k, v in spec.items() if k != "inclusive_tax"}
        spec.setdefault("kind", InvoiceLine.Kind.FIXED)
        spec.setdefault("description", f"Line {position}")
        spec.setdefault("period_start", period[0])
        spec.setdefault("period_end", period[1])
        if isinstance(spec.get("quantity"), (int, str)):
            spec["quantity"] = Decimal(spec["quantity"])
        InvoiceLine.objects.create(invoice=invoice, position=position, **spec)
    if finalize:
        invoice = invoice_finalize(invoice=invoice, now=now)
    return Invoice.objects.get(pk=invoice.pk)
