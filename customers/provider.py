"""A customer's counterpart at Stripe, for provider billing mode.

Created on first use, idempotently: the request's idempotency key is built from our customer id alone
(the same key and parameters the payments app's Stripe processor uses), and our id is in the Stripe
customer's metadata, so a retry, a crash between the call and the write, or both apps asking at once all
end with one Stripe customer. Call it outside any transaction: it talks to Stripe.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import stripe
from django.db import transaction

from customers.models import Customer
from customers.services import BILLING_PROVIDER, customer_snapshot
from webhooks.services import event_emit


def provider_customer_idempotency_key(customer: Customer) -> str:
    return f"{customer.id}:customer:{BILLING_PROVIDER}"


def customer_provider_ensure(*, customer: Customer, client: stripe.StripeClient, now: datetime) -> str:
    """The customer's Stripe id, creating the Stripe customer when it has none yet."""
    customer.refresh_from_db(fields=["provider", "provider_customer_id", "email", "name"])
    if customer.provider_customer_id:
        return customer.provider_customer_id
    params: dict[str, Any] = {"metadata": {"customer_id": customer.id}}
    if customer.email:
        params["email"] = customer.email
    if customer.name:
        params["name"] = customer.name
    created = client.v1.customers.create(params, {"idempotency_key": provider_customer_idempotency_key(customer)})
    with transaction.atomic():
        # Compare-and-set: whoever stored an id first wins, and a second Stripe customer is never recorded.
        stored = Customer.objects.filter(pk=customer.pk, provider_customer_id="").update(
            provider=BILLING_PROVIDER, provider_customer_id=created.id, updated_at=now
        )
        customer.refresh_from_db(fields=["provider", "provider_customer_id"])
        if stored:
            event_emit(
                type="customer.updated",
                object_type="customer",
                object_id=customer.id,
                customer_id=customer.id,
                data=customer_snapshot(customer),
                previous_attributes={"provider_customer_id": None},
                now=now,
            )
    return customer.provider_customer_id
