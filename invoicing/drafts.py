"""Building invoices in memory: the one code path behind renewal, immediate invoices and previews.

`draft_*` functions read (prices, usage, pending items, tax rates, watermarks) and return a `Draft`; they
write nothing, which is what lets the upcoming-invoice preview run exactly the code renewal runs.
`invoicing.billing` persists a draft with `draft_save`.

Amounts: every line is rounded once by the pricing engine (or by proration); discounts are allocated to
lines and rounded per line; tax is computed per line on the discounted amount and rounded per line per
rate. Totals are sums of rounded numbers, so they always add up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from fractions import Fraction

from django.conf import settings

from billing_site.money import decimal_to_str, format_amount, round_fraction, round_half_up
from customers.models import Customer
from invoicing import tax as taxmath
from invoicing.context import BillingContext
from invoicing.models import Invoice, InvoiceLine, UsageWatermark
from subscriptions.models import Coupon, Subscription, SubscriptionItem
from subscriptions.periods import Period
from subscriptions.pricing import FixedAmount, quote

Kind = InvoiceLine.Kind
# How much earlier than a watermark's computation a usage write may have read its clock and still have
# committed after the watermark's snapshot.
CHANGE_MARGIN = timedelta(days=1)


@dataclass
class DraftWatermark:
    period: Period
    value: Decimal
    event_count: int
    amount_billed: int
    supersedes: UsageWatermark | None = None


@dataclass
class DraftLine:
    kind: str
    description: str
    amount: int
    price_id: str | None = None
    meter_id: str | None = None
    item: SubscriptionItem | None = None
    quantity: Decimal | None = None
    unit_amount: Decimal | None = None
    period: Period | None = None
    discount_amount: int = 0
    taxes: list[dict[str, object]] = field(default_factory=list)
    watermark: DraftWatermark | None = None
    pending_item_id: int | None = None

    @property
    def discountable(self) -> bool:
        return self.kind != Kind.DISCOUNT and self.amount > 0


@dataclass
class Draft:
    customer: Customer
    currency: str
    billing_reason: str
    subscription: Subscription | None = None
    cycle_period_start: datetime | None = None
    period: Period | None = None
    lines: list[DraftLine] = field(default_factory=list)
    subtotal: int = 0
    discount: int = 0
    tax: int = 0
    total: int = 0
    tax_note: str = ""
    coupon_applied: bool = False

    @property
    def amount_due(self) -> int:
        return max(self.total, 0)


# --- Lines ----------------------------------------------------------------------------------------


def _unit_amount(item: SubscriptionItem) -> Decimal | None:
    engine = item.price.engine_amount
    return engine.unit if isinstance(engine, FixedAmount) else None


def _describe_period(period: Period) -> str:
    return f"{period.start:%b %-d, %Y} – {period.end:%b %-d, %Y}"


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
        item=item,
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
    amount = quote(item.price.engine_amount, usage.value).amount
    return DraftLine(
        kind=Kind.USAGE,
        description=f"{item.price.name} — {decimal_to_str(usage.value)} {item.price.meter.name}",
        amount=amount,
        price_id=item.price_id,
        meter_id=item.price.meter_id,
        item=item,
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
        amount = quote(item.price.engine_amount, usage.value).amount
        delta = amount - wm.amount_billed
        watermark = DraftWatermark(
            period=period, value=usage.value, event_count=usage.event_count, amount_billed=amount, supersedes=wm
        )
        difference = usage.value - wm.value
        lines.append(
            DraftLine(
                kind=Kind.LATE_USAGE,
                description=(
                    f"Late usage: {item.price.name}, {_describe_period(period)} "
                    f"({'+' if difference >= 0 else ''}{decimal_to_str(difference)} {wm.meter.name})"
                ),
                amount=delta,
                price_id=item.price_id,
                meter_id=wm.meter_id,
                item=item,
                quantity=difference,
                period=period,
                watermark=watermark,
            )
        )
    return lines


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


# --- Discounts, tax, totals -----------------------------------------------------------------------


def coupon_applies(subscription: Subscription | None) -> Coupon | None:
    if subscription is None or subscription.coupon_id is None:
        return None
    if subscription.coupon_periods_remaining is not None and subscription.coupon_periods_remaining <= 0:
        return None
    return subscription.coupon


def _allocate(total: int, weights: list[int]) -> list[int]:
    """Split `total` across lines in proportion to `weights` with cumulative rounding (sums exactly)."""
    whole = sum(weights)
    shares, running, given = [], 0, 0
    for weight in weights:
        running += weight
        target = round_half_up(Decimal(total) * Decimal(running) / Decimal(whole))
        shares.append(target - given)
        given = target
    return shares


def apply_discount(draft: Draft, coupon: Coupon) -> None:
    """Percent or amount off, allocated to the positive lines, never taking a line below zero."""
    lines = [line for line in draft.lines if line.discountable]
    if not lines:
        return
    if coupon.percent_off is not None:
        for line in lines:
            line.discount_amount = min(line.amount, round_half_up(line.amount * coupon.percent_off / 100))
        label = f"{decimal_to_str(coupon.percent_off)}% off"
    else:
        if coupon.currency != draft.currency:
            return  # an amount_off coupon in another currency cannot apply (checked at redemption too)
        budget = min(coupon.amount_off or 0, sum(line.amount for line in lines))
        for line, share in zip(lines, _allocate(budget, [line.amount for line in lines]), strict=True):
            line.discount_amount = min(line.amount, share)
        label = f"{format_amount(coupon.amount_off or 0, coupon.currency)} off"
    total = sum(line.discount_amount for line in lines)
    if total:
        draft.lines.append(
            DraftLine(kind=Kind.DISCOUNT, description=f"{coupon.name or coupon.id} ({label})", amount=-total)
        )
        draft.coupon_applied = True


def finish(draft: Draft, *, ctx: BillingContext) -> Draft:
    """Discounts (from the subscription's coupon), tax per line after discount, and the totals."""
    if draft.billing_reason in (Invoice.BillingReason.SUBSCRIPTION_CREATE, Invoice.BillingReason.SUBSCRIPTION_CYCLE):
        coupon = coupon_applies(draft.subscription)
        if coupon is not None:
            apply_discount(draft, coupon)
    rates, draft.tax_note = ctx.tax_rates(draft.customer)
    tax_total = exclusive = 0
    for line in draft.lines:
        if line.kind == Kind.DISCOUNT or not rates:
            continue
        result = taxmath.line_tax(line.amount - line.discount_amount, rates)
        line.taxes = [{"tax_rate": t.rate_id, "amount": t.amount} for t in result.taxes]
        tax_total += result.inclusive_tax + result.exclusive_tax
        exclusive += result.exclusive_tax
    draft.subtotal = sum(line.amount for line in draft.lines if line.kind != Kind.DISCOUNT)
    draft.discount = -sum(line.amount for line in draft.lines if line.kind == Kind.DISCOUNT)
    draft.tax = tax_total
    draft.total = draft.subtotal - draft.discount + exclusive
    return draft
