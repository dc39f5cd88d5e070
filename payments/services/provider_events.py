"""What a payment provider's events do to our payments: the Stripe handlers registered with
`webhooks.inbound` from `PaymentsConfig.ready()` (the contract is in that module's docstring).

Each handler finds our object for Stripe's (by the provider id we stored, else by the idempotency key
our processor put in its metadata when it created it: `payments.processors.stripe`), then reconciles our
state to Stripe's through the payments services, which lock in the one order, compare-and-set, and emit
our own outbound events in the same transaction:

- `payment_intent.succeeded`, `.processing`, `.requires_action`, `.payment_failed`, `.canceled`: the intent
  is settled (`payment_intent_reconcile`); a success pays its invoice, or, when the invoice was paid
  another way meanwhile, is credited to the customer's balance (an `overpayment` entry).
- `charge.refunded`, `refund.created`, `refund.updated`, `refund.failed`: each refund of ours is settled
  (`refund_reconcile`), a failure reversed in our books (`refund_fail`); one made at Stripe (its
  dashboard) is recorded and reserved on the payment (`refund_record_from_provider`).
- `charge.dispute.created`, `.updated`, `.closed`: a `Dispute` created or moved on (`dispute_reconcile`);
  a lost one is money returned.
- `setup_intent.succeeded`, `setup_intent.setup_failed`: the setup settled (`setup_intent_reconcile`), its
  card recorded once.
- `payment_method.attached`, `.updated`, `.detached`: the method recorded (once), its card details
  refreshed, detached here.

Idempotent and order-free: every effect is a state transition that only moves forward (a success,
a failure of a refund, a closed dispute and a detach are final), guarded by compare-and-set under row
locks and by unique constraints on what is created, so a redelivery, a resync, a reprocess, or the
resolver settling the same payment at the same moment changes nothing the second time. A report that is
not final is dropped when a later event about the same object was processed already
(`provider_event_superseded`). Handlers read only the signed event (no provider call), except to find the
payment of a charge that an event names without its payment intent, and to list a charge's refunds when
`charge.refunded` does not embed them (API versions since 2022-11-15).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, cast

from django.db import transaction
from django.db.models import F, Sum

from billing_site.ids import new_id
from billing_site.locks import LockRank, lock_first
from customers.locks import lock_customer
from customers.models import Customer
from payments.locks import lock_intent_with_invoice
from payments.models import Dispute, PaymentIntent, PaymentMethod, Refund, SetupIntent
from payments.processors import get_processor
from payments.processors.currencies import from_provider
from payments.processors.stripe import (
    StripeProcessor,
    method_from_object,
    payment_from_object,
    refund_from_object,
    setup_from_object,
)
from payments.services.intents import payment_intent_reconcile
from payments.services.methods import method_save, payment_method_snapshot, setup_intent_reconcile
from payments.services.refunds import refund_reconcile, refund_snapshot
from webhooks.inbound import provider_event_superseded, provider_handler_register
from webhooks.models import ProviderEvent
from webhooks.services import event_emit, object_event_emit

logger = logging.getLogger(__name__)

STRIPE = "stripe"
# The idempotency keys our Stripe processor sends in `metadata.idempotency_key` (built from our row ids).
_INTENT_KEY = re.compile(r"^(pi_[0-9a-z]{26}):confirm:\d+$")
_REFUND_KEY = re.compile(r"^(re_[0-9a-z]{26}):refund$")
_SETUP_KEY = re.compile(r"^(seti_[0-9a-z]{26}):setup:(.+)$")


class ProviderStateConflict(Exception):
    """What the provider reports cannot be applied to our books as they are (yet): raised so the event is
    retried with backoff, and shown in admin with this message if it never fits."""


def _object(event: ProviderEvent) -> dict[str, Any]:
    data = event.payload.get("data") if isinstance(event.payload, dict) else None
    obj = data.get("object") if isinstance(data, dict) else None
    if not isinstance(obj, dict) or not isinstance(obj.get("id"), str):
        raise ProviderStateConflict(f"{event.type}: the event carries no object")
    return obj


def _key(obj: dict[str, Any]) -> str:
    metadata = obj.get("metadata")
    value = metadata.get("idempotency_key") if isinstance(metadata, dict) else None
    return value if isinstance(value, str) else ""


def _ref(value: Any) -> str:
    """An id field that Stripe sends as a string, or as the object when expanded."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) else ""


