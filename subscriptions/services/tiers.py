"""Tiers: the control plane's tier names and the plan each one subscribes a new tenant to.

A tier's prices are named by lookup key and checked when the tier is written (every key names an
active price; together they make a valid subscription: one currency, one interval, quantities only on
licensed prices) and again when a tenant is onboarded, since prices change in between.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction

from billing_site.errors import Conflict, InvalidRequest
from billing_site.fields import metadata_clean, metadata_merge
from billing_site.locks import LockRank, lock_one
from catalog.models import Price
from customers.models import Customer
from invoicing.models import Invoice
from subscriptions.models import Subscription, Tier, TierItem
from subscriptions.services.lifecycle import ItemSpec, _validate_items, subscription_create
from webhooks.services import object_event_emit

_UPDATABLE = ("name", "description", "trial_days", "billing_mode", "collection_method", "days_until_due", "active")


def tier_snapshot(tier: Tier) -> dict[str, Any]:
    from subscriptions.serializers import TierOutput

    return dict(TierOutput(tier).data)


def tier_items_resolve(items: list[dict[str, Any]], *, param: str = "items") -> list[ItemSpec]:
    """The active prices a tier's items name, as subscription items; a 400 naming the item otherwise."""
    seen: set[str] = set()
    for index, item in enumerate(items):
        if item["lookup_key"] in seen:
            raise InvalidRequest(
                f"lookup_key {item['lookup_key']!r} is on the tier twice.",
                param=f"{param}[{index}].lookup_key",
                code="duplicate_lookup_key",
            )
        seen.add(item["lookup_key"])
    prices = {p.lookup_key: p for p in Price.objects.select_related("meter").filter(lookup_key__in=seen, active=True)}
    specs = []
    for index, item in enumerate(items):
        price = prices.get(item["lookup_key"])
        if price is None:
            raise InvalidRequest(
                f"No active price has lookup_key {item['lookup_key']!r}.",
                param=f"{param}[{index}].lookup_key",
                code="lookup_key_not_found",
            )
        specs.append(ItemSpec(price=price, quantity=item.get("quantity")))
    _validate_items(specs, currency=None, unit=None, amount=None)
    return specs


def _items_write(tier: Tier, items: list[dict[str, Any]]) -> None:
    TierItem.objects.filter(tier=tier).delete()
    TierItem.objects.bulk_create(
        TierItem(tier=tier, lookup_key=item["lookup_key"], quantity=item.get("quantity"), position=index)
        for index, item in enumerate(items)
    )


def _name_conflict(name: str) -> Conflict:
    return Conflict(f"A tier named {name!r} already exists (names ignore case).", code="tier_exists", param="name")


def _save(tier: Tier, **kwargs: Any) -> None:
    try:
        with transaction.atomic():
            tier.save(**kwargs)
    except IntegrityError:  # lost a race for the name: the constraint decided
        raise _name_conflict(tier.name) from None


def tier_create(
    *,
    name: str,
    items: list[dict[str, Any]],
    now: datetime,
    trial_days: int = 0,
    billing_mode: str = Tier.BillingMode.NATIVE,
    collection_method: str = Subscription.CollectionMethod.CHARGE_AUTOMATICALLY,
    days_until_due: int | None = None,
    description: str = "",
    metadata: dict[str, str | None] | None = None,
) -> Tier:
    tier_items_resolve(items)
    with transaction.atomic():
        if Tier.objects.filter(name__iexact=name).exists():
            raise _name_conflict(name)
        tier = Tier(
            name=name,
            description=description,
            trial_days=trial_days,
            billing_mode=billing_mode,
            collection_method=collection_method,
            days_until_due=days_until_due,
            metadata=metadata_clean(metadata or {}),
        )
        _save(tier, force_insert=True)
        _items_write(tier, items)
        object_event_emit(type="tier.created", obj=tier, data=tier_snapshot(tier), now=now, customer_id="")
    return tier


def tier_update(*, tier: Tier, changes: dict[str, Any], now: datetime) -> Tier:
    """A PATCH: `items` replaces the whole list, `metadata` merges, the rest is set."""
    if "items" in changes:
        tier_items_resolve(changes["items"])
    with transaction.atomic():
        locked = lock_one(Tier.objects.filter(pk=tier.pk), LockRank.CATALOG)
        before = tier_snapshot(locked)
        if "name" in changes and Tier.objects.filter(name__iexact=changes["name"]).exclude(pk=locked.pk).exists():
            raise _name_conflict(changes["name"])
        for field in _UPDATABLE:
            if field in changes:
                setattr(locked, field, changes[field])
        if "metadata" in changes:
            locked.metadata = metadata_merge(locked.metadata, changes["metadata"])
        _save(locked)
        if "items" in changes:
            _items_write(locked, changes["items"])
        after = tier_snapshot(locked)
        previous = {key: value for key, value in before.items() if after[key] != value and key != "updated_at"}
        if previous:
            object_event_emit(type="tier.updated", obj=locked, data=after, now=now, previous=previous, customer_id="")
    return locked


def tier_subscribe(*, tier: Tier, customer: Customer, now: datetime, param: str) -> tuple[Subscription, Invoice | None]:
    """Subscribe a new tenant to its tier's plan, in the caller's transaction. A tier that is archived or
    whose prices no longer make a subscription is a 400 on `param` (for onboarding: a billingFailure)."""
    if not tier.active:
        raise InvalidRequest(f"Tier {tier.name!r} is archived.", param=param, code="tier_inactive")
    items = [{"lookup_key": i.lookup_key, "quantity": i.quantity} for i in tier.items.order_by("position")]
    try:
        specs = tier_items_resolve(items)
    except InvalidRequest as exc:
        raise InvalidRequest(
            f"Tier {tier.name!r} cannot be subscribed to: {exc.message}", param=param, code="tier_unavailable"
        ) from None
    return subscription_create(
        customer=customer,
        items=specs,
        now=now,
        trial_end=now + timedelta(days=tier.trial_days) if tier.trial_days else None,
        collection_method=tier.collection_method,
        days_until_due=tier.days_until_due,
        metadata={"tier": tier.name},
    )
