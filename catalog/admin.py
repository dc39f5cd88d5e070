"""Operator pages for the catalog. Saves go through the services, so the admin emits the same events and
obeys the same rules as the API; amounts and discount terms are read-only (they never change), and prices
and coupons are created through the API, where the pricing engine validates them."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.forms import ModelForm
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from billing_site.admin_kit import FormattedFields, money_text
from billing_site.money import decimal_to_str
from catalog import services
from catalog.models import Coupon, Feature, FeatureAttachment, Price, Product
from catalog.pricing import FixedAmount, PricingError, TieredAmount, generate_price_name


def _changes(form: ModelForm) -> dict[str, Any]:
    return {field: form.cleaned_data[field] for field in form.changed_data}


def _duration(price: Price) -> str:
    unit = price.duration_unit
    return f"every {unit}" if price.duration_amount == 1 else f"every {price.duration_amount} {unit}s"


class PriceInline(admin.TabularInline):
    model = Price
    extra = 0
    fields = ("id", "name", "currency", "model", "mode", "duration", "lookup_key", "active", "created_at")
    readonly_fields = fields
    show_change_link = True
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.display(description="Billed")
    def duration(self, price: Price) -> str:
        return _duration(price)


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "active", "created_at")
    list_filter = ("active",)
    search_fields = ("=id", "name")
    fields = ("id", "name", "description", "active", "metadata", "created_at", "updated_at")
    readonly_fields = ("id", "metadata", "created_at", "updated_at")
    inlines = (PriceInline,)

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False  # prices and invoices point here: archive it instead (active off)

    def save_model(self, request: HttpRequest, obj: Product, form: ModelForm, change: bool) -> None:
        now = timezone.now()
        if change:
            services.product_update(product=obj, changes=_changes(form), now=now)
            return
        created = services.product_create(
            name=obj.name, description=obj.description, active=obj.active, metadata=obj.metadata, now=now
        )
        obj.pk, obj.created_at, obj.updated_at = created.pk, created.created_at, created.updated_at


@admin.register(Price)
class PriceAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "type", "product", "currency", "model", "mode", "billed", "lookup_key", "active")
    list_filter = ("active", "type", "model", "mode", "currency", "duration_unit")
    search_fields = ("=id", "name", "lookup_key", "=product__id", "product__name")
    list_select_related = ("product",)
    readonly_fields = (
        "id",
        "type",
        "product",
        "billed",
        "amount_summary",
        "tiers_table",
        "generated_name",
        "meter_id",
        "metadata",
        "created_at",
        "updated_at",
    )
    fieldsets = (
        (None, {"fields": ("id", "type", "product", "billed", "active", "lookup_key", "meter_id")}),
        ("Amount (immutable)", {"fields": ("amount_summary", "tiers_table")}),
        ("Names", {"fields": ("name", "generated_name", "description")}),
        ("Other", {"fields": ("metadata", "created_at", "updated_at")}),
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # POST /api/v1/prices: the pricing engine validates amounts there

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False  # archive instead: subscriptions and invoices point at prices

    def save_model(self, request: HttpRequest, obj: Price, form: ModelForm, change: bool) -> None:
        services.price_update(price=obj, changes=_changes(form), now=timezone.now())

    @admin.display(description="Billed")
    def billed(self, price: Price) -> str:
        return _duration(price)

    @admin.display(description="Amount")
    def amount_summary(self, price: Price) -> str:
        amount = price.engine_amount
        currency = price.currency
        if isinstance(amount, FixedAmount):
            return (
                f"Fixed, {currency.upper()}: {money_text(amount.unit, currency)} per unit "
                f"(unit {decimal_to_str(amount.unit)}), plus {money_text(amount.flat, currency)} flat "
                f"(flat {amount.flat})"
            )
        if not isinstance(amount, TieredAmount):
            return price.name
        mode = "Graduated (each unit priced by its tier)" if amount.mode == "graduated" else "Volume (total)"
        return f"Tiered, {currency.upper()}: {mode}, {len(amount.tiers)} tier(s)"

    @admin.display(description="Tiers")
    def tiers_table(self, price: Price) -> SafeString | str:
        amount = price.engine_amount
        if not isinstance(amount, TieredAmount):
            return "-"
        currency = price.currency
        rows = []
        lower: str | None = None
        for number, tier in enumerate(amount.tiers, start=1):
            if tier.up_to is not None:
                quantity = f"up to {decimal_to_str(tier.up_to)}"
            else:
                quantity = "any quantity" if lower is None else f"above {lower}"
            rows.append(
                (
                    number,
                    quantity,
                    f"{money_text(tier.unit, currency)} ({decimal_to_str(tier.unit)})",
                    f"{money_text(tier.flat, currency)} ({tier.flat})",
                )
            )
            lower = None if tier.up_to is None else decimal_to_str(tier.up_to)
        body = format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", rows)
        return format_html(
            "<table><thead><tr><th>Tier</th><th>Quantity</th><th>Per unit (minor units)</th>"
            "<th>Flat fee (minor units)</th></tr></thead><tbody>{}</tbody></table>",
            body,
        )

    @admin.display(description="Generated name")
    def generated_name(self, price: Price) -> str:
        try:
            return generate_price_name(price.engine_amount, price.duration_amount, price.duration_unit)
        except PricingError as exc:
            return f"(cannot generate: {exc.message})"


@admin.register(Coupon)
class CouponAdmin(FormattedFields, admin.ModelAdmin):
    money_fields = ("amount_off",)
    list_display = ("id", "name", "discount", "duration", "duration_in_periods", "times_redeemed", "active")
    list_filter = ("active", "duration")
    search_fields = ("=id", "name")
    fields = (
        "id",
        "name",
        "active",
        "discount",
        "duration",
        "duration_in_periods",
        "max_redemptions",
        "times_redeemed",
        "redeem_by",
        "metadata",
        "created_at",
        "updated_at",
    )
    readonly_fields = tuple(field for field in fields if field not in ("name", "active"))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # POST /api/v1/coupons

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Coupon, form: ModelForm, change: bool) -> None:
        services.coupon_update(coupon=obj, changes=_changes(form), now=timezone.now())

    @admin.display(description="Discount")
    def discount(self, coupon: Coupon) -> str:
        if coupon.percent_off is not None:
            return f"{decimal_to_str(coupon.percent_off)}% off"
        if coupon.amount_off is not None:
            return f"{money_text(coupon.amount_off, coupon.currency)} off"
        return "-"


class FeatureAttachmentInline(admin.TabularInline):
    model = FeatureAttachment
    extra = 0
    can_delete = False
    fields = ("id", "product", "price", "value", "limit", "created_at")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Feature)
class FeatureAdmin(admin.ModelAdmin):
    """Read-only here: features and attachments change through the API (`/features`,
    `/feature-attachments`), which drops the cached entitlements."""

    list_display = ("lookup_key", "id", "name", "type", "meter", "active")
    list_filter = ("type", "active")
    search_fields = ("=id", "lookup_key", "name")
    inlines = (FeatureAttachmentInline,)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [f.name for f in Feature._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
