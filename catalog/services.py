"""Every write to the catalog (products, prices, coupons). Each runs in one transaction and emits its outbox
event inside it. Business rules live here, not in serializers, so admin actions and other apps get the same
checks as the API; the API's Input serializers only check shapes and types.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, Final

from django.db import IntegrityError, transaction

from billing_site.errors import Conflict, InvalidRequest, NotFound
from billing_site.fields import metadata_clean, metadata_merge
from billing_site.money import UnknownCurrency, decimal_to_str, normalize_currency
from catalog.locks import lock_active_price_with_lookup_key, lock_coupon, lock_price, lock_product
from catalog.models import Coupon, Price, Product
from catalog.pricing import (
    MAX_MINOR,
    Amount,
    PercentageAmount,
    PricingError,
    TieredAmount,
    amount_model,
    amount_to_dict,
    generate_price_name,
    parse_amount,
    validate_amount,
)
from metering.models import Meter
from webhooks.services import object_event_emit

# The longest billing cycle a price may have, per unit: three years, as payment providers allow. It also
# keeps `duration_amount` far inside its column.
MAX_DURATION: Final = {"day": 1095, "week": 156, "month": 36, "year": 3}

PRICE_IMMUTABLE: Final = ("amount", "currency", "duration", "type", "product", "meter")
COUPON_IMMUTABLE: Final = ("percent_off", "amount_off", "currency", "duration", "duration_in_periods")


def pricing_error(exc: PricingError) -> InvalidRequest:
    """The API form of an engine error: its code, and the field path it names ("amount.tiers[1].up_to")."""
    return InvalidRequest(exc.message, code=exc.code, param=exc.param)


def _immutable(field: str, noun: str) -> InvalidRequest:
    return InvalidRequest(f"A {noun}'s {field} cannot change once it is created.", code="immutable", param=field)


def _diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in before.items() if after[key] != value}


# --- Snapshots (what events carry: the fields the API shows, without timestamps) -------------------------


def product_snapshot(product: Product) -> dict[str, Any]:
    return {
        "id": product.id,
        "name": product.name,
        "description": product.description or None,
        "active": product.active,
        "metadata": product.metadata,
    }


def price_snapshot(price: Price) -> dict[str, Any]:
    return {
        "id": price.id,
        "type": price.type,
        "product": price.product_id,
        "duration": {"amount": price.duration_amount, "unit": price.duration_unit},
        "amount": price.amount,
        "name": price.name,
        "description": price.description or None,
        "meter": price.meter_id,
        "lookup_key": price.lookup_key or None,
        "active": price.active,
        "metadata": price.metadata,
    }


def coupon_snapshot(coupon: Coupon) -> dict[str, Any]:
    return {
        "id": coupon.id,
        "name": coupon.name or None,
        "percent_off": None if coupon.percent_off is None else decimal_to_str(coupon.percent_off),
        "amount_off": coupon.amount_off,
        "currency": coupon.currency or None,
        "duration": coupon.duration,
        "duration_in_periods": coupon.duration_in_periods,
        "max_redemptions": coupon.max_redemptions,
        "redeem_by": coupon.redeem_by.isoformat() if coupon.redeem_by else None,
        "times_redeemed": coupon.times_redeemed,
        "active": coupon.active,
        "metadata": coupon.metadata,
    }


# --- Products -----------------------------------------------------------------------------------------


def product_create(
    *,
    name: str,
    now: datetime,
    description: str = "",
    active: bool = True,
    metadata: dict[str, str | None] | None = None,
) -> Product:
    if not name:
        raise InvalidRequest("name is required.", code="parameter_missing", param="name")
    product = Product(name=name, description=description or "", active=active, metadata=metadata_clean(metadata or {}))
    with transaction.atomic():
        product.save(force_insert=True)
        object_event_emit(
            type="product.created",
            obj=product,
            data=product_snapshot(product),
            now=now,
        )
    return product


def _lock_product(product_id: str) -> Product:
    product = lock_product(product_id)
    if product is None:
        raise NotFound(f"No such product: {product_id}", param="id")
    return product


def product_update(*, product: Product, changes: Mapping[str, Any], now: datetime) -> Product:
    """Apply a PATCH: name, description, active (false archives), metadata (merged; null removes a key)."""
    if "name" in changes and not changes["name"]:
        raise InvalidRequest("name cannot be blank.", code="parameter_missing", param="name")
    with transaction.atomic():
        locked = _lock_product(product.id)
        before = product_snapshot(locked)
        if "name" in changes:
            locked.name = changes["name"]
        if "description" in changes:
            locked.description = changes["description"] or ""
        if "active" in changes:
            locked.active = bool(changes["active"])
        if "metadata" in changes:
            locked.metadata = metadata_merge(locked.metadata, changes["metadata"])
        after = product_snapshot(locked)
        previous = _diff(before, after)
        if previous:
            locked.save()
            object_event_emit(type="product.updated", obj=locked, data=after, previous=previous, now=now)
    return locked


# --- Prices -------------------------------------------------------------------------------------------


def _price_amount(amount: Mapping[str, Any] | Amount) -> Amount:
    try:
        if not isinstance(amount, Mapping):
            validate_amount(amount)
            return amount
        return parse_amount(amount)
    except PricingError as exc:
        raise pricing_error(exc) from None


def _check_duration(duration_amount: int, duration_unit: str) -> None:
    if duration_unit not in MAX_DURATION:
        raise InvalidRequest(
            f"duration.unit must be one of {', '.join(MAX_DURATION)}.",
            code="parameter_invalid",
            param="duration.unit",
        )
    if isinstance(duration_amount, bool) or not isinstance(duration_amount, int) or duration_amount < 1:
        raise InvalidRequest(
            "duration.amount must be an integer of at least 1.", code="parameter_invalid", param="duration.amount"
        )
    if duration_amount > MAX_DURATION[duration_unit]:
        raise InvalidRequest(
            f"A billing cycle is at most three years: {MAX_DURATION[duration_unit]} {duration_unit}s.",
            code="duration_too_long",
            param="duration.amount",
        )


def _price_product(type: str, product_id: str | None) -> Product | None:
    """The product a new price belongs to, locked so it cannot be archived while the price is added."""
    if type == Price.Type.STANDALONE:
        if product_id:
            raise InvalidRequest(
                "A standalone price cannot belong to a product; use type 'product'.",
                code="product_not_allowed",
                param="product",
            )
        return None
    if type != Price.Type.PRODUCT:
        raise InvalidRequest("type must be 'standalone' or 'product'.", code="parameter_invalid", param="type")
    if not product_id:
        raise InvalidRequest("A price of type 'product' requires a product.", code="parameter_missing", param="product")
    product = lock_product(product_id)
    if product is None:
        raise InvalidRequest(f"No such product: {product_id}", code="resource_missing", param="product")
    if not product.active:
        raise InvalidRequest(
            f"Product {product_id} is archived; reactivate it before adding prices.",
            code="product_inactive",
            param="product",
        )
    return product


def _lookup_key_conflict(lookup_key: str, holder: Price | None) -> Conflict:
    if holder is None:
        return Conflict(
            f"Another active price already has lookup_key '{lookup_key}'.", code="lookup_key_exists", param="lookup_key"
        )
    return Conflict(
        f"The active price {holder.id} already has lookup_key '{lookup_key}'. Archive it first, or create the new "
        f"price with transfer_lookup_key: true.",
        code="lookup_key_exists",
        param="lookup_key",
        extra={"price": holder.id},
    )


def _active_holder(lookup_key: str, *, exclude: str | None = None) -> Price | None:
    queryset = Price.objects.filter(lookup_key=lookup_key, active=True)
    if exclude is not None:
        queryset = queryset.exclude(pk=exclude)
    return queryset.first()


def _save_price(price: Price, **kwargs: Any) -> None:
    """Save; the partial unique index on active lookup keys decides a race the pre-check did not see."""
    try:
        with transaction.atomic():
            price.save(**kwargs)
    except IntegrityError:
        if price.active and price.lookup_key:
            holder = _active_holder(price.lookup_key, exclude=price.pk)
            if holder is not None:
                raise _lookup_key_conflict(price.lookup_key, holder) from None
        raise


def _price_meter(meter_id: str | None) -> Meter | None:
    if meter_id is None:
        return None
    meter = Meter.objects.filter(pk=meter_id).first()
    if meter is None:
        raise InvalidRequest(f"No such meter: {meter_id}", code="meter_not_found", param="meter")
    if not meter.active:
        raise InvalidRequest(f"Meter {meter_id} is archived.", code="meter_inactive", param="meter")
    return meter


def price_create(
    *,
    type: str,
    duration_amount: int,
    duration_unit: str,
    amount: Mapping[str, Any] | Amount,
    now: datetime,
    product_id: str | None = None,
    name: str | None = None,
    description: str | None = None,
    meter_id: str | None = None,
    lookup_key: str | None = None,
    transfer_lookup_key: bool = False,
    active: bool = True,
    metadata: dict[str, str | None] | None = None,
) -> Price:
    """Create a price. `amount` is the API's JSON shape or an engine dataclass; either way the engine
    validates it, and a bad field is a 400 naming its path. With `transfer_lookup_key`, the active price
    holding `lookup_key` gives it up in the same transaction (it stays active, without a key)."""
    parsed = _price_amount(amount)
    _check_duration(duration_amount, duration_unit)
    meter = _price_meter(meter_id)
    if isinstance(parsed, PercentageAmount) and parsed.needs_events and meter is None:
        # A fee per event, per-event bounds or free events are charged on events: only usage has them.
        raise InvalidRequest(
            "A percentage price with a fixed fee, per-event bounds or free events is priced from usage "
            "events: give it a meter.",
            code="meter_required",
            param="meter",
        )
    lookup_key = lookup_key or ""
    price = Price(
        type=type,
        duration_amount=duration_amount,
        duration_unit=duration_unit,
        amount=amount_to_dict(parsed),
        currency=parsed.currency,
        model=amount_model(parsed),
        mode=parsed.mode if isinstance(parsed, TieredAmount) else "",
        name=name or generate_price_name(parsed, duration_amount, duration_unit),
        description=description or "",
        meter=meter,
        lookup_key=lookup_key,
        active=active,
        metadata=metadata_clean(metadata or {}),
    )
    with transaction.atomic():
        price.product = _price_product(type, product_id)
        if lookup_key and active:
            holder = lock_active_price_with_lookup_key(lookup_key)
            if holder is not None:
                if not transfer_lookup_key:
                    raise _lookup_key_conflict(lookup_key, holder)
                before = price_snapshot(holder)
                holder.lookup_key = ""
                holder.save(update_fields=["lookup_key", "updated_at"])
                object_event_emit(
                    type="price.updated",
                    obj=holder,
                    data=price_snapshot(holder),
                    previous=_diff(before, price_snapshot(holder)),
                    now=now,
                )
        _save_price(price, force_insert=True)
        object_event_emit(type="price.created", obj=price, data=price_snapshot(price), now=now)
    return price


def _lock_price(price_id: str) -> Price:
    price = lock_price(price_id)
    if price is None:
        raise NotFound(f"No such price: {price_id}", param="id")
    return price


def price_update(*, price: Price, changes: Mapping[str, Any], now: datetime) -> Price:
    """Apply a PATCH. Only name (null regenerates it), description, lookup_key, active and metadata change;
    the amount, currency, duration, type, product and meter are fixed for the life of the price."""
    for field in PRICE_IMMUTABLE:
        if field in changes:
            raise _immutable(field, "price")
    with transaction.atomic():
        locked = _lock_price(price.id)
        before = price_snapshot(locked)
        if "name" in changes:
            locked.name = changes["name"] or generate_price_name(
                locked.engine_amount, locked.duration_amount, locked.duration_unit
            )
        if "description" in changes:
            locked.description = changes["description"] or ""
        if "lookup_key" in changes:
            locked.lookup_key = changes["lookup_key"] or ""
        if "active" in changes:
            locked.active = bool(changes["active"])
        if "metadata" in changes:
            locked.metadata = metadata_merge(locked.metadata, changes["metadata"])
        after = price_snapshot(locked)
        previous = _diff(before, after)
        if not previous:
            return locked
        if locked.active and locked.lookup_key and ("lookup_key" in previous or "active" in previous):
            holder = _active_holder(locked.lookup_key, exclude=locked.pk)
            if holder is not None:
                raise _lookup_key_conflict(locked.lookup_key, holder)
        _save_price(locked)
        object_event_emit(type="price.updated", obj=locked, data=after, previous=previous, now=now)
    return locked


# --- Coupons ------------------------------------------------------------------------------------------


def _check_redeem_by(redeem_by: datetime | None, now: datetime) -> None:
    if redeem_by is not None and redeem_by <= now:
        raise InvalidRequest("redeem_by must be in the future.", code="redeem_by_in_past", param="redeem_by")


def _check_max_redemptions(max_redemptions: int | None, times_redeemed: int = 0) -> None:
    if max_redemptions is None:
        return
    if isinstance(max_redemptions, bool) or not isinstance(max_redemptions, int) or max_redemptions < 1:
        raise InvalidRequest("max_redemptions must be at least 1.", code="parameter_invalid", param="max_redemptions")
    if max_redemptions < times_redeemed:
        raise InvalidRequest(
            f"max_redemptions cannot be below the {times_redeemed} redemptions already made.",
            code="parameter_invalid",
            param="max_redemptions",
        )


def _coupon_discount(
    percent_off: Decimal | None, amount_off: int | None, currency: str
) -> tuple[Decimal | None, int | None, str]:
    if percent_off is not None and amount_off is not None:
        raise InvalidRequest(
            "Pass either percent_off or amount_off, not both.", code="parameters_exclusive", param="amount_off"
        )
    if percent_off is None and amount_off is None:
        raise InvalidRequest(
            "A coupon needs percent_off, or amount_off with currency.", code="parameter_missing", param="percent_off"
        )
    if percent_off is not None:
        if currency:
            raise InvalidRequest(
                "currency goes with amount_off; a percent_off coupon applies in every currency.",
                code="parameters_exclusive",
                param="currency",
            )
        exponent = percent_off.as_tuple().exponent
        if not percent_off.is_finite() or not 0 < percent_off <= 100 or (isinstance(exponent, int) and exponent < -4):
            raise InvalidRequest(
                "percent_off must be greater than 0 and at most 100, with at most 4 decimal places.",
                code="parameter_invalid",
                param="percent_off",
            )
        return percent_off, None, ""
    assert amount_off is not None
    if isinstance(amount_off, bool) or not isinstance(amount_off, int) or not 0 < amount_off <= MAX_MINOR:
        raise InvalidRequest(
            "amount_off must be a positive integer in minor units.", code="parameter_invalid", param="amount_off"
        )
    if not currency:
        raise InvalidRequest("amount_off requires a currency.", code="parameter_missing", param="currency")
    try:
        return None, amount_off, normalize_currency(currency)
    except UnknownCurrency:
        raise InvalidRequest(f"Unknown currency: {currency!r}.", code="unknown_currency", param="currency") from None


def coupon_create(
    *,
    duration: str,
    now: datetime,
    name: str = "",
    percent_off: Decimal | None = None,
    amount_off: int | None = None,
    currency: str = "",
    duration_in_periods: int | None = None,
    max_redemptions: int | None = None,
    redeem_by: datetime | None = None,
    active: bool = True,
    metadata: dict[str, str | None] | None = None,
) -> Coupon:
    percent_off, amount_off, currency = _coupon_discount(percent_off, amount_off, currency or "")
    if duration not in Coupon.Duration.values:
        raise InvalidRequest("duration must be once, repeating or forever.", code="parameter_invalid", param="duration")
    if duration == Coupon.Duration.REPEATING:
        if duration_in_periods is None:
            raise InvalidRequest(
                "A repeating coupon needs duration_in_periods.", code="parameter_missing", param="duration_in_periods"
            )
        if isinstance(duration_in_periods, bool) or not isinstance(duration_in_periods, int) or duration_in_periods < 1:
            raise InvalidRequest(
                "duration_in_periods must be at least 1.", code="parameter_invalid", param="duration_in_periods"
            )
    elif duration_in_periods is not None:
        raise InvalidRequest(
            f"duration_in_periods only applies to repeating coupons, not '{duration}'.",
            code="parameter_not_allowed",
            param="duration_in_periods",
        )
    _check_max_redemptions(max_redemptions)
    _check_redeem_by(redeem_by, now)
    coupon = Coupon(
        name=name or "",
        percent_off=percent_off,
        amount_off=amount_off,
        currency=currency,
        duration=duration,
        duration_in_periods=duration_in_periods,
        max_redemptions=max_redemptions,
        redeem_by=redeem_by,
        active=active,
        metadata=metadata_clean(metadata or {}),
    )
    with transaction.atomic():
        coupon.save(force_insert=True)
        object_event_emit(type="coupon.created", obj=coupon, data=coupon_snapshot(coupon), now=now)
    return coupon


def coupon_update(*, coupon: Coupon, changes: Mapping[str, Any], now: datetime) -> Coupon:
    """Apply a PATCH: name, active, metadata, max_redemptions and redeem_by (null removes the limit).
    The discount itself never changes: subscriptions that redeemed the coupon were sold those terms."""
    for field in COUPON_IMMUTABLE:
        if field in changes:
            raise _immutable(field, "coupon")
    with transaction.atomic():
        locked = lock_coupon(coupon.pk)
        if locked is None:
            raise NotFound(f"No such coupon: {coupon.pk}", param="id")
        before = coupon_snapshot(locked)
        if "name" in changes:
            locked.name = changes["name"] or ""
        if "active" in changes:
            locked.active = bool(changes["active"])
        if "metadata" in changes:
            locked.metadata = metadata_merge(locked.metadata, changes["metadata"])
        if "max_redemptions" in changes:
            _check_max_redemptions(changes["max_redemptions"], locked.times_redeemed)
            locked.max_redemptions = changes["max_redemptions"]
        if "redeem_by" in changes:
            _check_redeem_by(changes["redeem_by"], now)
            locked.redeem_by = changes["redeem_by"]
        after = coupon_snapshot(locked)
        previous = _diff(before, after)
        if previous:
            locked.save()
            object_event_emit(type="coupon.updated", obj=locked, data=after, previous=previous, now=now)
    return locked
