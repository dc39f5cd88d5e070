"""The subscription lifecycle and the invoices it produces: create, cancel (now or at period end),
reactivate, change items, and end.

Concurrency: a subscription is changed only under its row lock, taken after its customer's
(`subscriptions.locks.lock_subscription`; the one order is in `billing_site.locks`); renewal claims
subscriptions with SKIP LOCKED, and the unique constraint on (subscription, cycle_period_start) makes a
second invoice for a period impossible even if two workers or a re-run got past the lock. Status changes go
through `subscriptions.services.status.subscription_status_change`; ending goes through `subscription_end`,
which bills what is still owed (usage up to the end, prorations when asked), whoever ends it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q

from billing_site.errors import Conflict, InvalidRequest
from catalog.models import Coupon, Price
from catalog.pricing import quote
from customers.locks import lock_customer
from customers.models import Customer
from invoicing.drafts import DraftLine, draft_reset_totals
from invoicing.models import Invoice, InvoiceLine, PendingInvoiceItem
from subscriptions import periods
from subscriptions.locks import lock_subscription
from subscriptions.models import Subscription, SubscriptionItem
from subscriptions.periods import Period
from subscriptions.progressive_ingest import progressive_flag_drop
from subscriptions.proration import ProrationItem, proration_lines, remaining_fraction
from subscriptions.services import builder, progressive
from subscriptions.services.builder import (
    SubscriptionInvoiceWriter,
    draft_for_cycle,
    draft_save,
    new_draft,
    subscription_draft_finish,
    zone_of,
)
from subscriptions.services.context import BillingContext
from subscriptions.services.status import LIVE, subscription_event_emit, subscription_status_change

logger = logging.getLogger(__name__)

Status = Subscription.Status
Reason = Invoice.BillingReason
__all__ = ["LIVE"]


@dataclass(frozen=True)
class ItemSpec:
    price: Price
    quantity: Decimal | None
    minimum_amount: int | None = None  # the item's minimum spend per period, minor units


# Items in the order they were given: ids are random within a millisecond, so they cannot break the tie
# between items added at the same instant (and lines would come out in a different order every time).
ITEM_ORDER = ("added_at", "created_at", "id")


def live_items(sub: Subscription) -> list[SubscriptionItem]:
    return [i for i in sub.items.select_related("price__meter").order_by(*ITEM_ORDER) if i.removed_at is None]


def _period_of(sub: Subscription) -> Period:
    return Period(sub.current_period_start, sub.current_period_end)


def _next_period(sub: Subscription, period: Period) -> Period:
    anchor, unit, amount = sub.billing_cycle_anchor, sub.interval_unit, sub.interval_amount
    return periods.next_period(anchor, unit, amount, period, tz=zone_of(sub))


def _billing_cycle(sub: Subscription, period: Period) -> Period:
    """The whole cycle `period` belongs to: itself, except for a partial first period (a start between two
    anchor boundaries), which was billed as a fraction of the cycle it ends. Prorating against the cycle
    keeps credits and charges at the price's rate per second; prorating against the short period would
    credit a full period's price for part of it."""
    return builder.billing_cycle(sub, period)


def _first_period(
    anchor: datetime, unit: str, amount: int, start: datetime, tz: str = "UTC"
) -> tuple[Period, Fraction | None]:
    """The first billed period from `start` to the next anchor boundary, and the fraction of a full
    period it is (None when `start` is itself a boundary): a start between two boundaries bills a
    partial first period, prorated by the second."""
    full = periods.period_containing(anchor, unit, amount, start, tz=tz)
    if full.start == start:
        return full, None
    return Period(start, full.end), remaining_fraction(full, start)


def _check_customer_currency(customer: Customer, specs: list[ItemSpec]) -> None:
    """A customer billed in one currency (its `currency`, once set) is never sold a price in another."""
    if not customer.currency:
        return
    for index, spec in enumerate(specs):
        if spec.price.currency != customer.currency:
            raise InvalidRequest(
                f"Customer {customer.id} is billed in {customer.currency.upper()}; {spec.price.id} is in "
                f"{spec.price.currency.upper()}.",
                param=f"items[{index}].price",
                code="currency_mismatch",
            )


