"""Admin for the usage push: mappings (changed through the services), lanes (unblock, push now), pushes
(read-only, with the operator's verdict on an outstanding one), and stored reconciliations."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from billing_site.errors import ApiError
from billing_site.money import decimal_to_str
from metering.push import mappings
from metering.push.models import MeterMapping, UsagePush, UsagePushLane, UsagePushReconciliation
from metering.push.services import usage_push_lane_unblock, usage_push_resolve


class MeterMappingForm(forms.ModelForm):
    class Meta:
        model = MeterMapping
        fields = ("meter", "customer", "event_name")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        meter = cleaned.get("meter")
        if meter is not None and self.instance._state.adding:
            try:
                mappings.aggregation_check(meter)
            except ApiError as exc:
                self.add_error("meter", exc.message)
        return cleaned


@admin.register(MeterMapping)
class MeterMappingAdmin(admin.ModelAdmin):
    form = MeterMappingForm
    list_display = ("meter", "customer", "provider", "event_name", "provider_meter_id", "resolve_error")
    list_select_related = ("meter", "customer")
    search_fields = ("event_name", "=customer__id", "customer__external_id", "meter__code")
    raw_id_fields = ("customer",)
    readonly_fields = (
        "id",
        "provider",
        "provider_meter_id",
        "customer_payload_key",
        "value_payload_key",
        "resolved_at",
        "resolve_error",
        "created_at",
        "updated_at",
    )

    def get_readonly_fields(self, request: HttpRequest, obj: MeterMapping | None = None) -> tuple[str, ...]:
        fixed = ("meter", "customer") if obj is not None else ()
        return (*fixed, *self.readonly_fields)

    def save_model(self, request: HttpRequest, obj: MeterMapping, form: Any, change: bool) -> None:
        try:
            if change:
                current = MeterMapping.objects.get(pk=obj.pk)
                mappings.meter_mapping_update(
                    mapping=current, changes={"event_name": form.cleaned_data["event_name"]}, now=timezone.now()
                )
            else:
                created = mappings.meter_mapping_create(
                    meter=form.cleaned_data["meter"],
                    customer=form.cleaned_data.get("customer"),
                    event_name=form.cleaned_data["event_name"],
                    now=timezone.now(),
                )
                obj.pk = created.pk
        except ApiError as exc:
            messages.error(request, f"Not saved: {exc.message}")

    def delete_model(self, request: HttpRequest, obj: MeterMapping) -> None:
        try:
            mappings.meter_mapping_delete(mapping=obj, now=timezone.now())
        except ApiError as exc:
            messages.error(request, f"Not deleted: {exc.message}")

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[MeterMapping]) -> None:
        for mapping in queryset:
            self.delete_model(request, mapping)


class BlockedFilter(admin.SimpleListFilter):
    title = "blocked"
    parameter_name = "blocked"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Blocked"), ("error", "With an error"), ("no", "Running")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "yes":
            return queryset.filter(blocked_at__isnull=False)
        if self.value() == "error":
            return queryset.exclude(error="")
        if self.value() == "no":
            return queryset.filter(blocked_at__isnull=True)
        return queryset


@admin.register(UsagePushLane)
class UsagePushLaneAdmin(admin.ModelAdmin):
    list_display = ("customer", "meter", "pushed_through", "changes_checked_at", "blocked_at", "error", "last_run_at")
    list_filter = (BlockedFilter,)
    list_select_related = ("customer", "meter")
    search_fields = ("=customer__id", "customer__external_id", "meter__code")
    actions = ("unblock", "push_now")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.action(description="Unblock (the cause of the refusal is fixed)")
    def unblock(self, request: HttpRequest, queryset: QuerySet[UsagePushLane]) -> None:
        now = timezone.now()
        for lane in queryset:
            usage_push_lane_unblock(lane=lane, now=now)
        messages.success(request, f"Unblocked {queryset.count()} lane(s); the next run pushes them.")

    @admin.action(description="Push now (start a task per lane)")
    def push_now(self, request: HttpRequest, queryset: QuerySet[UsagePushLane]) -> None:
        from metering.tasks import push_usage_lane

        for lane_id in queryset.values_list("pk", flat=True):
            push_usage_lane.delay(lane_id)
        messages.success(request, f"Started {queryset.count()} lane(s).")


class AttentionFilter(admin.SimpleListFilter):
    title = "needs attention"
    parameter_name = "attention"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Unknown, failed or unreconcilable")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "yes":
            return queryset.filter(status__in=["unknown", "failed", "unreconcilable"])
        return queryset


@admin.register(UsagePush)
class UsagePushAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "customer",
        "meter",
        "kind",
        "status",
        "slice_start",
        "amount",
        "attempts",
        "settled_by",
        "error_code",
    )
    list_filter = (AttentionFilter, "status", "kind", "settled_by")
    list_select_related = ("customer", "meter")
    search_fields = ("=id", "=customer__id", "customer__external_id")
    ordering = ("-id",)
    show_full_result_count = False
    actions = ("mark_recorded", "mark_not_recorded")

    def get_readonly_fields(self, request: HttpRequest, obj: object = None) -> list[str]:
        return [f.name for f in UsagePush._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.display(description="value", ordering="value")
    def amount(self, obj: UsagePush) -> str:
        return decimal_to_str(obj.value)

    def _resolve(self, request: HttpRequest, queryset: QuerySet[UsagePush], recorded: bool) -> None:
        now, done = timezone.now(), 0
        for push in queryset.filter(status__in=UsagePush.OUTSTANDING):
            usage_push_resolve(push=push, recorded=recorded, now=now)
            done += 1
        messages.success(request, f"Settled {done} outstanding push(es); others were left as they are.")

    @admin.action(description="Mark recorded (verified at the provider)")
    def mark_recorded(self, request: HttpRequest, queryset: QuerySet[UsagePush]) -> None:
        self._resolve(request, queryset, True)

    @admin.action(description="Mark not recorded (it is pushed again)")
    def mark_not_recorded(self, request: HttpRequest, queryset: QuerySet[UsagePush]) -> None:
        self._resolve(request, queryset, False)


_REC_COLUMNS = (
    "customer",
    "external_id",
    "meter",
    "slice_start",
    "usage",
    "pushed",
    "provider",
    "difference",
    "status",
)


@admin.register(UsagePushReconciliation)
class UsagePushReconciliationAdmin(admin.ModelAdmin):
    list_display = ("id", "started_at", "start", "end", "customer", "status", "lanes", "slices", "mismatches")
    list_filter = ("status",)
    ordering = ("-id",)
    exclude = ("rows",)

    def get_readonly_fields(self, request: HttpRequest, obj: object = None) -> list[str]:
        return [*(f.name for f in UsagePushReconciliation._meta.fields if f.name != "rows"), "differing_slices"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.display(description="Slices that differ")
    def differing_slices(self, obj: UsagePushReconciliation) -> str:
        if not obj.rows:
            return "None."
        head = format_html_join("", "<th>{}</th>", ((c,) for c in _REC_COLUMNS))
        body = format_html_join(
            "",
            "<tr>{}</tr>",
            ((format_html_join("", "<td>{}</td>", ((row.get(c, ""),) for c in _REC_COLUMNS)),) for row in obj.rows),
        )
        more = obj.mismatches - len(obj.rows)
        tail = format_html("<p>{} more not stored.</p>", more) if more > 0 else ""
        return format_html("<table><thead><tr>{}</tr></thead><tbody>{}</tbody></table>{}", head, body, tail)