def _timestamp(value: Any) -> datetime | None:
    return datetime.fromtimestamp(value, tz=UTC) if isinstance(value, int) and not isinstance(value, bool) else None


def _superseded(event: ProviderEvent | None, object_id: str) -> bool:
    """Whether a later event (by the provider's clock) about `object_id` was processed already: what
    `provider_event_superseded` tells for the event's own object, for an object the event embeds (the
    refunds inside a `charge.refunded`)."""
    if event is None or event.provider_created_at is None:
        return False
    if object_id == event.object_id:
        return provider_event_superseded(event)
    return ProviderEvent.objects.filter(
        provider=event.provider,
        object_id=object_id,
        provider_created_at__gt=event.provider_created_at,
        status=ProviderEvent.Status.PROCESSED,
    ).exists()


def _stripe() -> StripeProcessor:
    return cast(StripeProcessor, get_processor(STRIPE))


def _intent_of_charge(obj: dict[str, Any]) -> PaymentIntent | None:
    """Our payment intent behind a charge, refund or dispute object (by its `payment_intent`, else by
    reading the charge from Stripe: older API versions name only the charge)."""
    ref = _ref(obj.get("payment_intent"))
    if not ref:
        charge = obj["id"] if obj.get("object") == "charge" else _ref(obj.get("charge"))
        if not charge:
            return None
        ref = _stripe().charge_payment_ref(charge_ref=charge) or ""
    return PaymentIntent.objects.filter(provider=STRIPE, provider_ref=ref).first() if ref else None


# --- Payment intents ------------------------------------------------------------------------------


def _our_intent(obj: dict[str, Any]) -> tuple[PaymentIntent | None, str]:
    ref = obj["id"]
    intent = PaymentIntent.objects.filter(provider=STRIPE, provider_ref=ref).first()
    if intent is not None:
        return intent, ""
    # Our call's answer was lost (a timeout): we never learnt Stripe's id, but the key is ours.
    key = _key(obj)
    match = _INTENT_KEY.match(key)
    intent = PaymentIntent.objects.filter(pk=match.group(1), provider=STRIPE).first() if match else None
    if intent is None:
        return None, f"{ref} is not a payment of ours"
    if intent.idempotency_key != key or intent.provider_ref:
        if obj.get("status") == "succeeded":
            # Each attempt starts only after the previous one failed, so this should never happen; money
            # received must not be dropped quietly, so the event fails loudly (admin, logs) instead.
            raise ProviderStateConflict(
                f"{ref} succeeded for an earlier attempt ({key}) of {intent.id}, which is now at attempt "
                f"{intent.attempts}: not applied; review it at Stripe"
            )
        return None, f"{ref} is an earlier attempt of {intent.id}"
    return intent, ""


def stripe_payment_intent(*, event: ProviderEvent, now: datetime) -> str:
    obj = _object(event)
    intent, why = _our_intent(obj)
    if intent is None:
        return why
    amount = obj.get("amount")
    if isinstance(amount, int) and not isinstance(amount, bool) and isinstance(obj.get("currency"), str):
        amount = from_provider(amount, obj["currency"].lower())  # Stripe's units -> ours
    if amount != intent.amount or str(obj.get("currency", "")).lower() != intent.currency:
        raise ProviderStateConflict(
            f"{obj['id']} is {obj.get('amount')} {obj.get('currency')}; "
            f"{intent.id} is {intent.amount} {intent.currency}"
        )
    result = payment_from_object(obj)
    if result.status != "succeeded" and _superseded(event, obj["id"]):
        return f"{intent.id}: {obj['id']} {obj.get('status')} is superseded by a later event"
    before = intent.status
    settled = payment_intent_reconcile(payment_intent=intent, result=result, now=now)
    if settled.status == before:
        return f"{intent.id} stays {before} (Stripe: {obj.get('status')})"
    return f"{intent.id}: {before} -> {settled.status}"


# --- Refunds --------------------------------------------------------------------------------------


def _our_refund(obj: dict[str, Any], intent: PaymentIntent | None) -> Refund | None:
    match = _REFUND_KEY.match(_key(obj))
    if match:
        refund = Refund.objects.filter(pk=match.group(1), payment_intent__provider=STRIPE).first()
        if refund is not None:
            return refund
    refunds = Refund.objects.filter(provider_ref=obj["id"], payment_intent__provider=STRIPE)
    if intent is not None:
        refunds = refunds.filter(payment_intent=intent)
    return refunds.first()


