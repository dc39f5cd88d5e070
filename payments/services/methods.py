"""Payment methods and SetupIntents, and what every payment service shares: the provider customer, the
processor of a customer, the error a refusal or a lost answer becomes.

Provider calls never run inside a database transaction: state (and the idempotency key) is committed
first, the provider is called, then the outcome is recorded in a new transaction that compare-and-sets
the status. The transactions are `durable`, so calling these services inside a caller's transaction is an
error (it would hold row locks across a network call), not a silent hazard.

SetupIntent: requires_payment_method -> requires_confirmation -> (requires_action) -> processing ->
succeeded | canceled; a decline goes back to requires_payment_method with `last_error`. A succeeded setup
attaches its card for off-session use (a PaymentMethod, the default when the customer has none).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.db import transaction

from billing_site.errors import ApiError, Conflict, InvalidRequest
from billing_site.ids import new_id
from customers.locks import lock_customer
from customers.models import Customer
from payments.locks import lock_payment_method, lock_setup_intent
from payments.models import PaymentMethod, SetupIntent
from payments.processors import (
    PaymentProcessor,
    ProcessorError,
    ProcessorTimeout,
    ProviderMethod,
    ProviderSetup,
    UnknownProcessor,
    get_processor,
    processor_name_for,
)
from payments.services.schedule import retry_after_new_payment_method
from webhooks.services import object_event_emit

logger = logging.getLogger(__name__)

SetupStatus = SetupIntent.Status
# Providers whose payment method ids name one attachment (Stripe's `pm_...`): a method recorded twice (our
# attach call and the provider's `payment_method.attached` webhook) is one method. The sandbox reuses one
# ref per test card, so attaching the same card twice there makes two methods.
UNIQUE_METHOD_REFS = frozenset({"stripe"})


class ProcessorUnavailable(ApiError):
    """The provider did not answer a call that moves no money: nothing changed here; retry it."""

    status_code = 503
    type = "api_error"
    code = "processor_unavailable"


def error_data(exc: ProcessorError) -> dict[str, Any]:
    data: dict[str, Any] = {"code": exc.code, "message": exc.message}
    if exc.decline_code:
        data["decline_code"] = exc.decline_code
    return data


TIMEOUT_ERROR = {"code": "processor_timeout", "message": "The payment processor did not answer."}


def in_callers_transaction() -> bool:
    """True when called inside someone's transaction. A test's own wrapping transaction does not count
    (the rule Django applies to `atomic(durable=True)`)."""
    connection = transaction.get_connection()
    return connection.in_atomic_block and not getattr(connection.atomic_blocks[-1], "_from_testcase", False)


def processor_named(name: str) -> PaymentProcessor:
    try:
        return get_processor(name)
    except UnknownProcessor as exc:
        raise InvalidRequest(str(exc), code="unknown_processor") from None


def customer_processor(customer: Customer) -> PaymentProcessor:
    try:
        return processor_named(processor_name_for(customer))
    except UnknownProcessor as exc:
        raise InvalidRequest(str(exc), code="unknown_processor", param="customer") from None


def provider_customer_ensure(*, customer: Customer, processor: PaymentProcessor) -> str:
    """The customer's id at the provider, created on first use (idempotently: the key is our customer's
    id). Storing it pins the customer to that provider, since its payment methods live there."""
    customer.refresh_from_db(fields=["provider", "provider_customer_id"])
    if customer.provider_customer_id and processor_name_for(customer) == processor.name:
        return customer.provider_customer_id
    ref = processor.create_customer(
        customer_id=customer.id,
        email=customer.email,
        name=customer.name,
        idempotency_key=f"{customer.id}:customer:{processor.name}",
    )
    if not customer.provider_customer_id:
        with transaction.atomic():
            Customer.objects.filter(pk=customer.pk, provider_customer_id="").update(
                provider=processor.name, provider_customer_id=ref
            )
    return ref


def _live_customer(customer: Customer) -> Customer:
    if customer.status == Customer.Status.DELETED:
        raise InvalidRequest(f"No such customer: {customer.id}", param="customer", code="resource_missing")
    return customer


def method_check(*, customer_id: str, payment_method: PaymentMethod, param: str = "payment_method") -> None:
    if payment_method.customer_id != customer_id:
        raise InvalidRequest(
            f"Payment method {payment_method.id} belongs to another customer.", param=param, code="resource_missing"
        )
    if payment_method.detached_at is not None:
        raise InvalidRequest(
            f"Payment method {payment_method.id} is detached.", param=param, code="payment_method_detached"
        )


# --- Payment methods -----------------------------------------------------------------------------


def payment_method_snapshot(method: PaymentMethod) -> dict[str, Any]:
    return {
        "id": method.id,
        "customer": method.customer_id,
        "provider": method.provider,
        "type": method.type,
        "brand": method.brand or None,
        "last4": method.last4 or None,
        "exp_month": method.exp_month,
        "exp_year": method.exp_year,
        "default": method.is_default,
        "detached_at": method.detached_at.isoformat() if method.detached_at else None,
    }


def method_save(
    *, customer: Customer, provider: str, method: ProviderMethod, method_id: str, default: bool, now: datetime
) -> PaymentMethod:
    """Record an attached method, in the caller's transaction. The first live method becomes the default;
    a new default unsets the old one first (the partial unique index allows one) and brings the
    customer's waiting invoice retries forward."""
    lock_customer(customer.pk)  # lock order: the customer first
    live = PaymentMethod.objects.filter(customer_id=customer.pk, detached_at__isnull=True)
    if provider in UNIQUE_METHOD_REFS:
        # Under the customer's lock, so our own attach and the provider's webhook about it record it once.
        existing = live.filter(provider=provider, provider_ref=method.ref).first()
        if existing is not None:
            if default and not existing.is_default:
                live.filter(is_default=True).update(is_default=False, updated_at=now)
                PaymentMethod.objects.filter(pk=existing.pk).update(is_default=True, updated_at=now)
                existing.refresh_from_db()
                object_event_emit(
                    type="payment_method.updated", obj=existing, data=payment_method_snapshot(existing), now=now
                )
                retry_after_new_payment_method(customer=customer, now=now)
            return existing
    make_default = default or not live.filter(is_default=True).exists()
    if make_default:
        live.filter(is_default=True).update(is_default=False, updated_at=now)
    saved = PaymentMethod.objects.create(
        id=method_id,
        customer_id=customer.pk,
        provider=provider,
        provider_ref=method.ref,
        type=method.type or "card",
        brand=method.brand,
        last4=method.last4,
        exp_month=method.exp_month,
        exp_year=method.exp_year,
        is_default=make_default,
    )
    object_event_emit(type="payment_method.attached", obj=saved, data=payment_method_snapshot(saved), now=now)
    if make_default:
        retry_after_new_payment_method(customer=customer, now=now)
    return saved


