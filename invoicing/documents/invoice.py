"""The invoice document: what the PDF (and any HTML view of the invoice) shows.

Every line carries its own period (a usage line billed in arrears covers the previous period, a late
usage line an older one), its discount and its taxes; tiered prices show how the line's quantity fell
into the tiers, from the same pricing engine that computed the amount. Totals show tax per rate, then
what was paid (credit grants, balance, payments), refunded and credited, and what remains, as of the
moment the document was rendered.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings

from catalog.pricing import TieredAmount, quote
from invoicing.documents.engine import document_html, html_to_pdf
from invoicing.documents.formatting import Formatter
from invoicing.documents.hooks import CreditNoteEntry, InvoiceSettlement, invoice_settlement
from invoicing.documents.store import Pdf, pdf_unstored, stored_pdf_get_or_render
from invoicing.models import Invoice, InvoiceLine, StoredDocument, TaxRate

Kind = InvoiceLine.Kind
TEMPLATE = "documents/invoice.html"

_STAMPS = {Invoice.Status.DRAFT: "Draft", Invoice.Status.VOID: "Void"}
# Countries that write "Springfield, IL 62701"; elsewhere the postal code comes first ("90-001 Łódź"),
# with the state or region on a line of its own.
_CITY_STATE_POSTAL = frozenset({"US", "CA", "AU"})


def party_context(snapshot: dict[str, Any], fmt: Formatter) -> dict[str, Any]:
    """The billed customer, as the invoice recorded it at finalization (`customer_snapshot`)."""
    address = snapshot.get("address") or {}
    postal, city, state = address.get("postal_code"), address.get("city"), address.get("state")
    if (address.get("country") or "").upper() in _CITY_STATE_POSTAL:
        city_and_state = ", ".join(part for part in (city, state) if part)
        lines = [address.get("line1"), address.get("line2"), f"{city_and_state} {postal or ''}".strip()]
    else:
        lines = [address.get("line1"), address.get("line2"), f"{postal or ''} {city or ''}".strip(), state]
    if address.get("country"):
        lines.append(fmt.country(address["country"]))
    return {
        "name": snapshot.get("name") or snapshot.get("external_id") or "",
        "address": [line for line in lines if line],
        "email": snapshot.get("email") or "",
    }


def customer_snapshot_of(invoice: Invoice) -> dict[str, Any]:
    """What the invoice says about its customer: the snapshot taken at finalization, or (a draft) the
    customer as it is now."""
    if invoice.customer_snapshot:
        return invoice.customer_snapshot
    customer = invoice.customer
    return {
        "name": customer.name,
        "email": customer.email,
        "address": customer.address,
        "external_id": customer.external_id,
    }


def _tier_range(tiers: tuple, index: int, fmt: Formatter) -> str:
    upper = tiers[index].up_to
    lower = tiers[index - 1].up_to if index > 0 else None
    if lower is None:
        return f"up to {fmt.quantity(upper)}" if upper is not None else "all units"
    if upper is None:
        return f"over {fmt.quantity(lower)}"
    return f"over {fmt.quantity(lower)} up to {fmt.quantity(upper)}"


def tier_breakdown(line: InvoiceLine, fmt: Formatter) -> list[dict[str, str]]:
    """How the line's quantity was priced tier by tier (the quote's breakdown). Empty for flat prices,
    and for a line whose amount is not the plain quote of its quantity (a prorated or late-usage line),
    where a breakdown would not add up to the line."""
    if line.price is None or line.quantity is None or line.kind not in (Kind.USAGE, Kind.FIXED):
        return []
    amount = line.price.engine_amount
    if not isinstance(amount, TieredAmount):
        return []
    result = quote(amount, line.quantity)
    if result.amount != line.amount:
        return []
    rows = []
    for entry in result.breakdown:
        scope = _tier_range(amount.tiers, entry.tier - 1, fmt)
        if amount.mode == "total":
            scope = f"volume, {scope}"
        detail = f"{fmt.quantity(entry.quantity)} × {fmt.unit_price(entry.unit)}"
        if entry.flat:
            detail += f" + {fmt.money(entry.flat)} flat fee"
        rows.append({"label": f"Tier {entry.tier} ({scope})", "detail": detail, "amount": fmt.money(entry.amount)})
    return rows


def _rate_label(rate: TaxRate | None, rate_id: str, fmt: Formatter) -> str:
    if rate is None:  # rates are never deleted; kept so a document renders whatever happens
        return rate_id
    return f"{rate.display_name} {fmt.percent(rate.percentage)}"


def line_context(line: InvoiceLine, rates: dict[str, TaxRate], fmt: Formatter) -> dict[str, Any]:
    adjustments = []
    if line.discount_amount:
        adjustments.append({"label": "Discount", "amount": fmt.money(-line.discount_amount)})
    for tax in line.taxes:
        rate = rates.get(tax["tax_rate"])
        label = _rate_label(rate, tax["tax_rate"], fmt)
        if rate is not None and rate.inclusive:
            label += " (included)"
        adjustments.append({"label": label, "amount": fmt.money(tax["amount"])})
    return {
        "description": line.description,
        "period": fmt.period(line.period_start, line.period_end),
        "quantity": fmt.quantity(line.quantity) if line.quantity is not None else "",
        "unit_price": fmt.unit_price(line.unit_amount) if line.unit_amount is not None else "",
        "amount": fmt.money(line.amount),
        "breakdown": tier_breakdown(line, fmt),
        "adjustments": adjustments,
    }


def _tax_by_rate(lines: list[InvoiceLine], rates: dict[str, TaxRate], fmt: Formatter) -> tuple[list, list]:
    """(exclusive, inclusive) tax rows, one per rate, in the order the rates first appear."""
    sums: dict[str, int] = {}
    for line in lines:
        for tax in line.taxes:
            sums[tax["tax_rate"]] = sums.get(tax["tax_rate"], 0) + tax["amount"]
    exclusive, inclusive = [], []
    for rate_id, amount in sums.items():
        rate = rates.get(rate_id)
        label = _rate_label(rate, rate_id, fmt)
        if rate is not None and rate.inclusive:
            inclusive.append({"label": f"Includes {label}", "amount": fmt.money(amount)})
        else:
            exclusive.append({"label": label, "amount": fmt.money(amount)})
    return exclusive, inclusive


def credit_note_applied(note: CreditNoteEntry, fmt: Formatter) -> str:
    """Where a credit note's money went, in words: "$5.00 off the amount due, $5.00 refunded"."""
    parts = [
        (note.invoice_amount, "off the amount due"),
        (note.credit_amount, "credited to the account balance"),
        (note.refund_amount, "refunded"),
        (note.out_of_band_amount, "returned outside this system"),
    ]
    return ", ".join(f"{fmt.money(amount)} {what}" for amount, what in parts if amount)