def _refund_error(obj: dict[str, Any]) -> dict[str, Any]:
    reason = obj.get("failure_reason") or obj.get("status") or "unknown"
    return {"code": "refund_failed", "message": f"The payment processor reports the refund {reason}.", "reason": reason}


def refund_record_from_provider(*, intent: PaymentIntent, obj: dict[str, Any], now: datetime) -> tuple[Refund, bool]:
    """Record a refund made at Stripe (its dashboard), reserving its amount on the payment like our own
    refunds do, so nothing is refunded twice. Once per Stripe refund (a unique constraint behind the
    check under the payment's lock). Returns (refund, created)."""
    result = refund_from_object(obj)
    with transaction.atomic(durable=True):
        locked = lock_intent_with_invoice(intent.pk)  # the one order: its invoice, then the payment
        existing = Refund.objects.filter(payment_intent=locked, provider_ref=result.ref).first()
        if existing is not None:
            return existing, False
        if locked.status != PaymentIntent.Status.SUCCEEDED:
            # The refund's event came before the payment's success: wait for it (retried with backoff).
            raise ProviderStateConflict(f"{result.ref} refunds {locked.id}, which is {locked.status} here (not yet?)")
        lost = Dispute.objects.filter(payment_intent=locked).aggregate(total=Sum("amount_lost"))["total"] or 0
        left = locked.amount_received - locked.amount_refunded - lost
        if result.amount > left or str(obj.get("currency", "")).lower() != locked.currency:
            raise ProviderStateConflict(
                f"{result.ref} refunds {result.amount} {obj.get('currency')} of {locked.id}, which has {left} "
                f"{locked.currency} left to refund here"
            )
        PaymentIntent.objects.filter(pk=locked.pk).update(
            amount_refunded=F("amount_refunded") + result.amount, updated_at=now
        )
        reason = obj.get("reason") if obj.get("reason") in Refund.Reason.values else ""
        refund = Refund.objects.create(
            payment_intent=locked,
            invoice_id=locked.invoice_id,
            amount=result.amount,
            currency=locked.currency,
            reason=reason,
            status=Refund.Status.SUCCEEDED if result.status == "succeeded" else Refund.Status.PENDING,
            provider_ref=result.ref,
        )
        data = refund_snapshot(refund)
        event_emit(
            type="refund.created",
            object_type="refund",
            object_id=refund.id,
            customer_id=locked.customer_id,
            data=data,
            now=now,
        )
        if refund.status == Refund.Status.SUCCEEDED:
            event_emit(
                type="refund.succeeded",
                object_type="refund",
                object_id=refund.id,
                customer_id=locked.customer_id,
                data=data,
                now=now,
            )
    return refund, True


def _reconcile_refund(
    obj: dict[str, Any], *, event: ProviderEvent, now: datetime, intent: PaymentIntent | None = None
) -> str:
    result = refund_from_object(obj)
    if result.status != "failed" and _superseded(event, result.ref):
        return f"{result.ref} {obj.get('status')} is superseded by a later event"
    ours = _our_refund(obj, intent)
    if ours is not None:
        before = ours.status
        error = _refund_error(obj) if result.status == "failed" else None
        settled = refund_reconcile(refund=ours, result=result, error=error, now=now)
        return (
            f"{settled.id}: {before} -> {settled.status}"
            if settled.status != before
            else f"{settled.id} stays {before}"
        )
    intent = intent or _intent_of_charge(obj)
    if intent is None:
        return f"{result.ref} is not a refund of a payment of ours"
    if result.status == "failed":
        return f"{result.ref}, made at Stripe, failed: nothing to record"
    refund, created = refund_record_from_provider(intent=intent, obj=obj, now=now)
    if not created:  # recorded meanwhile (another event about it): settle it like ours
        return _reconcile_refund(obj, event=event, now=now, intent=intent)
    return f"{refund.id}: recorded {result.ref} made at Stripe ({refund.status})"


def stripe_refund(*, event: ProviderEvent, now: datetime) -> str:
    return _reconcile_refund(_object(event), event=event, now=now)


