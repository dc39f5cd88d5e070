"""Applying provider money to an invoice: the step shared by a payment that succeeds (intents), the
resolver that learns of one late, and inbound provider webhooks (`payments.services.provider_events`)."""

from __future__ import annotations

from datetime import datetime

from invoicing.locks import lock_invoice
from invoicing.models import Invoice, InvoiceCycle
from invoicing.services import invoice_settle
from payments.models import BalanceTransaction, PaymentIntent
from payments.services.ledger import balance_adjust
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


def payment_apply(*, intent: PaymentIntent, now: datetime) -> int:
    """A payment for an invoice succeeded: apply what it received to the invoice, and credit what the
    invoice cannot take (it was paid another way meanwhile, by balance, credits or a credit note; or voided)
    to the customer's balance, so money received is never lost. Runs in the transaction that records the
    success; the caller holds the customer's balance row (the lock order puts it before the invoice).
    Returns the amount credited to the balance (an `overpayment` entry, once per payment by constraint)."""
    assert intent.invoice_id is not None
    invoice = lock_invoice(intent.invoice_id)
    takes = min(intent.amount_received, invoice.amount_remaining) if invoice.status == Invoice.Status.OPEN else 0
    invoice_apply_payment(invoice_id=invoice.pk, amount=intent.amount_received, now=now)
    unapplied = intent.amount_received - max(takes, 0)
    if unapplied <= 0:
        return 0
    if BalanceTransaction.objects.filter(
        payment_intent_id=intent.pk, type=BalanceTransaction.Type.OVERPAYMENT
    ).exists():
        return 0
    balance_adjust(
        customer=invoice.customer,
        amount=unapplied,
        currency=intent.currency,
        type=BalanceTransaction.Type.OVERPAYMENT,
        description=(
            f"Payment {intent.id}: {unapplied} more than invoice {invoice.number or invoice.id} had left"
            if invoice.status == Invoice.Status.OPEN
            else f"Payment {intent.id} received after invoice {invoice.number or invoice.id} was {invoice.status}"
        ),
        invoice=invoice,
        payment_intent_id=intent.pk,
        now=now,
    )
    return unapplied


def subscription_recover(*, invoice: Invoice, now: datetime) -> None:
    """A paid invoice brings its past_due subscription back to active."""
    if invoice.subscription_id is None:
        return
    # A consolidated invoice's further subscriptions (InvoiceCycle) recover with it.
    further = InvoiceCycle.objects.filter(invoice=invoice).values_list("subscription_id", flat=True)
    ids = [invoice.subscription_id, *further]
    for sub in Subscription.objects.filter(pk__in=ids, status=Subscription.Status.PAST_DUE).order_by("pk"):
        subscription_status_change(subscription=sub, to=Subscription.Status.ACTIVE, now=now)
