"""PaymentIntents: create, confirm, capture, cancel, and settling payments whose answer was lost.

requires_payment_method -> requires_confirmation -> processing -> requires_action | requires_capture
(manual capture) | succeeded; a decline goes back to requires_payment_method with `last_error`;
canceled from any state before money moved; `unknown` when the provider's answer was lost (a timeout).
Every other transition is a 409 `payment_intent_unexpected_state`.

Exactly once: a confirmation first commits `processing` with the attempt's idempotency key
(`{pi.id}:confirm:{attempts}`), then calls the provider outside any transaction, then compare-and-sets
the outcome. A lost answer leaves `unknown`; confirming again, the admin action and the
`resolve_unknown_payments` job all settle it by *reading* the provider (`fetch_payment` with the same
key), never by charging again. At most one payment per invoice is in flight (a partial unique index).
A payment for an invoice that succeeds is applied to the invoice in the same transaction.

Refunds live in `payments.refunds`; `refund_create` is importable from here too.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F

from billing_site.errors import Conflict, InvalidRequest
from billing_site.tasks import enqueue_each
from customers.clocks import clock_scope
from customers.models import Customer
from customers.selectors import customer_refuse_deleted
from invoicing.locks import lock_invoice
from invoicing.models import Invoice
from payments.locks import lock_payment_intent
from payments.models import CollectionAttempt, PaymentIntent, PaymentMethod
from payments.processors import ProcessorError, ProcessorTimeout, ProviderPayment
from payments.services.ledger import balance_row_lock
from payments.services.methods import (
    TIMEOUT_ERROR,
    customer_processor,
    error_data,
    method_check,
    processor_named,
    provider_customer_ensure,
)
from payments.services.refunds import refunds_lost
from payments.services.settlement import payment_apply
from webhooks.services import object_event_emit

logger = logging.getLogger(__name__)

Status = PaymentIntent.Status
# The job settles `processing` rows older than this too: the process that was calling the provider died.
PROCESSING_STALE = timedelta(minutes=15)
# A provider that has no record of the payment this long after we asked never received it (Stripe's
# search index lags by about a minute): the payment failed, nothing was charged.
NOT_FOUND_GRACE = timedelta(hours=1)
# An invoice's intent still requires_confirmation this long after it was created was abandoned: the
# process between creating and confirming it died. The sweep cancels it (`payment_intent_abandon`).
ABANDONED_AFTER = timedelta(minutes=15)
CANCELLABLE = (
    Status.REQUIRES_PAYMENT_METHOD,
    Status.REQUIRES_CONFIRMATION,
    Status.REQUIRES_ACTION,
    Status.REQUIRES_CAPTURE,
)
_EVENTS = {
    Status.SUCCEEDED: "payment_intent.succeeded",
    Status.REQUIRES_CAPTURE: "payment_intent.amount_capturable_updated",
    Status.REQUIRES_ACTION: "payment_intent.requires_action",
    Status.REQUIRES_PAYMENT_METHOD: "payment_intent.payment_failed",
    Status.CANCELED: "payment_intent.canceled",
    Status.UNKNOWN: "payment_intent.unknown",
}


def payment_intent_snapshot(intent: PaymentIntent) -> dict[str, Any]:
    return {
        "id": intent.id,
        "customer": intent.customer_id,
        "invoice": intent.invoice_id,
        "amount": intent.amount,
        "currency": intent.currency,
        "capture_method": intent.capture_method,
        "payment_method": intent.payment_method_id,
        "status": intent.status,
        "amount_capturable": intent.amount_capturable,
        "amount_received": intent.amount_received,
        "amount_refunded": intent.amount_refunded,
        "provider": intent.provider,
        "last_error": intent.last_error,
    }


def _unexpected(intent: PaymentIntent, action: str) -> Conflict:
    return Conflict(
        f"PaymentIntent {intent.id} is {intent.status}; it cannot be {action}.",
        code="payment_intent_unexpected_state",
        extra={"status": intent.status},
    )


def _in_progress(invoice_id: str) -> Conflict:
    return Conflict(
        f"Invoice {invoice_id} already has a payment in progress.", code="payment_in_progress", param="invoice"
    )


def _lock(pk: str) -> PaymentIntent:
    return lock_payment_intent(pk)


# --- create and confirm ---------------------------------------------------------------------------


def _check_invoice(customer: Customer, invoice: Invoice, amount: int, currency: str) -> None:
    if invoice.customer_id != customer.id:
        raise InvalidRequest(f"Invoice {invoice.id} belongs to another customer.", param="invoice")
    if invoice.status != Invoice.Status.OPEN:
        raise InvalidRequest(
            f"Invoice {invoice.id} is {invoice.status}; only open invoices take payments.",
            param="invoice",
            code="invoice_not_open",
        )
    if currency != invoice.currency:
        raise InvalidRequest(f"The invoice is in {invoice.currency}.", param="currency", code="currency_mismatch")
    if amount > invoice.amount_remaining:
        raise InvalidRequest(
            f"amount is more than the {invoice.amount_remaining} remaining on invoice {invoice.id}.",
            param="amount",
            code="amount_too_large",
        )


def payment_intent_create(
    *,
    customer: Customer,
    amount: int | None,
    currency: str,
    now: datetime,
    payment_method: PaymentMethod | None = None,
    capture_method: str = "automatic",
    invoice: Invoice | None = None,
    description: str = "",
    offboarding: bool = False,
) -> PaymentIntent:
    """A new intent (requires_confirmation with a method, else requires_payment_method). For an invoice it
    is created under the invoice's row lock, against the locked row: the invoice must still be open and
    owe at least `amount` (None: exactly what remains), so a charge is always sized by what the invoice
    owes when its payment starts; and while it is in flight collection applies nothing else to the
    invoice (`ledger.invoice_payment_in_flight`). A deleted customer is refused (409 `customer_deleted`)
    except by the final collection of its offboarding (`offboarding`)."""
    if amount is None and invoice is None:
        raise InvalidRequest("amount is required.", param="amount", code="parameter_missing")
    if amount is not None and amount <= 0:
        raise InvalidRequest("amount must be a positive integer.", param="amount")
    if not offboarding:
        customer_refuse_deleted(customer_id=customer.id)
    if capture_method not in ("automatic", "manual"):
        raise InvalidRequest("capture_method must be automatic or manual.", param="capture_method")
    if payment_method is not None:
        method_check(customer_id=customer.id, payment_method=payment_method)
    if invoice is not None:
        _check_invoice(customer, invoice, amount or 1, currency)
    intent = PaymentIntent(
        customer=customer,
        invoice=invoice,
        amount=amount or 0,
        currency=currency,
        capture_method=capture_method,
        payment_method=payment_method,
        description=description,
        provider=payment_method.provider if payment_method else customer_processor(customer).name,
        status=Status.REQUIRES_CONFIRMATION if payment_method else Status.REQUIRES_PAYMENT_METHOD,
    )
    try:
        with transaction.atomic(durable=True):
            if invoice is not None:
                locked = lock_invoice(invoice.pk)
                if amount is None:
                    intent.amount = locked.amount_remaining
                _check_invoice(customer, locked, intent.amount, currency)
            intent.save(force_insert=True)
            object_event_emit(type="payment_intent.created", obj=intent, data=payment_intent_snapshot(intent), now=now)
    except IntegrityError:
        if invoice is None:
            raise
        raise _in_progress(invoice.id) from None
    return intent


def payment_intent_confirm(
    *,
    payment_intent: PaymentIntent,
    now: datetime,
    payment_method: PaymentMethod | None = None,
    off_session: bool = False,
) -> PaymentIntent:
    """Ask the provider for the money. From requires_action or unknown this reads the provider's answer
    back (the customer may have authenticated; the lost answer may have arrived) and never charges."""
    if payment_method is not None:
        method_check(customer_id=payment_intent.customer_id, payment_method=payment_method)
    # A processor that is unknown or not configured fails here, before anything is marked processing.
    processor_named(payment_method.provider if payment_method is not None else payment_intent.provider)
    closed = False
    with transaction.atomic(durable=True):
        if payment_intent.invoice_id:  # the one order: the invoice, then its payment
            lock_invoice(payment_intent.invoice_id)
        intent = _lock(payment_intent.pk)
        if intent.status in (Status.REQUIRES_ACTION, Status.UNKNOWN):
            if payment_method is not None and payment_method.pk != intent.payment_method_id:
                raise _unexpected(intent, "confirmed with another payment method")
            attempt = False
        elif intent.status in (Status.REQUIRES_PAYMENT_METHOD, Status.REQUIRES_CONFIRMATION):
            method = payment_method or intent.payment_method
            if method is None:
                raise InvalidRequest(
                    "Confirming needs a payment_method.", param="payment_method", code="parameter_missing"
                )
            if method.detached_at is not None:
                raise InvalidRequest(
                    f"Payment method {method.id} is detached.", param="payment_method", code="payment_method_detached"
                )
            closed = bool(
                intent.invoice_id and Invoice.objects.filter(pk=intent.invoice_id).exclude(status="open").exists()
            )
            attempt = not closed
            if closed:
                # Paid (or voided) another way since this intent was created: it can never be confirmed, so
                # it is canceled rather than left in flight on a closed invoice (an orphan).
                _cancel_locally(intent, reason="abandoned", now=now)
            else:
                _mark_processing(intent, method, now=now)
        else:
            raise _unexpected(intent, "confirmed")
    if closed:
        raise Conflict(
            f"Invoice {intent.invoice_id} is no longer open; payment intent {intent.id} was canceled.",
            code="invoice_not_open",
            param="invoice",
        )
    if not attempt:
        return _refresh(intent, now=now)
    return _attempt(intent, off_session=off_session, now=now)


def _mark_processing(intent: PaymentIntent, method: PaymentMethod, *, now: datetime) -> None:
    """Commit `processing` with the attempt's idempotency key before the provider hears of it."""
    previous = intent.status
    fields: dict[str, Any] = {
        "payment_method": method,
        "provider": method.provider,
        "provider_ref": "",  # a new attempt: the previous one's provider id no longer describes it
        "client_secret": "",
        "next_action": None,
        "attempts": intent.attempts + 1,
        "idempotency_key": f"{intent.id}:confirm:{intent.attempts + 1}",
        "status": Status.PROCESSING,
        "last_error": None,
        "updated_at": now,
    }
    try:
        with transaction.atomic():
            PaymentIntent.objects.filter(pk=intent.pk, status=previous).update(**fields)
    except IntegrityError:
        raise _in_progress(intent.invoice_id or "") from None
    intent.refresh_from_db()


