"""Admin for subscriptions: their items, and the operator's actions (cancel now or at period end,
reactivate, bill now), each through the lifecycle services."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db import transaction
from django.http import HttpRequest

from billing_site.admin import admin_each
from subscriptions.locks import lock_subscription
from subscriptions.models import Subscription, SubscriptionItem
from subscriptions.services import lifecycle, renewal


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
        admin_each(
            request,
            queryset,
            lambda s, now: lifecycle.subscription_cancel(subscription=s, at_period_end=False, prorate=True, now=now),
            "Canceled",
        )

    @admin.action(description="Cancel at period end")
    def cancel_at_period_end(self, request: HttpRequest, queryset: Any) -> None:
        admin_each(
            request,
            queryset,
            lambda s, now: lifecycle.subscription_cancel(subscription=s, at_period_end=True, prorate=False, now=now),
            "Set to cancel",
        )

    @admin.action(description="Bill now (end trials, invoice every ended period)")
    def bill_now(self, request: HttpRequest, queryset: Any) -> None:
        def bill(sub: Subscription, now: Any) -> None:
            with transaction.atomic():
                made = renewal.renew_batch([lock_subscription(sub.pk, customer_id=sub.customer_id)], now)
            if not made:
                messages.info(request, f"{sub.pk}: nothing due before {now:%Y-%m-%d %H:%M} UTC.")

        admin_each(request, queryset, bill, "Billed")
