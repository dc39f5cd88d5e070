"""Admin for subscriptions: their items, and the operator's actions (cancel now or at period end,
reactivate, bill now), each through the lifecycle services."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db import transaction
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest, HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone

from billing_site.admin_kit import ChangePageActions, FormattedFields, ReadOnlyInline, confirm_action
from billing_site.errors import ApiError, InvalidRequest
from subscriptions.locks import lock_subscription
from subscriptions.models import (
    PriceMigration,
    Subscription,
    SubscriptionItem,
    SubscriptionPriceMigration,
    Tier,
    TierItem,
)
from subscriptions.services import lifecycle, migration, renewal
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
    money_fields = ("minimum_amount",)

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


class PriceMigrationForm(forms.ModelForm):
    dry_run = forms.BooleanField(required=False, initial=True, help_text="List what would change; change nothing.")

    class Meta:
        model = PriceMigration
        fields = ("from_price", "to_price", "when")


class SubscriptionPriceMigrationInline(admin.TabularInline):
    model = SubscriptionPriceMigration
    extra = 0
    fields = ("subscription", "item", "to_price", "effective_at", "status", "applied_at")
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(PriceMigration)
class PriceMigrationAdmin(admin.ModelAdmin):
    """The operator's plan migration: "Add" runs `price_migrate` (a dry run by default, reported as a
    message per subscription); the migrations made are listed with their subscriptions."""

    form = PriceMigrationForm
    list_display = ("id", "from_price", "to_price", "when", "created_at")
    readonly_fields = ("id", "created_at")
    inlines = (SubscriptionPriceMigrationInline,)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None

    def get_inlines(self, request: HttpRequest, obj: Any) -> Any:
        return self.inlines if obj is not None else ()

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: PriceMigration, form: Any, change: bool) -> None:
        try:
            result = migration.price_migrate(
                from_price=obj.from_price,
                to_price=obj.to_price,
                when=obj.when,
                dry_run=form.cleaned_data.get("dry_run", False),
                now=timezone.now(),
            )
        except ApiError as exc:
            messages.error(request, exc.message)
            return
        request.price_migration = result  # type: ignore[attr-defined]  # the admin instance is shared: not self
        for row in result.rows:
            messages.info(request, f"{row.subscription} ({row.item}): {row.status} {row.message}".strip())
        if not result.rows:
            messages.info(request, f"No live subscription is on {obj.from_price_id}.")

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        return  # the service wrote everything (or nothing, for a dry run)

    def response_add(self, request: HttpRequest, obj: PriceMigration, post_url_continue: Any = None) -> Any:
        result = getattr(request, "price_migration", None)
        if result is not None and result.migration is not None:
            url = reverse("admin:subscriptions_pricemigration_change", args=[result.migration.pk])
            return HttpResponseRedirect(url)
        return HttpResponseRedirect(reverse("admin:subscriptions_pricemigration_changelist"))