def _check_minimum(value: object, param: str) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 2**63 - 1:
        raise InvalidRequest(
            "A minimum spend is a positive integer amount in minor units.", param=param, code="parameter_invalid"
        )


def _validate_items(
    specs: list[ItemSpec],
    *,
    currency: str | None,
    unit: str | None,
    amount: int | None,
    kept: frozenset[str] = frozenset(),
) -> None:
    """`kept`: prices already on the subscription. Archiving a price stops new sales, not the subscriptions
    that have it, so a change may keep (or requantify) an archived price but never add one."""
    if not specs:
        raise InvalidRequest("A subscription needs at least one item.", param="items", code="parameter_missing")
    seen: set[str] = set()
    for index, spec in enumerate(specs):
        param = f"items[{index}]"
        price = spec.price
        if not price.active and price.id not in kept:
            raise InvalidRequest(f"Price {price.id} is archived.", param=f"{param}.price", code="price_inactive")
        if price.id in seen:
            raise InvalidRequest(
                f"Price {price.id} is on the subscription twice.", param=f"{param}.price", code="duplicate_price"
            )
        seen.add(price.id)
        _check_minimum(spec.minimum_amount, f"{param}.minimum_amount")
        if price.meter_id is not None and spec.quantity is not None:
            raise InvalidRequest(
                "A metered price takes its quantity from usage; do not send one.",
                param=f"{param}.quantity",
                code="quantity_not_allowed",
            )
        if currency is not None and price.currency != currency:
            raise InvalidRequest(
                f"Every item must be in {currency.upper()}; {price.id} is in {price.currency.upper()}.",
                param=f"{param}.price",
                code="currency_mismatch",
            )
        if unit is not None and (price.duration_unit, price.duration_amount) != (unit, amount):
            raise InvalidRequest(
                f"Every item must bill every {amount} {unit}(s); {price.id} bills every {price.duration_amount} "
                f"{price.duration_unit}(s).",
                param=f"{param}.price",
                code="interval_mismatch",
            )
        currency = currency or price.currency
        unit, amount = unit or price.duration_unit, amount or price.duration_amount


def _redeem_coupon(coupon: Coupon, *, currency: str, now: datetime) -> int | None:
    if not coupon.active:
        raise InvalidRequest(f"Coupon {coupon.id} is not active.", param="coupon", code="coupon_inactive")
    if coupon.redeem_by is not None and coupon.redeem_by <= now:
        raise InvalidRequest(f"Coupon {coupon.id} expired.", param="coupon", code="coupon_expired")
    if coupon.amount_off is not None and coupon.currency != currency:
        raise InvalidRequest(
            "The coupon's currency differs from the subscription's.", param="coupon", code="currency_mismatch"
        )
    # Compare-and-set against max_redemptions: two concurrent redemptions of the last slot cannot both win.
    redeemed = (
        Coupon.objects.filter(pk=coupon.pk)
        .filter(Q(max_redemptions__isnull=True) | Q(times_redeemed__lt=F("max_redemptions")))
        .update(times_redeemed=F("times_redeemed") + 1)
    )
    if not redeemed:
        raise Conflict(f"Coupon {coupon.id} has reached its max_redemptions.", param="coupon", code="coupon_exhausted")
    return {"once": 1, "repeating": coupon.duration_in_periods, "forever": None}[coupon.duration]


