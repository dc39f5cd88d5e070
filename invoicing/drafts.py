"""Invoices in memory: the shape every invoice is built in before it is written, and the arithmetic that
finishes it (discounts, tax, totals).

Whoever builds an invoice (the subscription lifecycle, a manual invoice, a preview) fills a `Draft` with
`DraftLine`s and calls `draft_finish`; `invoicing.writer.InvoiceWriter` persists it. Nothing here writes,
which is what lets the upcoming-invoice preview run exactly the code renewal runs.

Amounts: every line is rounded once by the pricing engine (or by proration); discounts are allocated to
lines and rounded per line; tax is computed per line on the discounted amount and rounded per line per
rate. Totals are sums of rounded numbers, so they always add up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Protocol

from billing_site.money import decimal_to_str, format_amount, round_half_up
from catalog.models import Coupon
from customers.models import Customer
from invoicing import tax as taxmath
from invoicing.models import InvoiceLine, UsageWatermark

if TYPE_CHECKING:
    from invoicing.selectors import TaxRateCache

Kind = InvoiceLine.Kind


class Period(Protocol):
    """A half-open span [start, end) (`subscriptions.periods.Period` is one)."""

    @property
    def start(self) -> datetime: ...

    @property
    def end(self) -> datetime: ...


@dataclass(frozen=True)
class Span:
    """A half-open [start, end) for lines whose period is not a subscription's (a one-off item's)."""

    start: datetime
    end: datetime


@dataclass
class DraftWatermark:
    """What a metered line billed for an item-period; written as a `UsageWatermark` with the line."""

    period: Period
    value: Decimal
    event_count: int
    amount_billed: int
    supersedes: UsageWatermark | None = None
    written: UsageWatermark | None = None  # set by the writer


@dataclass
class DraftLine:
    kind: str
    description: str
    amount: int
    price_id: str | None = None
    meter_id: str | None = None
    subscription_item_id: str | None = None
    quantity: Decimal | None = None
    unit_amount: Decimal | None = None
    period: Period | None = None
    discount_amount: int = 0
    taxes: list[dict[str, object]] = field(default_factory=list)
    watermark: DraftWatermark | None = None
    pending_item_id: str | None = None
    subscription_id: str | None = None  # the line's subscription when the invoice bills several

    @property
    def discountable(self) -> bool:
        return self.kind != Kind.DISCOUNT and self.amount > 0


@dataclass
class Draft:
    customer: Customer
    currency: str
    billing_reason: str
    # The subscription the invoice bills, by id: invoicing sits below subscriptions and never reads its
    # rows; what finalization needs of it (collection method, payment terms) is copied here.
    subscription_id: str | None = None
    collection_method: str = "charge_automatically"
    days_until_due: int | None = None
    cycle_period_start: datetime | None = None
    period: Period | None = None
    description: str = ""
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


def describe_period(period: Period) -> str:
    return f"{period.start:%b %-d, %Y} – {period.end:%b %-d, %Y}"


# --- Discounts, tax, totals -----------------------------------------------------------------------


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


def discount_apply(draft: Draft, coupon: Coupon) -> None:
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


def draft_reset_totals(draft: Draft) -> Draft:
    """Undo `draft_finish` so lines can be added and the draft finished again."""
    draft.lines = [line for line in draft.lines if line.kind != Kind.DISCOUNT]
    for line in draft.lines:
        line.discount_amount = 0
        line.taxes = []
    draft.coupon_applied = False
    return draft


def draft_finish(draft: Draft, *, taxes: TaxRateCache, coupon: Coupon | None = None) -> Draft:
    """Discount (the coupon, when one applies), tax per line after discount, and the totals."""
    if coupon is not None:
        discount_apply(draft, coupon)
    rates, draft.tax_note = taxes.for_customer(draft.customer)
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
