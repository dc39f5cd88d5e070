"""Subscription lifecycle and the invoices it produces.

These services live in `invoicing` (not `subscriptions`) because creating, canceling, changing and
renewing a subscription each issue invoices, and imports only point down: invoicing may use
subscriptions, never the reverse.

Concurrency: a subscription is changed only under `select_for_update` (lock order customer ->
subscription -> invoice); renewal claims subscriptions with SKIP LOCKED, one per transaction, and the
unique constraint on (subscription, cycle_period_start) makes a second invoice for a period impossible
even if two workers or a re-run got past the lock.
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
from customers.models import Customer
from invoicing import drafts
from invoicing.context import BillingContext
from invoicing.drafts import Draft, DraftLine
from invoicing.models import Invoice, InvoiceLine, PendingInvoiceItem
from invoicing.writer import InvoiceWriter
from subscriptions import periods
from subscriptions.models import Coupon, Price, Subscription, SubscriptionItem
from subscriptions.periods import Period
from subscriptions.pricing import quote
from subscriptions.proration import ProrationItem, proration_lines, remaining_fraction
from webhooks.services import event_emit

logger = logging.getLogger(__name__)

Status = Subscription.Status
Reason = Invoice.BillingReason
LIVE = (Status.TRIALING, Status.ACTIVE, Status.PAST_DUE, Status.UNPAID)


@dataclass(frozen=True)
class ItemSpec:
    price: Price
    quantity: Decimal | None


# --- Snapshots and events -------------------------------------------------------------------------


def subscription_snapshot(sub: Subscription, items: list[SubscriptionItem] | None = None) -> dict[str, Any]:
    return {
        "id": sub.id,
        "customer": sub.customer_id,
        "status": sub.status,
        "current_period_start": sub.current_period_start.isoformat(),
        "current_period_end": sub.current_period_end.isoformat(),
        "cancel_at_period_end": sub.cancel_at_period_end,
        "items": subscription_snapshot_items(live_items(sub) if items is None else items),
    }


def subscription_snapshot_items(items: list[SubscriptionItem]) -> list[dict[str, Any]]:
    return [{"price": i.price_id, "quantity": None if i.quantity is None else str(i.quantity)} for i in items]


def _emit(sub: Subscription, type_: str, now: datetime, previous: dict[str, Any] | None = None) -> None:
    event_emit(
        type=type_,
        object_type="subscription",
        object_id=sub.id,
        customer_id=sub.customer_id,
        data=subscription_snapshot(sub),
        previous_attributes=previous,
        now=now,
    )


# Items in the order they were given: ids are random within a millisecond, so they cannot break the tie
# between items added at the same instant (and lines would come out in a different order every time).
ITEM_ORDER = ("added_at", "created_at", "id")


def live_items(sub: Subscription) -> list[SubscriptionItem]:
    return [i for i in sub.items.select_related("price__meter").order_by(*ITEM_ORDER) if i.removed_at is None]


def _period_of(sub: Subscription) -> Period:
    return Period(sub.current_period_start, sub.current_period_end)


def _next_period(sub: Subscription, period: Period) -> Period:
    return periods.next_period(sub.billing_cycle_anchor, sub.interval_unit, sub.interval_amount, period)


def _billing_cycle(sub: Subscription, period: Period) -> Period:
    """The whole cycle `period` belongs to: itself, except for a partial first period (a start between two
    anchor boundaries), which was billed as a fraction of the cycle it ends. Prorating against the cycle
    keeps credits and charges at the price's rate per second; prorating against the short period would
    credit a full period's price for part of it."""
    return periods.period_containing(sub.billing_cycle_anchor, sub.interval_unit, sub.interval_amount, period.start)


def _first_period(anchor: datetime, unit: str, amount: int, start: datetime) -> tuple[Period, Fraction | None]:
    """The first billed period from `start` to the next anchor boundary, and the fraction of a full
    period it is (None when `start` is itself a boundary): a start between two boundaries bills a
    partial first period, prorated by the second."""
    full = periods.period_containing(anchor, unit, amount, start)
    if full.start == start:
        return full, None
    return Period(start, full.end), remaining_fraction(full, start)


# --- Persisting a draft ---------------------------------------------------------------------------


def draft_save(draft: Draft, *, now: datetime, finalize: bool | None = None) -> Invoice:
    """Write one draft as an invoice (lines, watermarks, consumed pending items and coupon period) and
    finalize it unless INVOICE_AUTO_FINALIZE is off. Runs inside the caller's transaction."""
    writer = InvoiceWriter(now=now)
    invoice = writer.add(draft, finalize=finalize)
    writer.flush()
    return invoice


# --- Building the invoices of the lifecycle -------------------------------------------------------


