"""Admin for subscriptions: their items, and the operator's actions (cancel now or at period end,
reactivate, bill now), each through the lifecycle services."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db import transaction
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest
from django.utils import timezone

from billing_site.admin import admin_each
from billing_site.errors import InvalidRequest
from subscriptions.locks import lock_subscription
from subscriptions.models import Subscription, SubscriptionItem, Tier, TierItem
from subscriptions.services import lifecycle, renewal
from subscriptions.services.tiers import tier_items_resolve, tier_snapshot
from webhooks.services import object_event_emit


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


class TierItemFormSet(BaseInlineFormSet):
    def clean(self) -> None:
        """The same rule as the API: every lookup key names an active price and together they make one
        valid subscription (a tier that cannot subscribe anyone must not be saved)."""
        super().clean()
        items = [
            {"lookup_key": form.cleaned_data["lookup_key"], "quantity": form.cleaned_data.get("quantity")}
            for form in self.forms
            if form.cleaned_data and not form.cleaned_data.get("DELETE")
        ]
        if not items:
            raise ValidationError("A tier needs at least one price.")
        try:
            tier_items_resolve(items)
        except InvalidRequest as exc:
            raise ValidationError(exc.message) from None


class TierItemInline(admin.TabularInline):
    model = TierItem
    formset = TierItemFormSet
    extra = 1
    fields = ("position", "lookup_key", "quantity")


@admin.register(Tier)
class TierAdmin(admin.ModelAdmin):
    list_display = ("name", "id", "trial_days", "billing_mode", "collection_method", "active", "updated_at")
    list_filter = ("active", "billing_mode")
    search_fields = ("name", "=id")
    readonly_fields = ("id", "created_at", "updated_at")
    inlines = (TierItemInline,)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # archive with "active" instead: onboarding then refuses the tier with a reason

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        tier = form.instance
        # The admin's own transaction is still open: the event commits with the change, as from the API.
        object_event_emit(
            type="tier.updated" if change else "tier.created",
            obj=tier,
            data=tier_snapshot(tier),
            now=timezone.now(),
            customer_id="",
        )
