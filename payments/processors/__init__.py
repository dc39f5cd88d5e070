"""Which payment processor handles a payment: the customer's own (`Customer.provider`) when set, else the
`PAYMENTS_PROCESSOR` setting. Rows that already went to a provider (methods, intents) remember its name
and keep using it, whatever the setting says later."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from payments.processors.base import (
    PaymentProcessor,
    ProcessorError,
    ProcessorTimeout,
    ProviderMethod,
    ProviderPayment,
    ProviderRefund,
    ProviderSetup,
)

if TYPE_CHECKING:
    from customers.models import Customer

PROCESSORS = ("sandbox", "stripe")

__all__ = [
    "PROCESSORS",
    "PaymentProcessor",
    "ProcessorError",
    "ProcessorTimeout",
    "ProviderMethod",
    "ProviderPayment",
    "ProviderRefund",
    "ProviderSetup",
    "UnknownProcessor",
    "get_processor",
    "processor_for_customer",
    "processor_name_for",
]


class UnknownProcessor(ValueError):
    pass


_stripe_clients: dict[tuple[str, str, int], PaymentProcessor] = {}


def processor_name_for(customer: Customer) -> str:
    name = customer.provider or settings.PAYMENTS_PROCESSOR
    if name not in PROCESSORS:
        raise UnknownProcessor(f"Customer {customer.id} names the processor {name!r}; known: {', '.join(PROCESSORS)}.")
    return name


def get_processor(name: str | None = None) -> PaymentProcessor:
    """The processor called `name` (default: the PAYMENTS_PROCESSOR setting)."""
    name = name or settings.PAYMENTS_PROCESSOR
    if name == "sandbox":
        from payments.processors.sandbox import SandboxProcessor

        return SandboxProcessor()
    if name == "stripe":
        from payments.processors import stripe

        api_key = getattr(settings, "STRIPE_API_KEY", None)
        if not api_key:
            raise ImproperlyConfigured("STRIPE_API_KEY must be set to use the stripe payment processor")
        # One client per key, API base and HTTP client (tests replace the last two): its connections are
        # reused.
        api_base = settings.STRIPE_API_BASE
        cache_key = (api_key, api_base, id(stripe.HTTP_CLIENT))
        if cache_key not in _stripe_clients:
            _stripe_clients.clear()
            _stripe_clients[cache_key] = stripe.StripeProcessor(api_key=api_key, api_base=api_base)
        return _stripe_clients[cache_key]
    raise UnknownProcessor(f"Unknown payment processor {name!r}; known: {', '.join(PROCESSORS)}.")


def processor_for_customer(customer: Customer) -> PaymentProcessor:
    return get_processor(processor_name_for(customer))