def _cancel_locally(intent: PaymentIntent, *, reason: str, now: datetime) -> None:
    """Cancel a locked intent the provider never heard of (or holds nothing for), in the caller's
    transaction."""
    previous = intent.status
    PaymentIntent.objects.filter(pk=intent.pk, status=previous).update(
        status=Status.CANCELED, canceled_at=now, cancellation_reason=reason, amount_capturable=0, updated_at=now
    )
    intent.refresh_from_db()
    object_event_emit(
        type="payment_intent.canceled",
        obj=intent,
        data=payment_intent_snapshot(intent),
        now=now,
        previous={"status": previous},
    )


def _attempt(intent: PaymentIntent, *, off_session: bool, now: datetime) -> PaymentIntent:
    processor = processor_named(intent.provider)
    try:
        provider_customer = provider_customer_ensure(customer=intent.customer, processor=processor)
    except ProcessorError as exc:  # nothing was asked for yet: a plain failure
        return _settle(intent, _failure(intent, error_data(exc)), expected=Status.PROCESSING, now=now)
    except ProcessorTimeout:
        return _settle(intent, _failure(intent, TIMEOUT_ERROR), expected=Status.PROCESSING, now=now)
    call = processor.authorize if intent.capture_method == "manual" else processor.charge
    try:
        result = call(
            provider_customer=provider_customer,
            method_ref=intent.payment_method.provider_ref,
            amount=intent.amount,
            currency=intent.currency,
            idempotency_key=intent.idempotency_key,
            description=intent.description,
            off_session=off_session,
        )
    except ProcessorError as exc:
        result = _failure(intent, error_data(exc))
    except ProcessorTimeout:
        return _settle_unknown(intent, expected=Status.PROCESSING, now=now)
    return _settle(intent, result, expected=Status.PROCESSING, now=now)


