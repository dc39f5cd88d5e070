"""What building invoices reads, loaded once for a set of subscriptions.

Renewal bills hundreds of subscriptions per transaction; reading each one's items, pending prorations,
watermarks, tax rates and usage separately would cost a dozen queries an invoice. A `BillingContext`
loads them for the whole batch with one query each (usage grouped by meter and window), and the draft
builders (`subscriptions.services.builder`) read from it. A single-subscription operation (create,
cancel, change, preview) uses the same context for one subscription, so every path runs the same code.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from catalog.models import Price
from catalog.percentage import PercentageAmount
from catalog.selectors import percentage_usage_quote
from customers.models import Customer
from invoicing.models import PendingInvoiceItem, UsageWatermark
from invoicing.selectors import TaxRateCache
from metering.models import Meter
from metering.selectors import (
    UsageValue,
    usage_aggregate,
    usage_aggregate_many,
    usage_changed_hours,
)
from subscriptions.models import ProgressiveBilling, Subscription, SubscriptionItem, SubscriptionPriceMigration

UsageKey = tuple[str, str, datetime, datetime]  # meter, customer, start, end


@dataclass
class ItemMove:
    move: SubscriptionPriceMigration
    old: SubscriptionItem | None
    new: SubscriptionItem | None
    at: datetime


class BillingContext:
    def __init__(self, *, now: datetime) -> None:
        self.now = now
        self._items: dict[str, list[SubscriptionItem]] = {}
        self._pending: dict[str, list[PendingInvoiceItem]] = {}
        self._watermarks: dict[str, list[UsageWatermark]] = {}
        self.taxes = TaxRateCache()
        self._usage: dict[UsageKey, UsageValue] = {}
        self._percentage: dict[tuple[str, str, datetime, datetime, PercentageAmount], int] = {}
        self._changed: dict[tuple[str, str], dict[datetime, datetime]] | None = None
        self._changed_since: datetime | None = None
        self.consumed_pending: set[str] = set()
        self._moves: dict[str, list[SubscriptionPriceMigration]] = {}
        self._progressive: dict[str, list[ProgressiveBilling]] = {}

    # --- loading ----------------------------------------------------------------------------------

    @classmethod
    def for_subscriptions(cls, subs: Iterable[Subscription], *, now: datetime) -> BillingContext:
        ctx = cls(now=now)
        ctx.load(list(subs))
        return ctx

    def load(self, subs: list[Subscription]) -> None:
        ids = [s.id for s in subs]
        for sub_id in ids:
            self._items[sub_id] = []
            self._pending[sub_id] = []
            self._watermarks[sub_id] = []
            self._moves[sub_id] = []
            self._progressive[sub_id] = []
        items = (
            SubscriptionItem.objects.filter(subscription_id__in=ids)
            .select_related("price__meter")
            .order_by("added_at", "created_at", "id")
        )
        # One Price instance per price (items of a batch share a few prices), so its parsed amount
        # (`engine_amount`, a cached property) is parsed once per batch, not once per item.
        prices: dict[str, Price] = {}
        for item in items:
            item.price = prices.setdefault(item.price_id, item.price)
            self._items[item.subscription_id].append(item)
        for pending in PendingInvoiceItem.objects.filter(subscription_id__in=ids, invoice__isnull=True).order_by("id"):
            self._pending[pending.subscription_id].append(pending)
        moves = SubscriptionPriceMigration.objects.filter(
            subscription_id__in=ids, status=SubscriptionPriceMigration.Status.PENDING
        ).select_related("to_price__meter")
        for move in moves.order_by("effective_at", "id"):
            self._moves[move.subscription_id].append(move)
        progressive = [s.id for s in subs if s.progressive_billing_thresholds]
        if progressive:
            for row in ProgressiveBilling.objects.filter(subscription_id__in=progressive).order_by("id"):
                self._progressive[row.subscription_id].append(row)
        watermarks = UsageWatermark.objects.filter(subscription_item__subscription_id__in=ids, superseded=False)
        by_item = {item.id: item for items_ in self._items.values() for item in items_}
        for wm in watermarks.select_related("meter").order_by("period_start", "id"):
            wm.subscription_item = by_item[wm.subscription_item_id]
            self._watermarks[wm.subscription_item.subscription_id].append(wm)

    def _ensure(self, sub: Subscription) -> None:
        if sub.id not in self._items:
            self.load([sub])

    # --- reads ------------------------------------------------------------------------------------

    def items(self, sub: Subscription) -> list[SubscriptionItem]:
        self._ensure(sub)
        return self._items[sub.id]

    def live_items(self, sub: Subscription) -> list[SubscriptionItem]:
        return [item for item in self.items(sub) if item.removed_at is None]

    def move_items(self, sub: Subscription, *, at: datetime) -> list[ItemMove]:
        """Apply, in memory, the price migrations due at the boundary `at` (scheduled for a period end at or
        before it): the old item leaves at `at`, a new one on the new price (same quantity and minimum)
        joins at `at`. Returns the moves for renewal to write (`ItemMove.new` None: skipped, the item was
        gone or the new price is already on the subscription); the preview only reads them."""
        self._ensure(sub)
        due = [m for m in self._moves[sub.id] if m.effective_at <= at]
        if not due:
            return []
        self._moves[sub.id] = [m for m in self._moves[sub.id] if m.effective_at > at]
        items = self._items[sub.id]
        result = []
        for move in due:
            old = next((i for i in items if i.id == move.item_id), None)
            live_prices = {i.price_id for i in items if i.removed_at is None or i.removed_at > at}
            if old is None or (old.removed_at is not None and old.removed_at <= at) or move.to_price_id in live_prices:
                result.append(ItemMove(move=move, old=old, new=None, at=at))
                continue
            old.removed_at = at
            new = SubscriptionItem(
                subscription=sub,
                price=move.to_price,
                quantity=old.quantity,
                minimum_amount=old.minimum_amount,
                added_at=at,
            )
            items.append(new)
            result.append(ItemMove(move=move, old=old, new=new, at=at))
        return result

    def progressive_billed(self, sub: Subscription, period_start: datetime) -> int:
        """What threshold invoices of the period already billed (rows of one invoice share its amount)."""
        self._ensure(sub)
        by_invoice = {r.invoice_id: r.amount for r in self._progressive[sub.id] if r.period_start == period_start}
        return sum(by_invoice.values())

    def progressive_thresholds(self, sub: Subscription, period_start: datetime) -> set[int]:
        self._ensure(sub)
        return {r.threshold for r in self._progressive[sub.id] if r.period_start == period_start}

    def pending(self, sub: Subscription) -> list[PendingInvoiceItem]:
        self._ensure(sub)
        return [p for p in self._pending[sub.id] if p.pk not in self.consumed_pending]

    def watermarks(self, sub: Subscription) -> list[UsageWatermark]:
        self._ensure(sub)
        return self._watermarks[sub.id]

    def replace_watermark(self, sub: Subscription, old: UsageWatermark | None, new: UsageWatermark) -> None:
        """Keep the context true within a batch: a later step of the same renewal (catching up several
        periods) must re-rate against what an earlier step just billed."""
        marks = self.watermarks(sub)
        if old is not None:
            marks[:] = [wm for wm in marks if wm is not old]
        marks.append(new)

    # --- usage ------------------------------------------------------------------------------------

    def prefetch_usage(self, wanted: Iterable[tuple[Meter, str, datetime, datetime]]) -> None:
        """Read the usage of many (meter, customer, window) at once: one query per meter and window."""
        groups: dict[tuple[str, datetime, datetime], tuple[Meter, set[str]]] = {}
        for meter, customer_id, start, end in wanted:
            if (meter.id, customer_id, start, end) in self._usage:
                continue
            groups.setdefault((meter.id, start, end), (meter, set()))[1].add(customer_id)
        for (_, start, end), (meter, customers) in groups.items():
            values = usage_aggregate_many(meter=meter, customer_ids=sorted(customers), start=start, end=end)
            for customer_id in customers:
                self._usage[(meter.id, customer_id, start, end)] = values[customer_id]

    def usage(self, meter: Meter, customer: Customer, start: datetime, end: datetime) -> UsageValue:
        key = (meter.id, customer.id, start, end)
        if key not in self._usage:
            self._usage[key] = usage_aggregate(meter=meter, customer=customer, start=start, end=end)
        return self._usage[key]

    def percentage_amount(
        self, amount: PercentageAmount, meter: Meter, customer: Customer, start: datetime, end: datetime
    ) -> int:
        """A per-event percentage price's amount for the window, from the roll-ups (see builder.usage_amount)."""
        key = (meter.id, customer.id, start, end, amount)
        if key not in self._percentage:
            self._percentage[key] = percentage_usage_quote(
                amount=amount, meter=meter, customer_id=customer.id, start=start, end=end
            ).amount
        return self._percentage[key]

    # --- late usage -------------------------------------------------------------------------------

    def usage_changed(self, wm: UsageWatermark, *, margin: timedelta) -> bool:
        """Whether any hour of the watermark's period changed (an event ingested or canceled) since the
        watermark was computed, less `margin`. Read once for every watermark in the context, from the
        roll-up bookkeeping, so the cost follows the number of changed hours, not the history."""
        since = wm.computed_at - margin
        if self._changed is None or self._changed_since is None or since < self._changed_since:
            marks = [w for ws in self._watermarks.values() for w in ws] + [wm]
            self._changed_since = min(w.computed_at for w in marks) - margin
            self._changed = defaultdict(dict)
            pairs = {(w.meter_id, w.customer_id) for w in marks}
            for meter_id, customer_id, hour, changed_at in usage_changed_hours(pairs=pairs, since=self._changed_since):
                seen = self._changed[(meter_id, customer_id)]
                seen[hour] = max(changed_at, seen.get(hour, changed_at))
        hours = self._changed.get((wm.meter_id, wm.customer_id), {})
        # A weighted_sum period also depends on the value carried in from before it (its opening value),
        # so an hour changed before the period counts as well.
        first = None if wm.meter.aggregation == Meter.Aggregation.WEIGHTED_SUM else wm.period_start
        return any(
            (first is None or first <= hour) and hour < wm.period_end and changed_at >= since
            for hour, changed_at in hours.items()
        )
