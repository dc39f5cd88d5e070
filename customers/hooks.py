"""Checks other apps register on changes to a customer's billing with its provider.

Customers sits below metering (which pushes usage to the provider) and must not import it, so metering
registers what it needs here from its `AppConfig.ready()`: for example, a customer with usage on a meter
that has no provider mapping cannot be switched to provider mode. A check raises an `ApiError` (a 4xx
naming the field) to refuse the change; it runs inside the changing transaction, after the customer's
row lock, so nothing is half-written when it refuses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from customers.models import Customer

CustomerCheck = Callable[["Customer", str], None]

# Called with the customer (locked, as it is now) and the billing mode it is about to take.
on_billing_mode_change: list[CustomerCheck] = []
# Called with the customer (locked, as it is now) and the provider customer id it is about to take.
on_provider_customer_id_change: list[CustomerCheck] = []


def check_register(checks: list[CustomerCheck], check: CustomerCheck) -> None:
    """Add `check` once (a second `ready()`, as in some test runners, must not register it twice)."""
    if check not in checks:
        checks.append(check)


def checks_run(checks: list[CustomerCheck], customer: Customer, value: str) -> None:
    for check in list(checks):
        check(customer, value)