def draft_for_cycle(
    sub: Subscription,
    *,
    now: datetime,
    ended: Period | None,
    advance: Period | None,
    reason: str,
    usage_until: datetime | None = None,
    proration_fraction: Any = None,
    ctx: BillingContext | None = None,
) -> Draft:
    """The one invoice builder of the lifecycle: licensed items in advance for `advance`, metered items
    in arrears for `ended`, pending prorations, and late usage for periods billed before."""
    ctx = ctx or BillingContext(now=now)
    draft = Draft(
        customer=sub.customer,
        currency=sub.currency,
        billing_reason=reason,
        subscription=sub,
        cycle_period_start=advance.start if advance is not None else None,
        period=advance or ended,
    )
    items = ctx.items(sub)
    if advance is not None:
        for item in items:
            if item.removed_at is None and item.price.meter_id is None:
                draft.lines.append(drafts.licensed_line(item, advance, fraction=proration_fraction))
    if ended is not None:
        for item in items:
            if item.price.meter_id is not None:
                line = drafts.metered_line(item, ended, sub.customer, until=usage_until, ctx=ctx)
                if line is not None:
                    draft.lines.append(line)
    draft.lines.extend(drafts.pending_lines(sub, ctx=ctx))
    exclude = {ended.start} if ended is not None else set()
    draft.lines.extend(drafts.late_usage_lines(sub, now=now, exclude=exclude, ctx=ctx))
    return drafts.finish(draft, ctx=ctx)


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
    metadata: dict[str, str] | None = None,
) -> tuple[Subscription, Invoice | None]:
    """Start a subscription. Without a trial the first invoice (licensed items in advance) is issued at
    once; with one, the first period starts at trial end and the trial-end job issues it."""
    _validate_items(items, currency=None, unit=None, amount=None)
    first = items[0].price
    start = start_date or now
    if start > now + timedelta(minutes=5):
        raise InvalidRequest("start_date cannot be in the future.", param="start_date")
    if trial_end is not None and trial_end <= start:
        raise InvalidRequest("trial_end must be after the start.", param="trial_end")
    if collection_method == Subscription.CollectionMethod.SEND_INVOICE and days_until_due is None:
        days_until_due = settings.INVOICE_DAYS_UNTIL_DUE
    anchor = billing_cycle_anchor or trial_end or start
    with transaction.atomic():
        locked = Customer.objects.select_for_update().get(pk=customer.pk)
        if locked.status == Customer.Status.DELETED:
            raise InvalidRequest(f"Customer {customer.id} is deleted.", param="customer", code="customer_deleted")
        coupon_periods = _redeem_coupon(coupon, currency=first.currency, now=now) if coupon else None
        if trial_end is not None:
            period, fraction = Period(start, trial_end), None
            status = Status.TRIALING
        else:
            period, fraction = _first_period(anchor, first.duration_unit, first.duration_amount, start)
            status = Status.ACTIVE
        sub = Subscription.objects.create(
            customer=locked,
            status=status,
            currency=first.currency,
            interval_unit=first.duration_unit,
            interval_amount=first.duration_amount,
            start_date=start,
            billing_cycle_anchor=anchor,
            current_period_start=period.start,
            current_period_end=period.end,
            trial_start=start if trial_end else None,
            trial_end=trial_end,
            collection_method=collection_method,
            days_until_due=days_until_due,
            coupon=coupon,
            coupon_periods_remaining=coupon_periods,
            metadata=metadata or {},
        )
        for spec in items:
            quantity = None if spec.price.meter_id else (spec.quantity if spec.quantity is not None else Decimal(1))
            SubscriptionItem.objects.create(subscription=sub, price=spec.price, quantity=quantity, added_at=start)
        _emit(sub, "subscription.created", now)
        invoice = None
        if status == Status.ACTIVE:
            invoice = draft_save(
                draft_for_cycle(
                    sub,
                    now=now,
                    ended=None,
                    advance=period,
                    reason=Reason.SUBSCRIPTION_CREATE,
                    proration_fraction=fraction,
                ),
                now=now,
            )
    return sub, invoice


def _lock(sub: Subscription) -> Subscription:
    Customer.objects.select_for_update().filter(pk=sub.customer_id).first()
    # `of=("self",)`: lock the subscription row only. Without it PostgreSQL would lock the joined rows
    # too, and refuses FOR UPDATE on the nullable side of the outer join to the coupon altogether.
    return Subscription.objects.select_for_update(of=("self",)).select_related("customer", "coupon").get(pk=sub.pk)