def _failure(intent: PaymentIntent, error: dict[str, Any]) -> ProviderPayment:
    return ProviderPayment(
        ref="",
        status="failed",
        amount=intent.amount,
        error_code=error["code"],
        error_message=error.get("message"),
        decline_code=error.get("decline_code"),
    )


def _outcome(intent: PaymentIntent, result: ProviderPayment, now: datetime) -> dict[str, Any]:
    """The fields a provider answer sets (an empty dict: nothing changes)."""
    fields: dict[str, Any] = {"provider_ref": result.ref or intent.provider_ref}
    next_action = (result.next_action or {"type": "unknown"}) if result.status == "requires_action" else None
    if next_action != intent.next_action:
        fields.update(next_action=next_action)
    if result.client_secret and result.client_secret != intent.client_secret:
        fields.update(client_secret=result.client_secret)
    if result.status == "succeeded":
        fields.update(
            status=Status.SUCCEEDED,
            amount_received=result.amount_received or result.amount,
            amount_capturable=0,
            succeeded_at=now,
            last_error=None,
        )
    elif result.status == "requires_capture":
        fields.update(status=Status.REQUIRES_CAPTURE, amount_capturable=result.amount_capturable or intent.amount)
    elif result.status == "requires_action":
        fields.update(status=Status.REQUIRES_ACTION)
    elif result.status == "canceled":
        fields.update(status=Status.CANCELED, amount_capturable=0, canceled_at=now)
    elif result.status == "failed":
        error: dict[str, Any] = {"code": result.error_code or "payment_failed", "message": result.error_message or ""}
        if result.decline_code:
            error["decline_code"] = result.decline_code
        fields.update(status=Status.REQUIRES_PAYMENT_METHOD, amount_capturable=0, last_error=error)
    else:  # processing at the provider: still on its way
        fields.update(status=Status.PROCESSING)
    unchanged = fields["status"] == intent.status and fields["provider_ref"] == intent.provider_ref
    if unchanged and "next_action" not in fields and "client_secret" not in fields:
        return {}
    return fields


