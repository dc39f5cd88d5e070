"""Building a subscription's invoices in memory: the one code path behind renewal, the lifecycle's
immediate invoices (create, cancel, change) and the upcoming-invoice preview.

The line builders read prices, usage, pending items and watermarks through a `BillingContext` and return
`invoicing.drafts.DraftLine`s; `draft_for_cycle` assembles a cycle's invoice and `subscription_draft_finish`
applies the subscription's coupon and the customer's taxes. Nothing here writes: `SubscriptionInvoiceWriter`
persists drafts together with what they imply for the subscription (its coupon periods, period advances,
status changes), in the caller's transaction.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

from django.conf import settings
from django.db.models import F

from billing_site.bulk import bulk_update_rows
from billing_site.money import decimal_to_str, round_fraction
from catalog.minimums import TrueUp, minimum_true_up
from catalog.models import Coupon
from catalog.pricing import FixedAmount, PercentageAmount, quote
from customers.entitlements_cache import entitlements_invalidate
from customers.models import Customer
from invoicing.drafts import Draft, DraftLine, DraftWatermark, describe_period, draft_finish
from invoicing.models import Invoice, InvoiceCycle, InvoiceLine
from invoicing.writer import InvoiceWriter
from subscriptions import periods
from subscriptions.models import ProgressiveBilling, Subscription, SubscriptionItem
from subscriptions.periods import Period
from subscriptions.services.context import BillingContext

Kind = InvoiceLine.Kind
Reason = Invoice.BillingReason
# How much earlier than a watermark's computation a usage write may have read its clock and still have
# committed after the watermark's snapshot.
CHANGE_MARGIN = timedelta(days=1)


def _unit_amount(item: SubscriptionItem) -> Decimal | None:
    engine = item.price.engine_amount
    return engine.unit if isinstance(engine, FixedAmount) else None


def zone_of(sub: Subscription) -> str:
    """The calendar the subscription's periods follow (the customer's zone when it started)."""
    return sub.timezone or "UTC"


def billing_cycle(sub: Subscription, period: Period) -> Period:
    """The whole cycle `period` belongs to: itself, except for a partial first period (a start between two
    anchor boundaries), which was billed as a fraction of the cycle it ends."""
    anchor, unit, amount = sub.billing_cycle_anchor, sub.interval_unit, sub.interval_amount
    return periods.period_containing(anchor, unit, amount, period.start, tz=zone_of(sub))


def usage_amount(
    item: SubscriptionItem, customer: Customer, window: Period, value: Decimal, *, ctx: BillingContext
) -> int:
    """What `value` of the item's meter over `window` costs on the item's price. Every model is priced
    from the window's aggregate, except a percentage price that charges per event (a fixed fee, per-event
    bounds, free events): it is priced from the hourly per-event statistics and the free allowance walked
    over the first events (`catalog.selectors.percentage_usage_quote`), exactly as its raw events would be."""
    amount = item.price.engine_amount
    if isinstance(amount, PercentageAmount) and amount.needs_events:
        return ctx.percentage_amount(amount, item.price.meter, customer, window.start, window.end)
    return quote(amount, value).amount


# --- Lines ----------------------------------------------------------------------------------------


def licensed_line(item: SubscriptionItem, period: Period, *, fraction: Fraction | None = None) -> DraftLine:
    """A licensed item for a period, in advance. `fraction` < 1 prorates a partial first period."""
    quantity = item.quantity if item.quantity is not None else Decimal(1)
    amount = quote(item.price.engine_amount, quantity).amount
    description = f"{item.price.name}" + (f" × {decimal_to_str(quantity)}" if quantity != 1 else "")
    if fraction is not None and fraction != 1:
        amount = round_fraction(amount * fraction)
        description = f"{description} (prorated)"
    return DraftLine(
        kind=Kind.FIXED,
        description=description,
        amount=amount,
        price_id=item.price_id,
        subscription_item_id=item.id,
        quantity=quantity,
        unit_amount=_unit_amount(item),
        period=period,
    )


def item_usage_window(item: SubscriptionItem, period: Period) -> Period | None:
    """The part of `period` the item was on the subscription for (a change mid-period splits usage)."""
    start = max(period.start, item.added_at)
    end = min(period.end, item.removed_at) if item.removed_at else period.end
    return Period(start, end) if end > start else None


def metered_line(
    item: SubscriptionItem, period: Period, customer: Customer, *, ctx: BillingContext, until: datetime | None = None
) -> DraftLine | None:
    """A metered item for a period, in arrears: the meter's aggregate priced by the catalog engine.
    `until` cuts the usage short (a cancellation now, or a preview before the period ends)."""
    window = item_usage_window(item, period)
    if window is None:
        return None
    end = min(window.end, until) if until else window.end
    if end <= window.start:
        return None
    usage = ctx.usage(item.price.meter, customer, window.start, end)
    amount = usage_amount(item, customer, Period(window.start, end), usage.value, ctx=ctx)
    return DraftLine(
        kind=Kind.USAGE,
        description=f"{item.price.name} — {decimal_to_str(usage.value)} {item.price.meter.name}",
        amount=amount,
        price_id=item.price_id,
        meter_id=item.price.meter_id,
        subscription_item_id=item.id,
        quantity=usage.value,
        unit_amount=_unit_amount(item),
        period=Period(window.start, end),
        watermark=DraftWatermark(period=period, value=usage.value, event_count=usage.event_count, amount_billed=amount),
    )


def late_usage_lines(
    subscription: Subscription,
    *,
    now: datetime,
    exclude: set[datetime],
    ctx: BillingContext,
    changed_only: bool = False,
) -> list[DraftLine]:
    """Re-rate recently billed periods; a difference from what was billed becomes a late_usage line.

    Periods ending within the backfill window (plus a margin) are re-rated every time; an older period
    only when one of its events was ingested or canceled since it was billed. The backfill window bounds
    an event's timestamp against its ingestion, not against the next renewal: an event ingested on the
    window's last day is only seen by a renewal up to a whole billing period later, long after its
    period left the horizon. Comparing re-rated amounts (not counting events) makes this exact whatever
    order events commit in. `changed_only` re-rates only periods whose usage changed since billing (for
    ended subscriptions, checked on every run, where the cost must follow the changes)."""
    horizon = now - settings.METERING_BACKFILL_WINDOW - CHANGE_MARGIN
    lines: list[DraftLine] = []
    rerated: dict[tuple[datetime, datetime], dict[str, int]] = {}
    for wm in list(ctx.watermarks(subscription)):
        if wm.period_start in exclude:
            continue
        recent = wm.period_end >= horizon and not changed_only
        if not recent and not ctx.usage_changed(wm, margin=CHANGE_MARGIN):
            continue
        item = wm.subscription_item
        period = Period(wm.period_start, wm.period_end)
        window = item_usage_window(item, period) or period
        usage = ctx.usage(wm.meter, subscription.customer, window.start, window.end)
        if usage.value == wm.value and usage.event_count == wm.event_count:
            continue
        amount = usage_amount(item, subscription.customer, window, usage.value, ctx=ctx)
        delta = amount - wm.amount_billed
        rerated.setdefault((period.start, period.end), {})[item.id] = amount
        watermark = DraftWatermark(
            period=period, value=usage.value, event_count=usage.event_count, amount_billed=amount, supersedes=wm
        )
        difference = usage.value - wm.value
        lines.append(
            DraftLine(
                kind=Kind.LATE_USAGE,
                description=(
                    f"Late usage: {item.price.name}, {describe_period(period)} "
                    f"({'+' if difference >= 0 else ''}{decimal_to_str(difference)} {wm.meter.name})"
                ),
                amount=delta,
                price_id=item.price_id,
                meter_id=wm.meter_id,
                subscription_item_id=item.id,
                quantity=difference,
                period=period,
                watermark=watermark,
            )
        )
    lines.extend(minimum_corrections(subscription, rerated, ctx=ctx))
    return lines


@dataclass(frozen=True)
class MinimumOwed:
    """One minimum of a period (an item's, or the subscription's when `item` is None) and its true-up."""

    item: SubscriptionItem | None
    true_up: TrueUp
    window: Period  # the part of the period the minimum covers (the line's period)
    licensed: int = 0  # the subscription minimum only: what its licensed items spent


def minimum_true_ups(
    sub: Subscription, period: Period, usage: dict[str, int], *, ctx: BillingContext, until: datetime | None = None
) -> list[MinimumOwed]:
    """The minimum spends (`catalog.minimums`) of `period`: each item with a minimum, then the
    subscription's, with `usage` what each metered item's usage billed (by item id).

    What an item spent: a metered item its usage; a licensed item its price for the part of the period it
    served. A minimum is prorated by the share of the whole cycle served: the item's window (a change
    mid-period), the part of a partial first period, or up to `until` (an end mid-period)."""
    items = ctx.items(sub)
    if sub.minimum_amount is None and all(item.minimum_amount is None for item in items):
        return []
    end = min(period.end, until) if until is not None else period.end
    if end <= period.start:
        return []
    served = Period(period.start, end)
    cycle_seconds = billing_cycle(sub, period).seconds
    owed: list[MinimumOwed] = []
    spent_total = licensed = 0
    for item in items:
        window = item_usage_window(item, served)
        if window is None:
            continue
        share = Fraction(window.seconds, cycle_seconds)
        if item.price.meter_id is not None:
            spent = max(usage.get(item.id, 0), 0)
        else:
            quantity = item.quantity if item.quantity is not None else Decimal(1)
            spent = round_fraction(quote(item.price.engine_amount, quantity).amount * share)
            licensed += spent
        spent_total += spent
        if item.minimum_amount is None:
            continue
        true_up = minimum_true_up(minimum=item.minimum_amount, spent=spent, fraction=min(share, Fraction(1)))
        spent_total += true_up.amount
        owed.append(MinimumOwed(item=item, true_up=true_up, window=window))
    if sub.minimum_amount is not None:
        share = min(Fraction(served.seconds, cycle_seconds), Fraction(1))
        true_up = minimum_true_up(minimum=sub.minimum_amount, spent=spent_total, fraction=share)
        owed.append(MinimumOwed(item=None, true_up=true_up, window=served, licensed=licensed))
    return owed


def _minimum_line(owed: MinimumOwed, amount: int, description: str) -> DraftLine:
    item = owed.item
    return DraftLine(
        kind=Kind.MINIMUM,
        description=description,
        amount=amount,
        price_id=item.price_id if item is not None else None,
        subscription_item_id=item.id if item is not None else None,
        period=owed.window,
    )


def minimum_lines(
    sub: Subscription, period: Period, lines: list[DraftLine], *, ctx: BillingContext, until: datetime | None = None
) -> list[DraftLine]:
    """True-ups of the minimum spends for `period` (`minimum_true_ups`), billed when it ends (in arrears,
    with its usage, a metered item's spending being its usage line of `lines`)."""
    usage = {line.subscription_item_id: line.amount for line in lines if line.kind == Kind.USAGE}
    true_ups = []
    for owed in minimum_true_ups(sub, period, usage, ctx=ctx, until=until):  # type: ignore[arg-type]
        t = owed.true_up
        if not t.owed:
            continue
        name = f"{owed.item.price.name} " if owed.item is not None else ""
        true_ups.append(_minimum_line(owed, t.amount, f"Minimum spend: {name}(minimum {t.minimum}, spent {t.spent})"))
    return true_ups


def period_usage_until(sub: Subscription, period: Period) -> datetime | None:
    """Where a billed period's usage stopped: the subscription's end, when it ended inside it."""
    if sub.ended_at is not None and period.start < sub.ended_at < period.end:
        return sub.ended_at
    return None


def minimum_corrections(
    sub: Subscription, rerated: dict[tuple[datetime, datetime], dict[str, int]], *, ctx: BillingContext
) -> list[DraftLine]:
    """Late usage moves a billed period's minimum true-ups too. For each re-rated period: its true-ups as
    billed (from the usage its current watermarks billed) against its true-ups now (the re-rated usage);
    a difference becomes a `minimum` line, negative when the usage now covers more of the minimum.

    The watermarks make it exact and once: what was billed of a period's minimums is a function of what
    its usage billed (minimums are fixed for an item and a subscription), every correction is the step
    between two successive watermark states, so the corrections add up to the true-up of the last one.
    Called before the writer supersedes the watermarks (`ctx.watermarks` still holds what was billed)."""
    lines: list[DraftLine] = []
    for (start, end), amounts in sorted(rerated.items()):
        period = Period(start, end)
        billed = {wm.subscription_item_id: wm.amount_billed for wm in ctx.watermarks(sub) if wm.period_start == start}
        until = period_usage_until(sub, period)
        before = minimum_true_ups(sub, period, billed, ctx=ctx, until=until)
        after = minimum_true_ups(sub, period, billed | amounts, ctx=ctx, until=until)
        for was, now in zip(before, after, strict=True):
            delta = now.true_up.amount - was.true_up.amount
            if delta == 0:
                continue
            name = f"{now.item.price.name}, " if now.item is not None else ""
            description = (
                f"Minimum spend correction: {name}{describe_period(period)} "
                f"(minimum {now.true_up.minimum}, spent {now.true_up.spent}, was {was.true_up.spent})"
            )
            lines.append(_minimum_line(now, delta, description))
    return lines


def progressive_credit_line(already: int, period: Period) -> DraftLine:
    """What threshold invoices already billed of `period`'s usage, taken off the next invoice of it."""
    return DraftLine(
        kind=Kind.PROGRESSIVE_CREDIT,
        description=f"Usage already billed during {describe_period(period)}",
        amount=-already,
        period=period,
    )


def pending_lines(subscription: Subscription, *, ctx: BillingContext) -> list[DraftLine]:
    return [
        DraftLine(
            kind=p.kind,
            description=p.description,
            amount=p.amount,
            price_id=p.price_id,
            quantity=p.quantity,
            period=Period(p.period_start, p.period_end),
            pending_item_id=p.pk,
        )
        for p in ctx.pending(subscription)
    ]


# --- Assembling and finishing --------------------------------------------------------------------


def coupon_applies(subscription: Subscription | None) -> Coupon | None:
    if subscription is None or subscription.coupon_id is None:
        return None
    if subscription.coupon_periods_remaining is not None and subscription.coupon_periods_remaining <= 0:
        return None
    return subscription.coupon


def new_draft(
    sub: Subscription,
    *,
    reason: str,
    period: Period | None,
    cycle_period_start: datetime | None = None,
    lines: list[DraftLine] | None = None,
) -> Draft:
    """An empty invoice of `sub`, carrying what invoicing needs to know of the subscription."""
    return Draft(
        customer=sub.customer,
        currency=sub.currency,
        billing_reason=reason,
        subscription_id=sub.id,
        collection_method=sub.collection_method,
        days_until_due=sub.days_until_due,
        cycle_period_start=cycle_period_start,
        period=period,
        lines=list(lines or []),
    )


def subscription_draft_finish(draft: Draft, sub: Subscription, *, ctx: BillingContext) -> Draft:
    """Discounts (the subscription's coupon discounts its create and cycle invoices), tax, totals."""
    coupon = None
    if draft.billing_reason in (Reason.SUBSCRIPTION_CREATE, Reason.SUBSCRIPTION_CYCLE):
        coupon = coupon_applies(sub)
    return draft_finish(draft, taxes=ctx.taxes, coupon=coupon)


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
    draft = new_draft(
        sub,
        reason=reason,
        period=advance or ended,
        cycle_period_start=advance.start if advance is not None else None,
    )
    items = ctx.items(sub)
    if advance is not None:
        for item in items:
            if item.removed_at is None and item.price.meter_id is None:
                draft.lines.append(licensed_line(item, advance, fraction=proration_fraction))
    if ended is not None:
        for item in items:
            if item.price.meter_id is not None:
                line = metered_line(item, ended, sub.customer, until=usage_until, ctx=ctx)
                if line is not None:
                    draft.lines.append(line)
        draft.lines.extend(minimum_lines(sub, ended, draft.lines, ctx=ctx, until=usage_until))
        already = ctx.progressive_billed(sub, ended.start) if sub.progressive_billing_thresholds else 0
        if already:
            draft.lines.append(progressive_credit_line(already, ended))
    draft.lines.extend(pending_lines(sub, ctx=ctx))
    exclude = {ended.start} if ended is not None else set()
    draft.lines.extend(late_usage_lines(sub, now=now, exclude=exclude, ctx=ctx))
    return subscription_draft_finish(draft, sub, ctx=ctx)


def consolidation_key(sub: Subscription, draft: Draft) -> tuple[Any, ...] | None:
    """Cycle invoices of one customer that may share an invoice (the customer's setting): same currency,
    collection method and terms, and the same period (aligned cycles). None: billed alone."""
    if not sub.customer.invoice_consolidation or draft.billing_reason != Reason.SUBSCRIPTION_CYCLE:
        return None
    if draft.period is None or draft.cycle_period_start is None:
        return None
    period = (draft.period.start, draft.period.end)
    return (sub.customer_id, draft.currency, draft.collection_method, draft.days_until_due, period)


def drafts_merge(drafts: list[tuple[Subscription, Draft]]) -> Draft:
    """One invoice of several subscriptions' finished cycle drafts: every line keeps its subscription (and
    its own coupon's discount and its taxes), the totals add up. The first subscription is the invoice's
    own (its cycle guard); the others are guarded by `InvoiceCycle` rows."""
    first_sub, first = drafts[0]
    lines: list[DraftLine] = []
    for sub, draft in drafts:
        for line in draft.lines:
            line.subscription_id = sub.id
            lines.append(line)
    return Draft(
        customer=first.customer,
        currency=first.currency,
        billing_reason=first.billing_reason,
        subscription_id=first_sub.id,
        collection_method=first.collection_method,
        days_until_due=first.days_until_due,
        cycle_period_start=first.cycle_period_start,
        period=first.period,
        lines=lines,
        subtotal=sum(d.subtotal for _, d in drafts),
        discount=sum(d.discount for _, d in drafts),
        tax=sum(d.tax for _, d in drafts),
        total=sum(d.total for _, d in drafts),
        tax_note=first.tax_note,
    )


# --- Writing --------------------------------------------------------------------------------------


class SubscriptionInvoiceWriter(InvoiceWriter):
    """The invoice writer, plus what a subscription's invoices imply for the subscription itself: a
    coupon period used up, the period advanced, a status changed. All of it goes out in `flush()`, in the
    caller's transaction (the one that holds the subscriptions' row locks), in bulk."""

    def __init__(self, *, now: datetime, ctx: BillingContext | None = None) -> None:
        super().__init__(now=now)
        self.ctx = ctx or BillingContext(now=now)
        self._coupons: Counter[str] = Counter()
        self._subs: dict[str, tuple[Subscription, set[str]]] = {}
        self._cycles: list[InvoiceCycle] = []
        self.progressive: list[ProgressiveBilling] = []
        self._entitlements: set[str] = set()

    def entitlements_changed(self, customer_id: str) -> None:
        """The customer's cached entitlements are dropped once, after the batch's commit (`flush`)."""
        self._entitlements.add(customer_id)

    def add_consolidated(self, drafts: list[tuple[Subscription, Draft]]) -> Invoice:
        """Several subscriptions' cycle drafts on one invoice (`drafts_merge`)."""
        if len(drafts) == 1:
            return self.add_for(*drafts[0])
        invoice = self.add(drafts_merge(drafts))
        for sub, draft in drafts:
            self._after_add(sub, draft)
        for sub, draft in drafts[1:]:
            self._cycles.append(
                InvoiceCycle(invoice=invoice, subscription_id=sub.id, cycle_period_start=draft.cycle_period_start)
            )
        return invoice

    def add_for(self, sub: Subscription, draft: Draft, *, finalize: bool | None = None) -> Invoice:
        invoice = self.add(draft, finalize=finalize)
        self._after_add(sub, draft)
        return invoice

    def _after_add(self, sub: Subscription, draft: Draft) -> None:
        items: dict[str, SubscriptionItem] | None = None
        for line in draft.lines:
            if line.pending_item_id is not None:
                self.ctx.consumed_pending.add(line.pending_item_id)
            wm = line.watermark
            if wm is not None and wm.written is not None:
                # Keep the context true within a batch: a later step of the same renewal (catching up
                # several periods) must re-rate against what this step just billed.
                if items is None:
                    items = {item.id: item for item in self.ctx.items(sub)}
                wm.written.subscription_item = items[wm.written.subscription_item_id]
                self.ctx.replace_watermark(sub, wm.supersedes, wm.written)
        if draft.coupon_applied and sub.coupon_periods_remaining is not None:
            self._coupons[sub.pk] += 1
            sub.coupon_periods_remaining -= 1

    def update_subscription(self, sub: Subscription, **fields: Any) -> None:
        """Change a subscription in memory now and in the database at flush (one bulk UPDATE). The status
        is not among the fields: it changes only through `subscriptions.services.status`."""
        if "status" in fields:
            raise ValueError("A subscription's status changes only through subscription_status_change().")
        self._update(sub, fields)

    def _update(self, sub: Subscription, fields: dict[str, Any]) -> None:
        for name, value in fields.items():
            setattr(sub, name, value)
        sub.updated_at = self.now
        entry = self._subs.setdefault(sub.pk, (sub, set()))
        entry[1].update(fields, {"updated_at"})

    def flush_related(self) -> None:
        # The unique (subscription, cycle_period_start) refuses a consolidated invoice for a period billed.
        InvoiceCycle.objects.bulk_create(self._cycles)
        # Unique per (subscription, period, threshold): a crossing billed twice fails the whole batch.
        ProgressiveBilling.objects.bulk_create(self.progressive)
        for times in set(self._coupons.values()):
            ids = [pk for pk, n in self._coupons.items() if n == times]
            Subscription.objects.filter(pk__in=ids).update(
                coupon_periods_remaining=F("coupon_periods_remaining") - times
            )
        by_fields: dict[frozenset[str], list[Subscription]] = {}
        for sub, fields in self._subs.values():
            by_fields.setdefault(frozenset(fields), []).append(sub)
        for fields, subs in by_fields.items():
            bulk_update_rows(Subscription, subs, sorted(fields))
        # What the batch's customers are entitled to may have changed: one invalidation for all of them.
        entitlements_invalidate(self._entitlements)


def draft_save(
    sub: Subscription, draft: Draft, *, now: datetime, ctx: BillingContext | None = None, finalize: bool | None = None
) -> Invoice:
    """Write one of `sub`'s drafts (lines, watermarks, consumed pending items and coupon period) and finalize
    it unless INVOICE_AUTO_FINALIZE is off. Runs inside the caller's transaction."""
    writer = SubscriptionInvoiceWriter(now=now, ctx=ctx)
    invoice = writer.add_for(sub, draft, finalize=finalize)
    writer.flush()
    return invoice
