"""What an end customer does on the hosted invoice page and in the portal, through payments' services.

Nothing here decides a payment rule: amounts, states, locks and idempotency with the provider are those
of `payments.services` (an intent per attempt, at most one in flight per invoice, a confirmation that
reads the provider back instead of charging again). This module adds what a browser needs on top: each
form carries a nonce, recorded once (`PortalSubmission`), so a double click or a resubmitted form acts
once and shows the first result.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction

from billing_site.errors import Conflict, InvalidRequest, NotFound
from billing_site.public_urls import public_url
from customers.models import Customer
from invoicing.models import Invoice
from payments.models import PaymentIntent, PaymentMethod, SandboxPayment
from payments.processors.sandbox import SandboxProcessor
from payments.services.intents import payment_intent_cancel, payment_intent_confirm, payment_intent_create
from payments.services.methods import payment_method_create, payment_method_detach, payment_method_set_default
from portal.models import HostedInvoiceLink, PortalSession, PortalSubmission

Status = PaymentIntent.Status
# An intent the customer abandoned mid-way (a pending challenge, a form never confirmed): a new payment from
# the page cancels it first. One that is processing or unknown is money that may be moving: never.
_ABANDONABLE = (Status.REQUIRES_ACTION, Status.REQUIRES_CONFIRMATION)


def _claim(key: str, now: datetime) -> PortalSubmission | None:
    """Record a form's submission; None when it was submitted before (a double click, a reload)."""
    try:
        with transaction.atomic():
            return PortalSubmission.objects.create(key=key[:200], created_at=now)
    except IntegrityError:
        return None


def submission_result(key: str) -> str | None:
    row = PortalSubmission.objects.filter(key=key[:200]).first()
    return row.object_id or None if row else None


def _submission_key(scope: str, owner: str, nonce: str) -> str:
    if not 16 <= len(nonce) <= 64 or not nonce.isalnum():
        raise InvalidRequest("The form is out of date; reload the page.", param="nonce", code="form_expired")
    return f"{scope}:{owner}:{nonce}"


# --- the hosted invoice page ----------------------------------------------------------------------


def hosted_invoice_pay(*, link: HostedInvoiceLink, token: str, nonce: str, now: datetime) -> PaymentIntent | None:
    """Pay what remains of the link's invoice with a card: the card (a sandbox test token, or a Stripe.js
    PaymentMethod id) is attached to the customer, then a payment intent for the remaining amount is
    created and confirmed on session. Returns the intent as it ended (succeeded, requires_action with its
    `next_action`, requires_payment_method with `last_error`, unknown), or, for a form submitted before,
    the first submission's intent (None while that one is still on its way)."""
    key = _submission_key("pay", link.pk, nonce)
    if _claim(key, now) is None:
        first = submission_result(key)
        return PaymentIntent.objects.filter(pk=first).first() if first else None
    try:
        return _pay(link, token, key, now)
    except Exception:
        # Nothing was created for this submission (a refusal before the intent existed): free the nonce,
        # so the same form can be sent again once corrected.
        PortalSubmission.objects.filter(key=key, object_id="").delete()
        raise


def _pay(link: HostedInvoiceLink, token: str, key: str, now: datetime) -> PaymentIntent:
    invoice = Invoice.objects.select_related("customer").get(pk=link.invoice_id)
    if invoice.status != Invoice.Status.OPEN or invoice.amount_remaining <= 0:
        raise InvalidRequest(
            f"Invoice {invoice.number} is {invoice.status}; nothing is to be paid.", code="invoice_not_open"
        )
    if not token:
        raise InvalidRequest("Choose a card.", param="token", code="parameter_missing")
    for pending in PaymentIntent.objects.filter(invoice_id=invoice.pk, status__in=_ABANDONABLE):
        payment_intent_cancel(payment_intent=pending, now=now, cancellation_reason="abandoned")
    if PaymentIntent.objects.filter(invoice_id=invoice.pk, status__in=PaymentIntent.IN_FLIGHT).exists():
        raise Conflict("A payment of this invoice is already on its way.", code="payment_in_progress")
    method = payment_method_create(customer=invoice.customer, token=token, now=now)
    intent = payment_intent_create(
        customer=invoice.customer,
        amount=invoice.amount_remaining,
        currency=invoice.currency,
        payment_method=method,
        invoice=invoice,
        description=f"Invoice {invoice.number}",
        now=now,
    )
    PortalSubmission.objects.filter(key=key).update(object_id=intent.pk)
    return payment_intent_confirm(payment_intent=intent, now=now)


