from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db.models import Prefetch, QuerySet

from billing_site.errors import NotFound
from billing_site.selectors import apply_filters
from invoicing.filters import InvoiceFilter, SubscriptionFilter, TaxRateFilter
from invoicing.models import Invoice, InvoiceLine, TaxRate
from subscriptions.models import Subscription


def subscription_get(*, subscription_id: str) -> Subscription:
    sub = Subscription.objects.select_related("customer", "coupon").filter(pk=subscription_id).first()
    if sub is None:
        raise NotFound(f"No such subscription: {subscription_id}", param="id")
    return sub


def subscription_list(*, filters: Mapping[str, Any] | None = None) -> QuerySet[Subscription]:
    return apply_filters(SubscriptionFilter, filters or {}, Subscription.objects.prefetch_related("items"))


def _with_lines(queryset: QuerySet[Invoice]) -> QuerySet[Invoice]:
    return queryset.prefetch_related(Prefetch("lines", queryset=InvoiceLine.objects.order_by("position")))


def invoice_get(*, invoice_id: str) -> Invoice:
    invoice = _with_lines(Invoice.objects.filter(pk=invoice_id)).first()
    if invoice is None:
        raise NotFound(f"No such invoice: {invoice_id}", param="id")
    return invoice


def invoice_list(*, filters: Mapping[str, Any] | None = None) -> QuerySet[Invoice]:
    return _with_lines(apply_filters(InvoiceFilter, filters or {}, Invoice.objects.all()))


def tax_rate_get(*, tax_rate_id: str) -> TaxRate:
    rate = TaxRate.objects.filter(pk=tax_rate_id).first()
    if rate is None:
        raise NotFound(f"No such tax rate: {tax_rate_id}", param="id")
    return rate


def tax_rate_list(*, filters: Mapping[str, Any] | None = None) -> QuerySet[TaxRate]:
    return apply_filters(TaxRateFilter, filters or {}, TaxRate.objects.all())
