"""Refunds of succeeded payments, full or partial.

The sum of refunds never exceeds what a payment received: the amount is reserved on the payment intent
(`amount_refunded`, under the row locks of the invoice then the payment intent: the one order, as credit
notes take it; with a check constraint behind it) in the transaction that
creates the pending Refund, before the provider is called; a refund the provider refuses gives its
reservation back. The provider call carries the refund's own idempotency key, stored on it first.

Called inside a caller's transaction (a credit note issuing a refund), the reservation joins that
transaction and the provider call waits for its commit (`transaction.on_commit`): never a provider call
with locks held, never a refund sent for a credit note that rolled back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.db.models import F

from billing_site.errors import Conflict, InvalidRequest
from customers.clocks import clock_scope
from invoicing.locks import lock_invoice
from invoicing.models import Invoice
from payments.locks import lock_intent_with_invoice, lock_payment_intent, lock_refund
from payments.models import BalanceTransaction, Dispute, PaymentIntent, Refund
from payments.processors import ProcessorError, ProcessorTimeout, ProviderRefund
from payments.services.giveback import giveback_check, invoice_giveback_left, payment_refundable
from payments.services.ledger import balance_adjust, balance_row_lock
from payments.services.methods import TIMEOUT_ERROR, error_data, in_callers_transaction, processor_named
from webhooks.services import object_event_emit

if TYPE_CHECKING:
    from payments.models import CreditNote

logger = logging.getLogger(__name__)

RefundStatus = Refund.Status
# A chargeback still open (an inquiry, `warning_*`, does not block: refunding answers it).
DISPUTE_BLOCKS_REFUNDS = (Dispute.Status.NEEDS_RESPONSE, Dispute.Status.UNDER_REVIEW)


def refund_snapshot(refund: Refund) -> dict[str, Any]:
    return {
        "id": refund.id,
        "payment_intent": refund.payment_intent_id,
        "invoice": refund.invoice_id,
        "credit_note": refund.credit_note_id,
        "amount": refund.amount,
        "currency": refund.currency,
        "reason": refund.reason or None,
        "status": refund.status,
        "last_error": refund.last_error,
    }


def _intent_of_invoice(invoice: Invoice, amount: int | None) -> str:
    """The invoice's succeeded payment to refund: the newest with enough left. A refund is of one payment;
    an invoice paid by several names the payment when the amount does not fit one of them."""
    refundable = list(
        PaymentIntent.objects.filter(invoice=invoice, status=PaymentIntent.Status.SUCCEEDED)
        .filter(amount_received__gt=F("amount_refunded"))
        .order_by("-succeeded_at", "-pk")
    )
    if not refundable:
        raise Conflict(f"Invoice {invoice.id} has no payment left to refund.", code="charge_already_refunded")
    if amount is None:
        if len(refundable) > 1:
            raise InvalidRequest(
                f"Invoice {invoice.id} was paid by several payments; name the payment_intent to refund.",
                param="payment_intent",
                code="parameter_missing",
            )
        return refundable[0].pk
    for intent in refundable:
        if intent.amount_received - intent.amount_refunded >= amount:
            return intent.pk
    most = max(i.amount_received - i.amount_refunded for i in refundable)
    raise InvalidRequest(
        f"amount is more than the {most} left to refund on any one payment of invoice {invoice.id}.",
        param="amount",
        code="amount_too_large",
    )


def refund_create(
    *,
    now: datetime,
    payment_intent: PaymentIntent | None = None,
    invoice: Invoice | None = None,
    amount: int | None = None,
    reason: str = "",
    credit_note: CreditNote | None = None,
) -> Refund:
    """Refund `amount` (None: all that is left) of a succeeded payment intent, or of an invoice's succeeded
    payment. Outside a transaction it reserves the amount, calls the provider and returns the Refund
    succeeded, pending (the provider has not finished, or did not answer) or failed (`last_error`; the
    reservation is given back). Inside the caller's transaction (a credit note) it only reserves, in that
    transaction, and returns the Refund pending: the provider is called once the caller commits, never
    inside the transaction and never if it rolls back."""
    if amount is not None and amount <= 0:
        raise InvalidRequest("amount must be a positive integer.", param="amount")
    if reason and reason not in Refund.Reason.values:
        raise InvalidRequest(f"reason must be one of {', '.join(Refund.Reason.values)}.", param="reason")
    if payment_intent is None and invoice is None:
        raise InvalidRequest("Name a payment_intent or an invoice.", param="payment_intent", code="parameter_missing")
    if payment_intent is not None:
        if invoice is not None and payment_intent.invoice_id != invoice.id:
            raise InvalidRequest(
                f"Payment intent {payment_intent.id} did not pay invoice {invoice.id}.", param="payment_intent"
            )
        intent_id = payment_intent.pk
    else:
        assert invoice is not None
        intent_id = _intent_of_invoice(invoice, amount)

    nested = in_callers_transaction()
    invoice_id = PaymentIntent.objects.filter(pk=intent_id).values_list("invoice_id", flat=True).first()
    with transaction.atomic(durable=not nested):
        # The invoice before its payment (the one lock order, as credit notes take it): inserting a refund
        # that names the invoice needs the invoice row too, and what an invoice can still give back is
        # shared by its refunds and credit notes (`payments.services.giveback`).
        locked_invoice = lock_invoice(invoice_id) if invoice_id else None
        intent = lock_payment_intent(intent_id)
        if intent.status != PaymentIntent.Status.SUCCEEDED:
            raise Conflict(
                f"PaymentIntent {intent.id} is {intent.status}; only succeeded payments are refunded.",
                code="payment_intent_unexpected_state",
            )
        disputes = list(Dispute.objects.filter(payment_intent=intent).values_list("status", "amount_lost"))
        if any(status in DISPUTE_BLOCKS_REFUNDS for status, _ in disputes):
            # As at the provider: a payment under a chargeback is not refunded (the dispute decides).
            raise Conflict(f"PaymentIntent {intent.id} is disputed; it cannot be refunded.", code="charge_disputed")
        # Money a lost dispute returned cannot be refunded again.
        left = payment_refundable(intent)
        if left <= 0:
            why = "refunded in full" if not any(lost for _, lost in disputes) else "refunded or lost in a dispute"
            raise Conflict(f"PaymentIntent {intent.id} is {why}.", code="charge_already_refunded")
        value = left if amount is None else amount
        if amount is None and locked_invoice is not None and credit_note is None:
            value = min(value, invoice_giveback_left(locked_invoice))
            if value <= 0:
                raise Conflict(
                    f"Invoice {locked_invoice.id} has nothing left to give back.", code="charge_already_refunded"
                )
        if value > left:
            raise InvalidRequest(
                f"amount is more than the {left} left to refund on {intent.id}.",
                param="amount",
                code="amount_too_large",
            )
        if locked_invoice is not None and credit_note is None:
            # A credit note's refund part was checked against the invoice with the note.
            giveback_check(invoice=locked_invoice, amount=value, param="amount")
        PaymentIntent.objects.filter(pk=intent.pk).update(amount_refunded=F("amount_refunded") + value, updated_at=now)
        refund = Refund(
            payment_intent=intent,
            invoice_id=invoice.id if invoice is not None else intent.invoice_id,
            credit_note=credit_note,
            amount=value,
            currency=intent.currency,
            reason=reason,
            status=RefundStatus.PENDING,
        )
        refund.idempotency_key = f"{refund.id}:refund"
        refund.save(force_insert=True)
        object_event_emit(
            type="refund.created", obj=refund, data=refund_snapshot(refund), now=now, customer_id=intent.customer_id
        )
    if nested:
        # The provider hears of it once the caller's transaction commits (and never if it rolls back).
        transaction.on_commit(_refund_send_hook(refund.pk, now), robust=True)
        return refund
    return refund_send(refund_id=refund.pk, now=now)


def _refund_send_hook(refund_id: str, now: datetime) -> Callable[[], None]:
    """The on-commit hook that sends a credit note's refund. A plain function, not a `functools.partial`:
    Django logs a robust hook's failure by the hook's `__qualname__`, which a partial lacks, so a refund
    whose provider call failed after the credit note committed turned into an AttributeError and a 500
    (and a 5xx frees the Idempotency-Key: the retry issued the note twice). A failure here is logged and
    leaves the refund pending, which `refunds_lost` picks up."""

    def send_credit_note_refund() -> None:
        refund_send(refund_id=refund_id, now=now)

    return send_credit_note_refund


def refund_send(*, refund_id: str, now: datetime) -> Refund:
    """Ask the provider for a pending refund (with its stored key: a repeat is answered, not redone)."""
    refund = Refund.objects.select_related("payment_intent").get(pk=refund_id)
    if refund.status != RefundStatus.PENDING:
        return refund
    intent = refund.payment_intent
    processor = processor_named(intent.provider)
    try:
        result = processor.refund(
            payment_ref=intent.provider_ref,
            amount=refund.amount,
            reason=refund.reason,
            idempotency_key=refund.idempotency_key,
            currency=refund.currency,
        )
    except ProcessorError as exc:
        return _settle(refund, now=now, error=error_data(exc))
    except ProcessorTimeout:
        return _settle(refund, now=now, timeout=True)
    return _settle(refund, now=now, result=result)


# A refund whose answer was lost is asked again with its own key, but only while the provider still
# remembers the key (Stripe: 24 hours); after that a repeat could refund twice, so it waits for a person.
LOST_RETRY_AFTER = timedelta(minutes=10)
LOST_RETRY_WITHIN = timedelta(hours=23)


def refunds_lost(*, now: datetime, limit: int = 500, clock: str | None = None) -> list[str]:
    """Pending refunds whose provider answer was lost (or whose on-commit call never ran); `clock`: see
    `customers.clocks.clock_scope`."""
    lost = (
        clock_scope(Refund.objects.all(), clock, path="payment_intent__customer")
        .filter(
            status=RefundStatus.PENDING,
            updated_at__lt=now - LOST_RETRY_AFTER,
            created_at__gt=now - LOST_RETRY_WITHIN,
        )
        .order_by("created_at")
    )
    return list(lost.values_list("pk", flat=True)[:limit])


def refund_resend_due(*, refund_id: str, now: datetime) -> str | None:
    """The resend task's service: ask the provider again, with the refund's own idempotency key, if the
    refund is still pending and lost (a duplicate task, or one after it settled, does nothing)."""
    if not Refund.objects.filter(pk=refund_id, status=RefundStatus.PENDING).exists():
        return None
    return refund_send(refund_id=refund_id, now=now).status


def _settle(
    refund: Refund,
    *,
    now: datetime,
    result: ProviderRefund | None = None,
    error: dict[str, Any] | None = None,
    timeout: bool = False,
) -> Refund:
    if error is not None or (result is not None and result.status == "failed"):
        error = error or {"code": "refund_failed", "message": "The payment processor refused the refund."}
        return refund_fail(
            refund_id=refund.pk, error=error, provider_ref=result.ref if result else "", now=now, only_pending=True
        )
    with transaction.atomic(durable=True):
        current = lock_refund(refund.pk)
        if current.status != RefundStatus.PENDING:
            return current
        customer_id = current.payment_intent.customer_id
        if timeout:
            # Still pending: the provider may have refunded. The reservation stays, so nothing can be
            # refunded twice; the stored key replays this refund if it is retried.
            Refund.objects.filter(pk=current.pk).update(last_error=TIMEOUT_ERROR, updated_at=now)
            logger.warning("refund %s: the provider's answer was lost; it stays pending", current.id)
        elif result is not None:
            status = RefundStatus.SUCCEEDED if result.status == "succeeded" else RefundStatus.PENDING
            Refund.objects.filter(pk=current.pk, status=RefundStatus.PENDING).update(
                status=status, provider_ref=result.ref, last_error=None, updated_at=now
            )
            current.refresh_from_db()
            if status == RefundStatus.SUCCEEDED:
                object_event_emit(
                    type="refund.succeeded",
                    obj=current,
                    data=refund_snapshot(current),
                    now=now,
                    customer_id=customer_id,
                )
        current.refresh_from_db()
    return current


def refund_fail(
    *, refund_id: str, error: dict[str, Any], now: datetime, provider_ref: str = "", only_pending: bool = False
) -> Refund:
    """A refund failed: the provider refused it, or reported later that it failed (a closed or lost card;
    Stripe's `refund.failed`). Reverse it in our books, once: the amount goes back to what the payment can
    still refund, and a credit note's refund, which the customer is still owed, is credited to their
    balance (a `refund_failed` entry naming the refund and the note, once per refund by constraint), so
    the credit note's refund part stays accounted for. `only_pending`: a pending refund only (the answer
    to our own call). Locks the balance, then the payment intent, then the refund (the one order)."""
    peek = Refund.objects.select_related("payment_intent").get(pk=refund_id)
    if peek.status == RefundStatus.FAILED or (only_pending and peek.status != RefundStatus.PENDING):
        return peek
    with transaction.atomic(durable=True):
        if peek.credit_note_id:
            balance_row_lock(customer_id=peek.payment_intent.customer_id, currency=peek.currency, now=now)
        lock_intent_with_invoice(peek.payment_intent_id)
        lock_refund(refund_id)
        current = Refund.objects.select_related("payment_intent__customer", "credit_note", "invoice").get(pk=refund_id)
        if current.status == RefundStatus.FAILED or (only_pending and current.status != RefundStatus.PENDING):
            return current
        Refund.objects.filter(pk=current.pk, status=current.status).update(
            status=RefundStatus.FAILED,
            last_error=error,
            provider_ref=provider_ref or current.provider_ref,
            updated_at=now,
        )
        PaymentIntent.objects.filter(pk=current.payment_intent_id).update(
            amount_refunded=F("amount_refunded") - current.amount, updated_at=now
        )
        note = current.credit_note
        if note is not None:
            balance_adjust(
                customer=current.payment_intent.customer,
                amount=current.amount,
                currency=current.currency,
                type=BalanceTransaction.Type.REFUND_FAILED,
                description=f"Refund {current.id} of credit note {note.number} failed",
                invoice=current.invoice,
                credit_note=note,
                refund_id=current.pk,
                now=now,
            )
        current.refresh_from_db()
        object_event_emit(
            type="refund.failed",
            obj=current,
            data=refund_snapshot(current),
            now=now,
            customer_id=current.payment_intent.customer_id,
        )
    if note is not None:
        logger.warning("refund %s failed; its %s went to the customer's balance", current.id, current.amount)
    return current


def refund_reconcile(
    *, refund: Refund, result: ProviderRefund, now: datetime, error: dict[str, Any] | None = None
) -> Refund:
    """Settle one of our refunds to what the provider reports about it (inbound webhooks: late, repeated,
    in any order). Pending becomes succeeded (or learns its provider id); pending or succeeded becomes
    failed through `refund_fail`; failed is final (a reversed refund is never applied again)."""
    if result.status == "failed":
        error = error or {"code": "refund_failed", "message": "The payment processor reports the refund failed."}
        return refund_fail(refund_id=refund.pk, error=error, provider_ref=result.ref, now=now)
    current = Refund.objects.get(pk=refund.pk)
    if current.status != RefundStatus.PENDING:
        return current
    if result.status == "pending" and current.provider_ref == result.ref:
        return current
    return _settle(current, now=now, result=result)
