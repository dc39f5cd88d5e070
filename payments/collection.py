"""Collecting open invoices: the credits -> balance -> provider waterfall, and dunning.

`invoice_collect` runs the waterfall once on an invoice and records a `CollectionAttempt`:
1. credits: eligible credit grants, in burn order (`grants.credits_burn_for_invoice`);
2. balance: the customer's balance (`ledger.balance_apply_to_invoice`);
3. provider: an off-session charge of what remains on the default payment method
   (`intents.payment_intent_charge_off_session`), outside any database transaction.
A partial result leaves the invoice open with the right amount_remaining. At most one payment per
invoice is in flight (a partial unique index), so the API, the job and a retry running at once charge at
most once; a payment whose answer was lost stays `unknown` until the resolver settles it.

Dunning: a failure makes the subscription past_due and schedules retries DUNNING_RETRY_DAYS after the
first failure; success returns it to active; after the last failure the invoice becomes uncollectible
and the subscription unpaid or canceled (DUNNING_FINAL_ACTION). A new default payment method brings the
next retry forward to now.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F

from billing_site.errors import ApiError, Conflict
from customers.models import Customer
from invoicing.models import Invoice
from invoicing.services import invoice_mark_uncollectible, invoice_snapshot
from payments.models import CollectionAttempt, PaymentIntent
from subscriptions.models import Subscription
from webhooks.services import event_emit

logger = logging.getLogger(__name__)

Trigger = CollectionAttempt.Trigger


@dataclass(frozen=True)
class CollectionResult:
    attempt: CollectionAttempt
    invoice: Invoice


def invoice_apply_payment(*, invoice_id: str, amount: int, now: datetime) -> Invoice:
    """Record money received from the provider for an invoice, in the caller's transaction (the one that
    records the payment's success, so no collector can see the payment done and the invoice still due).
    Never more than what remains."""
    from payments.ledger import invoice_settle

    invoice = Invoice.objects.select_for_update().get(pk=invoice_id)
    applied = min(amount, invoice.amount_remaining)
    if applied <= 0 or invoice.status != Invoice.Status.OPEN:
        return invoice
    invoice = invoice_settle(invoice, amount=applied, field=None, now=now)
    if invoice.status == Invoice.Status.PAID:
        _subscription_recovered(invoice, now)
    return invoice


def _subscription_recovered(invoice: Invoice, now: datetime) -> None:
    if invoice.subscription_id is None:
        return
    recovered = Subscription.objects.filter(pk=invoice.subscription_id, status=Subscription.Status.PAST_DUE).update(
        status=Subscription.Status.ACTIVE, updated_at=now
    )
    if recovered:
        event_emit(
            type="subscription.updated",
            object_type="subscription",
            object_id=invoice.subscription_id,
            customer_id=invoice.customer_id,
            data={"id": invoice.subscription_id, "status": "active"},
            previous_attributes={"status": "past_due"},
            now=now,
        )


def _internal_steps(invoice: Invoice, now: datetime) -> tuple[int, int]:
    """Credits, then balance. Each step is its own transaction with its own locks (the balance row is
    locked before the invoice, customer-level first); a crash between them leaves a consistent invoice
    that the next attempt continues."""
    from payments.grants import credits_burn_for_invoice
    from payments.ledger import balance_apply_to_invoice

    credit_used = credits_burn_for_invoice(invoice=invoice, now=now)
    invoice.refresh_from_db()
    txn = balance_apply_to_invoice(invoice=invoice, now=now)
    return credit_used, (-txn.amount if txn is not None else 0)


def invoice_collect(*, invoice: Invoice, trigger: str, now: datetime) -> CollectionResult:
    """Run the waterfall once. Raises Conflict when the invoice is not open (from the API)."""
    from payments.intents import payment_intent_charge_off_session

    invoice.refresh_from_db()
    if invoice.status != Invoice.Status.OPEN:
        raise Conflict(
            f"Invoice {invoice.id} is {invoice.status}; only open invoices are collected.",
            code="invoice_status_conflict",
        )
    credit_used, balance_used = _internal_steps(invoice, now)
    invoice.refresh_from_db()
    attempt = CollectionAttempt(
        invoice=invoice, trigger=trigger, credit_used=credit_used, balance_used=balance_used, created_at=now
    )
    if invoice.status == Invoice.Status.PAID:
        attempt.success = True
    elif invoice.collection_method != "charge_automatically" and trigger != Trigger.API:
        attempt.error = "send_invoice invoices are not charged automatically"
    else:
        try:
            intent = payment_intent_charge_off_session(invoice=invoice, amount=invoice.amount_remaining, now=now)
        except ApiError as exc:  # no payment method, a payment already in flight, ...
            attempt.error = f"{exc.code}: {exc.message}"[:500]
            intent = None
        if intent is not None:
            attempt.payment_intent = intent
            attempt.provider_ref = intent.provider_ref
            attempt.provider_used = intent.amount
            if intent.status == PaymentIntent.Status.SUCCEEDED:
                attempt.amount_charged = intent.amount_received
                attempt.success = True
            elif intent.status == PaymentIntent.Status.UNKNOWN:
                attempt.error = "the provider's answer was lost; the payment will be resolved"
            else:
                error = intent.last_error or {}
                attempt.error = f"{error.get('code', intent.status)}: {error.get('message', '')}"[:500]
    with transaction.atomic():
        attempt.save()
        if not attempt.success and _is_failure(attempt):
            _schedule_retry(invoice, now)
    invoice.refresh_from_db()
    return CollectionResult(attempt=attempt, invoice=invoice)


def _is_failure(attempt: CollectionAttempt) -> bool:
    """A failure counts for dunning when money was asked for and refused (not when it is in flight)."""
    if attempt.payment_intent is None:
        return "no_payment_method" in attempt.error
    return attempt.payment_intent.status in (
        PaymentIntent.Status.REQUIRES_PAYMENT_METHOD,
        PaymentIntent.Status.REQUIRES_ACTION,
    )


def retry_schedule() -> list[timedelta]:
    return [timedelta(days=int(d)) for d in settings.DUNNING_RETRY_DAYS]


def _schedule_retry(invoice: Invoice, now: datetime) -> None:
    """After a failed attempt: the next retry per the schedule, or the end of dunning."""
    schedule = retry_schedule()
    locked = Invoice.objects.select_for_update().get(pk=invoice.pk)
    if locked.status != Invoice.Status.OPEN:
        return
    first_failure = locked.collection_attempts.filter(success=False).order_by("created_at").first()
    started = first_failure.created_at if first_failure else now
    failures = locked.attempt_count + 1
    Invoice.objects.filter(pk=locked.pk).update(attempt_count=F("attempt_count") + 1, updated_at=now)
    if failures == 1 and locked.subscription_id:
        moved = Subscription.objects.filter(pk=locked.subscription_id, status=Subscription.Status.ACTIVE).update(
            status=Subscription.Status.PAST_DUE, updated_at=now
        )
        if moved:
            event_emit(
                type="subscription.updated",
                object_type="subscription",
                object_id=locked.subscription_id,
                customer_id=locked.customer_id,
                data={"id": locked.subscription_id, "status": "past_due"},
                previous_attributes={"status": "active"},
                now=now,
            )
    event_emit(
        type="invoice.payment_failed",
        object_type="invoice",
        object_id=locked.id,
        customer_id=locked.customer_id,
        data={**invoice_snapshot(locked), "attempt_count": failures},
        now=now,
    )
    if failures <= len(schedule):
        Invoice.objects.filter(pk=locked.pk).update(next_payment_attempt=started + schedule[failures - 1])
        return
    _end_dunning(locked, now)


def _end_dunning(invoice: Invoice, now: datetime) -> None:
    Invoice.objects.filter(pk=invoice.pk).update(next_payment_attempt=None)
    invoice_mark_uncollectible(invoice=invoice, now=now)
    if invoice.subscription_id is None:
        return
    final = settings.DUNNING_FINAL_ACTION
    previous = Subscription.objects.get(pk=invoice.subscription_id).status
    if previous == Subscription.Status.CANCELED:
        return
    fields = {"status": final, "updated_at": now}
    if final == Subscription.Status.CANCELED:
        fields.update(canceled_at=now, ended_at=now, cancel_at_period_end=False)
    Subscription.objects.filter(pk=invoice.subscription_id).update(**fields)
    event_emit(
        type="subscription.canceled" if final == "canceled" else "subscription.updated",
        object_type="subscription",
        object_id=invoice.subscription_id,
        customer_id=invoice.customer_id,
        data={"id": invoice.subscription_id, "status": final},
        previous_attributes={"status": previous},
        now=now,
    )


# --- Jobs and triggers ----------------------------------------------------------------------------


def invoices_collect_job(*, now: datetime, limit: int = 500) -> dict[str, int]:
    """Open charge_automatically invoices whose (first or next) attempt is due."""
    due = list(
        Invoice.objects.filter(
            status=Invoice.Status.OPEN,
            collection_method="charge_automatically",
            amount_remaining__gt=0,
            next_payment_attempt__lte=now,
        )
        .order_by("next_payment_attempt")
        .values_list("id", flat=True)[:limit]
    )
    collected = failed = 0
    for invoice_id in due:
        try:
            result = invoice_collect(invoice=Invoice.objects.get(pk=invoice_id), trigger=Trigger.JOB, now=now)
        except Conflict:
            continue  # paid or voided meanwhile
        if result.attempt.success:
            collected += 1
        else:
            failed += 1
    overdue = invoices_mark_overdue(now=now)
    return {"attempted": len(due), "collected": collected, "failed": failed, "overdue": overdue}


def invoices_mark_overdue(*, now: datetime) -> int:
    """send_invoice invoices are never charged; once past their due date their subscription is past_due."""
    overdue = Invoice.objects.filter(
        status=Invoice.Status.OPEN,
        collection_method="send_invoice",
        due_date__lt=now,
        subscription__status=Subscription.Status.ACTIVE,
    ).values_list("subscription_id", "customer_id", "id")
    marked = 0
    for subscription_id, customer_id, invoice_id in overdue:
        with transaction.atomic():
            if Subscription.objects.filter(pk=subscription_id, status=Subscription.Status.ACTIVE).update(
                status=Subscription.Status.PAST_DUE, updated_at=now
            ):
                marked += 1
                event_emit(
                    type="invoice.overdue",
                    object_type="invoice",
                    object_id=invoice_id,
                    customer_id=customer_id,
                    data={"id": invoice_id, "subscription": subscription_id},
                    now=now,
                )
    return marked


def schedule_first_attempt(invoices: list[Invoice], now: datetime) -> None:
    """Finalization hook: a new charge_automatically invoice with something due is collected by the next
    run of the collection job (it runs every few minutes)."""
    ids = [
        i.pk
        for i in invoices
        if i.status == Invoice.Status.OPEN and i.collection_method == "charge_automatically" and i.amount_remaining > 0
    ]
    if ids:
        Invoice.objects.filter(pk__in=ids, next_payment_attempt__isnull=True).update(next_payment_attempt=now)


def retry_after_new_payment_method(*, customer: Customer, now: datetime) -> int:
    """A new default payment method: every invoice of the customer waiting for a retry is retried now."""
    return Invoice.objects.filter(
        customer=customer,
        status=Invoice.Status.OPEN,
        collection_method="charge_automatically",
        next_payment_attempt__gt=now,
    ).update(next_payment_attempt=now)
