"""Every read of payments: get one (404 naming the id) or list (filtered through `payments.filters`).

Each takes `tenant` (ApiView.tenant_scope): None for operators; for a tenant-bound caller another
tenant's object is missing, exactly like one that does not exist, and lists hold only its own rows."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db.models import QuerySet, Sum
from django.db.models.functions import Coalesce

from billing_site.errors import NotFound, currency_clean
from billing_site.selectors import apply_filters
from billing_site.tenancy import TenantScope, tenant_filter
from customers.models import Customer
from payments.filters import (
    BalanceTransactionFilter,
    CreditGrantFilter,
    CreditNoteFilter,
    DisputeFilter,
    PaymentIntentFilter,
    PaymentMethodFilter,
    RefundFilter,
)
from payments.models import (
    BalanceTransaction,
    CreditGrant,
    CreditNote,
    CustomerBalance,
    Dispute,
    PaymentIntent,
    PaymentMethod,
    Refund,
    SetupIntent,
)


def payment_method_get(*, payment_method_id: str, tenant: TenantScope | None = None) -> PaymentMethod:
    method = tenant_filter(PaymentMethod.objects.filter(pk=payment_method_id), tenant).first()
    if method is None:
        raise NotFound(f"No such payment method: {payment_method_id}", param="id")
    return method


def payment_method_list() -> QuerySet[PaymentMethod]:
    """Attached (not detached) payment methods."""
    return PaymentMethod.objects.filter(detached_at__isnull=True)


def setup_intent_get(*, setup_intent_id: str, tenant: TenantScope | None = None) -> SetupIntent:
    intent = tenant_filter(SetupIntent.objects.filter(pk=setup_intent_id), tenant).first()
    if intent is None:
        raise NotFound(f"No such setup intent: {setup_intent_id}", param="id")
    return intent


def refund_get(*, refund_id: str, tenant: TenantScope | None = None) -> Refund:
    refund = tenant_filter(Refund.objects.filter(pk=refund_id), tenant, "payment_intent__customer_id").first()
    if refund is None:
        raise NotFound(f"No such refund: {refund_id}", param="id")
    return refund


def refund_list() -> QuerySet[Refund]:
    return Refund.objects.all()


def payment_intent_get(*, payment_intent_id: str, tenant: TenantScope | None = None) -> PaymentIntent:
    intent = tenant_filter(PaymentIntent.objects.filter(pk=payment_intent_id), tenant).first()
    if intent is None:
        raise NotFound(f"No such payment intent: {payment_intent_id}", param="id")
    return intent


def payment_intent_list() -> QuerySet[PaymentIntent]:
    return PaymentIntent.objects.all()


def balance_get(customer: Customer, currency: str) -> int:
    """The customer's balance in `currency` (0 when it never had one). Positive: owed to the customer."""
    value = (
        CustomerBalance.objects.filter(customer_id=customer.pk, currency=currency_clean(currency))
        .values_list("balance", flat=True)
        .first()
    )
    return value or 0


def balance_list(customer: Customer) -> list[CustomerBalance]:
    return list(CustomerBalance.objects.filter(customer_id=customer.pk).order_by("currency"))


def credit_grant_burned(grant: CreditGrant) -> int:
    burned = getattr(grant, "burned", None)
    if burned is None:
        burned = grant.burns.aggregate(total=Coalesce(Sum("amount"), 0))["total"]
    return burned


def credit_grant_remaining(grant: CreditGrant) -> int:
    """Credit still usable: amount - burns while the grant is active; 0 once voided or expired."""
    if grant.status != CreditGrant.Status.ACTIVE:
        return 0
    return grant.amount - credit_grant_burned(grant)


def with_burned(queryset: Any) -> Any:
    """Annotate `burned` (the net sum of burns) so listing grants costs no query per grant."""
    return queryset.annotate(burned=Coalesce(Sum("burns__amount"), 0))


def credit_note_get(*, credit_note_id: str, tenant: TenantScope | None = None) -> CreditNote:
    note = tenant_filter(CreditNote.objects.prefetch_related("lines").filter(pk=credit_note_id), tenant).first()
    if note is None:
        raise NotFound(f"No such credit note: {credit_note_id}", param="id")
    return note


def credit_note_list(
    *, filters: Mapping[str, Any] | None = None, tenant: TenantScope | None = None
) -> QuerySet[CreditNote]:
    queryset = tenant_filter(CreditNote.objects.prefetch_related("lines"), tenant)
    return apply_filters(CreditNoteFilter, filters or {}, queryset)


def credit_grant_get(*, credit_grant_id: str, tenant: TenantScope | None = None) -> CreditGrant:
    grant = with_burned(tenant_filter(CreditGrant.objects.filter(pk=credit_grant_id), tenant)).first()
    if grant is None:
        raise NotFound(f"No such credit grant: {credit_grant_id}", param="id")
    return grant


def payment_method_filtered(
    *, filters: Mapping[str, Any], tenant: TenantScope | None = None
) -> QuerySet[PaymentMethod]:
    return apply_filters(PaymentMethodFilter, filters, tenant_filter(payment_method_list(), tenant))


def payment_intent_filtered(
    *, filters: Mapping[str, Any], tenant: TenantScope | None = None
) -> QuerySet[PaymentIntent]:
    return apply_filters(PaymentIntentFilter, filters, tenant_filter(payment_intent_list(), tenant))


def refund_filtered(*, filters: Mapping[str, Any], tenant: TenantScope | None = None) -> QuerySet[Refund]:
    return apply_filters(RefundFilter, filters, tenant_filter(refund_list(), tenant, "payment_intent__customer_id"))


def credit_grant_list(*, filters: Mapping[str, Any], tenant: TenantScope | None = None) -> QuerySet[CreditGrant]:
    return apply_filters(CreditGrantFilter, filters, with_burned(tenant_filter(CreditGrant.objects.all(), tenant)))


def balance_transaction_list(*, customer: Customer, filters: Mapping[str, Any]) -> QuerySet[BalanceTransaction]:
    return apply_filters(BalanceTransactionFilter, filters, BalanceTransaction.objects.filter(customer=customer))


def dispute_get(*, dispute_id: str) -> Dispute:
    dispute = Dispute.objects.filter(pk=dispute_id).first()
    if dispute is None:
        raise NotFound(f"No such dispute: {dispute_id}", param="id")
    return dispute


def dispute_list(*, filters: Mapping[str, Any]) -> QuerySet[Dispute]:
    return apply_filters(DisputeFilter, filters, Dispute.objects.all())