def _settle(
    intent: PaymentIntent, result: ProviderPayment, *, expected: str, now: datetime, **extra: Any
) -> PaymentIntent:
    """Record a provider answer: compare-and-set from `expected`; if someone else already moved the
    intent, theirs stands. A success pays the invoice in the same transaction, and what the invoice can no
    longer take (paid another way meanwhile) goes to the customer's balance."""
    with transaction.atomic(durable=True):
        if intent.invoice_id and result.status == "succeeded":
            # Lock order: the balance (a success may credit it), then the invoice, then its payment.
            balance_row_lock(customer_id=intent.customer_id, currency=intent.currency, now=now)
        if intent.invoice_id:  # lock order: the invoice before its payment
            lock_invoice(intent.invoice_id)
        current = _lock(intent.pk)
        if current.status != expected:
            return current
        fields = _outcome(current, result, now)
        if not fields:
            return current
        fields.update(extra, updated_at=now)
        PaymentIntent.objects.filter(pk=current.pk, status=expected).update(**fields)
        current.refresh_from_db()
        if current.status == Status.SUCCEEDED and current.invoice_id:
            payment_apply(intent=current, now=now)
        if current.status != expected and current.status in _EVENTS:
            object_event_emit(
                type=_EVENTS[current.status],
                obj=current,
                data=payment_intent_snapshot(current),
                now=now,
                previous={"status": expected},
            )
    return current


