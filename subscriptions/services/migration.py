"""Plan migration: move every live subscription on one price to another, as one operator action.

`when="now"` changes each subscription through the lifecycle's own change path (`subscription_change`,
with prorations for licensed prices), one subscription per transaction. `when="next_renewal"` schedules a
`SubscriptionPriceMigration` per item, which renewal applies at the item's period end (the old item bills
its last period's usage in arrears, the new one is billed in advance from the boundary; the preview shows
it). A dry run lists what would change and writes nothing. Running the same migration again changes
nothing more: moved items are no longer on the old price, and an item holds at most one pending move (a
unique constraint, so two concurrent runs cannot both schedule it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction

from billing_site.errors import ApiError, Conflict, InvalidRequest
from billing_site.locks import LockRank, lock_rows
from catalog.models import Price
from subscriptions.models import PriceMigration, Subscription, SubscriptionItem, SubscriptionPriceMigration
from subscriptions.services.lifecycle import ItemSpec, live_items, subscription_change
from subscriptions.services.status import LIVE

When = PriceMigration.When


@dataclass
class MigrationRow:
    subscription: str
    item: str
    quantity: str | None
    effective_at: datetime
    status: str  # would_migrate | would_schedule | migrated | scheduled | already_scheduled | skipped | failed
    message: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "subscription": self.subscription,
            "item": self.item,
            "quantity": self.quantity,
            "effective_at": self.effective_at,
            "status": self.status,
            "message": self.message or None,
        }


@dataclass
class MigrationResult:
    migration: PriceMigration | None
    from_price: str
    to_price: str
    when: str
    dry_run: bool
    rows: list[MigrationRow]

    def as_dict(self) -> dict[str, Any]:
        return {
            "object": "price_migration",
            "id": self.migration.id if self.migration else None,
            "from_price": self.from_price,
            "to_price": self.to_price,
            "when": self.when,
            "dry_run": self.dry_run,
            "subscriptions": [row.as_dict() for row in self.rows],
        }


def _check_prices(from_price: Price, to_price: Price) -> None:
    def refuse(message: str, code: str) -> InvalidRequest:
        return InvalidRequest(message, param="to_price", code=code)

    if to_price.pk == from_price.pk:
        raise refuse("to_price is the price being migrated from.", "same_price")
    if not to_price.active:
        raise refuse(f"Price {to_price.id} is archived.", "price_inactive")
    if to_price.currency != from_price.currency:
        raise refuse(
            f"{to_price.id} is in {to_price.currency.upper()}, {from_price.id} in {from_price.currency.upper()}.",
            "currency_mismatch",
        )
    if (to_price.duration_unit, to_price.duration_amount) != (from_price.duration_unit, from_price.duration_amount):
        raise refuse(f"{to_price.id} bills on another interval than {from_price.id}.", "interval_mismatch")
    if (to_price.meter_id is None) != (from_price.meter_id is None):
        raise refuse("A licensed price migrates to a licensed price, a metered one to a metered one.", "usage_type")


def _candidates(from_price: Price) -> list[SubscriptionItem]:
    return list(
        SubscriptionItem.objects.filter(price=from_price, removed_at__isnull=True, subscription__status__in=LIVE)
        .select_related("subscription")
        .order_by("subscription_id", "id")
    )


def _quantity(item: SubscriptionItem) -> str | None:
    return None if item.quantity is None else format(item.quantity.normalize(), "f")


def price_migrate(*, from_price: Price, to_price: Price, when: str, dry_run: bool, now: datetime) -> MigrationResult:
    """Move every live subscription item on `from_price` to `to_price`, now or at its next renewal."""
    if when not in When.values:
        raise InvalidRequest(f"when must be one of {', '.join(When.values)}.", param="when", code="parameter_invalid")
    _check_prices(from_price, to_price)
    items = _candidates(from_price)
    has_new = set(
        SubscriptionItem.objects.filter(
            subscription_id__in=[i.subscription_id for i in items], price=to_price, removed_at__isnull=True
        ).values_list("subscription_id", flat=True)
    )
    scheduled = set(
        SubscriptionPriceMigration.objects.filter(
            item__in=items, status=SubscriptionPriceMigration.Status.PENDING
        ).values_list("item_id", flat=True)
    )
    rows: list[MigrationRow] = []
    for item in items:
        sub = item.subscription
        effective = now if when == When.NOW else sub.current_period_end
        row = MigrationRow(sub.id, item.id, _quantity(item), effective_at=effective, status="")
        if sub.id in has_new:
            row.status, row.message = "skipped", f"The subscription already has {to_price.id}."
        elif item.id in scheduled:
            row.status = "already_scheduled"
        else:
            row.status = ("would_migrate" if when == When.NOW else "would_schedule") if dry_run else ""
        rows.append(row)
    result = MigrationResult(None, from_price.id, to_price.id, when, dry_run, rows)
    todo = [(row, item) for row, item in zip(rows, items, strict=True) if row.status == ""]
    if dry_run or not todo:
        return result
    with transaction.atomic():
        result.migration = PriceMigration.objects.create(from_price=from_price, to_price=to_price, when=when)
    if when == When.NEXT_RENEWAL:
        _schedule(result.migration, todo, now=now)
    else:
        _migrate_now(result.migration, todo, now=now)
    return result


def _schedule(migration: PriceMigration, todo: list[tuple[MigrationRow, SubscriptionItem]], *, now: datetime) -> None:
    with transaction.atomic():
        # Under the subscriptions' locks, so a renewal cannot cross the boundary in between: the move is due
        # at the period end it is read at.
        subs = {
            s.pk: s
            for s in lock_rows(
                Subscription.objects.filter(pk__in={item.subscription_id for _, item in todo}), LockRank.SUBSCRIPTION
            )
        }
        entries = []
        for row, item in todo:
            sub = subs[item.subscription_id]
            if sub.status not in LIVE:
                row.status = "skipped"
                continue
            row.effective_at, row.status = sub.current_period_end, "scheduled"
            entries.append(
                SubscriptionPriceMigration(
                    migration=migration,
                    subscription=sub,
                    item=item,
                    to_price=migration.to_price,
                    effective_at=sub.current_period_end,
                )
            )
        try:
            with transaction.atomic():
                SubscriptionPriceMigration.objects.bulk_create(entries)
        except IntegrityError:
            raise Conflict(
                "Another migration scheduled some of these items at the same time; run it again.",
                code="migration_conflict",
            ) from None


def _migrate_now(
    migration: PriceMigration, todo: list[tuple[MigrationRow, SubscriptionItem]], *, now: datetime
) -> None:
    for row, item in todo:
        sub = item.subscription
        try:
            with transaction.atomic():
                current = live_items(sub)
                if item.id not in {i.id for i in current}:
                    row.status = "skipped"
                    continue
                specs = [
                    ItemSpec(
                        price=migration.to_price if i.id == item.id else i.price,
                        quantity=i.quantity,
                        minimum_amount=i.minimum_amount,
                    )
                    for i in current
                ]
                subscription_change(subscription=sub, items=specs, proration_behavior="create_prorations", now=now)
                SubscriptionPriceMigration.objects.create(
                    migration=migration,
                    subscription=sub,
                    item=item,
                    to_price=migration.to_price,
                    effective_at=now,
                    status=SubscriptionPriceMigration.Status.APPLIED,
                    applied_at=now,
                )
                row.status = "migrated"
        except ApiError as exc:
            row.status, row.message = "failed", exc.message
