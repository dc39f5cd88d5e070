"""Every read of payments: get one (404 naming the id) or list (filtered through `payments.filters`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db.models import QuerySet, Sum
from django.db.models.functions import Coalesce

from billing_site.errors import NotFound, currency_clean
from billing_site.selectors import apply_filters
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


def payment_method_get(*, payment_method_id: str) -> PaymentMethod:
    method = PaymentMethod.objects.filter(pk=payment_method_id).first()
    if method is None:
        raise NotFound(f"No such payment method: {payment_method_id}", param="id")
    return method


def payment_method_list() -> QuerySet[PaymentMethod]:
    """Attached (not detached) payment methods."""
    return PaymentMethod.objects.filter(detached_at__isnull=True)


def setup_intent_get(*, setup_intent_id: str) -> SetupIntent:
    intent = SetupIntent.objects.filter(pk=setup_intent_id).first()
    if intent is None:
        raise NotFound(f"No such setup intent: {setup_intent_id}", param="id")
    return intent


def refund_get(*, refund_id: str) -> Refund:
    refund = Refund.objects.filter(pk=refund_id).first()
    if refund is None:
        raise NotFound(f"No such refund: {refund_id}", param="id")
    return refund


def refund_list() -> QuerySet[Refund]:
    return Refund.objects.all()


def payment_intent_get(*, payment_intent_id: str) -> PaymentIntent:
    intent = PaymentIntent.objects.filter(pk=payment_intent_id).first()
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


def credit_note_get(*, credit_note_id: str) -> CreditNote:
    note = CreditNote.objects.prefetch_related("lines").filter(pk=credit_note_id).first()
    if note is None:
        raise NotFound(f"No such credit note: {credit_note_id}", param="id")
    return note


def credit_note_list(*, filters: Mapping[str, Any] | None = None) -> QuerySet[CreditNote]:
    return apply_filters(CreditNoteFilter, filters or {}, CreditNote.objects.prefetch_related("lines"))


def credit_grant_get(*, credit_grant_id: str) -> CreditGrant:
    grant = with_burned(CreditGrant.objects.filter(pk=credit_grant_id)).first()
    if grant is None:
        raise NotFound(f"No such credit grant: {credit_grant_id}", param="id")
    return grant


def payment_method_filtered(*, filters: Mapping[str, Any]) -> QuerySet[PaymentMethod]:
    return apply_filters(PaymentMethodFilter, filters, payment_method_list())


def payment_intent_filtered(*, filters: Mapping[str, Any]) -> QuerySet[PaymentIntent]:
    return apply_filters(PaymentIntentFilter, filters, payment_intent_list())


def refund_filtered(*, filters: Mapping[str, Any]) -> QuerySet[Refund]:
    return apply_filters(RefundFilter, filters, refund_list())


def credit_grant_list(*, filters: Mapping[str, Any]) -> QuerySet[CreditGrant]:
    return apply_filters(CreditGrantFilter, filters, with_burned(CreditGrant.objects.all()))


def balance_transaction_list(*, customer: Customer, filters: Mapping[str, Any]) -> QuerySet[BalanceTransaction]:
    return apply_filters(BalanceTransactionFilter, filters, BalanceTransaction.objects.filter(customer=customer))


def dispute_get(*, dispute_id: str) -> Dispute:
    dispute = Dispute.objects.filter(pk=dispute_id).first()
    if dispute is None:
        raise NotFound(f"No such dispute: {dispute_id}", param="id")
    return dispute


def dispute_list(*, filters: Mapping[str, Any]) -> QuerySet[Dispute]:
    return apply_filters(DisputeFilter, filters, Dispute.objects.all())
