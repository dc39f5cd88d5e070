"""What can still be given back: the one rule refunds and credit notes both check.

Money is given back against an invoice in four ways, and they share one limit:
- a credit note's parts that give back money already paid: `credit_amount` (to the balance),
  `refund_amount` (to the card; a refund of it that failed went to the balance and still counts) and
  `out_of_band_amount` (returned outside the system). Its `invoice_amount` only lowered what was due,
  so it gives nothing back (it is bounded by the credit-note limit `total - credited` instead);
- a refund that is not part of a credit note (`POST /refunds`), pending or succeeded;
- a lost dispute (the provider returned the money to the cardholder).

Per invoice: these together never pass what the invoice was paid (`amount_paid`: credits, balance and
provider money applied to it). Per payment: its live refunds and lost disputes never pass what it
received. A credit note's refund part is checked against the invoice once, as part of the note, and
against the payment by `refund_create`.

Both rules are read under the invoice's row lock (the caller holds it), so two concurrent give-backs on
one invoice cannot together pass the limit.
"""

from __future__ import annotations

from django.db.models import Sum

from billing_site.errors import InvalidRequest
from invoicing.models import Invoice
from payments.models import CreditNote, Dispute, PaymentIntent, Refund


def _sum(queryset, field: str) -> int:
    return queryset.aggregate(total=Sum(field))["total"] or 0


def invoice_given_back(invoice_id: str) -> int:
    """Everything given back so far against the invoice (module docstring)."""
    notes = CreditNote.objects.filter(invoice_id=invoice_id, status=CreditNote.Status.ISSUED).aggregate(
        credit=Sum("credit_amount"), refund=Sum("refund_amount"), oob=Sum("out_of_band_amount")
    )
    from_notes = sum(value or 0 for value in notes.values())
    refunds = _sum(
        Refund.objects.filter(payment_intent__invoice_id=invoice_id, credit_note__isnull=True).exclude(
            status=Refund.Status.FAILED
        ),
        "amount",
    )
    lost = _sum(
        Dispute.objects.filter(payment_intent__invoice_id=invoice_id, status=Dispute.Status.LOST), "amount_lost"
    )
    return from_notes + refunds + lost


def invoice_giveback_left(invoice: Invoice) -> int:
    """What can still be given back against the (locked) invoice: what it was paid less what was given back."""
    return max(invoice.amount_paid - invoice_given_back(invoice.pk), 0)


def payment_refundable(intent: PaymentIntent) -> int:
    """What can still be refunded of the (locked) payment: received, less live refunds (its
    `amount_refunded` reservation) and lost disputes."""
    lost = _sum(Dispute.objects.filter(payment_intent=intent, status=Dispute.Status.LOST), "amount_lost")
    return max(intent.amount_received - intent.amount_refunded - lost, 0)


def giveback_check(*, invoice: Invoice, amount: int, param: str) -> None:
    """Refuse (400 `amount_exceeds_paid`, naming `param`) giving back `amount` more against the invoice
    than it has left to give back."""
    if amount <= 0:
        return
    left = invoice_giveback_left(invoice)
    if amount > left:
        raise InvalidRequest(
            f"Invoice {invoice.id} was paid {invoice.amount_paid} and has {left} left to give back "
            f"(refunds, credit notes and lost disputes count together); this gives back {amount}.",
            param=param,
            code="amount_exceeds_paid",
        )