def subscription_cancel(
    *, subscription: Subscription, at_period_end: bool, prorate: bool, now: datetime
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
            _emit(sub, "subscription.updated", now, {"cancel_at_period_end": False})
            return sub, None
        period = _period_of(sub)
        at = min(max(now, period.start), period.end)
        # A trial's period is the trial itself: its usage is never billed, so there is nothing to invoice.
        ended = None if sub.status == Status.TRIALING else period
        ctx = BillingContext(now=now)
        draft = draft_for_cycle(
            sub, now=now, ended=ended, advance=None, reason=Reason.SUBSCRIPTION_CANCEL, usage_until=at, ctx=ctx
        )
        if prorate and sub.status != Status.TRIALING and period.start <= at < period.end:
            old = [_proration_item(i) for i in live_items(sub) if i.price.meter_id is None]
            for line in proration_lines(old, [], _billing_cycle(sub, period), at):
                draft.lines.append(_proration_draft_line(line))
            draft = drafts.finish(_reset_totals(draft), ctx=ctx)
        previous_status = sub.status
        Subscription.objects.filter(pk=sub.pk).update(
            status=Status.CANCELED, canceled_at=now, ended_at=now, cancel_at_period_end=False, updated_at=now
        )
        sub.refresh_from_db()
        invoice = draft_save(draft, now=now) if draft.lines else None
        _emit(sub, "subscription.canceled", now, {"status": previous_status})
    return sub, invoice


def _reset_totals(draft: Draft) -> Draft:
    draft.lines = [line for line in draft.lines if line.kind != InvoiceLine.Kind.DISCOUNT]
    for line in draft.lines:
        line.discount_amount = 0
        line.taxes = []
    draft.coupon_applied = False
    return draft


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
        _emit(sub, "subscription.updated", now, {"cancel_at_period_end": True})
    return sub


def _proration_item(item: SubscriptionItem) -> ProrationItem:
    quantity = item.quantity if item.quantity is not None else Decimal(1)
    return ProrationItem(
        price_id=item.price_id,
        description=item.price.name,
        full_amount=quote(item.price.engine_amount, quantity).amount,
        quantity=quantity,
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


def subscription_change(
    *, subscription: Subscription, items: list[ItemSpec], proration_behavior: str, now: datetime
) -> tuple[Subscription, Invoice | None]:
    """Replace the subscription's items. Licensed items are prorated by the second for the rest of the
    period; metered items are not (each bills the usage of its own part of the period)."""
    with transaction.atomic():
        sub = _lock(subscription)
        if sub.status == Status.CANCELED:
            raise Conflict(f"Subscription {sub.id} has ended.", code="subscription_canceled")
        current = live_items(sub)
        _validate_items(
            items,
            currency=sub.currency,
            unit=sub.interval_unit,
            amount=sub.interval_amount,
            kept=frozenset(i.price_id for i in current),
        )
        period = _period_of(sub)
        at = min(max(now, period.start), period.end)
        by_price = {i.price_id: i for i in current}
        wanted = {spec.price.id: spec for spec in items}
        old_licensed = [_proration_item(i) for i in current if i.price.meter_id is None]
        for item in current:
            spec = wanted.get(item.price_id)
            new_quantity = (
                None
                if spec is None
                else (None if spec.price.meter_id else (spec.quantity if spec.quantity is not None else Decimal(1)))
            )
            if spec is None or new_quantity != item.quantity:
                SubscriptionItem.objects.filter(pk=item.pk).update(removed_at=at)
        for spec in items:
            item = by_price.get(spec.price.id)
            quantity = None if spec.price.meter_id else (spec.quantity if spec.quantity is not None else Decimal(1))
            if item is None or quantity != item.quantity:
                SubscriptionItem.objects.create(subscription=sub, price=spec.price, quantity=quantity, added_at=at)
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
                    subscription=sub,
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
            draft = Draft(
                customer=sub.customer,
                currency=sub.currency,
                billing_reason=Reason.SUBSCRIPTION_UPDATE,
                subscription=sub,
                period=period,
            )
            ctx = BillingContext(now=now)
            draft.lines.extend(_proration_draft_line(line) for line in lines)
            draft.lines.extend(drafts.pending_lines(sub, ctx=ctx))
            invoice = draft_save(drafts.finish(draft, ctx=ctx), now=now)
        sub.refresh_from_db()
        # The items as they were, in the snapshot's own shape (quantities as strings: the outbox is JSON,
        # and a Decimal there cannot be serialized), metered items included.
        previous_items = subscription_snapshot_items(current)
        _emit(sub, "subscription.updated", now, {"items": previous_items})
    return sub, invoice


# --- Preview --------------------------------------------------------------------------------------


def upcoming_invoice(*, subscription: Subscription, now: datetime) -> Draft:
    """What renewal would invoice for the current period if it ran at the period's end with the usage
    known now: the same builder, nothing written."""
    sub = Subscription.objects.select_related("customer", "coupon").get(pk=subscription.pk)
    if sub.status == Status.CANCELED:
        raise Conflict(f"Subscription {sub.id} has ended; it has no upcoming invoice.", code="subscription_canceled")
    current = _period_of(sub)
    if sub.status == Status.TRIALING and sub.cancel_at_period_end:
        # It ends at trial end without an invoice (see renew_one).
        raise Conflict(
            f"Subscription {sub.id} ends with its trial; it has no upcoming invoice.", code="no_upcoming_invoice"
        )
    if sub.status == Status.TRIALING:
        first, fraction = _first_period(sub.billing_cycle_anchor, sub.interval_unit, sub.interval_amount, current.end)
        return draft_for_cycle(
            sub, now=now, ended=None, advance=first, reason=Reason.SUBSCRIPTION_CREATE, proration_fraction=fraction
        )
    if sub.cancel_at_period_end:
        return draft_for_cycle(sub, now=now, ended=current, advance=None, reason=Reason.SUBSCRIPTION_CANCEL)
    return draft_for_cycle(
        sub, now=now, ended=current, advance=_next_period(sub, current), reason=Reason.SUBSCRIPTION_CYCLE
    )
