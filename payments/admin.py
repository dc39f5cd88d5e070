"""Admin for payment methods, setup and payment intents, and refunds: read-only (money moves through the
services, which call the provider and record events), with the actions an operator needs."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from billing_site.admin import admin_each
from payments.models import (
    BalanceTransaction,
    CreditBurn,
    CreditGrant,
    CreditNote,
    CreditNoteLine,
    CustomerBalance,
    Dispute,
    PaymentIntent,
    PaymentMethod,
    Refund,
    SetupIntent,
)
from payments.services import credit_notes, grants, intents


class _ReadOnly(admin.ModelAdmin):
    show_full_result_count = False

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(PaymentMethod)
class PaymentMethodAdmin(_ReadOnly):
    list_display = ("id", "customer", "provider", "brand", "last4", "is_default", "detached_at", "created_at")
    list_filter = ("provider", "is_default", "brand")
    search_fields = ("=id", "=customer__id", "customer__external_id", "=provider_ref")
    list_select_related = ("customer",)


@admin.register(SetupIntent)
class SetupIntentAdmin(_ReadOnly):
    list_display = ("id", "customer", "status", "usage", "payment_method", "provider", "created_at")
    list_filter = ("status", "provider")
    search_fields = ("=id", "=customer__id", "customer__external_id", "=provider_ref")
    list_select_related = ("customer",)
    exclude = ("token",)  # a card token is not for display

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [f.name for f in self.model._meta.fields if f.name != "token"]


class RefundInline(admin.TabularInline):
    model = Refund
    extra = 0
    fields = ("id", "amount", "status", "reason", "provider_ref", "created_at")
    readonly_fields = fields
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class DisputeInline(admin.TabularInline):
    model = Dispute
    extra = 0
    fields = ("id", "amount", "status", "reason", "amount_lost", "evidence_due_by", "provider_ref")
    readonly_fields = fields
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(PaymentIntent)
class PaymentIntentAdmin(_ReadOnly):
    list_display = (
        "id",
        "customer",
        "invoice",
        "amount",
        "currency",
        "status",
        "amount_received",
        "amount_refunded",
        "provider",
        "created_at",
    )
    list_filter = ("status", "provider", "capture_method", "currency")
    search_fields = ("=id", "=customer__id", "customer__external_id", "=invoice__id", "=provider_ref")
    list_select_related = ("customer",)
    inlines = (RefundInline, DisputeInline)
    actions = ("cancel", "resolve_now")

    @admin.action(description="Cancel (releases an authorization)")
    def cancel(self, request: HttpRequest, queryset: Any) -> None:
        admin_each(
            request,
            queryset,
            lambda pi, now: intents.payment_intent_cancel(payment_intent=pi, cancellation_reason="abandoned", now=now),
            "Canceled",
        )

    @admin.action(description="Resolve unknown now (reads the provider; never charges)")
    def resolve_now(self, request: HttpRequest, queryset: Any) -> None:
        admin_each(
            request,
            queryset,
            lambda pi, now: intents.payment_intent_resolve(payment_intent=pi, now=now),
            "Resolved",
        )


@admin.register(Refund)
class RefundAdmin(_ReadOnly):
    list_display = ("id", "payment_intent", "invoice", "amount", "currency", "status", "reason", "created_at")
    list_filter = ("status", "reason", "currency")
    search_fields = ("=id", "=payment_intent__id", "=invoice__id", "=provider_ref")


@admin.register(Dispute)
class DisputeAdmin(_ReadOnly):
    """Read-only: disputes come from the provider's webhooks (answer them with evidence at the provider)."""

    list_display = (
        "id",
        "customer",
        "payment_intent",
        "amount",
        "currency",
        "status",
        "reason",
        "amount_lost",
        "evidence_due_by",
        "created_at",
    )
    list_filter = ("status", "reason", "currency", "provider")
    search_fields = ("=id", "=customer__id", "customer__external_id", "=payment_intent__id", "=provider_ref")
    list_select_related = ("customer",)
    date_hierarchy = "created_at"

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


# --- Balances, credit grants, credit notes (payments/ledger.py, grants.py, credit_notes.py) ---------


class BalanceTransactionInline(admin.TabularInline):
    model = BalanceTransaction
    extra = 0
    fields = ("id", "type", "amount", "ending_balance", "description", "invoice", "credit_note", "created_at")
    readonly_fields = fields
    ordering = ("-id",)
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(CustomerBalance)
class CustomerBalanceAdmin(_ReadOnly):
    """Balances change only through the ledger (the API's balance transactions), never by editing."""

    list_display = ("customer", "currency", "balance", "updated_at")
    list_filter = ("currency",)
    search_fields = ("=customer__id", "customer__external_id")
    list_select_related = ("customer",)
    inlines = (BalanceTransactionInline,)


@admin.register(BalanceTransaction)
class BalanceTransactionAdmin(_ReadOnly):
    list_display = ("id", "customer", "currency", "type", "amount", "ending_balance", "invoice", "created_at")
    list_filter = ("type", "currency")
    search_fields = ("=id", "=customer__id", "customer__external_id", "=invoice__id", "=credit_note__id")
    list_select_related = ("customer",)


class CreditBurnInline(admin.TabularInline):
    model = CreditBurn
    extra = 0
    fields = ("invoice", "invoice_line", "amount", "created_at")
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(CreditGrant)
class CreditGrantAdmin(_ReadOnly):
    list_display = ("id", "customer", "name", "amount", "currency", "priority", "status", "expires_at", "created_at")
    list_filter = ("status", "currency")
    search_fields = ("=id", "=customer__id", "customer__external_id", "name")
    list_select_related = ("customer",)
    inlines = (CreditBurnInline,)
    actions = ("void",)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [*super().get_readonly_fields(request, obj), "remaining"]

    @admin.display(description="Remaining")
    def remaining(self, obj: CreditGrant) -> int:
        return grants.credit_grant_remaining(obj)

    @admin.action(description="Void (the remaining credit becomes unusable)")
    def void(self, request: HttpRequest, queryset: Any) -> None:
        admin_each(request, queryset, lambda g, now: grants.credit_grant_void(grant=g, now=now), "Voided")


class CreditNoteLineInline(admin.TabularInline):
    model = CreditNoteLine
    extra = 0
    fields = ("invoice_line", "description", "quantity", "amount")
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(CreditNote)
class CreditNoteAdmin(_ReadOnly):
    """Registered here, not in invoicing: issuing and voiding go through payments' services."""

    list_display = ("number", "id", "invoice", "customer", "amount", "currency", "status", "reason", "created_at")
    list_filter = ("status", "reason", "currency")
    search_fields = ("=number", "=id", "=invoice__id", "=customer__id", "customer__external_id")
    list_select_related = ("customer", "invoice")
    inlines = (CreditNoteLineInline,)
    actions = ("void",)

    @admin.action(description="Void (gives the credit back; refused once refunded or spent)")
    def void(self, request: HttpRequest, queryset: Any) -> None:
        admin_each(request, queryset, lambda cn, now: credit_notes.credit_note_void(credit_note=cn, now=now), "Voided")
