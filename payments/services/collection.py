"""Collecting open invoices: the credits -> balance -> provider waterfall, and dunning.

`invoice_collect` runs the waterfall once on an invoice and records a `CollectionAttempt`:
1. credits: eligible credit grants, in burn order (`grants.credits_burn_for_invoice`);
2. balance: the customer's balance (`ledger.balance_apply_to_invoice`);
3. provider: an off-session charge of what remains on the default payment method
   (`intents.payment_intent_charge_off_session`), outside any database transaction.
A partial result leaves the invoice open with the right amount_remaining. While a payment of the invoice
is in flight nothing is applied (no credits, no balance, no charge): see `invoice_collect`. At most one payment per
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
from django.db.models import F, Min

from billing_site.errors import ApiError, Conflict
from billing_site.tasks import enqueue_each
from customers.clocks import clock_scope
from customers.locks import lock_customer
from customers.models import Customer
from customers.selectors import customer_refuse_deleted
from invoicing.finalization import invoice_snapshot
from invoicing.locks import lock_invoice
from invoicing.models import Invoice, InvoiceCycle
from invoicing.services import invoice_mark_uncollectible
from payments.models import CollectionAttempt, PaymentIntent
from payments.services.grants import credits_burn_for_invoice
from payments.services.intents import payment_intent_charge_off_session
from payments.services.ledger import balance_apply_to_invoice, invoice_payment_in_flight
from payments.services.schedule import retry_schedule
from subscriptions.locks import lock_subscription
from subscriptions.models import Subscription
from subscriptions.services.lifecycle import subscription_end
from subscriptions.services.status import subscription_status_change
from webhooks.services import object_event_emit

logger = logging.getLogger(__name__)

Trigger = CollectionAttempt.Trigger
SubStatus = Subscription.Status


@dataclass(frozen=True)
class CollectionResult:
    attempt: CollectionAttempt
    invoice: Invoice


def _internal_steps(invoice: Invoice, now: datetime) -> tuple[int, int]:
    """Credits, then balance. Each step is its own transaction with its own locks (the balance row is
    locked before the invoice, customer-level first); a crash between them leaves a consistent invoice
    that the next attempt continues."""
    credit_used = credits_burn_for_invoice(invoice=invoice, now=now)
    invoice.refresh_from_db()
    txn = balance_apply_to_invoice(invoice=invoice, now=now)
    return credit_used, (-txn.amount if txn is not None else 0)


def _not_open(invoice: Invoice) -> Conflict:
    return Conflict(
        f"Invoice {invoice.id} is {invoice.status}; only open invoices are collected.",
        code="invoice_status_conflict",
    )


def invoice_collect(*, invoice: Invoice, trigger: str, now: datetime, offboarding: bool = False) -> CollectionResult:
    """Run the waterfall once. Raises Conflict when the invoice is not open (from the API), also when it
    was paid by someone else while this attempt ran (exactly one of concurrent callers reports success),
    and 409 `customer_deleted` for a deleted customer (never charged), except in the one collection an
    offboarding queues (`offboarding`) for what the leaving tenant owes (CONTROL_PLANE_OFFBOARD_INVOICES).

    While a payment of the invoice is in flight (`PaymentIntent.IN_FLIGHT`: its outcome is not known yet)
    nothing is applied: no credits, no balance, no second charge. The attempt answers
    `payment_in_progress` and names the payment. The charge in flight was sized by what remained when it
    started; applying credits or balance beside it would take the same part of the invoice twice. The
    credit and balance steps check this under the invoice's row lock, and a charge is created under that
    lock too, for what remains at that moment (`payment_intent_create`): that is the reservation."""
    invoice.refresh_from_db()
    if invoice.status != Invoice.Status.OPEN:
        raise _not_open(invoice)
    if not offboarding:
        customer_refuse_deleted(customer_id=invoice.customer_id)
    in_flight = invoice_payment_in_flight(invoice.pk)
    if in_flight is not None:
        attempt = CollectionAttempt.objects.create(
            invoice=invoice,
            trigger=trigger,
            payment_intent=in_flight,
            provider_ref=in_flight.provider_ref,
            error=(
                f"payment_in_progress: payment {in_flight.id} of this invoice is {in_flight.status}; nothing was "
                "applied or charged until it settles"
            ),
            created_at=now,
        )
        return CollectionResult(attempt=attempt, invoice=invoice)
    credit_used, balance_used = _internal_steps(invoice, now)
    invoice.refresh_from_db()
    attempt = CollectionAttempt(
        invoice=invoice, trigger=trigger, credit_used=credit_used, balance_used=balance_used, created_at=now
    )
    if invoice.status == Invoice.Status.PAID and (credit_used or balance_used):
        attempt.success = True
    elif invoice.status != Invoice.Status.OPEN:
        raise _not_open(invoice)  # paid (or voided) by someone else meanwhile: their success, not ours
    elif invoice.collection_method != "charge_automatically" and trigger != Trigger.API:
        attempt.error = "send_invoice invoices are not charged automatically"
    else:
        try:
            intent = payment_intent_charge_off_session(invoice=invoice, now=now, offboarding=offboarding)
        except ApiError as exc:  # no payment method, a payment already in flight, ...
            invoice.refresh_from_db()
            if invoice.status != Invoice.Status.OPEN and not (credit_used or balance_used):
                raise _not_open(invoice) from None
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
    if not attempt.success and _is_failure(attempt):
        _record_failure(invoice, attempt, now)
    else:
        attempt.save()
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


def _record_failure(invoice: Invoice, attempt: CollectionAttempt, now: datetime) -> None:
    """After a failed attempt: the next retry per the schedule, or the end of dunning. One transaction,
    locking in the one order: customer, subscription, invoice."""
    with transaction.atomic():
        sub = None
        others: list[Subscription] = []
        if invoice.subscription_id:
            sub = lock_subscription(invoice.subscription_id, customer_id=invoice.customer_id)
            # A consolidated invoice bills further subscriptions (ids above its own): they share its fate.
            others = [lock_subscription(pk, customer_id=invoice.customer_id) for pk in consolidated_ids(invoice)]
        else:
            lock_customer(invoice.customer_id)
        locked = lock_invoice(invoice.pk)
        attempt.save()
        if locked.status != Invoice.Status.OPEN:
            return
        schedule = retry_schedule()
        first_failure = locked.collection_attempts.filter(success=False).order_by("created_at").first()
        started = first_failure.created_at if first_failure else now
        failures = locked.attempt_count + 1
        Invoice.objects.filter(pk=locked.pk).update(attempt_count=F("attempt_count") + 1, updated_at=now)
        if failures == 1:
            for each in [sub, *others] if sub is not None else []:
                if each.status == SubStatus.ACTIVE:
                    subscription_status_change(subscription=each, to=SubStatus.PAST_DUE, now=now)
        object_event_emit(
            type="invoice.payment_failed",
            obj=locked,
            data={**invoice_snapshot(locked), "attempt_count": failures},
            now=now,
        )
        if failures <= len(schedule):
            Invoice.objects.filter(pk=locked.pk).update(next_payment_attempt=started + schedule[failures - 1])
            return
        _end_dunning(locked, sub, now, others=others)


def consolidated_ids(invoice: Invoice) -> list[str]:
    """The further subscriptions a consolidated invoice bills (its own is `invoice.subscription`)."""
    return sorted(InvoiceCycle.objects.filter(invoice=invoice).values_list("subscription_id", flat=True))


def _end_dunning(
    invoice: Invoice, sub: Subscription | None, now: datetime, *, others: list[Subscription] | None = None
) -> None:
    """The last retry failed: the invoice is uncollectible, and the subscription becomes unpaid or ends
    (DUNNING_FINAL_ACTION). Ending goes through the lifecycle, so the usage of the current period is
    billed on a final invoice like any other ending: the customer owes it whoever ends the subscription."""
    Invoice.objects.filter(pk=invoice.pk).update(next_payment_attempt=None)
    invoice_mark_uncollectible(invoice=invoice, now=now)
    for each in [sub, *(others or [])] if sub is not None else []:
        if each.status == SubStatus.CANCELED:
            continue
        if settings.DUNNING_FINAL_ACTION == SubStatus.CANCELED:
            subscription_end(each, at=now, now=now, reason=Subscription.CancellationReason.PAYMENT_FAILED)
        elif each.status != SubStatus.UNPAID:
            subscription_status_change(subscription=each, to=SubStatus.UNPAID, now=now)


# --- Sweeps and tasks -----------------------------------------------------------------------------


def invoice_collect_due(*, invoice_id: str, now: datetime, offboarding: bool = False) -> CollectionResult | None:
    """The collection task's service: collect the invoice if its attempt is still due (a duplicate task,
    or one that arrives after the invoice was paid or voided, does nothing)."""
    invoice = Invoice.objects.filter(
        pk=invoice_id,
        status=Invoice.Status.OPEN,
        collection_method="charge_automatically",
        amount_remaining__gt=0,
        next_payment_attempt__lte=now,
    ).first()
    if invoice is None:
        return None
    try:
        return invoice_collect(invoice=invoice, trigger=Trigger.JOB, now=now, offboarding=offboarding)
    except Conflict:
        return None  # paid or voided meanwhile, or the customer was deleted


def invoices_collect_job(*, now: datetime, limit: int = 5000, clock: str | None = None) -> dict[str, int]:
    """The sweep: one collection task per open charge_automatically invoice whose (first or next) attempt
    is due, and overdue send_invoice subscriptions marked past_due. The provider calls happen in the
    tasks, one invoice each, on as many workers as run the `collection` queue. `clock`: see
    `customers.clocks.clock_scope` (None: customers on no test clock)."""
    from payments.tasks import invoice_collect_task

    due = list(
        clock_scope(Invoice.objects.all(), clock)
        .filter(
            status=Invoice.Status.OPEN,
            collection_method="charge_automatically",
            amount_remaining__gt=0,
            next_payment_attempt__lte=now,
        )
        .exclude(customer__status=Customer.Status.DELETED)  # never charged (invoice_collect refuses them too)
        .order_by("next_payment_attempt")
        .values_list("id", flat=True)[:limit]
    )
    done = enqueue_each(invoice_collect_task, [(invoice_id, now.isoformat()) for invoice_id in due])
    overdue = invoices_mark_overdue(now=now, clock=clock)
    return {"attempted": len(due), "collected": done["collected"], "failed": done["failed"], "overdue": overdue}


def invoices_mark_overdue(*, now: datetime, clock: str | None = None) -> int:
    """send_invoice invoices are never charged; once past their due date their subscription is past_due."""
    overdue = (
        clock_scope(Invoice.objects.all(), clock)
        .filter(
            status=Invoice.Status.OPEN,
            collection_method="send_invoice",
            due_date__lt=now,
            subscription__status=SubStatus.ACTIVE,
        )
        .values_list("subscription_id", "id")
    )
    marked = 0
    for subscription_id, invoice_id in overdue:
        with transaction.atomic():
            sub = Subscription.objects.filter(pk=subscription_id, status=SubStatus.ACTIVE).first()
            if sub is None:
                continue
            try:
                subscription_status_change(subscription=sub, to=SubStatus.PAST_DUE, now=now)
            except Conflict:
                continue  # changed meanwhile
            marked += 1
            invoice = Invoice.objects.get(pk=invoice_id)
            object_event_emit(type="invoice.overdue", obj=invoice, data=invoice_snapshot(invoice), now=now)
    return marked


# A send_invoice invoice is overdue once strictly past its due date.
OVERDUE_AFTER = timedelta(seconds=1)


def collection_next_due(*, clock: str, after: datetime) -> datetime | None:
    """The test clock's next collection moment after `after`: the soonest first attempt or dunning retry
    of an open charge_automatically invoice, or the moment a send_invoice invoice of an active
    subscription becomes overdue."""
    invoices = clock_scope(Invoice.objects.filter(status=Invoice.Status.OPEN), clock)
    attempt = invoices.filter(
        collection_method="charge_automatically", amount_remaining__gt=0, next_payment_attempt__gt=after
    ).aggregate(at=Min("next_payment_attempt"))["at"]
    due = invoices.filter(
        collection_method="send_invoice",
        subscription__status=SubStatus.ACTIVE,
        due_date__gt=after - OVERDUE_AFTER,
    ).aggregate(at=Min("due_date"))["at"]
    overdue = due + OVERDUE_AFTER if due is not None else None
    moments = [m for m in (attempt, overdue) if m is not None]
    return min(moments) if moments else None