def _settle_unknown(intent: PaymentIntent, *, expected: str, now: datetime) -> PaymentIntent:
    with transaction.atomic(durable=True):
        current = _lock(intent.pk)
        if current.status != expected:
            return current
        PaymentIntent.objects.filter(pk=current.pk, status=expected).update(
            status=Status.UNKNOWN, last_error=TIMEOUT_ERROR, updated_at=now
        )
        current.refresh_from_db()
        object_event_emit(
            type="payment_intent.unknown",
            obj=current,
            data=payment_intent_snapshot(current),
            now=now,
            previous={"status": expected},
        )
    logger.warning("payment intent %s: the provider's answer was lost; it is unknown until resolved", current.id)
    return current


def _refresh(intent: PaymentIntent, *, now: datetime) -> PaymentIntent:
    """Read the provider's view of the current attempt and settle to it. Never charges."""
    processor = processor_named(intent.provider)
    try:
        result = processor.fetch_payment(idempotency_key=intent.idempotency_key, payment_ref=intent.provider_ref)
    except (ProcessorError, ProcessorTimeout) as exc:
        logger.warning("payment intent %s: reading the provider failed (%s)", intent.id, type(exc).__name__)
        return intent
    if result is None:
        waiting = intent.status in (Status.UNKNOWN, Status.PROCESSING) and intent.updated_at > now - NOT_FOUND_GRACE
        if waiting or intent.status not in (Status.UNKNOWN, Status.PROCESSING):
            return intent
        message = "The payment processor has no record of this payment; nothing was charged."
        result = _failure(intent, {"code": "payment_not_found", "message": message})
    return _settle(intent, result, expected=intent.status, now=now)


def payment_intent_resolve(*, payment_intent: PaymentIntent, now: datetime) -> PaymentIntent:
    """Settle an unknown (or stuck processing) payment from the provider's records. Never charges."""
    intent = PaymentIntent.objects.get(pk=payment_intent.pk)
    if intent.status not in (Status.UNKNOWN, Status.PROCESSING):
        raise _unexpected(intent, "resolved")
    return _refresh(intent, now=now)


def payment_intent_resolve_due(*, payment_intent_id: str, now: datetime) -> str | None:
    """The resolver task's service: settle the intent if it is still unknown (or still processing), or
    cancel it if it was abandoned before its confirmation (`payment_intent_abandon`); a duplicate task, or
    one that arrives after the intent settled, does nothing. Never charges."""
    intent = PaymentIntent.objects.filter(
        pk=payment_intent_id, status__in=(Status.UNKNOWN, Status.PROCESSING, Status.REQUIRES_CONFIRMATION)
    ).first()
    if intent is None:
        return None
    if intent.status == Status.REQUIRES_CONFIRMATION:
        return payment_intent_abandon(payment_intent=intent, now=now).status
    return _refresh(intent, now=now).status


def payment_intent_abandon(*, payment_intent: PaymentIntent, now: datetime) -> PaymentIntent:
    """An invoice's intent left requires_confirmation for longer than `ABANDONED_AFTER`: the process
    that created it died before confirming (it never reached the provider: a confirmation commits
    `processing` first). It holds the invoice's one in-flight slot, so every later attempt would fail with
    `payment_in_progress` forever. Cancel it (compare-and-set), count the attempt that died on the invoice
    (`attempt_count`, with a failed `CollectionAttempt` saying so) and make the invoice due for collection
    now. Does nothing if the intent moved meanwhile or is younger than the window."""
    with transaction.atomic(durable=True):
        if payment_intent.invoice_id:
            invoice = lock_invoice(payment_intent.invoice_id)
        intent = _lock(payment_intent.pk)
        if intent.status != Status.REQUIRES_CONFIRMATION or not intent.invoice_id:
            return intent
        if intent.updated_at > now - ABANDONED_AFTER:
            return intent
        _cancel_locally(intent, reason="abandoned", now=now)
        CollectionAttempt.objects.create(
            invoice=invoice,
            trigger=CollectionAttempt.Trigger.JOB,
            payment_intent=intent,
            error=f"payment_abandoned: payment intent {intent.id} was never confirmed; it was canceled",
            created_at=now,
        )
        updates: dict[str, Any] = {"attempt_count": F("attempt_count") + 1, "updated_at": now}
        if invoice.status == Invoice.Status.OPEN and invoice.collection_method == "charge_automatically":
            updates["next_payment_attempt"] = now
        Invoice.objects.filter(pk=invoice.pk).update(**updates)
    logger.warning("payment intent %s was abandoned before its confirmation; canceled", intent.id)
    return intent


