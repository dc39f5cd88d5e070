"""Every write to customers and their users. Each runs in one transaction and emits its outbox event
inside it. Callers pass validated values (the API's Input serializers validate shape and codes)."""

from __future__ import annotations

import functools
import zoneinfo
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction

from billing_site.errors import Conflict, InvalidRequest, NotFound
from billing_site.fields import metadata_clean, metadata_merge
from billing_site.locks import LockRank, lock_first
from billing_site.stripe_sdk import stripe_configured
from customers import hooks
from customers.entitlements_cache import entitlements_invalidate
from customers.models import BillingModeChange, Customer, CustomerUser
from webhooks.services import event_emit, object_event_emit

ADDRESS_FIELDS = ("line1", "line2", "city", "state", "postal_code", "country")
_UPDATABLE = ("name", "email", "currency", "tax_exempt", "provider", "timezone")
_FLAGS = ("invoice_consolidation",)
# The one provider that provider billing mode pushes usage to.
BILLING_PROVIDER = "stripe"


def _check_timezone(value: str | None) -> str:
    """An IANA zone name, as the tz database spells it (blank: none, UTC)."""
    if value and value not in _zone_names():
        raise InvalidRequest(
            f"Unknown time zone {value!r}: use an IANA name such as 'Europe/Paris'.",
            code="unknown_timezone",
            param="timezone",
        )
    return value or ""


@functools.cache
def _zone_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def customer_snapshot(customer: Customer) -> dict[str, Any]:
    """The customer as events carry it (the same fields the API shows)."""
    return {
        "id": customer.id,
        "external_id": customer.external_id,
        "name": customer.name,
        "email": customer.email,
        "currency": customer.currency or None,
        "address": customer.address,
        "tax_exempt": customer.tax_exempt,
        "timezone": customer.timezone or None,
        "invoice_consolidation": customer.invoice_consolidation,
        "metadata": customer.metadata,
        "status": customer.status,
        "billing_mode": customer.billing_mode,
        "provider_customer_id": customer.provider_customer_id or None,
    }


def user_snapshot(user: CustomerUser) -> dict[str, Any]:
    return {
        "id": user.id,
        "customer": user.customer_id,
        "external_id": user.external_id or None,
        "email": user.email,
        "name": user.name,
        "status": user.status,
    }


def _exists_conflict(existing: Customer) -> Conflict:
    if existing.status == Customer.Status.DELETED:
        return Conflict(
            f"external_id '{existing.external_id}' belongs to the deleted customer {existing.id}. Restore it "
            f"with POST /api/v1/customers/{existing.id}/restore, or free the id for a new customer with "
            f"POST /api/v1/customers/{existing.id}/purge (erases its personal data, keeps its billing history).",
            code="customer_deleted",
            param="external_id",
            extra={"customer": existing.id},
        )
    return Conflict(
        f"A customer with external_id '{existing.external_id}' already exists: {existing.id}.",
        code="customer_exists",
        param="external_id",
        extra={"customer": existing.id},
    )


def _set_address(customer: Customer, address: dict[str, str] | None) -> None:
    address = address or {}
    for field in ADDRESS_FIELDS:
        setattr(customer, f"address_{field}", address.get(field) or "")


def _provider_id_conflict() -> Conflict:
    return Conflict(
        "Another customer already has this provider customer id.",
        code="provider_customer_exists",
        param="provider_customer_id",
    )


def customer_billing_mode_check(*, customer: Customer, mode: str) -> None:
    """Refuse (a 400 naming `billing_mode`) a mode the customer cannot be billed in now."""
    if mode == Customer.BillingMode.PROVIDER:
        if not stripe_configured():
            raise InvalidRequest(
                "Provider billing pushes usage to Stripe Billing, and STRIPE_API_KEY is not set.",
                param="billing_mode",
                code="provider_not_configured",
            )
        if customer.provider not in ("", BILLING_PROVIDER):
            raise InvalidRequest(
                f"Customer {customer.id} is pinned to the payment provider {customer.provider!r} (its payment "
                f"methods live there); provider billing pushes usage to {BILLING_PROVIDER}.",
                param="billing_mode",
                code="provider_conflict",
            )
    hooks.checks_run(hooks.on_billing_mode_change, customer, mode)


