"""Applying provider money to an invoice: the step shared by a payment that succeeds (intents), the
resolver that learns of one late, and (later) inbound provider webhooks."""

from __future__ import annotations

from datetime import datetime

from invoicing.locks import lock_invoice
from invoicing.models import Invoice
from invoicing.services import invoice_settle
from subscriptions.models import Subscription
from subscriptions.services.status import subscription_status_change


def invoice_apply_payment(*, invoice_id: str, amount: int, now: datetime) -> Invoice:
    """Record money received from the provider for an invoice, in the caller's transaction (the one that
    records the payment's success, so no collector can see the payment done and the invoice still due).
    Never more than what remains."""
    invoice = lock_invoice(invoice_id)
    applied = min(amount, invoice.amount_remaining)
    if applied <= 0 or invoice.status != Invoice.Status.OPEN:
        return invoice
    invoice = invoice_settle(invoice, amount=applied, field=None, now=now)
    if invoice.status == Invoice.Status.PAID:
        subscription_recover(invoice=invoice, now=now)
    return invoice


def subscription_recover(*, invoice: Invoice, now: datetime) -> None:
    """A paid invoice brings its past_due subscription back to active."""
    if invoice.subscription_id is None:
        return
    sub = Subscription.objects.filter(pk=invoice.subscription_id, status=Subscription.Status.PAST_DUE).first()
    if sub is not None:
        subscription_status_change(subscription=sub, to=Subscription.Status.ACTIVE, now=now)
