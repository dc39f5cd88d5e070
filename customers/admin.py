from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from billing_site.admin_kit import ChangePageActions, FormattedFields, ReadOnlyInline, confirm_action
from billing_site.errors import ApiError
from customers import services
from customers.control_plane.answers import answer_resend
from customers.models import (
    BillingModeChange,
    ControlPlaneAnswer,
    ControlPlaneEvent,
    Customer,
    CustomerUser,
    TestClock,
)


class CustomerUserInline(ReadOnlyInline):
    model = CustomerUser
    fields = ("id", "external_id", "email", "name", "status", "deleted_at", "created_at")
    verbose_name_plural = "Users"


class BillingModeChangeInline(ReadOnlyInline):
    model = BillingModeChange
    fields = ("mode", "effective_at", "source", "created_at")
    ordering = ("-effective_at", "-id")
    verbose_name_plural = "Billing mode history"
    show_change_link = False


# Billing changes go through the service (mode history, provider checks, outbox), not a plain save.
_BILLING_FIELDS = ("billing_mode", "provider_customer_id")


class CustomerAdminForm(forms.ModelForm):
    class Meta:
        model = Customer
        fields = (
            "external_id",
            "name",
            "email",
            "currency",
            "tax_exempt",
            "metadata",
            "address_line1",
            "address_line2",
            "address_city",
            "address_state",
            "address_postal_code",
            "address_country",
            "provider",
            "provider_customer_id",
            "billing_mode",
        )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if "billing_mode" in self.changed_data and cleaned.get("billing_mode"):
            try:
                services.customer_billing_mode_check(customer=self.instance, mode=cleaned["billing_mode"])
            except ApiError as exc:
                self.add_error("billing_mode", exc.message)
        return cleaned


@admin.register(Customer)
class CustomerAdmin(FormattedFields, ChangePageActions, admin.ModelAdmin):
    list_display = ("external_id", "name", "email", "currency", "status", "billing_mode", "created_at")
    list_filter = ("status", "billing_mode", "tax_exempt", "currency", "address_country")
    search_fields = ("=id", "external_id", "email", "name")
    form = CustomerAdminForm
    readonly_fields = ("id", "status", "billing_mode_since", "deleted_at", "purged_at", "created_at", "updated_at")
    date_hierarchy = "created_at"

    def raw_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[Any]:
        # The control plane's tenant id never changes once the customer exists (the API refuses it too).
        fields = list(super().raw_readonly_fields(request, obj))
        return [*fields, "external_id"] if obj is not None else fields

    fieldsets = (
        (
            None,
            {
                "fields": (
                    *("id", "external_id", "name", "email", "currency", "timezone"),
                    *("status", "tax_exempt", "metadata"),
                )
            },
        ),
        (
            "Address",
            {
                "fields": (
                    "address_line1",
                    "address_line2",
                    "address_city",
                    "address_state",
                    "address_postal_code",
                    "address_country",
                )
            },
        ),
        ("Payment provider", {"fields": ("provider", "provider_customer_id")}),
        (
            "Billing mode",
            {
                "fields": ("billing_mode", "billing_mode_since"),
                "description": "native: we invoice and collect. provider: we meter and push usage to Stripe "
                "Billing, which invoices. A change takes effect now; usage before it is not pushed.",
            },
        ),
        ("History", {"fields": ("deleted_at", "purged_at", "created_at", "updated_at")}),
    )
    inlines = (CustomerUserInline, BillingModeChangeInline)
    actions = ("deactivate", "activate", "soft_delete", "restore")

    def save_model(self, request: HttpRequest, obj: Customer, form: Any, change: bool) -> None:
        billing = {name: form.cleaned_data[name] for name in _BILLING_FIELDS if name in form.changed_data}
        if not billing:
            super().save_model(request, obj, form, change)
            return
        if change:
            current = Customer.objects.get(pk=obj.pk)
            for name in _BILLING_FIELDS:
                setattr(obj, name, getattr(current, name))
        else:
            obj.billing_mode, obj.provider_customer_id = Customer.BillingMode.NATIVE, ""
        super().save_model(request, obj, form, change)
        try:
            services.customer_update(
                customer=obj, changes=billing, now=timezone.now(), source=BillingModeChange.Source.ADMIN
            )
        except ApiError as exc:
            messages.error(request, f"Billing not changed: {exc.message}")
        obj.refresh_from_db()

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False  # billing history is never lost: use the "soft delete" action

    deactivate = confirm_action(
        description="Deactivate",
        label="Deactivated",
        run=lambda c, now: services.customer_set_status(customer=c, active=False, now=now) and None,
        explanation="Usage is refused and renewal passes over the customer until it is activated again.",
        danger=True,
    )
    activate = confirm_action(
        description="Activate",
        label="Activated",
        run=lambda c, now: services.customer_set_status(customer=c, active=True, now=now) and None,
        explanation="Renewal then bills the periods missed meanwhile, in order.",
    )
    soft_delete = confirm_action(
        description="Soft delete (keeps billing history)",
        label="Deleted",
        run=lambda c, now: services.customer_delete(customer=c, now=now) and None,
        danger=True,
    )
    restore = confirm_action(
        description="Restore deleted",
        label="Restored",
        run=lambda c, now: services.customer_restore(customer=c, now=now) and None,
    )


