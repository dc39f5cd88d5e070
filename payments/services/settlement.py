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


def invoice_apply_payment(*, invoice_id: str, amount: int, now: datetime) -> tuple[Invoice, int]:
    """Apply money received from the provider to an invoice, in the caller's transaction (the one that
    records the payment's success, so no collector can see the payment done and the invoice still due).
    Returns the invoice and what it took: at most what remains, nothing unless it is open. It never
    drops the rest: the caller, `payment_apply`, credits what the invoice did not take to the balance
    (one rule for every path that learns of a success: the confirmation, the resolver, a webhook)."""
    invoice = lock_invoice(invoice_id)
    applied = min(amount, invoice.amount_remaining) if invoice.status == Invoice.Status.OPEN else 0
    if applied <= 0:
        return invoice, 0
    invoice = invoice_settle(invoice, amount=applied, field=None, now=now)
    if invoice.status == Invoice.Status.PAID:
        subscription_recover(invoice=invoice, now=now)
    return invoice, applied


def payment_apply(*, intent: PaymentIntent, now: datetime) -> int:
    """A payment for an invoice succeeded: apply what it received to the invoice, and credit what the
    invoice cannot take (it was paid another way meanwhile, by balance, credits or a credit note; or voided)
    to the customer's balance as an explained `overpayment`, so money received is never lost nor silently
    dropped. Runs in the transaction that records the success; the caller holds the customer's balance row
    (the lock order puts it before the invoice). Returns the amount credited to the balance (once per
    payment by constraint)."""
    assert intent.invoice_id is not None
    before = lock_invoice(intent.invoice_id)
    was_open = before.status == Invoice.Status.OPEN
    invoice, applied = invoice_apply_payment(invoice_id=before.pk, amount=intent.amount_received, now=now)
    unapplied = intent.amount_received - applied
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
            if was_open
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
