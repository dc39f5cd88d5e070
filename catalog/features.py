"""Features and their attachments to products and prices: the catalog half of entitlements (the customer
half, what a customer may use now, is `subscriptions.entitlements`).

Every change here makes every cached entitlements answer stale (`entitlements_catalog_changed`, after
the commit). Attachments are never edited: detach and attach again.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet

from billing_site.errors import Conflict, InvalidRequest, NotFound
from billing_site.fields import metadata_clean, metadata_merge
from billing_site.locks import LockRank, lock_first
from billing_site.money import decimal_to_str
from billing_site.selectors import apply_filters
from catalog.models import Feature, FeatureAttachment, Price, Product
from customers.entitlements_cache import entitlements_catalog_changed
from metering.models import Meter
from webhooks.services import event_emit

Type = Feature.Type


def feature_snapshot(feature: Feature) -> dict[str, Any]:
    return {
        "id": feature.id,
        "lookup_key": feature.lookup_key,
        "name": feature.name,
        "type": feature.type,
        "meter": feature.meter_id,
        "active": feature.active,
        "metadata": feature.metadata,
    }


def attachment_snapshot(attachment: FeatureAttachment) -> dict[str, Any]:
    return {
        "id": attachment.id,
        "feature": attachment.feature_id,
        "product": attachment.product_id,
        "price": attachment.price_id,
        "value": attachment.value or None,
        "limit": decimal_to_str(attachment.limit) if attachment.limit is not None else None,
    }


def feature_create(
    *,
    lookup_key: str,
    name: str,
    type: str,
    now: datetime,
    meter: str | None = None,
    metadata: dict[str, str | None] | None = None,
) -> Feature:
    meter_row = None
    if type == Type.METERED:
        if not meter:
            raise InvalidRequest("A metered feature names its meter.", code="parameter_missing", param="meter")
        meter_row = Meter.objects.filter(pk=meter).first()
        if meter_row is None:
            raise InvalidRequest(f"No such meter: {meter}", code="resource_missing", param="meter")
    elif meter:
        raise InvalidRequest("Only a metered feature has a meter.", code="parameter_invalid", param="meter")
    if Feature.objects.filter(lookup_key=lookup_key).exists():
        raise Conflict(f"A feature with lookup_key {lookup_key!r} exists.", code="feature_exists", param="lookup_key")
    feature = Feature(
        lookup_key=lookup_key, name=name, type=type, meter=meter_row, metadata=metadata_clean(metadata or {})
    )
    try:
        with transaction.atomic():
            feature.save(force_insert=True)
            event_emit(
                type="feature.created",
                object_type="feature",
                object_id=feature.id,
                data=feature_snapshot(feature),
                now=now,
            )
    except IntegrityError:
        raise Conflict(
            f"A feature with lookup_key {lookup_key!r} exists.", code="feature_exists", param="lookup_key"
        ) from None
    return feature


def feature_update(*, feature: Feature, changes: Mapping[str, Any], now: datetime) -> Feature:
    """PATCH: name, active (false: no longer granted by anything), metadata (merged)."""
    with transaction.atomic():
        locked = lock_first(Feature.objects.filter(pk=feature.pk), LockRank.CATALOG)
        if locked is None:
            raise NotFound(f"No such feature: {feature.pk}", param="id")
        before = feature_snapshot(locked)
        if "name" in changes:
            locked.name = changes["name"]
        if "active" in changes:
            locked.active = bool(changes["active"])
        if "metadata" in changes:
            locked.metadata = metadata_merge(locked.metadata, changes["metadata"])
        after = feature_snapshot(locked)
        previous = {k: v for k, v in before.items() if after[k] != v}
        if previous:
            locked.save()
            event_emit(
                type="feature.updated",
                object_type="feature",
                object_id=locked.id,
                data=after,
                now=now,
                previous_attributes=previous,
            )
            entitlements_catalog_changed()
    return locked


def feature_get(*, feature_id: str) -> Feature:
    feature = Feature.objects.filter(pk=feature_id).select_related("meter").first()
    if feature is None:
        raise NotFound(f"No such feature: {feature_id}", param="id")
    return feature


def feature_list(*, filters: Mapping[str, Any] | None = None) -> QuerySet[Feature]:
    from catalog.filters import FeatureFilter

    return apply_filters(FeatureFilter, filters or {}, Feature.objects.select_related("meter"))


def feature_attach(
    *,
    feature: str,
    now: datetime,
    product: str | None = None,
    price: str | None = None,
    value: str | None = None,
    limit: Decimal | None = None,
) -> FeatureAttachment:
    """Attach a feature to a product (every price of it) or to one price, with its value or limit."""
    row = Feature.objects.filter(pk=feature).first()
    if row is None:
        raise InvalidRequest(f"No such feature: {feature}", code="resource_missing", param="feature")
    if (product is None) == (price is None):
        raise InvalidRequest("Name a product or a price (one of them).", code="parameter_missing", param="product")
    product_row = price_row = None
    if product is not None:
        product_row = Product.objects.filter(pk=product).first()
        if product_row is None:
            raise InvalidRequest(f"No such product: {product}", code="resource_missing", param="product")
    else:
        price_row = Price.objects.filter(pk=price).first()
        if price_row is None:
            raise InvalidRequest(f"No such price: {price}", code="resource_missing", param="price")
    if row.type == Type.STATIC:
        if not value:
            raise InvalidRequest("A static feature's attachment has a value.", code="parameter_missing", param="value")
    elif value:
        raise InvalidRequest(f"A {row.type} feature has no value.", code="parameter_invalid", param="value")
    if limit is not None and row.type != Type.METERED:
        raise InvalidRequest(f"Only a metered feature has a limit; {row.lookup_key} is {row.type}.", param="limit")
    if limit is not None and limit < 0:
        raise InvalidRequest("limit cannot be negative.", code="parameter_invalid", param="limit")
    attachment = FeatureAttachment(
        feature=row, product=product_row, price=price_row, value=value or "", limit=limit, created_at=now
    )
    exists = FeatureAttachment.objects.filter(feature=row).filter(
        Q(product=product_row) if product_row else Q(price=price_row)
    )
    conflict = Conflict(
        f"{row.lookup_key} is already attached to {product or price}; detach it first.",
        code="feature_attachment_exists",
        param="product" if product else "price",
    )
    if exists.exists():
        raise conflict
    try:
        with transaction.atomic():
            attachment.save(force_insert=True)
            event_emit(
                type="feature_attachment.created",
                object_type="feature_attachment",
                object_id=attachment.id,
                data=attachment_snapshot(attachment),
                now=now,
            )
            entitlements_catalog_changed()
    except IntegrityError:
        raise conflict from None
    return attachment


def feature_detach(*, attachment_id: str, now: datetime) -> None:
    with transaction.atomic():
        attachment = lock_first(FeatureAttachment.objects.filter(pk=attachment_id), LockRank.CATALOG)
        if attachment is None:
            raise NotFound(f"No such feature attachment: {attachment_id}", param="id")
        data = attachment_snapshot(attachment)
        attachment.delete()
        event_emit(
            type="feature_attachment.deleted",
            object_type="feature_attachment",
            object_id=attachment_id,
            data=data,
            now=now,
        )
        entitlements_catalog_changed()


def attachment_list(*, filters: Mapping[str, Any] | None = None) -> QuerySet[FeatureAttachment]:
    from catalog.filters import FeatureAttachmentFilter

    return apply_filters(FeatureAttachmentFilter, filters or {}, FeatureAttachment.objects.all())
