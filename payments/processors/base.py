"""The payment processor interface. Implementations: `sandbox` (default, no network) and `stripe`.

Every call that can move money takes an `idempotency_key` built from our own row id and stored on the row
before the call: a retry after a crash or a timeout reuses it, so the provider answers with the first
result instead of charging again. A timeout raises `ProcessorTimeout`: the outcome is unknown and must be
settled by `fetch_payment`, never by charging again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class ProcessorError(Exception):
    """The provider refused (a decline, a bad token): the outcome is known, nothing was charged."""

    def __init__(self, code: str, message: str, *, decline_code: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.decline_code = decline_code


class ProcessorTimeout(Exception):
    """No answer: the provider may or may not have acted. Settle with fetch_payment."""


@dataclass(frozen=True)
class ProviderMethod:
    ref: str
    type: str = "card"
    brand: str = ""
    last4: str = ""
    exp_month: int | None = None
    exp_year: int | None = None


@dataclass(frozen=True)
class ProviderPayment:
    """A payment as the provider sees it. status: requires_action | requires_capture | succeeded |
    canceled | failed | processing."""

    ref: str
    status: str
    amount: int
    amount_received: int = 0
    amount_capturable: int = 0
    error_code: str | None = None
    error_message: str | None = None
    decline_code: str | None = None
    # What the customer's browser uses to finish an on-session payment: the provider's client secret (Stripe's
    # `client_secret`, handed to Stripe.js) and, while status is requires_action, what is asked of the
    # customer (Stripe's `next_action`, e.g. `{"type": "use_stripe_sdk", ...}`).
    client_secret: str | None = None
    next_action: dict | None = None


@dataclass(frozen=True)
class ProviderSetup:
    ref: str
    status: str  # requires_action | succeeded | failed
    method: ProviderMethod | None = None
    error_code: str | None = None
    error_message: str | None = None


@dataclass(frozen=True)
class ProviderRefund:
    ref: str
    status: str  # succeeded | pending | failed
    amount: int


class PaymentProcessor(Protocol):
    """Extended beyond the first sketch where a real provider needed it: `detach_method`, `fetch_setup`
    (a setup that required action is read back, not replayed), `usage`, `off_session` (Stripe treats an
    off-session charge differently: no customer to authenticate), a cancellation `reason`, and
    `fetch_payment(payment_ref=)` (read by id when we know it, by our idempotency key when the answer
    was lost)."""

    name: str

    def create_customer(self, *, customer_id: str, email: str, name: str, idempotency_key: str) -> str: ...

    def attach_method(self, *, provider_customer: str, token: str, idempotency_key: str) -> ProviderMethod: ...

    def detach_method(self, *, method_ref: str, idempotency_key: str) -> None: ...

    def setup(
        self, *, provider_customer: str, token: str, idempotency_key: str, usage: str = "off_session"
    ) -> ProviderSetup: ...

    def fetch_setup(self, *, setup_ref: str) -> ProviderSetup: ...

    def authorize(
        self,
        *,
        provider_customer: str,
        method_ref: str,
        amount: int,
        currency: str,
        idempotency_key: str,
        description: str = "",
        off_session: bool = False,
    ) -> ProviderPayment: ...

    def charge(
        self,
        *,
        provider_customer: str,
        method_ref: str,
        amount: int,
        currency: str,
        idempotency_key: str,
        description: str = "",
        off_session: bool = False,
    ) -> ProviderPayment: ...

    def capture(
        self, *, payment_ref: str, amount: int, idempotency_key: str, currency: str = ""
    ) -> ProviderPayment: ...

    def cancel(self, *, payment_ref: str, idempotency_key: str, reason: str = "") -> ProviderPayment: ...

    def refund(
        self, *, payment_ref: str, amount: int, reason: str, idempotency_key: str, currency: str = ""
    ) -> ProviderRefund: ...

    def fetch_payment(self, *, idempotency_key: str, payment_ref: str = "") -> ProviderPayment | None:
        """The payment made with this idempotency key (or, when known, with this provider id), or None if
        the provider never saw it. Reads only: never charges."""
        ...