def _billing_mode_record(customer: Customer, mode: str, now: datetime, source: str) -> None:
    """Take `mode` from `now` on, and keep the history that says so (the caller saves the customer)."""
    if customer.billing_mode_since is not None and now < customer.billing_mode_since:
        raise Conflict(
            f"The billing mode of {customer.id} last changed at {customer.billing_mode_since.isoformat()}; a change "
            "cannot take effect before it.",
            code="billing_mode_backdated",
            param="billing_mode",
        )
    customer.billing_mode = mode
    customer.billing_mode_since = now
    BillingModeChange.objects.create(customer=customer, mode=mode, effective_at=now, source=source, created_at=now)


def customer_create(
    *,
    external_id: str,
    now: datetime,
    name: str = "",
    email: str = "",
    currency: str = "",
    address: dict[str, str] | None = None,
    tax_exempt: str = Customer.TaxExempt.NONE,
    timezone: str = "",
    invoice_consolidation: bool = False,
    metadata: dict[str, str | None] | None = None,
    billing_mode: str | None = None,
    provider_customer_id: str = "",
    source: str = BillingModeChange.Source.API,
    test_clock: str | None = None,
) -> Customer:
    """Create a customer. `billing_mode` defaults to the BILLING_MODE_DEFAULT setting; provider mode
    takes effect at `now`, so all of the customer's usage is pushed. `test_clock` attaches it to a clock
    (test mode; only at creation): it then lives on the clock's time."""
    clock = None
    if test_clock is not None:
        from customers.clocks import test_clock_for_customer

        clock = test_clock_for_customer(clock_id=test_clock)
    existing = Customer.objects.filter(external_id=external_id).first()
    if existing is not None:
        raise _exists_conflict(existing)
    customer = Customer(
        external_id=external_id,
        name=name,
        email=email,
        currency=currency,
        tax_exempt=tax_exempt,
        timezone=_check_timezone(timezone),
        invoice_consolidation=bool(invoice_consolidation),
        metadata=metadata_clean(metadata or {}),
        provider=BILLING_PROVIDER if provider_customer_id else "",
        provider_customer_id=provider_customer_id,
        test_clock=clock,
    )
    _set_address(customer, address)
    mode = billing_mode or settings.BILLING_MODE_DEFAULT
    if clock is not None and mode != Customer.BillingMode.NATIVE:
        # Provider mode pushes usage to Stripe at real time; a clock's customer is billed here, on its clock.
        raise InvalidRequest(
            "A customer on a test clock is billed natively (billing_mode native).",
            code="test_clock_billing_mode",
            param="billing_mode",
        )
    if mode != Customer.BillingMode.NATIVE:
        customer_billing_mode_check(customer=customer, mode=mode)
    try:
        with transaction.atomic():
            customer.save(force_insert=True)
            if mode != Customer.BillingMode.NATIVE:
                _billing_mode_record(customer, mode, now, source)
                customer.save(update_fields=["billing_mode", "billing_mode_since"])
            object_event_emit(type="customer.created", obj=customer, data=customer_snapshot(customer), now=now)
    except IntegrityError:
        # Lost a race with a concurrent create of the same external_id (or provider id): the constraint decided.
        existing = Customer.objects.filter(external_id=external_id).first()
        if existing is not None:
            raise _exists_conflict(existing) from None
        if provider_customer_id and Customer.objects.filter(provider_customer_id=provider_customer_id).exists():
            raise _provider_id_conflict() from None
        raise
    return customer


def _lock_customer(customer_id: str) -> Customer:
    customer = lock_first(Customer.objects.filter(pk=customer_id), LockRank.CUSTOMER)
    if customer is None:
        raise NotFound(f"No such customer: {customer_id}", param="id")
    return customer


def _live(customer: Customer) -> Customer:
    if customer.status == Customer.Status.DELETED:
        raise NotFound(f"No such customer: {customer.id}", param="id")
    return customer