# Which of our states a provider's report about a payment may move it out of. Webhooks come late, twice
# and out of order, so a report never moves an intent backwards (a `processing` that arrives after the
# success changes nothing) and money received is always recorded, whatever state we had it in.
_RECONCILE_FROM: dict[str, tuple[str, ...]] = {
    "succeeded": tuple(s for s in Status.values if s != Status.SUCCEEDED),
    "requires_capture": (Status.UNKNOWN, Status.PROCESSING, Status.REQUIRES_ACTION),
    "processing": (Status.UNKNOWN, Status.REQUIRES_ACTION),
    "requires_action": (Status.UNKNOWN, Status.PROCESSING),
    "failed": (Status.UNKNOWN, Status.PROCESSING, Status.REQUIRES_ACTION),
    "canceled": (
        Status.UNKNOWN,
        Status.PROCESSING,
        Status.REQUIRES_ACTION,
        Status.REQUIRES_CAPTURE,
        Status.REQUIRES_PAYMENT_METHOD,
    ),
}


def payment_intent_reconcile(*, payment_intent: PaymentIntent, result: ProviderPayment, now: datetime) -> PaymentIntent:
    """Settle an intent to what the provider reports about its current attempt (an inbound webhook), through
    the step a confirmation's answer and the resolver take: compare-and-set under the invoice's and the
    intent's locks, a success paying the invoice (or, paid meanwhile, crediting the balance) in the same
    transaction. Whoever settles first (this, the resolver, the confirming request) wins; the others
    change nothing, so money is applied once. Never calls the provider."""
    allowed = _RECONCILE_FROM.get(result.status, ())
    current = PaymentIntent.objects.get(pk=payment_intent.pk)
    for _ in range(3):  # moved meanwhile from one allowed state to another: settle from the new one
        if current.status not in allowed:
            return current
        settled = _settle(current, result, expected=current.status, now=now)
        if settled.status != current.status or settled.status not in allowed:
            return settled
        current = PaymentIntent.objects.get(pk=payment_intent.pk)
    return current


def payment_intent_resolve_unknown_job(*, now: datetime, limit: int = 500, clock: str | None = None) -> dict[str, int]:
    """The `resolve_unknown_payments` sweep: one resolver task per unknown payment and per processing one
    whose caller died, and one resend task per refund whose answer was lost. Running it twice (or
    concurrently) is harmless: each task re-checks the row's state."""
    from payments.tasks import payment_intent_resolve_task, refund_resend_task

    # Two scans, each over a small partial index (unknown; in flight), rather than one OR over the table.
    # `clock`: customers on no test clock (None), or only that clock's (`customers.clocks.clock_scope`).
    intents = clock_scope(PaymentIntent.objects.all(), clock)
    unknown = intents.filter(status=Status.UNKNOWN).order_by("updated_at")
    stale = intents.filter(status=Status.PROCESSING, updated_at__lt=now - PROCESSING_STALE)
    abandoned = intents.filter(
        status=Status.REQUIRES_CONFIRMATION, invoice__isnull=False, updated_at__lt=now - ABANDONED_AFTER
    )
    ids = list(unknown.values_list("pk", flat=True)[:limit])
    ids += list(stale.order_by("updated_at").values_list("pk", flat=True)[: max(limit - len(ids), 0)])
    ids += list(abandoned.order_by("updated_at").values_list("pk", flat=True)[: max(limit - len(ids), 0)])
    outcomes = enqueue_each(payment_intent_resolve_task, [(pk, now.isoformat()) for pk in ids])
    refunds = enqueue_each(
        refund_resend_task, [(pk, now.isoformat()) for pk in refunds_lost(now=now, limit=limit, clock=clock)]
    )
    if refunds["refunds_retried"]:
        outcomes["refunds_retried"] = refunds["refunds_retried"]
    return {"checked": len(ids), **dict(sorted(outcomes.items()))}


