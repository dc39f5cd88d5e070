from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from django.db.models import QuerySet

from billing_site.errors import Conflict, InvalidRequest, NotFound
from billing_site.selectors import apply_filters
from billing_site.tenancy import TenantScope
from customers.filters import CustomerFilter, CustomerUserFilter
from customers.models import BillingModeChange, Customer, CustomerUser

# [start, end) of a stretch of time; end None = still going.
Interval = tuple[datetime, datetime | None]

# Every selector takes `tenant` (ApiView.tenant_scope): None for operators; otherwise another tenant's
# customer and everything of it is answered exactly as if it did not exist.


def customer_refuse_deleted(*, customer_id: str) -> None:
    """Refuse to charge a (soft-)deleted customer: 409 `customer_deleted`. Every path that asks a provider
    for a customer's money (a payment intent, `/pay`, the collection job) starts here. Deactivated
    customers (the control plane's suspension) are still charged for what they owe."""
    if Customer.objects.filter(pk=customer_id, status=Customer.Status.DELETED).exists():
        raise Conflict(
            f"Customer {customer_id} is deleted; a deleted customer is never charged. Restore it first "
            f"(POST /api/v1/customers/{customer_id}/restore).",
            code="customer_deleted",
            param="customer",
        )


def customer_id_for_tenant(external_id: str) -> str | None:
    """The tenant resolver registered with the core (billing_site.tenancy): a tenant id to its customer.
    Deleted customers resolve too; the selectors below hide them as they do from everyone."""
    return Customer.objects.filter(external_id=external_id).values_list("pk", flat=True).first()


def _customers(*, include_deleted: bool, tenant: TenantScope | None) -> QuerySet[Customer]:
    queryset = Customer.objects.all() if include_deleted else Customer.objects.exclude(status=Customer.Status.DELETED)
    if tenant is not None:
        queryset = queryset.filter(pk=tenant.customer_id) if tenant.customer_id else queryset.none()
    return queryset


def customer_get(*, customer_id: str, include_deleted: bool = False, tenant: TenantScope | None = None) -> Customer:
    customer = _customers(include_deleted=include_deleted, tenant=tenant).filter(pk=customer_id).first()
    if customer is None:
        raise NotFound(f"No such customer: {customer_id}", param="id")
    return customer


def customer_from_input(
    *, customer_id: str, param: str = "customer", include_deleted: bool = False, tenant: TenantScope | None = None
) -> Customer:
    """A customer named in a request body. An id that names nothing (or another tenant's customer, for a
    tenant-scoped caller) is the body's fault: a 400 naming the field, not the 404 a URL would get."""
    try:
        return customer_get(customer_id=customer_id, include_deleted=include_deleted, tenant=tenant)
    except NotFound:
        raise InvalidRequest(f"No such customer: {customer_id}", param=param, code="resource_missing") from None


def customer_get_by_external_id(
    *, external_id: str, include_deleted: bool = False, tenant: TenantScope | None = None
) -> Customer | None:
    return _customers(include_deleted=include_deleted, tenant=tenant).filter(external_id=external_id).first()


def customer_list(*, filters: Mapping[str, Any] | None = None, tenant: TenantScope | None = None) -> QuerySet[Customer]:
    queryset = _customers(include_deleted=False, tenant=tenant)
    return apply_filters(CustomerFilter, filters or {}, queryset)


def customer_user_get(*, user_id: str, tenant: TenantScope | None = None) -> CustomerUser:
    queryset = (
        CustomerUser.objects.select_related("customer")
        .filter(pk=user_id, deleted_at__isnull=True)
        .exclude(customer__status=Customer.Status.DELETED)
    )
    if tenant is not None:
        queryset = queryset.filter(customer_id=tenant.customer_id) if tenant.customer_id else queryset.none()
    user = queryset.first()
    if user is None:
        raise NotFound(f"No such user: {user_id}", param="id")
    return user


def customer_user_list(*, customer: Customer, filters: Mapping[str, Any] | None = None) -> QuerySet[CustomerUser]:
    queryset = CustomerUser.objects.filter(customer=customer, deleted_at__isnull=True)
    return apply_filters(CustomerUserFilter, filters or {}, queryset)


def provider_intervals(*, customer_ids: Iterable[str]) -> dict[str, list[Interval]]:
    """Per customer, the stretches of time it was billed in provider mode, oldest first, from its mode
    history (one query for all). A customer never in provider mode maps to an empty list."""
    wanted = list(customer_ids)
    result: dict[str, list[Interval]] = {customer_id: [] for customer_id in wanted}
    changes = (
        BillingModeChange.objects.filter(customer_id__in=wanted)
        .order_by("customer_id", "effective_at", "id")
        .values_list("customer_id", "mode", "effective_at")
    )
    opened: dict[str, datetime] = {}
    for customer_id, mode, effective_at in changes:
        if mode == Customer.BillingMode.PROVIDER:
            opened.setdefault(customer_id, effective_at)
            continue
        start = opened.pop(customer_id, None)
        if start is not None and effective_at > start:
            result[customer_id].append((start, effective_at))
    for customer_id, start in opened.items():
        result[customer_id].append((start, None))
    return result
