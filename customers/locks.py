"""Row locks on customers (first in the one lock order: see `billing_site.locks`)."""

from __future__ import annotations

from billing_site.locks import LockRank, lock_one
from customers.models import Customer


def lock_customer(customer_id: str) -> Customer:
    """Lock one customer row; every customer-level write (its balance, its subscriptions' lifecycle,
    deleting it) starts here, so two of them on one customer queue up instead of interleaving."""
    return lock_one(Customer.objects.filter(pk=customer_id), LockRank.CUSTOMER)