def payments_context(invoice: Invoice, settlement: InvoiceSettlement, fmt: Formatter) -> dict[str, Any]:
    """What was paid, refunded and credited, and what remains. Every figure comes from the invoice's own
    amounts or from the lists that make them up, so the rows always agree with the API."""
    rows = []
    if invoice.credits_applied:
        rows.append({"label": "Paid with credit grants", "amount": fmt.money(invoice.credits_applied)})
    if invoice.balance_applied:
        rows.append({"label": "Paid from the account balance", "amount": fmt.money(invoice.balance_applied)})
    provider_paid = invoice.amount_paid - invoice.credits_applied - invoice.balance_applied
    if sum(p.amount for p in settlement.payments) == provider_paid:
        for payment in settlement.payments:
            label = f"Payment, {payment.method}, {fmt.date(payment.date)}" if payment.method else "Payment"
            rows.append({"label": label, "amount": fmt.money(payment.amount)})
    elif provider_paid:
        rows.append({"label": "Paid", "amount": fmt.money(provider_paid)})
    refunds = [r for r in settlement.refunds if r.status != "failed"]
    refunded = sum(r.amount for r in refunds if r.status == "succeeded")
    pending = sum(r.amount for r in refunds if r.status == "pending")
    return {
        "rows": rows,
        "amount_paid": fmt.money(invoice.amount_paid),
        "refunded": fmt.money(-refunded) if refunded else "",
        "refund_pending": fmt.money(-pending) if pending else "",
        "net_paid": fmt.money(invoice.amount_paid - refunded) if refunded or pending else "",
        "amount_remaining": fmt.money(invoice.amount_remaining),
        "refunds": [
            {
                "date": fmt.date(r.date),
                "reference": r.reference,
                "credit_note": r.credit_note,
                "status": r.status,
                "amount": fmt.money(r.amount),
            }
            for r in refunds
        ],
        "credit_notes": [
            {
                "number": n.number,
                "date": fmt.date(n.date),
                "amount": fmt.money(n.amount),
                "applied": credit_note_applied(n, fmt),
            }
            for n in settlement.credit_notes
        ],
    }