@admin.register(CustomerUser)
class CustomerUserAdmin(ChangePageActions, admin.ModelAdmin):
    list_display = ("id", "email", "name", "customer", "external_id", "status", "deleted_at")
    list_filter = ("status",)
    search_fields = ("=id", "email", "name", "external_id", "customer__external_id")
    readonly_fields = ("id", "customer", "status", "deleted_at", "created_at", "updated_at")
    list_select_related = ("customer",)

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


def _pretty(value: object) -> str:
    return format_html("<pre>{}</pre>", json.dumps(value, indent=2, sort_keys=True, default=str))


@admin.register(ControlPlaneEvent)
class ControlPlaneEventAdmin(admin.ModelAdmin):
    list_display = ("received_at", "detail_type", "tenant_id", "status", "result", "rejected_usage", "envelope_id")
    list_filter = ("status", "detail_type")
    search_fields = ("tenant_id", "envelope_id")
    readonly_fields = [
        *(f.name for f in ControlPlaneEvent._meta.fields if f.name not in ("payload", "details")),
        "payload_pretty",
        "details_pretty",
        "answer_link",
    ]
    exclude = ("payload", "details")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.display(description="rejected usage")
    def rejected_usage(self, obj: ControlPlaneEvent) -> int | str:
        usage = obj.details.get("usage") if isinstance(obj.details, dict) else None
        return usage.get("rejected", 0) if isinstance(usage, dict) else "-"

    @admin.display(description="payload")
    def payload_pretty(self, obj: ControlPlaneEvent) -> str:
        return _pretty(obj.payload)

    @admin.display(description="details (usage rejections, subscriptions, invoices)")
    def details_pretty(self, obj: ControlPlaneEvent) -> str:
        return _pretty(obj.details)

    @admin.display(description="answer")
    def answer_link(self, obj: ControlPlaneEvent) -> str:
        answer = ControlPlaneAnswer.objects.filter(event=obj).first()
        if answer is None:
            return "-"
        url = reverse("admin:customers_controlplaneanswer_change", args=[answer.pk])
        return format_html('<a href="{}">{} ({})</a>', url, answer.detail_type, answer.status)


@admin.register(ControlPlaneAnswer)
class ControlPlaneAnswerAdmin(admin.ModelAdmin):
    list_display = ("id", "detail_type", "status", "attempt_count", "next_attempt_at", "last_error", "sent_at")
    list_filter = ("status", "detail_type")
    search_fields = ("=id", "event__tenant_id", "event__envelope_id", "bus_event_id")
    readonly_fields = [*(f.name for f in ControlPlaneAnswer._meta.fields if f.name != "detail"), "detail_pretty"]
    exclude = ("detail",)
    actions = ("send_again",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.display(description="detail")
    def detail_pretty(self, obj: ControlPlaneAnswer) -> str:
        return _pretty(obj.detail)

    send_again = confirm_action(
        description="Send again (restarts the retry schedule)",
        label="Queued",
        run=lambda a, now: answer_resend(answer=a, now=now) and None,
    )


@admin.register(TestClock)
class TestClockAdmin(admin.ModelAdmin):
    """Read-only: clocks are created and advanced through the API (`/test-clocks`), which runs the jobs."""

    list_display = ("id", "name", "frozen_time", "status", "target_frozen_time", "deleted_at", "created_at")
    list_filter = ("status",)
    search_fields = ("=id", "name")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [f.name for f in TestClock._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