def _link_intent(link: HostedInvoiceLink, payment_intent_id: str) -> PaymentIntent:
    intent = PaymentIntent.objects.filter(pk=payment_intent_id, invoice_id=link.invoice_id).first()
    if intent is None:
        raise NotFound("No such payment.")
    return intent


def hosted_payment_authenticate(
    *, link: HostedInvoiceLink, payment_intent_id: str, succeed: bool, now: datetime
) -> PaymentIntent:
    """The sandbox's 3-D Secure-like challenge: the customer approves (or refuses) the payment at the
    "bank", then the intent is confirmed again, which reads the outcome back (never a second charge).
    Answering twice changes nothing."""
    intent = _link_intent(link, payment_intent_id)
    if intent.provider != "sandbox":
        raise InvalidRequest("This payment is authenticated with the processor's own page.", code="not_sandbox")
    if intent.status == Status.REQUIRES_ACTION:
        if SandboxPayment.objects.filter(ref=intent.provider_ref, status="requires_action").exists():
            SandboxProcessor().complete_action(intent.provider_ref, succeed=succeed)
        return payment_intent_confirm(payment_intent=intent, now=now)
    return intent


def hosted_payment_refresh(*, link: HostedInvoiceLink, payment_intent_id: str, now: datetime) -> PaymentIntent:
    """Back from the processor's authentication (Stripe.js `handleNextAction`): read the outcome."""
    intent = _link_intent(link, payment_intent_id)
    if intent.status in (Status.REQUIRES_ACTION, Status.UNKNOWN):
        return payment_intent_confirm(payment_intent=intent, now=now)
    return intent


# --- portal sessions ------------------------------------------------------------------------------


def session_token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def portal_session_create(*, customer: Customer, now: datetime) -> tuple[PortalSession, str]:
    """A portal session for the customer, valid PORTAL_SESSION_MINUTES; returns it and its URL (shown
    once: only the token's hash is kept)."""
    if customer.deleted_at is not None:
        raise Conflict(f"Customer {customer.pk} is deleted.", code="customer_deleted")
    token = secrets.token_urlsafe(32)
    session = PortalSession.objects.create(
        customer=customer,
        token_hash=session_token_hash(token),
        created_at=now,
        expires_at=now + timedelta(minutes=settings.PORTAL_SESSION_MINUTES),
    )
    return session, public_url(f"/portal/{token}/")


# --- payment methods from the portal ----------------------------------------------------------------


def _own_method(session: PortalSession, payment_method_id: str) -> PaymentMethod:
    method = PaymentMethod.objects.filter(
        pk=payment_method_id, customer_id=session.customer_id, detached_at__isnull=True
    ).first()
    if method is None:
        raise NotFound("No such payment method.")
    return method


def portal_method_add(*, session: PortalSession, token: str, nonce: str, now: datetime) -> PaymentMethod | None:
    key = _submission_key("method", session.pk, nonce)
    if _claim(key, now) is None:
        first = submission_result(key)
        return PaymentMethod.objects.filter(pk=first).first() if first else None
    try:
        if not token:
            raise InvalidRequest("Choose a card.", param="token", code="parameter_missing")
        method = payment_method_create(customer=session.customer, token=token, now=now)
    except Exception:
        PortalSubmission.objects.filter(key=key, object_id="").delete()
        raise
    PortalSubmission.objects.filter(key=key).update(object_id=method.pk)
    return method


def portal_method_set_default(*, session: PortalSession, payment_method_id: str, now: datetime) -> PaymentMethod:
    return payment_method_set_default(payment_method=_own_method(session, payment_method_id), now=now)


def portal_method_remove(*, session: PortalSession, payment_method_id: str, now: datetime) -> PaymentMethod:
    return payment_method_detach(payment_method=_own_method(session, payment_method_id), now=now)


# --- housekeeping -----------------------------------------------------------------------------------

SESSION_KEPT = timedelta(days=1)
SUBMISSION_KEPT = timedelta(days=7)


def portal_rows_purge_job(*, now: datetime) -> dict[str, int]:
    """The `purge_portal_rows` sweep: sessions expired for a day, submissions older than a week (a form
    re-sent after a week acts again, as a new one: no page stays open that long)."""
    sessions, _ = PortalSession.objects.filter(expires_at__lt=now - SESSION_KEPT).delete()
    submissions, _ = PortalSubmission.objects.filter(created_at__lt=now - SUBMISSION_KEPT).delete()
    return {"sessions_deleted": sessions, "submissions_deleted": submissions}
