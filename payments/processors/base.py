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


@dataclass(frozen=True)
class ProviderSetup:
    ref: str
    status: str  # requires_action | succeeded | failed
    method: ProviderMethod | None = None
    error_code: str | None = None


@dataclass(frozen=True)
class ProviderRefund:
    ref: str
    status: str  # succeeded | pending | failed
    amount: int


class PaymentProcessor(Protocol):
    name: str

    def create_customer(self, *, customer_id: str, email: str, name: str, idempotency_key: str) -> str: ...

    def attach_method(self, *, provider_customer: str, token: str, idempotency_key: str) -> ProviderMethod: ...

    def setup(self, *, provider_customer: str, token: str, idempotency_key: str) -> ProviderSetup: ...

    def authorize(
        self,
        *,
        provider_customer: str,
        method_ref: str,
        amount: int,
        currency: str,
        idempotency_key: str,
        description: str = "",
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
    ) -> ProviderPayment: ...

    def capture(self, *, payment_ref: str, amount: int, idempotency_key: str) -> ProviderPayment: ...

    def cancel(self, *, payment_ref: str, idempotency_key: str) -> ProviderPayment: ...

    def refund(self, *, payment_ref: str, amount: int, reason: str, idempotency_key: str) -> ProviderRefund: ...

    def fetch_payment(self, *, idempotency_key: str) -> ProviderPayment | None:
        """The payment made with this idempotency key, or None if the provider never saw it."""
        ...
