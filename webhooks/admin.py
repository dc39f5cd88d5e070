from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from billing_site.admin_kit import ChangePageActions, confirm_action
from billing_site.errors import ApiError, Conflict
from webhooks import delivery, endpoints, inbound
from webhooks.models import BillingEvent, ProviderEvent, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from webhooks.signing import secret_hint


class _ReadOnly(admin.ModelAdmin):
    show_full_result_count = False  # no COUNT(*) over an ever-growing table on every page

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(BillingEvent)
class BillingEventAdmin(_ReadOnly):
    list_display = ("id", "type", "object_id", "customer_id", "created_at", "dispatched_at")
    list_filter = ("type",)
    search_fields = ("id", "object_id", "customer_id")
    readonly_fields = [f.name for f in BillingEvent._meta.fields]


class WebhookAttemptInline(admin.TabularInline):
    model = WebhookAttempt
    extra = 0
    can_delete = False
    ordering = ("number",)
    fields = ("number", "started_at", "duration_ms", "status_code", "succeeded", "retryable", "error", "response_body")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


def _report(request: HttpRequest, admin_: admin.ModelAdmin, done: int, failed: list[str], what: str) -> None:
    if done:
        admin_.message_user(request, f"{what}: {done}.", messages.SUCCESS)
    for message in failed:
        admin_.message_user(request, message, messages.WARNING)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ChangePageActions, _ReadOnly):
    list_display = ("id", "endpoint", "event", "status", "attempt_count", "last_status_code", "next_attempt_at")
    list_filter = ("status",)
    search_fields = ("id", "event__id", "endpoint__id", "endpoint__url")
    list_select_related = ("endpoint", "event")
    readonly_fields = [f.name for f in WebhookDelivery._meta.fields if f.name != "claim_token"]
    exclude = ("claim_token",)
    inlines = [WebhookAttemptInline]
    actions = ["redeliver"]

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return obj is None  # actions need the change permission on the list; rows stay read-only

    redeliver = confirm_action(
        description="Resend now",
        label="Queued again",
        run=lambda item, now: delivery.delivery_redeliver(delivery=item, now=now) and None,
        explanation="Sends the same event (same webhook-id and bytes) to the endpoint again, now.",
    )


class ResendForm(forms.Form):
    since = forms.DateTimeField(help_text="UTC, e.g. 2026-01-31 00:00:00")


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(ChangePageActions, admin.ModelAdmin):
    list_display = ("id", "url", "status", "failing_since", "last_success_at", "created_at")
    list_filter = ("status",)
    search_fields = ("id", "url", "description")
    fields = (
        "id",
        "url",
        "description",
        "enabled_events",
        "status",
        "disabled_reason",
        "metadata",
        "secret_hint",
        "previous_secret_expires_at",
        "failing_since",
        "last_success_at",
        "deleted_at",
        "created_at",
        "updated_at",
    )
    readonly_fields = fields
    actions = ["resend_since", "send_test", "enable", "disable"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # created through the API, which shows the secret once and checks the URL

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False  # deleted through the API (soft delete that keeps deliveries)

    def get_queryset(self, request: HttpRequest) -> QuerySet[WebhookEndpoint]:
        return super().get_queryset(request).filter(deleted_at__isnull=True)

    enable = confirm_action(
        description="Enable (forgets past failures)",
        label="Enabled",
        run=lambda e, now: endpoints.endpoint_update(endpoint=e, changes={"status": "enabled"}, now=now) and None,
        explanation="Pending deliveries are sent again once it is enabled.",
    )
    disable = confirm_action(
        description="Disable",
        label="Disabled",
        run=lambda e, now: endpoints.endpoint_update(endpoint=e, changes={"status": "disabled"}, now=now) and None,
        explanation="Deliveries wait (nothing is lost) until it is enabled again.",
        danger=True,
    )

    @admin.display(description="secret")
    def secret_hint(self, obj: WebhookEndpoint) -> str:
        return secret_hint(obj.secret)

    @admin.action(description="Resend everything since…")
    def resend_since(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> HttpResponse | None:
        if "apply" in request.POST:
            form = ResendForm(request.POST)
            if form.is_valid():
                done, failed = 0, []
                for endpoint in queryset:
                    try:
                        result = delivery.endpoint_resend(
                            endpoint=endpoint, since=form.cleaned_data["since"], now=timezone.now()
                        )
                        done += result["created"] + result["requeued"]
                    except ApiError as exc:
                        failed.append(f"{endpoint.id}: {exc.message}")
                _report(request, self, done, failed, "Deliveries queued")
                return None
        else:
            form = ResendForm(initial={"since": timezone.now() - timedelta(days=1)})
        return render(
            request,
            "admin/webhooks/resend_since.html",
            {**self.admin_site.each_context(request), "form": form, "endpoints": queryset, "title": "Resend events"},
        )

    send_test = confirm_action(
        description="Send a test event",
        label="Test events queued",
        run=lambda e, now: delivery.endpoint_test(endpoint=e, now=now) and None,
    )


def _reprocess(event: ProviderEvent, *, now: Any) -> str:
    if inbound.provider_event_reprocess(provider_event=event, now=now):
        return ""
    raise Conflict(f"{event.provider_event_id} is being processed right now.", code="provider_event_processing")


@admin.register(ProviderEvent)
class ProviderEventAdmin(_ReadOnly):
    list_display = ("provider_event_id", "provider", "type", "status", "attempts", "received_at", "processed_at")
    list_filter = ("provider", "status", "source")
    search_fields = ("provider_event_id", "object_id", "type")
    readonly_fields = [f.name for f in ProviderEvent._meta.fields if f.name != "claim_token"]
    exclude = ("claim_token",)
    actions = ["reprocess"]

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return obj is None

    reprocess = confirm_action(
        description="Reprocess",
        label="Queued for processing",
        run=_reprocess,
        explanation="Runs the event through its handler again (handlers are idempotent).",
    )