def customer_update(
    *, customer: Customer, changes: dict[str, Any], now: datetime, source: str = BillingModeChange.Source.API
) -> Customer:
    """Apply a PATCH. `metadata` merges (a key set to null or "" is removed); `address` replaces.

    A new `billing_mode` takes effect at `now` and is kept in the customer's mode history; the provider
    customer id can change only while no usage was pushed to the old one (the checks metering registers
    in `customers.hooks`)."""
    with transaction.atomic():
        locked = _live(_lock_customer(customer.id))
        before = customer_snapshot(locked)
        if "timezone" in changes:
            _check_timezone(changes["timezone"])
        for field in _FLAGS:
            if field in changes:
                setattr(locked, field, bool(changes[field]))
        for field in _UPDATABLE:
            if field in changes:
                setattr(locked, field, changes[field] or "")
        if "address" in changes:
            _set_address(locked, changes["address"])
        if "metadata" in changes:
            locked.metadata = metadata_merge(locked.metadata, changes["metadata"])
        provider_id = changes.get("provider_customer_id", locked.provider_customer_id) or ""
        if provider_id != locked.provider_customer_id:
            hooks.checks_run(hooks.on_provider_customer_id_change, locked, provider_id)
            locked.provider_customer_id = provider_id
            if provider_id and not locked.provider:
                locked.provider = BILLING_PROVIDER
        mode = changes.get("billing_mode") or locked.billing_mode
        if mode != locked.billing_mode and locked.test_clock_id is not None:
            raise InvalidRequest(
                "A customer on a test clock is billed natively (billing_mode native).",
                code="test_clock_billing_mode",
                param="billing_mode",
            )
        if mode != locked.billing_mode:
            customer_billing_mode_check(customer=locked, mode=mode)
            _billing_mode_record(locked, mode, now, source)
        after = customer_snapshot(locked)
        previous = {key: value for key, value in before.items() if after[key] != value}
        if previous:
            try:
                with transaction.atomic():
                    locked.save()
            except IntegrityError:
                raise _provider_id_conflict() from None
            object_event_emit(
                type="customer.updated", obj=locked, data=customer_snapshot(locked), now=now, previous=previous
            )
    return locked


def customer_delete(*, customer: Customer, now: datetime) -> Customer:
    """Soft delete: the row, its users and all billing history stay; the API stops showing it."""
    with transaction.atomic():
        locked = _live(_lock_customer(customer.id))
        Customer.objects.filter(pk=locked.pk).update(status=Customer.Status.DELETED, deleted_at=now, updated_at=now)
        entitlements_invalidate([locked.pk])
        locked.refresh_from_db()
        object_event_emit(type="customer.deleted", obj=locked, data=customer_snapshot(locked), now=now)
    return locked


def customer_restore(*, customer: Customer, now: datetime) -> Customer:
    with transaction.atomic():
        locked = _lock_customer(customer.id)
        if locked.status != Customer.Status.DELETED:
            raise Conflict(f"Customer {locked.id} is not deleted.", code="customer_not_deleted")
        if locked.purged_at is not None:
            raise Conflict(f"Customer {locked.id} was purged and cannot be restored.", code="customer_purged")
        Customer.objects.filter(pk=locked.pk).update(status=Customer.Status.ACTIVE, deleted_at=None, updated_at=now)
        locked.refresh_from_db()
        object_event_emit(type="customer.restored", obj=locked, data=customer_snapshot(locked), now=now)
    return locked


def customer_purge(*, customer: Customer, now: datetime) -> Customer:
    """Erase a deleted customer's personal data and free its external_id; billing rows stay, by id."""
    with transaction.atomic():
        locked = _lock_customer(customer.id)
        if locked.status != Customer.Status.DELETED:
            raise Conflict(f"Customer {locked.id} must be deleted before it is purged.", code="customer_not_deleted")
        if locked.purged_at is not None:
            raise Conflict(f"Customer {locked.id} is already purged.", code="customer_purged")
        freed = locked.external_id
        locked.external_id = f"purged:{locked.id}"
        locked.name = ""
        locked.email = ""
        locked.metadata = {}
        _set_address(locked, None)
        locked.purged_at = now
        locked.save()
        locked.users.filter(deleted_at__isnull=True).update(deleted_at=now, status=CustomerUser.Status.DISABLED)
        locked.users.update(email="", name="", updated_at=now)
        event_emit(
            type="customer.purged",
            object_type="customer",
            object_id=locked.id,
            customer_id=locked.id,
            data={"id": locked.id, "freed_external_id": freed},
            now=now,
        )
    return locked


