"""Admin: meters (with this month's top customers), a read-only browser over usage events, usage alerts.

The events table is the largest table of the service, so its browser never counts it: no date
hierarchy, no full result count, and a paginator that counts at most `BoundedPaginator.CAP` rows by
fetching their keys instead of running COUNT(*). It reads a time window (the last hour by default), so
on PostgreSQL it touches the newest partitions only.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib import admin
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join

from billing_site.admin_kit import FormattedFields
from billing_site.money import decimal_to_str
from metering import alerts, selectors, services
from metering.ids import event_day, parse_event_id
from metering.ingest import FUTURE_TOLERANCE
from metering.models import Meter, MeterEvent, UsageAlert, UsageAlertTrigger

_EDITABLE = ("name", "description", "active")


@admin.register(Meter)
class MeterAdmin(admin.ModelAdmin):
    """Meters are created through the API (which validates the definition); here operators rename,
    describe and archive them, through the same service, so the change reaches the outbox."""

    list_display = ("code", "name", "aggregation", "unique_key", "active", "created_at")
    list_filter = ("aggregation", "active")
    search_fields = ("code", "name")
    ordering = ("code",)
    fields = (
        "id",
        "code",
        "name",
        "description",
        "aggregation",
        "unique_key",
        "filters",
        "active",
        "metadata",
        "created_at",
        "updated_at",
        "usage_this_month",
    )
    readonly_fields = (
        "id",
        "code",
        "aggregation",
        "unique_key",
        "filters",
        "metadata",
        "created_at",
        "updated_at",
        "usage_this_month",
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False  # a meter with events is archived (active: false), never deleted

    def save_model(self, request: HttpRequest, obj: Meter, form: Any, change: bool) -> None:
        changes = {name: form.cleaned_data[name] for name in form.changed_data if name in _EDITABLE}
        if changes:
            current = Meter.objects.get(pk=obj.pk)
            services.meter_update(meter=current, changes=changes, now=timezone.now())

    @admin.display(description="Usage this month (top customers)")
    def usage_this_month(self, obj: Meter) -> str:
        if obj.pk is None:
            return "-"
        now = timezone.now()
        start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        top = selectors.usage_top_customers(meter=obj, start=start, end=now, limit=10)
        if not top:
            return f"No usage since {start:%Y-%m-%d} (UTC)."
        rows = format_html_join(
            "",
            '<tr><td><a href="{}">{}</a></td><td>{}</td><td>{}</td><td style="text-align:right">{}</td>'
            '<td style="text-align:right">{}</td></tr>',
            (
                (
                    reverse("admin:customers_customer_change", args=[customer.pk]),
                    customer.pk,
                    customer.external_id,
                    customer.name,
                    decimal_to_str(value.value),
                    value.event_count,
                )
                for customer, value in top
            ),
        )
        return format_html(
            "<table><thead><tr><th>Customer</th><th>External id</th><th>Name</th><th>{}</th><th>Events</th>"
            "</tr></thead><tbody>{}</tbody></table><p>Since {} UTC; exact values (roll-ups plus events not "
            "rolled up yet).</p>",
            obj.aggregation,
            rows,
            f"{start:%Y-%m-%d %H:%M}",
        )


class BoundedPaginator(Paginator):
    """Counts by fetching at most CAP + 1 primary keys, never with COUNT(*) over the events table. Past
    the cap the listing stops at CAP rows: narrow it with the filters."""

    CAP = 10_000

    @cached_property
    def count(self) -> int:
        keys = self.object_list.order_by().values_list("pk", flat=True)[: self.CAP + 1]
        return min(len(list(keys)), self.CAP)


class CanceledFilter(admin.SimpleListFilter):
    title = "canceled"
    parameter_name = "canceled"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "yes":
            return queryset.filter(canceled_at__isnull=False)
        if self.value() == "no":
            return queryset.filter(canceled_at__isnull=True)
        return queryset


class RecentFilter(admin.SimpleListFilter):
    """Event time relative to now (a date hierarchy would count rows per period).

    The browser always reads a window, the last hour unless the operator picks another, so it reads the
    newest partition only (its BRIN index on timestamp), never the whole history. A search by event id
    is not windowed: the id names its own day."""

    title = "timestamp"
    parameter_name = "since"
    DEFAULT = "1h"
    _SPANS = {
        "1h": ("Last hour", timedelta(hours=1)),
        "24h": ("Last day", timedelta(days=1)),
        "7d": ("Last 7 days", timedelta(days=7)),
        "35d": ("Last 35 days", timedelta(days=35)),
        "all": ("All time (reads every partition)", None),
    }

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(key, label) for key, (label, _) in self._SPANS.items() if key != self.DEFAULT]

    def choices(self, changelist: Any) -> Any:
        yield {
            "selected": self.value() in (None, self.DEFAULT),
            "query_string": changelist.get_query_string(remove=[self.parameter_name]),
            "display": self._SPANS[self.DEFAULT][0] + " (default)",
        }
        for lookup, title in self.lookup_choices:
            yield {
                "selected": self.value() == lookup,
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if str(request.GET.get("q", "")).strip().startswith("evt_"):
            return queryset
        span = self._SPANS.get(self.value() or self.DEFAULT, self._SPANS[self.DEFAULT])[1]
        if span is None:
            return queryset
        # Bounded above too (no event is accepted further ahead than that), so no future partition is read.
        now = timezone.now()
        return queryset.filter(timestamp__gte=now - span, timestamp__lt=now + FUTURE_TOLERANCE)


@admin.register(MeterEvent)
class MeterEventAdmin(FormattedFields, admin.ModelAdmin):
    quantity_fields = ("value",)
    list_display = ("event_id", "customer", "meter", "value", "timestamp", "ingested_at", "canceled_at")
    list_filter = ("meter", CanceledFilter, RecentFilter)
    list_select_related = ("customer", "meter")
    search_fields = ("=customer__id", "=customer__external_id")
    search_help_text = "An exact customer id (cus_…), a customer's external id, or an event id (evt_…)."
    ordering = ("-id",)
    paginator = BoundedPaginator
    show_full_result_count = False
    list_per_page = 100
    actions = None

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.display(description="Event id", ordering="id")
    def event_id(self, obj: MeterEvent) -> str:
        return obj.public_id

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        """Exact matches only, each one an index lookup (no LIKE over the largest table)."""
        term = search_term.strip()
        if not term:
            return queryset, False
        if term.startswith("evt_"):
            parsed = parse_event_id(term)
            if parsed is None:
                return queryset.none(), False
            day = event_day(parsed[1])
            found = queryset.filter(pk=parsed[0], token=parsed[1])
            if day is not None and found.filter(timestamp__gte=day[0], timestamp__lt=day[1]).exists():
                return found.filter(timestamp__gte=day[0], timestamp__lt=day[1]), False
            return found, False  # a token made before tokens carried the day
        if term.startswith("cus_"):
            return queryset.filter(customer_id=term), False
        return queryset.filter(customer__external_id=term), False


# The usage push's admin lives beside its models.
from metering.push import admin as _push_admin  # noqa: E402, F401


class UsageAlertTriggerInline(admin.TabularInline):
    model = UsageAlertTrigger
    fields = ("period_start", "level", "threshold", "value", "triggered_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ("-period_start", "level")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(UsageAlert)
class UsageAlertAdmin(admin.ModelAdmin):
    """Usage alerts and their crossings. Operators create, retune, pause and delete them here through the
    same services as the API (so the customer's ingestion flag stays right); crossings are read-only."""

    list_display = ("id", "customer", "kind", "meter", "threshold", "recurrence", "active", "period_start")
    list_filter = ("kind", "recurrence", "active")
    search_fields = ("id", "customer__id", "customer__external_id", "meter__code")
    list_select_related = ("customer", "meter")
    raw_id_fields = ("customer", "meter")
    readonly_fields = ("period_start", "period_end", "created_at", "updated_at")
    inlines = (UsageAlertTriggerInline,)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        fixed = ("customer", "kind", "meter") if obj is not None else ()
        return fixed + tuple(self.readonly_fields)

    def save_model(self, request: HttpRequest, obj: UsageAlert, form: Any, change: bool) -> None:
        now = timezone.now()
        if not change:
            created = alerts.usage_alert_create(
                customer=obj.customer,
                meter=obj.meter,
                kind=obj.kind,
                threshold=obj.threshold,
                recurrence=obj.recurrence,
                name=obj.name,
                metadata=obj.metadata,
                now=now,
            )
            obj.pk, obj.period_start, obj.period_end = created.pk, created.period_start, created.period_end
            return
        fields = ("threshold", "recurrence", "active", "name", "metadata")
        alerts.usage_alert_update(alert=obj, now=now, **{name: getattr(obj, name) for name in fields})

    def delete_model(self, request: HttpRequest, obj: UsageAlert) -> None:
        alerts.usage_alert_delete(alert=obj, now=timezone.now())

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for alert in queryset:
            alerts.usage_alert_delete(alert=alert, now=timezone.now())
