from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from webhooks.models import BillingEvent


@admin.register(BillingEvent)
class BillingEventAdmin(admin.ModelAdmin):
    list_display = ("id", "type", "object_id", "customer_id", "created_at")
    list_filter = ("type",)
    search_fields = ("id", "object_id", "customer_id")
    readonly_fields = [f.name for f in BillingEvent._meta.fields]
    show_full_result_count = False  # no COUNT(*) over an ever-growing table on every page

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