def customer_set_status(*, customer: Customer, active: bool, now: datetime) -> tuple[Customer, bool]:
    """Activate or deactivate. Returns the customer and whether anything changed (a repeat is a no-op)."""
    old, new = (
        (Customer.Status.DEACTIVATED, Customer.Status.ACTIVE)
        if active
        else (Customer.Status.ACTIVE, Customer.Status.DEACTIVATED)
    )
    with transaction.atomic():
        locked = _live(_lock_customer(customer.id))
        changed = Customer.objects.filter(pk=locked.pk, status=old).update(status=new, updated_at=now) == 1
        if changed:
            locked.refresh_from_db()
            object_event_emit(
                type="customer.activated" if active else "customer.deactivated",
                obj=locked,
                data=customer_snapshot(locked),
                now=now,
                previous={"status": old},
            )
    return locked, changed


# --- Users ----------------------------------------------------------------------------------------


def _user_conflict(customer: Customer, external_id: str, email: str) -> Conflict:
    if external_id and customer.users.filter(external_id=external_id, deleted_at__isnull=True).exists():
        return Conflict(
            f"Customer {customer.id} already has a user with external_id '{external_id}'.",
            code="user_exists",
            param="external_id",
        )
    return Conflict(
        f"Customer {customer.id} already has a user with email '{email}'.", code="user_exists", param="email"
    )


def customer_user_create(
    *, customer: Customer, email: str, now: datetime, external_id: str = "", name: str = ""
) -> CustomerUser:
    with transaction.atomic():
        locked = _live(_lock_customer(customer.id))  # a user is never added to a customer being deleted
        user = CustomerUser(customer=locked, external_id=external_id, email=email, name=name)
        try:
            with transaction.atomic():
                user.save(force_insert=True)
        except IntegrityError:
            raise _user_conflict(locked, external_id, email) from None
        object_event_emit(type="customer_user.created", obj=user, data=user_snapshot(user), now=now)
    return user


def _lock_user(user: CustomerUser) -> CustomerUser:
    # Lock order: customer, then user.
    _live(_lock_customer(user.customer_id))
    locked = lock_first(CustomerUser.objects.filter(pk=user.pk, deleted_at__isnull=True), LockRank.CUSTOMER_USER)
    if locked is None:
        raise NotFound(f"No such user: {user.pk}", param="id")
    return locked


def customer_user_update(*, user: CustomerUser, changes: dict[str, Any], now: datetime) -> CustomerUser:
    with transaction.atomic():
        locked = _lock_user(user)
        before = user_snapshot(locked)
        for field in ("email", "name", "external_id"):
            if field in changes:
                setattr(locked, field, changes[field] or "")
        after = user_snapshot(locked)
        previous = {key: value for key, value in before.items() if after[key] != value}
        if previous:
            try:
                with transaction.atomic():
                    locked.save()
            except IntegrityError:
                raise _user_conflict(locked.customer, locked.external_id, locked.email) from None
            object_event_emit(
                type="customer_user.updated", obj=locked, data=user_snapshot(locked), now=now, previous=previous
            )
    return locked


def customer_user_set_enabled(*, user: CustomerUser, enabled: bool, now: datetime) -> CustomerUser:
    """Enable or disable; a repeat is a no-op that emits nothing."""
    old, new = (
        (CustomerUser.Status.DISABLED, CustomerUser.Status.ENABLED)
        if enabled
        else (CustomerUser.Status.ENABLED, CustomerUser.Status.DISABLED)
    )
    with transaction.atomic():
        locked = _lock_user(user)
        if CustomerUser.objects.filter(pk=locked.pk, status=old).update(status=new, updated_at=now):
            locked.refresh_from_db()
            object_event_emit(
                type="customer_user.enabled" if enabled else "customer_user.disabled",
                obj=locked,
                data=user_snapshot(locked),
                now=now,
                previous={"status": old},
            )
    return locked


def customer_user_delete(*, user: CustomerUser, now: datetime) -> CustomerUser:
    with transaction.atomic():
        locked = _lock_user(user)
        CustomerUser.objects.filter(pk=locked.pk).update(
            deleted_at=now, status=CustomerUser.Status.DISABLED, updated_at=now
        )
        locked.refresh_from_db()
        object_event_emit(type="customer_user.deleted", obj=locked, data=user_snapshot(locked), now=now)
    return locked