def payment_method_create(*, customer: Customer, token: str, now: datetime, default: bool = False) -> PaymentMethod:
    """Attach a card (a provider token) to the customer at the provider, then record it."""
    _live_customer(customer)
    processor = customer_processor(customer)
    method_id = new_id("pm")
    try:
        provider_customer = provider_customer_ensure(customer=customer, processor=processor)
        attached = processor.attach_method(
            provider_customer=provider_customer, token=token, idempotency_key=f"{method_id}:attach"
        )
    except ProcessorError as exc:
        if exc.code == "processor_authentication":  # our configuration, not the client's input
            logger.error("the %s processor refused our credentials", processor.name)
            raise ProcessorUnavailable("The payment processor is not available.") from None
        raise InvalidRequest(exc.message, code=exc.code, param="token", extra=_decline(exc)) from None
    except ProcessorTimeout:
        raise ProcessorUnavailable("The payment processor did not answer; nothing was attached. Retry.") from None
    with transaction.atomic(durable=True):
        return method_save(
            customer=customer, provider=processor.name, method=attached, method_id=method_id, default=default, now=now
        )


def payment_method_set_default(*, payment_method: PaymentMethod, now: datetime) -> PaymentMethod:
    """Make a live method the customer's default (the one collection charges); the old default is unset
    first (the partial unique index allows one). Setting the default again changes nothing."""
    with transaction.atomic(durable=True):
        customer = lock_customer(payment_method.customer_id)
        method = lock_payment_method(payment_method.pk)
        if method.detached_at is not None:
            raise Conflict(f"Payment method {method.id} is detached.", code="payment_method_detached")
        if method.is_default:
            return method
        live = PaymentMethod.objects.filter(customer_id=customer.pk, detached_at__isnull=True)
        live.filter(is_default=True).update(is_default=False, updated_at=now)
        PaymentMethod.objects.filter(pk=method.pk).update(is_default=True, updated_at=now)
        method.refresh_from_db()
        object_event_emit(type="payment_method.updated", obj=method, data=payment_method_snapshot(method), now=now)
        retry_after_new_payment_method(customer=customer, now=now)
    return method


def _decline(exc: ProcessorError) -> dict[str, Any]:
    return {"decline_code": exc.decline_code} if exc.decline_code else {}


