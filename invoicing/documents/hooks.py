"""What the invoice document lists about money that moved after it was issued: payments, refunds and
credit notes. Invoicing cannot import payments (imports point down), so payments registers a provider
here from its `AppConfig.ready()`; without one (invoicing alone) an invoice lists none of them.

Providers only read. They are called while a document is rendered, outside any transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from invoicing.models import Invoice


@dataclass(frozen=True)
class PaymentEntry:
    """Money received from a payment provider for the invoice."""

    reference: str  # our payment intent id
    date: datetime
    amount: int
    method: str  # "Visa •••• 4242"


@dataclass(frozen=True)
class RefundEntry:
    reference: str  # our refund id
    date: datetime
    amount: int
    status: str  # pending | succeeded (failed refunds gave nothing back and are not listed)
    credit_note: str = ""  # the number of the credit note the refund belongs to, if any


@dataclass(frozen=True)
class CreditNoteEntry:
    number: str
    date: datetime
    amount: int
    invoice_amount: int  # taken off what was due
    credit_amount: int  # credited to the customer's balance
    refund_amount: int
    out_of_band_amount: int
    reason: str = ""


@dataclass(frozen=True)
class InvoiceSettlement:
    payments: tuple[PaymentEntry, ...] = ()
    refunds: tuple[RefundEntry, ...] = ()
    credit_notes: tuple[CreditNoteEntry, ...] = ()


SettlementProvider = Callable[["Invoice"], InvoiceSettlement]

# Filled by payments (`payments.documents.invoice_settlement_read`).
invoice_settlement_providers: list[SettlementProvider] = []


def invoice_settlement(invoice: Invoice) -> InvoiceSettlement:
    """Every provider's entries for `invoice`, each list in date order."""
    payments: list[PaymentEntry] = []
    refunds: list[RefundEntry] = []
    notes: list[CreditNoteEntry] = []
    for provider in list(invoice_settlement_providers):
        found = provider(invoice)
        payments += found.payments
        refunds += found.refunds
        notes += found.credit_notes
    return InvoiceSettlement(
        payments=tuple(sorted(payments, key=lambda e: (e.date, e.reference))),
        refunds=tuple(sorted(refunds, key=lambda e: (e.date, e.reference))),
        credit_notes=tuple(sorted(notes, key=lambda e: (e.date, e.number))),
    )
