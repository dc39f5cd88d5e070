"""The Stripe processor, on the official SDK (`stripe.StripeClient`).

Every POST carries an idempotency key built from our own row id (stored on the row before the call), so
the SDK's own network retries and ours after a crash get Stripe's first answer instead of a second charge.
Payments carry that key in their metadata too: `fetch_payment` finds a payment whose answer was lost by
searching for it (reads only, never a charge).

Errors: a card error or a refusal is `ProcessorError` (the outcome is known); a network error, a timeout or
a Stripe 5xx is `ProcessorTimeout` (the outcome is unknown: settle it with `fetch_payment`). The API key
is only handed to the SDK: it is never logged, never put in an error message, never shown by `repr`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import stripe

from billing_site.stripe_sdk import client_build
from payments.processors.base import (
    ProcessorError,
    ProcessorTimeout,
    ProviderMethod,
    ProviderPayment,
    ProviderRefund,
    ProviderSetup,
)
from payments.processors.currencies import from_provider, to_provider

# Tests put a fake here (recorded responses, no network); None is the SDK's own HTTP client.
HTTP_CLIENT: stripe.HTTPClient | None = None
_SECRET = re.compile(r"\b(sk|rk)_(test|live)_[A-Za-z0-9*]+")
_PAYMENT_STATUS = {
    "succeeded": "succeeded",
    "requires_capture": "requires_capture",
    "requires_action": "requires_action",
    "processing": "processing",
    "canceled": "canceled",
    "requires_payment_method": "failed",  # a confirmed payment back here was declined
    "requires_confirmation": "processing",
}
_REFUND_STATUS = {"succeeded": "succeeded", "pending": "pending", "requires_action": "pending"}
_CANCEL_REASONS = frozenset({"duplicate", "fraudulent", "requested_by_customer", "abandoned"})


def redact(text: str) -> str:
    return _SECRET.sub("[redacted]", text)


class _RedactSecrets(logging.Filter):
    """The SDK's own log lines (at DEBUG it logs response bodies, where Stripe echoes a masked key on an
    authentication error) never carry anything shaped like a secret key."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if _SECRET.search(message):
            record.msg, record.args = redact(message), None
        return True


_SDK_LOGGER = logging.getLogger("stripe")
if not any(isinstance(f, _RedactSecrets) for f in _SDK_LOGGER.filters):
    _SDK_LOGGER.addFilter(_RedactSecrets())


@contextmanager
def _mapped_errors() -> Iterator[None]:
    try:
        yield
    except stripe.CardError as exc:
        error = exc.error
        raise ProcessorError(
            exc.code or "card_declined",
            redact(exc.user_message or "The card was declined."),
            decline_code=getattr(error, "decline_code", None) if error is not None else None,
        ) from None
    except (stripe.APIConnectionError, stripe.APIError) as exc:
        # No answer, or Stripe failed while acting: whether it acted is unknown.
        raise ProcessorTimeout(f"stripe: no usable answer ({type(exc).__name__})") from None
    except stripe.AuthenticationError:
        raise ProcessorError("processor_authentication", "The payment processor refused our credentials.") from None
    except stripe.StripeError as exc:
        raise ProcessorError(exc.code or "processor_error", redact(exc.user_message or str(exc))) from None


def _get(obj: Any, key: str, default: Any = None) -> Any:
    """A field of a StripeObject (not a dict in this SDK), or `default` when absent or null."""
    if obj is None or isinstance(obj, str):
        return default
    value = getattr(obj, key, None)
    return default if value is None else value


def _method(pm: Any) -> ProviderMethod:
    if isinstance(pm, str):
        return ProviderMethod(ref=pm)
    card = _get(pm, "card", {})
    return ProviderMethod(
        ref=pm.id,
        type=_get(pm, "type", "card"),
        brand=_get(card, "brand", ""),
        last4=_get(card, "last4", ""),
        exp_month=_get(card, "exp_month"),
        exp_year=_get(card, "exp_year"),
    )


def _plain(value: Any) -> dict[str, Any] | None:
    if value is None or isinstance(value, dict):
        return value
    return value.to_dict() if hasattr(value, "to_dict") else dict(value)


def _ours(amount: int, currency: Any) -> int:
    """A Stripe amount in our minor units (`payments.processors.currencies`)."""
    return from_provider(amount, currency) if isinstance(currency, str) and currency else amount


