"""Admin for invoices, their lines and watermarks, one-off invoice items, and tax rates. Actions go through
the services, so admin obeys the same rules and emits the same events as the API."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.utils import timezone

from billing_site.admin_kit import ChangePageActions, FormattedFields, ReadOnlyInline, confirm_action
from billing_site.csv_export import csv_response
from invoicing import exports, services
from invoicing.models import Invoice, InvoiceLine, PendingInvoiceItem, TaxRate, UsageWatermark


class InvoiceLineInline(ReadOnlyInline):
    model = InvoiceLine
    money_fields = ("unit_amount", "amount", "discount_amount")
    money_currency = "invoice.currency"
    quantity_fields = ("quantity",)
    show_change_link = False
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
    ordering = ("position",)


class OverdueFilter(admin.SimpleListFilter):
    title = "overdue"
    parameter_name = "overdue"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Overdue (open, past due date)")]

    def queryset(self, request: HttpRequest, queryset: Any) -> Any:
        if self.value() == "yes":
            return queryset.filter(status=Invoice.Status.OPEN, amount_remaining__gt=0, due_date__lt=timezone.now())
        return queryset


@admin.register(Invoice)
class InvoiceAdmin(FormattedFields, ChangePageActions, admin.ModelAdmin):
    list_display = (
        "number",
        "id",
        "customer",
        "status",
        "total",
        "amount_remaining",
        "period_start",
        "due_date",
        "finalized_at",
    )
    list_filter = ("status", OverdueFilter, "billing_reason", "collection_method", "currency")
    search_fields = ("=number", "=id", "customer__external_id", "=customer__id", "customer__name")
    money_fields = (
        "subtotal",
        "discount",
        "tax",
        "total",
        "credits_applied",
        "balance_applied",
        "credited",
        "amount_due",
        "amount_paid",
        "amount_remaining",
    )
    date_hierarchy = "created_at"
    list_select_related = ("customer",)
    inlines = (InvoiceLineInline,)
    actions = ("finalize", "void", "mark_uncollectible", "export_csv", "export_lines_csv")
    show_full_result_count = False

    def raw_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[Any]:
        # Amounts are computed, never typed; once finalized nothing on an invoice changes by hand.
        return [f.name for f in Invoice._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    finalize = confirm_action(
        description="Finalize",
        label="Finalized",
        run=lambda i, now: services.invoice_finalize(invoice=i, now=now) and None,
        explanation="Gives the draft its number; its amounts are fixed from then on.",
    )
    void = confirm_action(
        description="Void",
        label="Voided",
        run=lambda i, now: services.invoice_void(invoice=i, now=now) and None,
        explanation="A void invoice is not owed; its number stays used.",
        danger=True,
    )
    mark_uncollectible = confirm_action(
        description="Mark uncollectible",
        label="Marked uncollectible",
        run=lambda i, now: services.invoice_mark_uncollectible(invoice=i, now=now) and None,
        explanation="Stops collection; a payment received later still settles it.",
        danger=True,
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
class UsageWatermarkAdmin(FormattedFields, admin.ModelAdmin):
    money_fields = ("amount_billed",)
    money_currency = "subscription_item.price.currency"
    quantity_fields = ("value",)
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
    list_select_related = ("subscription_item__price",)
    readonly_fields = [f.name for f in UsageWatermark._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(PendingInvoiceItem)
class PendingInvoiceItemAdmin(FormattedFields, admin.ModelAdmin):
    money_fields = ("amount",)
    list_display = ("subscription", "description", "amount", "period_start", "period_end", "invoice")
    readonly_fields = [f.name for f in PendingInvoiceItem._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
