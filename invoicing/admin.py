"""Admin for subscriptions and invoices. Subscriptions are registered here, not in `subscriptions`,
because their actions (cancel, bill now) issue invoices, and imports only point down."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from invoicing import billing, renewal, services
from invoicing.models import Invoice, InvoiceLine, PendingInvoiceItem, TaxRate, UsageWatermark
from subscriptions.models import Subscription, SubscriptionItem


def _each(request: HttpRequest, queryset: Any, fn: Any, label: str) -> None:
    done, now = 0, timezone.now()
    for obj in queryset:
        try:
            fn(obj, now)
            done += 1
        except Exception as exc:  # report per row: one refusal must not hide the others
            messages.error(request, f"{obj.pk}: {getattr(exc, 'message', exc)}")
    if done:
        messages.success(request, f"{label}: {done}.")


class SubscriptionItemInline(admin.TabularInline):
    model = SubscriptionItem
    extra = 0
    fields = ("id", "price", "quantity", "added_at", "removed_at")
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # items change through "change" (prorations), never by editing rows


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "customer",
        "status",
        "currency",
        "current_period_start",
        "current_period_end",
        "cancel_at_period_end",
    )
    list_filter = ("status", "collection_method", "cancel_at_period_end")
    search_fields = ("=id", "customer__external_id", "customer__email", "=customer__id")
    list_select_related = ("customer",)
    readonly_fields = [f.name for f in Subscription._meta.fields if f.name != "metadata"]
    inlines = (SubscriptionItemInline,)
    actions = ("cancel_now", "cancel_at_period_end", "bill_now")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # created through the API, which issues the first invoice

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(description="Cancel now (final invoice, prorated credit)")
    def cancel_now(self, request: HttpRequest, queryset: Any) -> None:
        _each(
            request,
            queryset,
            lambda s, now: billing.subscription_cancel(subscription=s, at_period_end=False, prorate=True, now=now),
            "Canceled",
        )

    @admin.action(description="Cancel at period end")
    def cancel_at_period_end(self, request: HttpRequest, queryset: Any) -> None:
        _each(
            request,
            queryset,
            lambda s, now: billing.subscription_cancel(subscription=s, at_period_end=True, prorate=False, now=now),
            "Set to cancel",
        )

    @admin.action(description="Bill now (end trials, invoice every ended period)")
    def bill_now(self, request: HttpRequest, queryset: Any) -> None:
        def bill(sub: Subscription, now: Any) -> None:
            with transaction.atomic():
                locked = Subscription.objects.select_for_update(of=("self",)).select_related("customer", "coupon")
                made = renewal.renew_batch([locked.get(pk=sub.pk)], now)
            if not made:
                messages.info(request, f"{sub.pk}: nothing due before {now:%Y-%m-%d %H:%M} UTC.")

        _each(request, queryset, bill, "Billed")


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
    actions = ("finalize", "void", "mark_uncollectible")
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
        _each(request, queryset, lambda i, now: services.invoice_finalize(invoice=i, now=now), "Finalized")

    @admin.action(description="Void")
    def void(self, request: HttpRequest, queryset: Any) -> None:
        _each(request, queryset, lambda i, now: services.invoice_void(invoice=i, now=now), "Voided")

    @admin.action(description="Mark uncollectible")
    def mark_uncollectible(self, request: HttpRequest, queryset: Any) -> None:
        _each(
            request,
            queryset,
            lambda i, now: services.invoice_mark_uncollectible(invoice=i, now=now),
            "Marked uncollectible",
        )


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
