from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from billing_site.admin import admin_each
from customers import services
from customers.models import ControlPlaneEvent, Customer, CustomerUser


class CustomerUserInline(admin.TabularInline):
    model = CustomerUser
    extra = 0
    fields = ("id", "external_id", "email", "name", "status", "deleted_at", "created_at")
    readonly_fields = ("id", "status", "deleted_at", "created_at")
    show_change_link = True


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    list_display = ("id", "external_id", "name", "email", "currency", "status", "created_at")
    list_filter = ("status", "tax_exempt", "currency")
    search_fields = ("=id", "external_id", "email", "name")
    readonly_fields = ("id", "status", "deleted_at", "purged_at", "created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("id", "external_id", "name", "email", "currency", "status", "tax_exempt", "metadata")}),
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
        ("History", {"fields": ("deleted_at", "purged_at", "created_at", "updated_at")}),
    )
    inlines = (CustomerUserInline,)
    actions = ("deactivate", "activate", "soft_delete", "restore")

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False  # billing history is never lost: use the "soft delete" action

    @admin.action(description="Deactivate")
    def deactivate(self, request, queryset):  # type: ignore[no-untyped-def]
        admin_each(
            request,
            queryset,
            lambda c, now: services.customer_set_status(customer=c, active=False, now=now),
            "Deactivated",
        )

    @admin.action(description="Activate")
    def activate(self, request, queryset):  # type: ignore[no-untyped-def]
        admin_each(
            request,
            queryset,
            lambda c, now: services.customer_set_status(customer=c, active=True, now=now),
            "Activated",
        )

    @admin.action(description="Soft delete (keeps billing history)")
    def soft_delete(self, request, queryset):  # type: ignore[no-untyped-def]
        admin_each(request, queryset, lambda c, now: services.customer_delete(customer=c, now=now), "Deleted")

    @admin.action(description="Restore deleted")
    def restore(self, request, queryset):  # type: ignore[no-untyped-def]
        admin_each(request, queryset, lambda c, now: services.customer_restore(customer=c, now=now), "Restored")


@admin.register(CustomerUser)
class CustomerUserAdmin(admin.ModelAdmin):
    list_display = ("id", "email", "name", "customer", "external_id", "status", "deleted_at")
    list_filter = ("status",)
    search_fields = ("=id", "email", "name", "external_id", "customer__external_id")
    readonly_fields = ("id", "customer", "status", "deleted_at", "created_at", "updated_at")
    list_select_related = ("customer",)

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(ControlPlaneEvent)
class ControlPlaneEventAdmin(admin.ModelAdmin):
    list_display = ("received_at", "detail_type", "tenant_id", "status", "result", "envelope_id")
    list_filter = ("status", "detail_type")
    search_fields = ("tenant_id", "envelope_id")
    readonly_fields = [f.name for f in ControlPlaneEvent._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
