"""Row locks on invoices (after customers and subscriptions in the one lock order: `billing_site.locks`)."""

from __future__ import annotations

from billing_site.locks import LockRank, lock_one, lock_rows
from invoicing.models import Invoice


def lock_invoice(invoice_id: str) -> Invoice:
    return lock_one(Invoice.objects.filter(pk=invoice_id), LockRank.INVOICE)


def lock_invoices(invoice_ids: list[str]) -> list[Invoice]:
    return lock_rows(Invoice.objects.filter(pk__in=invoice_ids), LockRank.INVOICE)