def stripe_charge_refunded(*, event: ProviderEvent, now: datetime) -> str:
    charge = _object(event)
    intent = _intent_of_charge(charge)
    if intent is None:
        return f"{charge['id']} is not a charge of ours"
    embedded = charge.get("refunds")
    if isinstance(embedded, dict) and isinstance(embedded.get("data"), list) and not embedded.get("has_more"):
        refunds = [r for r in embedded["data"] if isinstance(r, dict) and isinstance(r.get("id"), str)]
    else:  # API versions since 2022-11-15 no longer embed them
        refunds = _stripe().charge_refunds(charge_ref=charge["id"])
    if not refunds:
        return f"{charge['id']}: no refunds listed"
    outcomes = [
        _reconcile_refund(r, event=event, now=now, intent=intent) for r in sorted(refunds, key=lambda r: r["id"])
    ]
    return "; ".join(outcomes)


# --- Disputes -------------------------------------------------------------------------------------

# How far along a dispute is: the provider only moves it forward (an inquiry may become a chargeback).
_DISPUTE_STAGE = {
    Dispute.Status.WARNING_NEEDS_RESPONSE: 0,
    Dispute.Status.WARNING_UNDER_REVIEW: 1,
    Dispute.Status.NEEDS_RESPONSE: 2,
    Dispute.Status.UNDER_REVIEW: 3,
    **{status: 9 for status in Dispute.CLOSED},
}


def dispute_snapshot(dispute: Dispute) -> dict[str, Any]:
    return {
        "id": dispute.id,
        "customer": dispute.customer_id,
        "payment_intent": dispute.payment_intent_id,
        "invoice": dispute.invoice_id,
        "amount": dispute.amount,
        "currency": dispute.currency,
        "reason": dispute.reason or None,
        "status": dispute.status,
        "amount_lost": dispute.amount_lost,
        "evidence_due_by": dispute.evidence_due_by.isoformat() if dispute.evidence_due_by else None,
        "closed_at": dispute.closed_at.isoformat() if dispute.closed_at else None,
    }


def _dispute_fields(obj: dict[str, Any], now: datetime) -> dict[str, Any]:
    status = obj.get("status")
    if status not in _DISPUTE_STAGE:
        raise ProviderStateConflict(f"{obj['id']}: unknown dispute status {status!r}")
    amount = obj.get("amount")
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        raise ProviderStateConflict(f"{obj['id']}: the dispute has no amount")
    if isinstance(obj.get("currency"), str) and obj["currency"]:
        amount = from_provider(amount, obj["currency"].lower())  # Stripe's units -> ours
    details = obj.get("evidence_details")
    closed = status in Dispute.CLOSED
    return {
        "status": status,
        "amount": amount,
        "reason": str(obj.get("reason") or "")[:50],
        "evidence_due_by": _timestamp(details.get("due_by")) if isinstance(details, dict) else None,
        "amount_lost": amount if status == Dispute.Status.LOST else 0,
        "closed_at": now if closed else None,
    }


