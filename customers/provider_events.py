"""What a payment provider's events about customers do to ours (registered with webhooks.inbound)."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction

from billing_site.locks import LockRank, lock_first
from customers.models import Customer
from customers.services import customer_snapshot
from webhooks.inbound import provider_handler_register
from webhooks.models import ProviderEvent
from webhooks.services import event_emit


def customer_provider_detach(*, provider: str, provider_customer_id: str, now: datetime) -> Customer | None:
    """The provider deleted its customer: forget its id on ours, so nothing is charged to a customer that
    no longer exists there and the next payment method creates a fresh one. Our customer stays as it is
    (active, with its history): whether a tenant is billed is the control plane's call, not the provider's.
    Returns the customer, or None when none of ours has that id (already detached, or never ours)."""
    with transaction.atomic():
        customer = lock_first(
            Customer.objects.filter(provider=provider, provider_customer_id=provider_customer_id), LockRank.CUSTOMER
        )
        if customer is None:
            return None
        Customer.objects.filter(pk=customer.pk, provider_customer_id=provider_customer_id).update(
            provider_customer_id="", updated_at=now
        )
        customer.refresh_from_db()
        event_emit(
            type="customer.provider_customer_deleted",
            object_type="customer",
            object_id=customer.id,
            customer_id=customer.id,
            data={**customer_snapshot(customer), "provider": provider, "provider_customer_id": None},
            previous_attributes={"provider_customer_id": provider_customer_id},
            now=now,
        )
    return customer


def stripe_customer_deleted(*, event: ProviderEvent, now: datetime) -> str:
    provider_customer_id = event.object_id
    if not provider_customer_id:
        return "no customer id in the event"
    customer = customer_provider_detach(provider="stripe", provider_customer_id=provider_customer_id, now=now)
    if customer is None:
        return f"no customer is linked to {provider_customer_id}"
    return f"detached {provider_customer_id} from {customer.id}"


def register() -> None:
    provider_handler_register(provider="stripe", event_type="customer.deleted", handler=stripe_customer_deleted)