def subscription_create(
    *,
    customer: Customer,
    items: list[ItemSpec],
    now: datetime,
    start_date: datetime | None = None,
    trial_end: datetime | None = None,
    billing_cycle_anchor: datetime | None = None,
    collection_method: str = Subscription.CollectionMethod.CHARGE_AUTOMATICALLY,
    days_until_due: int | None = None,
    coupon: Coupon | None = None,
    minimum_amount: int | None = None,
    progressive_billing_thresholds: list[int] | None = None,
    metadata: dict[str, str] | None = None,
) -> tuple[Subscription, Invoice | None]:
    """Start a subscription. Without a trial the first invoice (licensed items in advance) is issued at
    once; with one, the first period starts at trial end and the trial-end job issues it."""
    _validate_items(items, currency=None, unit=None, amount=None)
    _check_minimum(minimum_amount, "minimum_amount")
    thresholds = progressive.thresholds_clean(progressive_billing_thresholds)
    first = items[0].price
    start = start_date or now
    if start > now + timedelta(minutes=5):
        raise InvalidRequest("start_date cannot be in the future.", param="start_date")
    if trial_end is not None and trial_end <= start:
        raise InvalidRequest("trial_end must be after the start.", param="trial_end")
    if collection_method == Subscription.CollectionMethod.SEND_INVOICE and days_until_due is None:
        days_until_due = settings.INVOICE_DAYS_UNTIL_DUE
    with transaction.atomic():
        locked = lock_customer(customer.pk)
        if locked.status == Customer.Status.DELETED:
            raise InvalidRequest(f"Customer {customer.id} is deleted.", param="customer", code="customer_deleted")
        _check_customer_currency(locked, items)
        zone = locked.timezone or "UTC"
        anchor = billing_cycle_anchor or trial_end or start
        # A customer with a time zone has calendar periods: they start at local midnight of the anchor day
        # (an explicit anchor is the operator's own instant and is kept).
        calendar = bool(locked.timezone) and billing_cycle_anchor is None
        if calendar:
            anchor = periods.start_of_local_day(anchor, zone)
        coupon_periods = _redeem_coupon(coupon, currency=first.currency, now=now) if coupon else None
        if trial_end is not None:
            period, fraction = Period(start, trial_end), None
            status = Status.TRIALING
        elif calendar:
            # The first period is the whole local day's period: the day it starts on is billed as a day.
            period, fraction = _first_period(anchor, first.duration_unit, first.duration_amount, anchor, zone)
            status = Status.ACTIVE
        else:
            period, fraction = _first_period(anchor, first.duration_unit, first.duration_amount, start, zone)
            status = Status.ACTIVE
        sub = Subscription.objects.create(
            customer=locked,
            status=status,
            currency=first.currency,
            interval_unit=first.duration_unit,
            interval_amount=first.duration_amount,
            start_date=start,
            billing_cycle_anchor=anchor,
            timezone=locked.timezone,
            current_period_start=period.start,
            current_period_end=period.end,
            trial_start=start if trial_end else None,
            trial_end=trial_end,
            collection_method=collection_method,
            days_until_due=days_until_due,
            coupon=coupon,
            coupon_periods_remaining=coupon_periods,
            minimum_amount=minimum_amount,
            progressive_billing_thresholds=thresholds,
            metadata=metadata or {},
        )
        if thresholds:  # ingestion enqueues its progressive evaluation from now on (after our commit)
            progressive_flag_drop(locked.pk)
        for spec in items:
            quantity = None if spec.price.meter_id else (spec.quantity if spec.quantity is not None else Decimal(1))
            SubscriptionItem.objects.create(
                subscription=sub,
                price=spec.price,
                quantity=quantity,
                added_at=start,
                minimum_amount=spec.minimum_amount,
            )
        subscription_event_emit(sub, "subscription.created", now=now)
        invoice = None
        if status == Status.ACTIVE:
            ctx = BillingContext(now=now)
            draft = draft_for_cycle(
                sub,
                now=now,
                ended=None,
                advance=period,
                reason=Reason.SUBSCRIPTION_CREATE,
                proration_fraction=fraction,
                ctx=ctx,
            )
            invoice = draft_save(sub, draft, now=now, ctx=ctx)
    return sub, invoice


def _lock(sub: Subscription) -> Subscription:
    return lock_subscription(sub.pk, customer_id=sub.customer_id)