def payment_method_detach(*, payment_method: PaymentMethod, now: datetime) -> PaymentMethod:
    """Detach here (no longer usable, no longer the default), then at the provider (best effort: the
    method is unusable for us whatever the provider answers)."""
    with transaction.atomic(durable=True):
        lock_customer(payment_method.customer_id)
        method = lock_payment_method(payment_method.pk)
        if method.detached_at is not None:
            raise Conflict(f"Payment method {method.id} is already detached.", code="payment_method_detached")
        PaymentMethod.objects.filter(pk=method.pk).update(detached_at=now, is_default=False, updated_at=now)
        method.refresh_from_db()
        object_event_emit(type="payment_method.detached", obj=method, data=payment_method_snapshot(method), now=now)
    try:
        processor_named(method.provider).detach_method(
            method_ref=method.provider_ref, idempotency_key=f"{method.id}:detach"
        )
    except (ProcessorError, ProcessorTimeout, InvalidRequest) as exc:
        logger.warning("detaching %s at %s failed: %s", method.id, method.provider, type(exc).__name__)
    return method


# --- SetupIntents ---------------------------------------------------------------------------------


def setup_intent_snapshot(intent: SetupIntent) -> dict[str, Any]:
    return {
        "id": intent.id,
        "customer": intent.customer_id,
        "status": intent.status,
        "usage": intent.usage,
        "payment_method": intent.payment_method_id,
        "provider": intent.provider,
        "last_error": intent.last_error,
        "cancellation_reason": intent.cancellation_reason or None,
    }


def _setup_conflict(intent: SetupIntent, action: str) -> Conflict:
    return Conflict(
        f"SetupIntent {intent.id} is {intent.status}; it cannot be {action}.",
        code="setup_intent_unexpected_state",
        extra={"status": intent.status},
    )


def setup_intent_create(
    *, customer: Customer, now: datetime, token: str = "", usage: str = "off_session"
) -> SetupIntent:
    _live_customer(customer)
    provider = customer_processor(customer).name
    intent = SetupIntent(
        customer=customer,
        token=token,
        usage=usage,
        provider=provider,
        status=SetupStatus.REQUIRES_CONFIRMATION if token else SetupStatus.REQUIRES_PAYMENT_METHOD,
    )
    with transaction.atomic(durable=True):
        intent.save(force_insert=True)
        object_event_emit(type="setup_intent.created", obj=intent, data=setup_intent_snapshot(intent), now=now)
    return intent


def setup_intent_confirm(
    *, setup_intent: SetupIntent, now: datetime, token: str = "", payment_method: PaymentMethod | None = None
) -> SetupIntent:
    """Verify the card with the provider. From requires_action, reads the provider's answer back (the
    customer may have authenticated meanwhile) instead of setting it up again."""
    if token and payment_method is not None:
        raise InvalidRequest("Pass either token or payment_method, not both.", param="token")
    if payment_method is not None:
        method_check(customer_id=setup_intent.customer_id, payment_method=payment_method)
    # A processor that is unknown or not configured fails here, before anything is marked processing.
    processor_named(payment_method.provider if payment_method is not None else setup_intent.provider)
    with transaction.atomic(durable=True):
        intent = lock_setup_intent(setup_intent.pk)
        if intent.status == SetupStatus.REQUIRES_ACTION and not (token or payment_method):
            refresh = True
        elif intent.status in (SetupStatus.REQUIRES_PAYMENT_METHOD, SetupStatus.REQUIRES_CONFIRMATION):
            refresh = False
            if payment_method is not None:
                intent.payment_method, intent.token, intent.provider = payment_method, "", payment_method.provider
            elif token:
                intent.payment_method, intent.token = None, token
            elif not intent.token and intent.payment_method_id is None:
                raise InvalidRequest(
                    "A setup intent needs a token or a payment_method to be confirmed.",
                    param="token",
                    code="parameter_missing",
                )
            intent.status, intent.last_error = SetupStatus.PROCESSING, None
            intent.save(update_fields=["payment_method", "token", "provider", "status", "last_error", "updated_at"])
        else:
            raise _setup_conflict(intent, "confirmed")
    processor = processor_named(intent.provider)
    if refresh:
        try:
            result = processor.fetch_setup(setup_ref=intent.provider_ref)
        except (ProcessorError, ProcessorTimeout):
            return intent  # nothing known yet: unchanged
        return _setup_settle(intent, result=result, expected=SetupStatus.REQUIRES_ACTION, now=now)
    source = intent.payment_method.provider_ref if intent.payment_method else intent.token
    # One key per (intent, card): a retry after a lost answer replays the first setup, never a second one.
    key = f"{intent.id}:setup:{source}"
    try:
        provider_customer = provider_customer_ensure(customer=intent.customer, processor=processor)
        result = processor.setup(
            provider_customer=provider_customer, token=source, idempotency_key=key, usage=intent.usage
        )
    except ProcessorError as exc:
        return _setup_settle(intent, error=error_data(exc), expected=SetupStatus.PROCESSING, now=now)
    except ProcessorTimeout:
        return _setup_settle(intent, timeout=True, expected=SetupStatus.PROCESSING, now=now)
    return _setup_settle(intent, result=result, expected=SetupStatus.PROCESSING, now=now)


