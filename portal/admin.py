from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from billing_site.errors import ApiError
from portal.links import hosted_invoice_link_regenerate, hosted_invoice_link_revoke, hosted_url_of
from portal.models import HostedInvoiceLink, PortalSession


@admin.register(HostedInvoiceLink)
class HostedInvoiceLinkAdmin(admin.ModelAdmin):
    list_display = ("id", "invoice", "created_at", "revoked_at")
    list_filter = ("revoked_at",)
    search_fields = ("id", "invoice__id", "invoice__number")
    readonly_fields = ("id", "invoice", "created_at", "revoked_at", "url")
    exclude = ("nonce", "token_hash")
    actions = ("revoke", "regenerate")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.display(description="URL")
    def url(self, link: HostedInvoiceLink) -> str:
        return "" if link.revoked_at else (hosted_url_of(link.invoice) or "")

    @admin.action(description="Revoke the link (its page answers 404)")
    def revoke(self, request: HttpRequest, queryset: QuerySet[HostedInvoiceLink]) -> None:
        self._each(request, queryset, hosted_invoice_link_revoke, "revoked")

    @admin.action(description="Regenerate (a new URL; the old one answers 404)")
    def regenerate(self, request: HttpRequest, queryset: QuerySet[HostedInvoiceLink]) -> None:
        self._each(request, queryset, hosted_invoice_link_regenerate, "regenerated")

    def _each(self, request: HttpRequest, queryset: QuerySet[HostedInvoiceLink], service: object, done: str) -> None:
        count = 0
        for invoice_id in sorted({link.invoice_id for link in queryset.filter(revoked_at__isnull=True)}):
            link = queryset.filter(invoice_id=invoice_id).select_related("invoice").first()
            try:
                service(invoice=link.invoice, now=timezone.now())  # type: ignore[operator]
                count += 1
            except ApiError as exc:
                self.message_user(request, f"{invoice_id}: {exc.message}", messages.ERROR)
        self.message_user(request, f"{count} link(s) {done}.", messages.SUCCESS)


@admin.register(PortalSession)
class PortalSessionAdmin(admin.ModelAdmin):
    list_display = ("id", "customer", "created_at", "expires_at")
    search_fields = ("id", "customer__id")
    readonly_fields = ("id", "customer", "created_at", "expires_at")
    exclude = ("token_hash",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