def _payment(pi: Any) -> ProviderPayment:
    error = _get(pi, "last_payment_error")
    status = _PAYMENT_STATUS.get(pi.status, "processing")
    failed = status == "failed"
    currency = _get(pi, "currency", "")
    return ProviderPayment(
        ref=pi.id,
        status=status,
        amount=_ours(pi.amount, currency),
        amount_received=_ours(_get(pi, "amount_received", 0), currency),
        amount_capturable=_ours(_get(pi, "amount_capturable", 0), currency),
        error_code=(_get(error, "code") or "payment_failed") if failed else None,
        error_message=redact(_get(error, "message", "The payment failed.")) if failed else None,
        decline_code=_get(error, "decline_code") if failed else None,
        client_secret=_get(pi, "client_secret"),
        next_action=_plain(_get(pi, "next_action")) if status == "requires_action" else None,
    )


def _setup(si: Any) -> ProviderSetup:
    error = _get(si, "last_setup_error")
    if si.status == "succeeded":
        return ProviderSetup(ref=si.id, status="succeeded", method=_method(si.payment_method))
    if si.status == "requires_payment_method":
        return ProviderSetup(
            ref=si.id,
            status="failed",
            error_code=_get(error, "code") or "setup_failed",
            error_message=redact(_get(error, "message", "The card could not be set up.")),
        )
    # requires_action, or (never for cards) processing: read it back later with fetch_setup.
    return ProviderSetup(ref=si.id, status="requires_action")


# --- Objects Stripe sends us (inbound webhooks: `event.data.object`, a plain dict) ------------------


def _wrap(obj: dict[str, Any]) -> Any:
    return stripe.StripeObject.construct_from(obj, None)


def payment_from_object(obj: dict[str, Any]) -> ProviderPayment:
    """A PaymentIntent as a webhook carries it, read the way our own calls' answers are."""
    return _payment(_wrap(obj))


def setup_from_object(obj: dict[str, Any]) -> ProviderSetup:
    return _setup(_wrap(obj))


def method_from_object(obj: dict[str, Any]) -> ProviderMethod:
    return _method(_wrap(obj))


def refund_from_object(obj: dict[str, Any]) -> ProviderRefund:
    """Stripe's refund statuses: pending, requires_action (both still on their way), succeeded, failed and
    canceled (the money did not go back: failed for us)."""
    return ProviderRefund(
        ref=obj["id"],
        status=_REFUND_STATUS.get(obj.get("status"), "failed"),
        amount=_ours(obj["amount"], obj.get("currency")),
    )