def dispute_reconcile(
    *, intent: PaymentIntent, obj: dict[str, Any], now: datetime, superseded: bool = False
) -> tuple[Dispute, str]:
    """Create or move on our record of a Stripe dispute of `intent`: `dispute.created` once (whichever event
    about it comes first, even `charge.dispute.closed`), `dispute.updated` as it moves forward, and
    `dispute.closed` once when it is won, lost or closed (a lost one records its amount as returned).
    Locks its invoice, the payment intent (so refunds of it wait), then the dispute (the one order). Returns
    (dispute, what happened)."""
    fields = _dispute_fields(obj, now)
    currency = str(obj.get("currency", "")).lower()
    if currency != intent.currency:
        raise ProviderStateConflict(f"{obj['id']} is in {currency}; {intent.id} is in {intent.currency}")
    with transaction.atomic(durable=True):
        locked = lock_intent_with_invoice(intent.pk)  # the one order: its invoice, then the payment
        dispute = lock_first(Dispute.objects.filter(provider=STRIPE, provider_ref=obj["id"]), LockRank.DISPUTE)
        if dispute is None:
            dispute = Dispute.objects.create(
                customer_id=locked.customer_id,
                payment_intent=locked,
                invoice_id=locked.invoice_id,
                provider=STRIPE,
                provider_ref=obj["id"],
                provider_charge_ref=_ref(obj.get("charge")),
                currency=currency,
                provider_created_at=_timestamp(obj.get("created")),
                **fields,
            )
            object_event_emit(type="dispute.created", obj=dispute, data=dispute_snapshot(dispute), now=now)
            if dispute.status in Dispute.CLOSED:
                object_event_emit(type="dispute.closed", obj=dispute, data=dispute_snapshot(dispute), now=now)
            return dispute, f"{dispute.id}: created ({dispute.status})"
        if dispute.status in Dispute.CLOSED:
            return dispute, f"{dispute.id} is closed ({dispute.status})"
        if _DISPUTE_STAGE[fields["status"]] < _DISPUTE_STAGE[dispute.status] or (
            superseded and fields["status"] not in Dispute.CLOSED
        ):
            return dispute, f"{dispute.id} stays {dispute.status} ({obj['id']} {fields['status']} is older)"
        changes = {name: value for name, value in fields.items() if getattr(dispute, name) != value}
        if not changes:
            return dispute, f"{dispute.id} stays {dispute.status}"
        previous = {name: dispute_snapshot(dispute).get(name, getattr(dispute, name)) for name in changes}
        Dispute.objects.filter(pk=dispute.pk, status=dispute.status).update(**changes, updated_at=now)
        dispute.refresh_from_db()
        closed = dispute.status in Dispute.CLOSED
        object_event_emit(
            type="dispute.closed" if closed else "dispute.updated",
            obj=dispute,
            data=dispute_snapshot(dispute),
            now=now,
            previous=previous,
        )
    if dispute.status == Dispute.Status.LOST:
        logger.warning("dispute %s of %s lost: %s %s returned", dispute.id, intent.id, dispute.amount, dispute.currency)
    return dispute, f"{dispute.id}: {previous.get('status', dispute.status)} -> {dispute.status}"


def stripe_dispute(*, event: ProviderEvent, now: datetime) -> str:
    obj = _object(event)
    intent = _intent_of_charge(obj)
    if intent is None:
        return f"{obj['id']} disputes a payment that is not ours"
    _, outcome = dispute_reconcile(intent=intent, obj=obj, now=now, superseded=_superseded(event, obj["id"]))
    return outcome


# --- Setup intents --------------------------------------------------------------------------------


def _our_setup(obj: dict[str, Any]) -> tuple[SetupIntent | None, str]:
    ref = obj["id"]
    setup = SetupIntent.objects.filter(provider=STRIPE, provider_ref=ref).first()
    if setup is not None:
        return setup, ""
    match = _SETUP_KEY.match(_key(obj))
    setup = (
        SetupIntent.objects.select_related("payment_method").filter(pk=match.group(1), provider=STRIPE).first()
        if match
        else None
    )
    if setup is None:
        return None, f"{ref} is not a setup of ours"
    source = setup.payment_method.provider_ref if setup.payment_method else setup.token
    if setup.provider_ref or source != match.group(2):
        return None, f"{ref} is an earlier attempt of {setup.id}"
    return setup, ""


def stripe_setup_intent(*, event: ProviderEvent, now: datetime) -> str:
    obj = _object(event)
    setup, why = _our_setup(obj)
    if setup is None:
        return why
    if obj.get("status") == "succeeded" and not _ref(obj.get("payment_method")):
        raise ProviderStateConflict(f"{obj['id']} succeeded without a payment method")
    result = setup_from_object(obj)
    if result.status not in ("succeeded", "failed"):
        return f"{setup.id}: nothing to do for {obj.get('status')}"
    if result.status == "failed" and _superseded(event, obj["id"]):
        return f"{setup.id}: {obj['id']} {obj.get('status')} is superseded by a later event"
    before = setup.status
    settled = setup_intent_reconcile(setup_intent=setup, result=result, now=now)
    return f"{setup.id}: {before} -> {settled.status}" if settled.status != before else f"{setup.id} stays {before}"


# --- Payment methods ------------------------------------------------------------------------------

_CARD_FIELDS = ("type", "brand", "last4", "exp_month", "exp_year")


