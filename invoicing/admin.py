"""Admin for invoices, their lines and watermarks, one-off invoice items, and tax rates. Actions go through
the services, so admin obeys the same rules and emits the same events as the API."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.utils import timezone

from billing_site.admin import admin_each
from billing_site.csv_export import csv_response
from invoicing import exports, services
from invoicing.models import Invoice, InvoiceLine, PendingInvoiceItem, TaxRate, UsageWatermark


class InvoiceLineInline(admin.TabularInline):
    model = InvoiceLine
    extra = 0
    fields = (
        "position",
        "kind",
        "description",
        "quantity",
        "unit_amount",
        "amount",
        "discount_amount",
        "taxes",
        "period_start",
        "period_end",
    )
    readonly_fields = fields
    can_delete = False
    ordering = ("position",)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Invoice)
class InvoiceAdmin(admin.ModelAdmin):
    list_display = (
        "number",
        "id",
        "customer",
        "status",
        "currency",
        "total",
        "amount_remaining",
        "period_start",
        "finalized_at",
    )
    list_filter = ("status", "billing_reason", "currency")
    search_fields = ("=number", "=id", "customer__external_id", "=customer__id")
    list_select_related = ("customer",)
    inlines = (InvoiceLineInline,)
    actions = ("finalize", "void", "mark_uncollectible", "export_csv", "export_lines_csv")
    show_full_result_count = False

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        # Amounts are computed, never typed; once finalized nothing on an invoice changes by hand.
        return [f.name for f in Invoice._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(description="Finalize drafts")
    def finalize(self, request: HttpRequest, queryset: Any) -> None:
        admin_each(request, queryset, lambda i, now: services.invoice_finalize(invoice=i, now=now), "Finalized")

    @admin.action(description="Void")
    def void(self, request: HttpRequest, queryset: Any) -> None:
        admin_each(request, queryset, lambda i, now: services.invoice_void(invoice=i, now=now), "Voided")

    @admin.action(description="Mark uncollectible")
    def mark_uncollectible(self, request: HttpRequest, queryset: Any) -> None:
        admin_each(
            request,
            queryset,
            lambda i, now: services.invoice_mark_uncollectible(invoice=i, now=now),
            "Marked uncollectible",
        )

    # The exports of the API (`invoicing.exports`), streamed, for the selection (or, with "select all",
    # everything the current filters show).
    @admin.action(description="Export as CSV (invoices)")
    def export_csv(self, request: HttpRequest, queryset: Any) -> Any:
        rows = exports.invoice_rows(queryset.order_by("id"))
        return csv_response("invoices.csv", exports.INVOICE_COLUMNS, rows)

    @admin.action(description="Export as CSV (invoice lines)")
    def export_lines_csv(self, request: HttpRequest, queryset: Any) -> Any:
        lines = InvoiceLine.objects.filter(invoice__in=queryset.values("pk")).order_by("invoice_id", "position", "id")
        return csv_response("invoice-lines.csv", exports.LINE_COLUMNS, exports.line_rows(lines))


@admin.register(TaxRate)
class TaxRateAdmin(admin.ModelAdmin):
    list_display = ("id", "display_name", "percentage", "inclusive", "country", "state", "active")
    list_filter = ("country", "inclusive", "active")
    search_fields = ("display_name", "country", "state")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        # Invoices carry the percentage they were taxed at; a rate's terms never change after creation.
        return ("id", "percentage", "inclusive", "country", "state") if obj else ("id",)

    def save_model(self, request: HttpRequest, obj: TaxRate, form: Any, change: bool) -> None:
        # Through the services, so the outbox hears about it like any API change.
        now = timezone.now()
        if change:
            fields = ("display_name", "description", "active")
            services.tax_rate_update(rate=obj, changes={f: getattr(obj, f) for f in fields}, now=now)
            return
        created = services.tax_rate_create(
            display_name=obj.display_name,
            percentage=obj.percentage,
            country=obj.country,
            inclusive=obj.inclusive,
            state=obj.state,
            description=obj.description,
            active=obj.active,
            now=now,
        )
        obj.pk = created.pk


@admin.register(UsageWatermark)
class UsageWatermarkAdmin(admin.ModelAdmin):
    list_display = (
        "subscription_item",
        "meter",
        "period_start",
        "period_end",
        "value",
        "amount_billed",
        "superseded",
        "computed_at",
    )
    list_filter = ("superseded",)
    readonly_fields = [f.name for f in UsageWatermark._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(PendingInvoiceItem)
class PendingInvoiceItemAdmin(admin.ModelAdmin):
    list_display = ("subscription", "description", "amount", "period_start", "period_end", "invoice")
    readonly_fields = [f.name for f in PendingInvoiceItem._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
