"""Invoices and invoice lines as CSV, streamed (`billing_site.csv_export`): one cursor over the rows in id
order (ids are time-ordered), no row limit, constant memory. Amounts are integers in minor units beside
the `currency` column; the `*_formatted` columns are for people."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from django.db.models import QuerySet

from billing_site.csv_export import CHUNK_SIZE, format_money
from billing_site.selectors import apply_filters
from invoicing.filters import InvoiceExportFilter
from invoicing.models import Invoice, InvoiceLine

INVOICE_COLUMNS = (
    "id",
    "number",
    "customer",
    "customer_external_id",
    "subscription",
    "status",
    "billing_reason",
    "collection_method",
    "currency",
    "subtotal",
    "discount",
    "tax",
    "total",
    "amount_due",
    "amount_paid",
    "amount_remaining",
    "total_formatted",
    "amount_due_formatted",
    "period_start",
    "period_end",
    "due_date",
    "finalized_at",
    "paid_at",
    "created_at",
)
_INVOICE_FIELDS = (
    "id",
    "number",
    "customer_id",
    "customer__external_id",
    "subscription_id",
    "status",
    "billing_reason",
    "collection_method",
    "currency",
    "subtotal",
    "discount",
    "tax",
    "total",
    "amount_due",
    "amount_paid",
    "amount_remaining",
    "period_start",
    "period_end",
    "due_date",
    "finalized_at",
    "paid_at",
    "created_at",
)

LINE_COLUMNS = (
    "id",
    "invoice",
    "invoice_number",
    "invoice_status",
    "customer",
    "position",
    "kind",
    "description",
    "price",
    "meter",
    "quantity",
    "unit_amount",
    "currency",
    "amount",
    "discount_amount",
    "amount_formatted",
    "period_start",
    "period_end",
)
_LINE_FIELDS = (
    "id",
    "invoice_id",
    "invoice__number",
    "invoice__status",
    "invoice__customer_id",
    "position",
    "kind",
    "description",
    "price_id",
    "meter_id",
    "quantity",
    "unit_amount",
    "invoice__currency",
    "amount",
    "discount_amount",
    "period_start",
    "period_end",
)


def invoices_for_export(*, filters: Mapping[str, Any]) -> QuerySet[Invoice]:
    """The invoices an export covers (drafts included: filter by status to leave them out)."""
    return apply_filters(InvoiceExportFilter, filters, Invoice.objects.all()).order_by("id")


def invoice_rows(invoices: QuerySet[Invoice]) -> Iterator[tuple[Any, ...]]:
    for row in invoices.values_list(*_INVOICE_FIELDS).iterator(chunk_size=CHUNK_SIZE):
        currency = row[8]
        yield (*row[:16], format_money(row[12], currency), format_money(row[13], currency), *row[16:])


def lines_for_export(*, filters: Mapping[str, Any]) -> QuerySet[InvoiceLine]:
    """The lines of the invoices `filters` selects (the same filters as the invoices' export)."""
    invoices = invoices_for_export(filters=filters)
    return InvoiceLine.objects.filter(invoice__in=invoices.values("pk")).order_by("invoice_id", "position", "id")


def line_rows(lines: QuerySet[InvoiceLine]) -> Iterator[tuple[Any, ...]]:
    for row in lines.values_list(*_LINE_FIELDS).iterator(chunk_size=CHUNK_SIZE):
        yield (*row[:15], format_money(row[13], row[12]), *row[15:])