def subscription_end(
    sub: Subscription,
    *,
    at: datetime,
    now: datetime,
    prorate: bool = False,
    ctx: BillingContext | None = None,
    writer: SubscriptionInvoiceWriter | None = None,
    reason: str = Subscription.CancellationReason.REQUESTED,
) -> Invoice | None:
    """End a live, locked subscription at `at` and bill what is still owed, whoever ends it (a cancel now,
    a cancellation at period end, dunning, offboarding): the metered usage of the current period up to
    `at`, pending prorations, late usage of earlier periods, and (with `prorate`) a credit for the unused
    licensed time. A trial's usage is never billed. With `writer` (renewal's batch) the invoice and the
    change go out in its flush; otherwise they are written now, in the caller's transaction."""
    ctx = ctx or (writer.ctx if writer is not None else BillingContext(now=now))
    period = _period_of(sub)
    at = min(max(at, period.start), period.end)
    ended = None if sub.status == Status.TRIALING else period
    draft = draft_for_cycle(
        sub, now=now, ended=ended, advance=None, reason=Reason.SUBSCRIPTION_CANCEL, usage_until=at, ctx=ctx
    )
    if prorate and sub.status != Status.TRIALING and period.start <= at < period.end:
        licensed = [i for i in ctx.live_items(sub) if i.price.meter_id is None]
        old = [_proration_item(i, _charged(licensed, at)) for i in licensed]
        for line in proration_lines(old, [], _billing_cycle(sub, period), at):
            draft.lines.append(_proration_draft_line(line))
        draft = subscription_draft_finish(draft_reset_totals(draft), sub, ctx=ctx)
    fields: dict[str, Any] = {"ended_at": at, "cancel_at_period_end": False, "cancellation_reason": reason}
    if sub.canceled_at is None:
        fields["canceled_at"] = now
    own_writer = writer is None
    writer = writer or SubscriptionInvoiceWriter(now=now, ctx=ctx)
    invoice = writer.add_for(sub, draft) if draft.lines else None
    subscription_status_change(
        subscription=sub,
        to=Status.CANCELED,
        now=now,
        fields=fields,
        writer=writer,
        items=ctx.items(sub),
    )
    if own_writer:
        writer.flush()
    return invoice


def subscription_cancel(
    *,
    subscription: Subscription,
    at_period_end: bool,
    prorate: bool,
    now: datetime,
    reason: str = Subscription.CancellationReason.REQUESTED,
) -> tuple[Subscription, Invoice | None]:
    with transaction.atomic():
        sub = _lock(subscription)
        if sub.status == Status.CANCELED:
            raise Conflict(f"Subscription {sub.id} is already canceled.", code="subscription_canceled")
        if at_period_end:
            if sub.cancel_at_period_end:
                raise Conflict(
                    f"Subscription {sub.id} is already set to cancel at period end.", code="subscription_cancel_pending"
                )
            sub.cancel_at_period_end = True
            sub.canceled_at = now
            sub.save(update_fields=["cancel_at_period_end", "canceled_at", "updated_at"])
            subscription_event_emit(sub, "subscription.updated", now=now, previous={"cancel_at_period_end": False})
            return sub, None
        invoice = subscription_end(sub, at=now, now=now, prorate=prorate, reason=reason)
        sub.refresh_from_db()
    return sub, invoice


def subscription_reactivate(*, subscription: Subscription, now: datetime) -> Subscription:
    with transaction.atomic():
        sub = _lock(subscription)
        if sub.status == Status.CANCELED:
            raise Conflict(f"Subscription {sub.id} has ended and cannot be reactivated.", code="subscription_canceled")
        if not sub.cancel_at_period_end:
            raise Conflict(f"Subscription {sub.id} has no pending cancellation.", code="no_pending_cancellation")
        sub.cancel_at_period_end = False
        sub.canceled_at = None
        sub.save(update_fields=["cancel_at_period_end", "canceled_at", "updated_at"])
        subscription_event_emit(sub, "subscription.updated", now=now, previous={"cancel_at_period_end": True})
    return sub


def _charged(items: list[SubscriptionItem], at: datetime) -> dict[str, tuple[int, Period]]:
    """What each licensed item's line covering `at` charged (amount less its discount), with its period:
    the base of an unused-time credit. Void invoices charged nothing."""
    rows = (
        InvoiceLine.objects.filter(
            subscription_item_id__in=[i.pk for i in items],
            kind=InvoiceLine.Kind.FIXED,
            period_start__lte=at,
            period_end__gt=at,
        )
        .exclude(invoice__status=Invoice.Status.VOID)
        .order_by("pk")
        .values_list("subscription_item_id", "amount", "discount_amount", "period_start", "period_end")
    )
    return {item_id: (amount - discount, Period(start, end)) for item_id, amount, discount, start, end in rows}


def _proration_item(item: SubscriptionItem, charged: dict[str, tuple[int, Period]] | None = None) -> ProrationItem:
    quantity = item.quantity if item.quantity is not None else Decimal(1)
    paid = (charged or {}).get(item.pk)
    return ProrationItem(
        price_id=item.price_id,
        description=item.price.name,
        full_amount=quote(item.price.engine_amount, quantity).amount,
        quantity=quantity,
        charged=paid[0] if paid else None,
        charged_period=paid[1] if paid else None,
    )