def _setup_settle(
    intent: SetupIntent,
    *,
    expected: str,
    now: datetime,
    result: ProviderSetup | None = None,
    error: dict[str, Any] | None = None,
    timeout: bool = False,
) -> SetupIntent:
    with transaction.atomic(durable=True):
        customer = lock_customer(intent.customer_id)
        current = lock_setup_intent(intent.pk)
        if current.status != expected:
            return current  # settled by someone else meanwhile
        fields: dict[str, Any] = {"updated_at": now}
        event = None
        if timeout:
            # Nothing moves money here; confirming again replays the same key and gets the first answer.
            fields.update(status=SetupStatus.REQUIRES_CONFIRMATION, last_error=TIMEOUT_ERROR)
        elif error is not None or (result is not None and result.status == "failed"):
            if error is None and result is not None:
                error = {"code": result.error_code or "setup_failed", "message": result.error_message or ""}
            fields.update(status=SetupStatus.REQUIRES_PAYMENT_METHOD, last_error=error)
            event = "setup_intent.setup_failed"
        elif result is not None and result.status == "succeeded":
            method = current.payment_method
            if method is None:
                method = method_save(
                    customer=customer,
                    provider=current.provider,
                    method=result.method or ProviderMethod(ref=current.token),
                    method_id=new_id("pm"),
                    default=False,
                    now=now,
                )
            fields.update(status=SetupStatus.SUCCEEDED, payment_method=method, provider_ref=result.ref, last_error=None)
            event = "setup_intent.succeeded"
        elif result is not None:
            fields.update(status=SetupStatus.REQUIRES_ACTION, provider_ref=result.ref)
            event = "setup_intent.requires_action" if expected != SetupStatus.REQUIRES_ACTION else None
        if fields.get("status", expected) == expected and event is None:
            return current
        SetupIntent.objects.filter(pk=current.pk, status=expected).update(**fields)
        current.refresh_from_db()
        if event:
            object_event_emit(
                type=event, obj=current, data=setup_intent_snapshot(current), now=now, previous={"status": expected}
            )
    return current


# Which of our states a provider's report about a setup may move it out of. Webhooks come late, twice and
# out of order: a report never moves a setup backwards, and a success it reports is never dropped.
_SETUP_RECONCILE_FROM = {
    "succeeded": (SetupStatus.PROCESSING, SetupStatus.REQUIRES_CONFIRMATION, SetupStatus.REQUIRES_ACTION),
    "failed": (SetupStatus.PROCESSING, SetupStatus.REQUIRES_CONFIRMATION, SetupStatus.REQUIRES_ACTION),
}


def setup_intent_reconcile(*, setup_intent: SetupIntent, result: ProviderSetup, now: datetime) -> SetupIntent:
    """Settle a setup to what the provider reports about it (an inbound webhook), through the same step
    as a confirmation's answer: compare-and-set, a success records its payment method (once). A setup
    that ended here already (succeeded, canceled, failed) is left as it is. Never calls the provider."""
    allowed = _SETUP_RECONCILE_FROM.get(result.status, ())
    current = SetupIntent.objects.get(pk=setup_intent.pk)
    for _ in range(3):  # moved meanwhile from one allowed state to another: settle from the new one
        if current.status not in allowed:
            return current
        if result.status == "failed":
            error = {"code": result.error_code or "setup_failed", "message": result.error_message or ""}
            settled = _setup_settle(current, error=error, expected=current.status, now=now)
        else:
            settled = _setup_settle(current, result=result, expected=current.status, now=now)
        if settled.status != current.status or settled.status not in allowed:
            return settled
        current = SetupIntent.objects.get(pk=setup_intent.pk)
    return current


def setup_intent_cancel(*, setup_intent: SetupIntent, now: datetime, cancellation_reason: str = "") -> SetupIntent:
    cancellable = (SetupStatus.REQUIRES_PAYMENT_METHOD, SetupStatus.REQUIRES_CONFIRMATION, SetupStatus.REQUIRES_ACTION)
    with transaction.atomic(durable=True):
        intent = lock_setup_intent(setup_intent.pk)
        if intent.status not in cancellable:
            raise _setup_conflict(intent, "canceled")
        previous = intent.status
        SetupIntent.objects.filter(pk=intent.pk, status=previous).update(
            status=SetupStatus.CANCELED, canceled_at=now, cancellation_reason=cancellation_reason, updated_at=now
        )
        intent.refresh_from_db()
        object_event_emit(
            type="setup_intent.canceled",
            obj=intent,
            data=setup_intent_snapshot(intent),
            now=now,
            previous={"status": previous},
        )
    return intent
