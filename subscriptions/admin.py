"""Admin for subscriptions: their items, and the operator's actions (cancel now or at period end,
reactivate, bill now), each through the lifecycle services."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db import transaction
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest
from django.utils import timezone

from billing_site.admin_kit import ChangePageActions, FormattedFields, ReadOnlyInline, confirm_action
from billing_site.errors import InvalidRequest
from subscriptions.locks import lock_subscription
from subscriptions.models import Subscription, SubscriptionItem, Tier, TierItem
from subscriptions.services import lifecycle, renewal
from subscriptions.services.tiers import tier_items_resolve, tier_snapshot
from webhooks.services import object_event_emit


class SubscriptionItemInline(ReadOnlyInline):
    """Items change through "change" (prorations), never by editing rows."""

    model = SubscriptionItem
    fields = ("id", "price", "quantity", "added_at", "removed_at")
    quantity_fields = ("quantity",)
    show_change_link = False


def _invoiced(result: tuple[Subscription, Any]) -> str:
    _sub, invoice = result
    return f"final invoice {invoice.number or invoice.id}" if invoice is not None else ""


def _bill_now(sub: Subscription, *, now: Any) -> str:
    with transaction.atomic():
        made = renewal.renew_batch([lock_subscription(sub.pk, customer_id=sub.customer_id)], now)
    return "" if made else f"nothing due before {now:%Y-%m-%d %H:%M} UTC"


@admin.register(Subscription)
class SubscriptionAdmin(FormattedFields, ChangePageActions, admin.ModelAdmin):
    list_display = (
        "id",
        "customer",
        "status",
        "currency",
        "current_period_start",
        "current_period_end",
        "cancel_at_period_end",
    )
    list_filter = ("status", "collection_method", "cancel_at_period_end", "currency")
    search_fields = ("=id", "customer__external_id", "customer__email", "=customer__id", "customer__name")
    list_select_related = ("customer",)
    readonly_fields = [f.name for f in Subscription._meta.fields if f.name != "metadata"]
    inlines = (SubscriptionItemInline,)
    actions = ("cancel_now", "cancel_at_period_end", "reactivate", "bill_now")
    date_hierarchy = "created_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # created through the API, which issues the first invoice

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    cancel_now = confirm_action(
        description="Cancel now",
        label="Canceled",
        run=lambda s, now: _invoiced(
            lifecycle.subscription_cancel(subscription=s, at_period_end=False, prorate=True, now=now)
        ),
        explanation="Ends the subscription now: a final invoice bills the usage so far, unused time is credited.",
        danger=True,
    )
    cancel_at_period_end = confirm_action(
        description="Cancel at period end",
        label="Set to cancel",
        run=lambda s, now: _invoiced(
            lifecycle.subscription_cancel(subscription=s, at_period_end=True, prorate=False, now=now)
        ),
        explanation="It runs to the end of its current period, then ends (reactivate undoes it until then).",
    )
    reactivate = confirm_action(
        description="Reactivate (undo a pending cancellation)",
        label="Reactivated",
        run=lambda s, now: lifecycle.subscription_reactivate(subscription=s, now=now) and None,
    )
    bill_now = confirm_action(
        description="Bill now",
        label="Billed",
        run=_bill_now,
        explanation="Ends trials and invoices every period that has ended, as the renewal job would now.",
    )


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