def _proration_draft_line(line: Any) -> DraftLine:
    return DraftLine(
        kind=InvoiceLine.Kind.PRORATION,
        description=line.description,
        amount=line.amount,
        price_id=line.price_id,
        quantity=line.quantity,
        period=Period(line.period_start, line.period_end),
    )


def _quantity(spec: ItemSpec) -> Decimal | None:
    return None if spec.price.meter_id else (spec.quantity if spec.quantity is not None else Decimal(1))


def subscription_change(
    *, subscription: Subscription, items: list[ItemSpec], proration_behavior: str, now: datetime
) -> tuple[Subscription, Invoice | None]:
    """Replace the subscription's items. Licensed items are prorated by the second for the rest of the
    period; metered items are not (each bills the usage of its own part of the period)."""
    with transaction.atomic():
        sub = _lock(subscription)
        if sub.status == Status.CANCELED:
            raise Conflict(f"Subscription {sub.id} has ended.", code="subscription_canceled")
        if sub.customer.status == Customer.Status.DELETED:
            raise InvalidRequest(f"Customer {sub.customer_id} is deleted.", param="customer", code="customer_deleted")
        current = live_items(sub)
        _validate_items(
            items,
            currency=sub.currency,
            unit=sub.interval_unit,
            amount=sub.interval_amount,
            kept=frozenset(i.price_id for i in current),
        )
        _check_customer_currency(sub.customer, items)
        period = _period_of(sub)
        at = min(max(now, period.start), period.end)
        by_price = {i.price_id: i for i in current}
        wanted = {spec.price.id: spec for spec in items}
        licensed = [i for i in current if i.price.meter_id is None]
        old_licensed = [_proration_item(i, _charged(licensed, at)) for i in licensed]
        for item in current:
            spec = wanted.get(item.price_id)
            if spec is None or (_quantity(spec), spec.minimum_amount) != (item.quantity, item.minimum_amount):
                SubscriptionItem.objects.filter(pk=item.pk).update(removed_at=at)
        for spec in items:
            item = by_price.get(spec.price.id)
            quantity = _quantity(spec)
            if item is None or (quantity, spec.minimum_amount) != (item.quantity, item.minimum_amount):
                SubscriptionItem.objects.create(
                    subscription=sub,
                    price=spec.price,
                    quantity=quantity,
                    added_at=at,
                    minimum_amount=spec.minimum_amount,
                )
        new_licensed = [_proration_item(i) for i in live_items(sub) if i.price.meter_id is None]
        invoice = None
        billed_in_advance = sub.status != Status.TRIALING and period.start <= at < period.end
        lines = (
            proration_lines(old_licensed, new_licensed, _billing_cycle(sub, period), at) if billed_in_advance else []
        )
        if lines and proration_behavior == "create_prorations":
            PendingInvoiceItem.objects.bulk_create(
                PendingInvoiceItem(
                    customer_id=sub.customer_id,
                    subscription_id=sub.id,
                    currency=sub.currency,
                    description=line.description,
                    price_id=line.price_id,
                    quantity=line.quantity,
                    amount=line.amount,
                    period_start=line.period_start,
                    period_end=line.period_end,
                    created_at=now,
                )
                for line in lines
            )
        elif lines and proration_behavior == "always_invoice":
            ctx = BillingContext(now=now)
            draft = new_draft(sub, reason=Reason.SUBSCRIPTION_UPDATE, period=period)
            draft.lines.extend(_proration_draft_line(line) for line in lines)
            draft.lines.extend(builder.pending_lines(sub, ctx=ctx))
            invoice = draft_save(sub, subscription_draft_finish(draft, sub, ctx=ctx), now=now, ctx=ctx)
        sub.refresh_from_db()
        # The items as they were, in the snapshot's own shape, metered items included.
        previous_items = [
            {"id": i.id, "price": i.price_id, "quantity": None if i.quantity is None else str(i.quantity)}
            for i in current
        ]
        subscription_event_emit(sub, "subscription.updated", now=now, previous={"items": previous_items})
    return sub, invoice