def invoice_document_context(*, invoice: Invoice, now: datetime, locale: str | None = None) -> dict[str, Any]:
    """Everything the invoice template shows, formatted for `locale` (default DOCUMENT_LOCALE)."""
    locale = locale or settings.DOCUMENT_LOCALE
    fmt = Formatter(locale=locale, currency=invoice.currency, tz=invoice.customer.timezone)
    lines = list(invoice.lines.select_related("price").order_by("position"))
    rate_ids = {tax["tax_rate"] for line in lines for tax in line.taxes}
    rates = {rate.id: rate for rate in TaxRate.objects.filter(pk__in=rate_ids)}
    exclusive_tax, inclusive_tax = _tax_by_rate(lines, rates, fmt)
    # The part of the total that credit notes took off what was due (open invoices only).
    credited_off_due = max(invoice.total, 0) - invoice.amount_due
    meta = [("Invoice number", invoice.number or "Draft")]
    if invoice.finalized_at:
        meta.append(("Date of issue", fmt.date(invoice.finalized_at)))
    if invoice.due_date:
        meta.append(("Date due", fmt.date(invoice.due_date)))
    if invoice.period_start and invoice.period_end:
        meta.append(("Billing period", fmt.period(invoice.period_start, invoice.period_end)))
    notes = []
    if invoice.status == Invoice.Status.VOID:
        notes.append(f"This invoice was voided on {fmt.date(invoice.voided_at)}; nothing is owed on it.")
    elif invoice.status == Invoice.Status.UNCOLLECTIBLE:
        notes.append(f"Marked uncollectible on {fmt.date(invoice.marked_uncollectible_at)}.")
    elif invoice.status == Invoice.Status.PAID and invoice.paid_at:
        notes.append(f"Paid on {fmt.date(invoice.paid_at)}.")
    return {
        "lang": fmt.locale.language,
        "title": f"Invoice {invoice.number}" if invoice.number else "Draft invoice",
        "stamp": _STAMPS.get(invoice.status, ""),
        "meta": meta,
        "bill_to": party_context(customer_snapshot_of(invoice), fmt),
        "currency": invoice.currency.upper(),
        "lines": [line_context(line, rates, fmt) for line in lines if line.kind != Kind.DISCOUNT],
        "subtotal": fmt.money(invoice.subtotal),
        "discounts": [
            {"label": line.description, "amount": fmt.money(line.amount)}
            for line in lines
            if line.kind == Kind.DISCOUNT
        ],
        "exclusive_tax": exclusive_tax,
        "total": fmt.money(invoice.total),
        "inclusive_tax": inclusive_tax,
        "credited_off_due": fmt.money(-credited_off_due) if credited_off_due > 0 else "",
        "amount_due": fmt.money(invoice.amount_due),
        "payments": payments_context(invoice, invoice_settlement(invoice), fmt),
        "as_of": fmt.date(now),
        "notes": notes,
        "tax_note": invoice.tax_note,
    }


def invoice_document_html(*, invoice: Invoice, now: datetime, locale: str | None = None) -> str:
    return document_html(TEMPLATE, invoice_document_context(invoice=invoice, now=now, locale=locale))


def invoice_pdf(*, invoice: Invoice, now: datetime) -> Pdf:
    """The invoice's PDF: stored on first rendering once finalized (the same bytes from then on), rendered
    afresh and marked as a draft while it is one. Call it outside any transaction."""
    locale = settings.DOCUMENT_LOCALE
    filename = f"{invoice.number or invoice.id}.pdf"

    def render() -> bytes:
        return html_to_pdf(invoice_document_html(invoice=invoice, now=now, locale=locale))

    if invoice.finalized_at is None:  # a draft, or a draft voided before it was ever issued
        return pdf_unstored(content=render(), filename=filename)
    return stored_pdf_get_or_render(
        kind=StoredDocument.Kind.INVOICE,
        object_id=invoice.id,
        customer_id=invoice.customer_id,
        filename=filename,
        locale=locale,
        render=render,
        now=now,
    )
