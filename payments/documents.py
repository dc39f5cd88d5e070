"""The credit note and receipt documents, and what the invoice document lists from payments.

The engine (templates, WeasyPrint, Babel, storage) is invoicing's (`invoicing.documents`); this module
only builds what the documents show from payments' rows. Invoicing cannot import payments, so the
invoice document gets its payments, refunds and credit notes through `invoice_settlement_read`, which
`PaymentsConfig.ready()` registers as a provider.

Receipts are per paid invoice (`GET /invoices/{id}/receipt`), not per payment: an invoice can be paid by
credit grants, the balance and several payments, or by a credit note, and the receipt says how.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from django.db.models import Q

from billing_site.errors import Conflict
from invoicing.documents.engine import document_html, html_to_pdf
from invoicing.documents.formatting import Formatter
from invoicing.documents.hooks import CreditNoteEntry, InvoiceSettlement, PaymentEntry, RefundEntry
from invoicing.documents.invoice import customer_snapshot_of, invoice_document_context, party_context
from invoicing.documents.store import Pdf, stored_pdf_get_or_render
from invoicing.models import Invoice, StoredDocument, TaxRate
from payments.models import CreditNote, PaymentIntent, PaymentMethod, Refund

CREDIT_NOTE_TEMPLATE = "documents/credit_note.html"
RECEIPT_TEMPLATE = "documents/receipt.html"

_REASONS = {
    CreditNote.Reason.DUPLICATE: "Duplicate charge",
    CreditNote.Reason.FRAUDULENT: "Fraudulent charge",
    CreditNote.Reason.ORDER_CHANGE: "Order change",
    CreditNote.Reason.PRODUCT_UNSATISFACTORY: "Product unsatisfactory",
}


def method_label(method: PaymentMethod | None) -> str:
    if method is None:
        return ""
    brand = (method.brand or method.type or "card").replace("_", " ").title()
    return f"{brand} •••• {method.last4}" if method.last4 else brand


def invoice_settlement_read(invoice: Invoice) -> InvoiceSettlement:
    """Succeeded payments, refunds that did not fail, and issued credit notes of `invoice`."""
    intents = PaymentIntent.objects.filter(invoice=invoice, status=PaymentIntent.Status.SUCCEEDED).select_related(
        "payment_method"
    )
    refunds = (
        Refund.objects.filter(Q(invoice=invoice) | Q(payment_intent__invoice=invoice))
        .exclude(status=Refund.Status.FAILED)
        .select_related("credit_note")
        .distinct()
    )
    notes = CreditNote.objects.filter(invoice=invoice, status=CreditNote.Status.ISSUED)
    return InvoiceSettlement(
        payments=tuple(
            PaymentEntry(
                reference=intent.id,
                date=intent.succeeded_at or intent.updated_at,
                amount=intent.amount_received,
                method=method_label(intent.payment_method),
            )
            for intent in intents
        ),
        refunds=tuple(
            RefundEntry(
                reference=refund.id,
                date=refund.created_at,
                amount=refund.amount,
                status=refund.status,
                credit_note=refund.credit_note.number if refund.credit_note else "",
            )
            for refund in refunds
        ),
        credit_notes=tuple(
            CreditNoteEntry(
                number=note.number,
                date=note.created_at,
                amount=note.amount,
                invoice_amount=note.invoice_amount,
                credit_amount=note.credit_amount,
                refund_amount=note.refund_amount,
                out_of_band_amount=note.out_of_band_amount,
                reason=note.reason,
            )
            for note in notes
        ),
    )


# --- Credit notes ---------------------------------------------------------------------------------


def credit_note_document_context(*, credit_note: CreditNote, locale: str | None = None) -> dict[str, Any]:
    locale = locale or settings.DOCUMENT_LOCALE
    invoice = credit_note.invoice
    fmt = Formatter(locale=locale, currency=credit_note.currency, tz=invoice.customer.timezone)
    meta = [
        ("Credit note number", credit_note.number),
        ("Date of issue", fmt.date(credit_note.created_at)),
        ("Credits invoice", invoice.number or invoice.id),
        ("Invoice date", fmt.date(invoice.finalized_at)),
    ]
    if credit_note.reason:
        meta.append(("Reason", _REASONS.get(credit_note.reason, credit_note.reason)))
    lines = []
    for line in credit_note.lines.select_related("invoice_line").order_by("pk"):
        source = line.invoice_line
        lines.append(
            {
                "description": line.description,
                "period": fmt.period(source.period_start, source.period_end) if source else "",
                "quantity": fmt.quantity(line.quantity) if line.quantity is not None else "",
                "amount": fmt.money(line.amount),
            }
        )
    applied = [
        (credit_note.invoice_amount, f"Taken off the amount due on invoice {invoice.number}"),
        (credit_note.credit_amount, "Credited to the account balance"),
        (credit_note.refund_amount, "Refunded to the payment method"),
        (credit_note.out_of_band_amount, "Returned outside this system"),
    ]
    rates = {
        r.pk: f"{r.display_name} {r.percentage.normalize()}%"
        for r in TaxRate.objects.filter(pk__in=[t["tax_rate"] for t in credit_note.taxes])
    }
    refunds = Refund.objects.filter(credit_note=credit_note).exclude(status=Refund.Status.FAILED).order_by("pk")
    notes = []
    if credit_note.status == CreditNote.Status.VOID:
        notes.append(f"This credit note was voided on {fmt.date(credit_note.voided_at)}.")
    if credit_note.memo:
        notes.append(credit_note.memo)
    return {
        "lang": fmt.locale.language,
        "title": f"Credit note {credit_note.number}",
        "stamp": "Void" if credit_note.status == CreditNote.Status.VOID else "",
        "meta": meta,
        "bill_to": party_context(customer_snapshot_of(invoice), fmt),
        "currency": credit_note.currency.upper(),
        "lines": lines,
        "total": fmt.money(credit_note.amount),
        "taxes": [
            {
                "label": f"{rates.get(t['tax_rate'], t['tax_rate'])}{' (included)' if t['inclusive'] else ''}",
                "amount": fmt.money(t["amount"]),
            }
            for t in credit_note.taxes
        ],
        "applied": [{"label": label, "amount": fmt.money(amount)} for amount, label in applied if amount],
        "refunds": [
            {"date": fmt.date(r.created_at), "reference": r.id, "status": r.status, "amount": fmt.money(r.amount)}
            for r in refunds
        ],
        "notes": notes,
        "tax_note": "",
    }


def credit_note_pdf(*, credit_note: CreditNote, now: datetime) -> Pdf:
    """A credit note is final when issued: its PDF is rendered on first request and kept."""
    locale = settings.DOCUMENT_LOCALE

    def render() -> bytes:
        context = credit_note_document_context(credit_note=credit_note, locale=locale)
        return html_to_pdf(document_html(CREDIT_NOTE_TEMPLATE, context))

    return stored_pdf_get_or_render(
        kind=StoredDocument.Kind.CREDIT_NOTE,
        object_id=credit_note.id,
        customer_id=credit_note.customer_id,
        filename=f"{credit_note.number}.pdf",
        locale=locale,
        render=render,
        now=now,
    )


# --- Receipts -------------------------------------------------------------------------------------


def invoice_receipt_context(*, invoice: Invoice, now: datetime, locale: str | None = None) -> dict[str, Any]:
    """The invoice's own document context (lines, totals, payments, refunds, credit notes), headed as a
    receipt: the same figures, so a receipt can never disagree with its invoice."""
    context = invoice_document_context(invoice=invoice, now=now, locale=locale)
    fmt = Formatter(locale=locale or settings.DOCUMENT_LOCALE, currency=invoice.currency, tz=invoice.customer.timezone)
    context.update(
        title=f"Receipt for invoice {invoice.number}",
        stamp="",
        meta=[
            ("Receipt for invoice", invoice.number),
            ("Invoice date", fmt.date(invoice.finalized_at)),
            ("Date paid", fmt.date(invoice.paid_at)),
            ("Amount paid", fmt.money(invoice.amount_paid)),
        ],
        notes=[],
    )
    return context


def invoice_receipt_pdf(*, invoice: Invoice, now: datetime) -> Pdf:
    """The receipt of a paid invoice, rendered on first request and kept. 409 `invoice_not_paid` before."""
    if invoice.status != Invoice.Status.PAID:
        raise Conflict(
            f"Invoice {invoice.id} is {invoice.status}; a receipt is issued once it is paid.", code="invoice_not_paid"
        )
    locale = settings.DOCUMENT_LOCALE

    def render() -> bytes:
        return html_to_pdf(
            document_html(RECEIPT_TEMPLATE, invoice_receipt_context(invoice=invoice, now=now, locale=locale))
        )

    return stored_pdf_get_or_render(
        kind=StoredDocument.Kind.RECEIPT,
        object_id=invoice.id,
        customer_id=invoice.customer_id,
        filename=f"receipt-{invoice.number}.pdf",
        locale=locale,
        render=render,
        now=now,
    )