class StripeProcessor:
    name = "stripe"

    def __init__(
        self,
        *,
        api_key: str,
        http_client: stripe.HTTPClient | None = None,
        max_network_retries: int = 2,
        api_base: str | None = None,
    ) -> None:
        # `api_base` (the STRIPE_API_BASE setting): Stripe itself by default, a local fake in tests, a proxy.
        self._client = client_build(
            api_key=api_key,
            http_client=http_client or HTTP_CLIENT,
            max_network_retries=max_network_retries,
            base=api_base,
        )

    def __repr__(self) -> str:
        return "StripeProcessor()"

    @property
    def _v1(self) -> Any:
        return self._client.v1

    def _payment_method_for(self, token: str, idempotency_key: str) -> str:
        """A card token (`tok_...`) becomes a PaymentMethod; a PaymentMethod id is used as it is."""
        if not token.startswith("tok_"):
            return token
        pm = self._v1.payment_methods.create(
            {"type": "card", "card": {"token": token}}, {"idempotency_key": f"{idempotency_key}:method"}
        )
        return pm.id

    # --- customers and methods -------------------------------------------------------------------

    def create_customer(self, *, customer_id: str, email: str, name: str, idempotency_key: str) -> str:
        params: dict[str, Any] = {"metadata": {"customer_id": customer_id}}
        if email:
            params["email"] = email
        if name:
            params["name"] = name
        with _mapped_errors():
            return self._v1.customers.create(params, {"idempotency_key": idempotency_key}).id

    def attach_method(self, *, provider_customer: str, token: str, idempotency_key: str) -> ProviderMethod:
        with _mapped_errors():
            ref = self._payment_method_for(token, idempotency_key)
            pm = self._v1.payment_methods.attach(
                ref, {"customer": provider_customer}, {"idempotency_key": idempotency_key}
            )
        return _method(pm)

    def detach_method(self, *, method_ref: str, idempotency_key: str) -> None:
        with _mapped_errors():
            self._v1.payment_methods.detach(method_ref, {}, {"idempotency_key": idempotency_key})

    def setup(
        self, *, provider_customer: str, token: str, idempotency_key: str, usage: str = "off_session"
    ) -> ProviderSetup:
        with _mapped_errors():
            method = self._payment_method_for(token, idempotency_key)
            si = self._v1.setup_intents.create(
                {
                    "customer": provider_customer,
                    "payment_method": method,
                    "payment_method_types": ["card"],
                    "confirm": True,
                    "usage": usage,
                    "metadata": {"idempotency_key": idempotency_key},
                    "expand": ["payment_method"],
                },
                {"idempotency_key": idempotency_key},
            )
        return _setup(si)

    def fetch_setup(self, *, setup_ref: str) -> ProviderSetup:
        with _mapped_errors():
            return _setup(self._v1.setup_intents.retrieve(setup_ref, {"expand": ["payment_method"]}))

    # --- payments --------------------------------------------------------------------------------

    def authorize(self, **kwargs: Any) -> ProviderPayment:
        return self._pay(capture_method="manual", **kwargs)

    def charge(self, **kwargs: Any) -> ProviderPayment:
        return self._pay(capture_method="automatic", **kwargs)

    def _pay(
        self,
        *,
        provider_customer: str,
        method_ref: str,
        amount: int,
        currency: str,
        idempotency_key: str,
        capture_method: str,
        description: str = "",
        off_session: bool = False,
    ) -> ProviderPayment:
        params: dict[str, Any] = {
            "amount": to_provider(amount, currency),
            "currency": currency,
            "customer": provider_customer,
            "payment_method": method_ref,
            "payment_method_types": ["card"],
            "confirm": True,
            "capture_method": capture_method,
            "off_session": off_session,
            "metadata": {"idempotency_key": idempotency_key},
        }
        if description:
            params["description"] = description
        with _mapped_errors():
            return _payment(self._v1.payment_intents.create(params, {"idempotency_key": idempotency_key}))

    def capture(self, *, payment_ref: str, amount: int, idempotency_key: str, currency: str = "") -> ProviderPayment:
        value = to_provider(amount, currency) if currency else amount
        with _mapped_errors():
            pi = self._v1.payment_intents.capture(
                payment_ref, {"amount_to_capture": value}, {"idempotency_key": idempotency_key}
            )
        return _payment(pi)

    def cancel(self, *, payment_ref: str, idempotency_key: str, reason: str = "") -> ProviderPayment:
        params = {"cancellation_reason": reason} if reason in _CANCEL_REASONS else {}
        with _mapped_errors():
            return _payment(self._v1.payment_intents.cancel(payment_ref, params, {"idempotency_key": idempotency_key}))

    def refund(
        self, *, payment_ref: str, amount: int, reason: str, idempotency_key: str, currency: str = ""
    ) -> ProviderRefund:
        params: dict[str, Any] = {
            "payment_intent": payment_ref,
            "amount": to_provider(amount, currency) if currency else amount,
            "metadata": {"idempotency_key": idempotency_key},
        }
        if reason:
            params["reason"] = reason
        with _mapped_errors():
            refund = self._v1.refunds.create(params, {"idempotency_key": idempotency_key})
        return ProviderRefund(
            ref=refund.id,
            status=_REFUND_STATUS.get(refund.status, "failed"),
            amount=_ours(refund.amount, _get(refund, "currency", "") or currency),
        )

    def fetch_payment(self, *, idempotency_key: str, payment_ref: str = "") -> ProviderPayment | None:
        """By id when we have it; otherwise by the idempotency key in the payment's metadata (Stripe's
        search index lags by up to a minute, so "not found" is only believed after a grace period)."""
        with _mapped_errors():
            if payment_ref:
                return _payment(self._v1.payment_intents.retrieve(payment_ref))
            quoted = idempotency_key.replace("\\", "\\\\").replace("'", "\\'")
            found = self._v1.payment_intents.search({"query": f"metadata['idempotency_key']:'{quoted}'", "limit": 1})
        return _payment(found.data[0]) if found.data else None

    # --- reads for inbound webhooks (never move money) ------------------------------------------------

    def charge_payment_ref(self, *, charge_ref: str) -> str | None:
        """The PaymentIntent a charge belongs to (a dispute of an older API version names only the charge)."""
        with _mapped_errors():
            charge = self._v1.charges.retrieve(charge_ref)
        intent = _get(charge, "payment_intent")
        return intent if isinstance(intent, str) else _get(intent, "id")

    def charge_refunds(self, *, charge_ref: str) -> list[dict[str, Any]]:
        """Every refund of a charge, as plain dicts (`charge.refunded` events of recent API versions no
        longer embed them)."""
        with _mapped_errors():
            listed = self._v1.refunds.list({"charge": charge_ref, "limit": 100})
            return [refund.to_dict() for refund in listed.auto_paging_iter()]
