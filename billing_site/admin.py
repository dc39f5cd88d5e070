from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest
from django.utils import timezone

from billing_site.admin_kit import admin_each  # noqa: F401  (apps import it from here too)
from billing_site.errors import ApiError
from billing_site.models import SCOPES, ApiKey, IdempotencyRecord
from billing_site.services import api_key_create, api_key_revoke, validate_scopes


class ApiKeyForm(forms.ModelForm):
    class Meta:
        model = ApiKey
        fields = ("name", "scopes", "expires_at")

    def clean_scopes(self) -> list[str]:
        scopes = self.cleaned_data["scopes"]
        if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
            raise forms.ValidationError("Give a JSON list of scope names.")
        try:
            return validate_scopes(scopes)
        except ApiError as exc:
            raise forms.ValidationError(exc.message) from None


admin.site.site_header = "Billing administration"
admin.site.site_title = "Billing admin"
admin.site.index_template = "admin/billing_site/index.html"


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    form = ApiKeyForm
    list_display = ("id", "name", "prefix", "scopes", "expires_at", "revoked_at", "last_used_at", "created_at")
    list_filter = ("revoked_at",)
    search_fields = ("id", "name", "prefix")
    readonly_fields = ("id", "prefix", "last_used_at", "revoked_at", "created_at", "updated_at")
    fields = ("id", "name", "scopes", "expires_at", "prefix", "last_used_at", "revoked_at", "created_at")
    actions = ("revoke",)

    def get_changeform_initial_data(self, request: HttpRequest) -> dict:
        return {"scopes": ["admin"]}

    def save_model(self, request: HttpRequest, obj: ApiKey, form, change: bool) -> None:  # type: ignore[no-untyped-def]
        if change:
            super().save_model(request, obj, form, change)
            return
        # A new key goes through the service, which generates the secret; it is shown once, here.
        created, raw = api_key_create(name=obj.name, scopes=obj.scopes, expires_at=obj.expires_at)
        obj.pk = created.pk
        obj.refresh_from_db()
        messages.warning(request, f"API key {created.id}: {raw}  (copy it now, it will not be shown again)")

    def formfield_for_dbfield(self, db_field, request, **kwargs):  # type: ignore[no-untyped-def]
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        if db_field.name == "scopes":
            field.help_text = 'A JSON list, e.g. ["customers:read", "usage:write"]. Known: ' + ", ".join(SCOPES)
        return field

    @admin.action(description="Revoke the selected keys")
    def revoke(self, request: HttpRequest, queryset) -> None:  # type: ignore[no-untyped-def]
        now = timezone.now()
        for key in queryset:
            api_key_revoke(api_key=key, now=now)
        messages.success(request, f"Revoked {queryset.count()} key(s).")


@admin.register(IdempotencyRecord)
class IdempotencyRecordAdmin(admin.ModelAdmin):
    list_display = ("key", "api_key", "token_subject", "method", "path", "status", "response_status", "created_at")
    list_filter = ("status",)
    search_fields = ("key", "path", "token_subject")
    readonly_fields = [f.name for f in IdempotencyRecord._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