def payment_method_refresh(*, method: PaymentMethod, obj: dict[str, Any], now: datetime) -> bool:
    """Bring a live method's card details to what Stripe reports (a new expiry after the network updated
    the card, details a setup left out). Emits `payment_method.updated` when something changed."""
    reported = method_from_object(obj)
    with transaction.atomic(durable=True):
        lock_customer(method.customer_id)
        current = PaymentMethod.objects.filter(pk=method.pk, detached_at__isnull=True).first()
        if current is None:
            return False
        # Only what Stripe reports: a field it leaves out (null) keeps what we have.
        reported_values = {name: getattr(reported, name) for name in _CARD_FIELDS}
        changes = {
            name: value
            for name, value in reported_values.items()
            if value not in (None, "") and getattr(current, name) != value
        }
        if not changes:
            return False
        previous = {name: getattr(current, name) for name in changes}
        PaymentMethod.objects.filter(pk=current.pk).update(**changes, updated_at=now)
        current.refresh_from_db()
        object_event_emit(
            type="payment_method.updated",
            obj=current,
            data=payment_method_snapshot(current),
            now=now,
            previous=previous,
        )
    return True


def payment_method_detach_from_provider(*, method: PaymentMethod, now: datetime) -> bool:
    """Stripe detached the method (its dashboard, the customer's portal): detach it here too, without
    calling Stripe back. It is no longer the default; a detached method is never attached again."""
    with transaction.atomic(durable=True):
        lock_customer(method.customer_id)
        changed = PaymentMethod.objects.filter(pk=method.pk, detached_at__isnull=True).update(
            detached_at=now, is_default=False, updated_at=now
        )
        if not changed:
            return False
        method.refresh_from_db()
        object_event_emit(type="payment_method.detached", obj=method, data=payment_method_snapshot(method), now=now)
    return True


def stripe_payment_method(*, event: ProviderEvent, now: datetime) -> str:
    obj = _object(event)
    ref = obj["id"]
    known = PaymentMethod.objects.filter(provider=STRIPE, provider_ref=ref).order_by("detached_at", "pk")
    method = known.filter(detached_at__isnull=True).first()
    if event.type == "payment_method.detached":
        if method is None:
            return f"{ref} is not attached here"
        detached = payment_method_detach_from_provider(method=method, now=now)
        return f"{method.id}: detached" if detached else f"{method.id} was detached already"
    if _superseded(event, ref):
        return f"{ref}: {event.type} is superseded by a later event"
    if method is not None:
        changed = payment_method_refresh(method=method, obj=obj, now=now)
        return f"{method.id}: details updated" if changed else f"{method.id}: unchanged"
    if known.exists():
        return f"{ref} was detached here; a detached method is not attached again"
    if event.type != "payment_method.attached":
        return f"{ref} is not a payment method of ours"
    customer_ref = _ref(obj.get("customer"))
    customer = (
        Customer.objects.filter(provider=STRIPE, provider_customer_id=customer_ref).first() if customer_ref else None
    )
    if customer is None or customer.status == Customer.Status.DELETED:
        return f"{ref} belongs to no customer of ours"
    with transaction.atomic(durable=True):
        # Under the customer's lock, with the same check our own attach makes: recorded once.
        saved = method_save(
            customer=customer,
            provider=STRIPE,
            method=method_from_object(obj),
            method_id=new_id("pm"),
            default=False,
            now=now,
        )
    return f"{saved.id}: recorded {ref} attached at Stripe"


# --- Registration ---------------------------------------------------------------------------------

HANDLERS: dict[str, Callable[..., str]] = {
    "payment_intent.succeeded": stripe_payment_intent,
    "payment_intent.processing": stripe_payment_intent,
    "payment_intent.requires_action": stripe_payment_intent,
    "payment_intent.payment_failed": stripe_payment_intent,
    "payment_intent.canceled": stripe_payment_intent,
    "charge.refunded": stripe_charge_refunded,
    "refund.created": stripe_refund,
    "refund.updated": stripe_refund,
    "refund.failed": stripe_refund,
    "charge.dispute.created": stripe_dispute,
    "charge.dispute.updated": stripe_dispute,
    "charge.dispute.closed": stripe_dispute,
    "setup_intent.succeeded": stripe_setup_intent,
    "setup_intent.setup_failed": stripe_setup_intent,
    "payment_method.attached": stripe_payment_method,
    "payment_method.updated": stripe_payment_method,
    "payment_method.detached": stripe_payment_method,
}


def register() -> None:
    for event_type, handler in HANDLERS.items():
        provider_handler_register(provider=STRIPE, event_type=event_type, handler=handler)