def payment_intent_charge_off_session(
    *, invoice: Invoice, now: datetime, amount: int | None = None, offboarding: bool = False
) -> PaymentIntent:
    """Charge `amount` (None: what remains, read under the invoice's lock) of an open invoice to the
    customer's default payment method, off session and captured at once (the collection waterfall's last
    step). Call it outside any transaction. Returns
    the intent as it ended: succeeded (the invoice is paid by it), requires_action, requires_payment_method
    (declined: `last_error`), or unknown (the resolver settles it). Raises InvalidRequest
    `no_payment_method`, or Conflict `payment_in_progress` when the invoice already has a payment in
    flight."""
    method = PaymentMethod.objects.filter(
        customer_id=invoice.customer_id, is_default=True, detached_at__isnull=True
    ).first()
    if method is None:
        raise InvalidRequest(
            f"Customer {invoice.customer_id} has no default payment method.",
            code="no_payment_method",
            param="payment_method",
        )
    intent = payment_intent_create(
        customer=invoice.customer,
        amount=amount,
        currency=invoice.currency,
        payment_method=method,
        invoice=invoice,
        description=f"Invoice {invoice.number or invoice.id}",
        now=now,
        offboarding=offboarding,
    )
    # A worker killed here leaves the intent requires_confirmation: the resolver's sweep cancels it once it
    # is older than ABANDONED_AFTER (`payment_intent_abandon`).
    return payment_intent_confirm(payment_intent=intent, off_session=True, now=now)


# --- capture and cancel ---------------------------------------------------------------------------


def payment_intent_capture(*, payment_intent: PaymentIntent, now: datetime, amount: int | None = None) -> PaymentIntent:
    """Capture up to the authorized amount; the rest of the authorization is released."""
    with transaction.atomic(durable=True):
        intent = _lock(payment_intent.pk)
        if intent.status != Status.REQUIRES_CAPTURE:
            raise _unexpected(intent, "captured")
        amount = intent.amount_capturable if amount is None else amount
        if not 0 < amount <= intent.amount_capturable:
            raise InvalidRequest(
                f"amount must be from 1 to {intent.amount_capturable}, the amount authorized.",
                param="amount",
                code="amount_too_large",
            )
    processor = processor_named(intent.provider)
    try:
        result = processor.capture(
            payment_ref=intent.provider_ref,
            amount=amount,
            idempotency_key=f"{intent.id}:capture",
            currency=intent.currency,
        )
    except ProcessorTimeout:
        return _settle_unknown(intent, expected=Status.REQUIRES_CAPTURE, now=now)
    except ProcessorError as exc:
        raise InvalidRequest(
            exc.message, code=exc.code, param="amount" if exc.code == "amount_too_large" else None
        ) from None
    return _settle(intent, result, expected=Status.REQUIRES_CAPTURE, now=now)


def payment_intent_cancel(
    *, payment_intent: PaymentIntent, now: datetime, cancellation_reason: str = ""
) -> PaymentIntent:
    """Cancel before money moved; an authorization (or a pending authentication) is released at the
    provider first. Refused once succeeded (refund it instead), and while the outcome is unknown."""
    with transaction.atomic(durable=True):
        intent = _lock(payment_intent.pk)
        if intent.status not in CANCELLABLE:
            raise _unexpected(intent, "canceled")
        local = intent.status not in (Status.REQUIRES_ACTION, Status.REQUIRES_CAPTURE) or not intent.provider_ref
        if local:
            _cancel_locally(intent, reason=cancellation_reason, now=now)
            return intent
    processor = processor_named(intent.provider)
    try:
        result = processor.cancel(
            payment_ref=intent.provider_ref, idempotency_key=f"{intent.id}:cancel", reason=cancellation_reason
        )
    except ProcessorTimeout:
        return _settle_unknown(intent, expected=intent.status, now=now)
    except ProcessorError as exc:
        raise Conflict(exc.message, code=exc.code) from None
    return _settle(intent, result, expected=intent.status, now=now, cancellation_reason=cancellation_reason)
