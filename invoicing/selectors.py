from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db.models import Prefetch, QuerySet

from billing_site.errors import NotFound
from billing_site.selectors import apply_filters
from billing_site.tenancy import TenantScope, tenant_filter
from customers.models import Customer
from invoicing import hooks
from invoicing import tax as taxmath
from invoicing.filters import InvoiceFilter, PendingInvoiceItemFilter, TaxRateFilter
from invoicing.models import Invoice, InvoiceLine, PendingInvoiceItem, TaxRate


def _with_lines(queryset: QuerySet[Invoice]) -> QuerySet[Invoice]:
    return queryset.prefetch_related(
        Prefetch("lines", queryset=InvoiceLine.objects.order_by("position")), *hooks.invoice_read_prefetches
    )


def invoice_get(*, invoice_id: str, tenant: TenantScope | None = None) -> Invoice:
    """`tenant` (from the view): another tenant's invoice is missing, exactly like one that does not exist."""
    invoice = _with_lines(tenant_filter(Invoice.objects.filter(pk=invoice_id), tenant)).first()
    if invoice is None:
        raise NotFound(f"No such invoice: {invoice_id}", param="id")
    return invoice


def invoice_list(*, filters: Mapping[str, Any] | None = None, tenant: TenantScope | None = None) -> QuerySet[Invoice]:
    return _with_lines(apply_filters(InvoiceFilter, filters or {}, tenant_filter(Invoice.objects.all(), tenant)))


def invoice_item_get(*, invoice_item_id: str, tenant: TenantScope | None = None) -> PendingInvoiceItem:
    item = tenant_filter(PendingInvoiceItem.objects.filter(pk=invoice_item_id), tenant).first()
    if item is None:
        raise NotFound(f"No such invoice item: {invoice_item_id}", param="id")
    return item


def invoice_item_list(
    *, filters: Mapping[str, Any] | None = None, tenant: TenantScope | None = None
) -> QuerySet[PendingInvoiceItem]:
    return apply_filters(
        PendingInvoiceItemFilter, filters or {}, tenant_filter(PendingInvoiceItem.objects.all(), tenant)
    )


def tax_rate_get(*, tax_rate_id: str) -> TaxRate:
    rate = TaxRate.objects.filter(pk=tax_rate_id).first()
    if rate is None:
        raise NotFound(f"No such tax rate: {tax_rate_id}", param="id")
    return rate


def tax_rate_list(*, filters: Mapping[str, Any] | None = None) -> QuerySet[TaxRate]:
    return apply_filters(TaxRateFilter, filters or {}, TaxRate.objects.all())


class TaxRateCache:
    """The active tax rates, read once and matched to each customer's address: building hundreds of
    invoices in one batch must not read the rates once per invoice."""

    def __init__(self) -> None:
        self._rates: list[TaxRate] | None = None

    def for_customer(self, customer: Customer) -> tuple[list[taxmath.TaxRate], str]:
        """The rates that apply to `customer` and the note the invoice must carry (reverse charge)."""
        if self._rates is None:
            self._rates = list(TaxRate.objects.filter(active=True))
        country = (customer.address_country or "").upper()
        rates = [
            taxmath.TaxRate(
                id=r.id,
                display_name=r.display_name,
                percentage=r.percentage,
                inclusive=r.inclusive,
                country=r.country,
                state=r.state,
            )
            for r in self._rates
            if r.country == country
        ]
        chosen = taxmath.taxes_for_customer(
            rates,
            country=customer.address_country or None,
            state=customer.address_state or None,
            tax_exempt=customer.tax_exempt,
        )
        return chosen, taxmath.reverse_charge_note(customer.tax_exempt) or ""
