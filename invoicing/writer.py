"""Writing invoices in bulk: everything a batch of drafts implies, in a handful of statements.

`InvoiceWriter.add(draft)` turns a draft into unsaved rows (invoice, lines, watermarks, events) and
records what it consumes (pending items, a coupon period, superseded watermarks); `flush()` writes them
all in the caller's transaction. Each guard of a single write holds in bulk: consumptions are
compare-and-set with a checked row count, and the invoice numbers are allocated last, in one UPDATE, so
the sequence row is locked for the shortest time.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F

from billing_site.errors import Conflict
from invoicing.context import BillingContext
from invoicing.drafts import Draft
from invoicing.hooks import invoice_finalized_hooks_run
from invoicing.models import Invoice, InvoiceLine, PendingInvoiceItem, UsageWatermark
from invoicing.services import allocate_numbers, finalize_fields, invoice_snapshot
from subscriptions.models import Subscription
from webhooks.models import BillingEvent


class InvoiceWriter:
    def __init__(self, *, now: datetime, ctx: BillingContext | None = None) -> None:
        self.now = now
        self.ctx = ctx
        self.invoices: list[Invoice] = []
        self._finalizing: list[tuple[Invoice, bool]] = []
        self._lines: list[InvoiceLine] = []
        self._watermarks: list[UsageWatermark] = []
        self._superseded: list[int] = []
        self._pending: dict[str, list[int]] = {}
        self._coupons: Counter[str] = Counter()
        self._events: list[BillingEvent] = []
        self._subs: dict[str, tuple[Subscription, set[str]]] = {}

    # --- collecting -------------------------------------------------------------------------------

    def add(self, draft: Draft, *, finalize: bool | None = None) -> Invoice:
        sub = draft.subscription
        invoice = Invoice(
            customer=draft.customer,
            subscription=sub,
            billing_reason=draft.billing_reason,
            cycle_period_start=draft.cycle_period_start,
            currency=draft.currency,
            period_start=draft.period.start if draft.period else None,
            period_end=draft.period.end if draft.period else None,
            subtotal=draft.subtotal,
            discount=draft.discount,
            tax=draft.tax,
            total=draft.total,
            amount_due=draft.amount_due,
            amount_remaining=draft.amount_due,
            collection_method=sub.collection_method if sub else "charge_automatically",
            tax_note=draft.tax_note,
        )
        invoice.created_at = invoice.updated_at = self.now
        for position, line in enumerate(draft.lines, start=1):
            row = InvoiceLine(
                invoice=invoice,
                position=position,
                kind=line.kind,
                description=line.description[:500],
                price_id=line.price_id,
                meter_id=line.meter_id,
                subscription_item=line.item,
                quantity=line.quantity,
                unit_amount=line.unit_amount,
                amount=line.amount,
                discount_amount=line.discount_amount,
                taxes=line.taxes,
                period_start=line.period.start if line.period else None,
                period_end=line.period.end if line.period else None,
            )
            self._lines.append(row)
            if line.pending_item_id is not None:
                self._pending.setdefault(invoice.id, []).append(line.pending_item_id)
                if self.ctx is not None:
                    self.ctx.consumed_pending.add(line.pending_item_id)
            if line.watermark is not None and line.item is not None:
                wm = line.watermark
                if wm.supersedes is not None:
                    self._superseded.append(wm.supersedes.pk)
                mark = UsageWatermark(
                    subscription_item=line.item,
                    meter_id=line.meter_id,
                    customer=draft.customer,
                    invoice=invoice,
                    line=row,
                    period_start=wm.period.start,
                    period_end=wm.period.end,
                    value=wm.value,
                    event_count=wm.event_count,
                    amount_billed=wm.amount_billed,
                    computed_at=self.now,
                )
                self._watermarks.append(mark)
                if self.ctx is not None and sub is not None:
                    self.ctx.replace_watermark(sub, wm.supersedes, mark)
        if draft.coupon_applied and sub is not None and sub.coupon_periods_remaining is not None:
            self._coupons[sub.pk] += 1
            sub.coupon_periods_remaining -= 1
        self.invoices.append(invoice)
        self.emit("invoice.created", "invoice", invoice.id, invoice.customer_id, invoice_snapshot(invoice))
        if finalize if finalize is not None else settings.INVOICE_AUTO_FINALIZE:
            days = sub.days_until_due if sub else None
            nothing_due = finalize_fields(invoice, customer=draft.customer, days_until_due=days, now=self.now)
            self._finalizing.append((invoice, nothing_due))
        return invoice

    def emit(
        self,
        type_: str,
        object_type: str,
        object_id: str,
        customer_id: str,
        data: dict[str, Any],
        previous: dict[str, Any] | None = None,
    ) -> None:
        self._events.append(
            BillingEvent(
                type=type_,
                object_type=object_type,
                object_id=object_id,
                customer_id=customer_id,
                data=data,
                previous_attributes=previous,
                created_at=self.now,
            )
        )

    def update_subscription(self, sub: Subscription, **fields: Any) -> None:
        """Change a subscription in memory now and in the database at flush (one bulk UPDATE)."""
        for name, value in fields.items():
            setattr(sub, name, value)
        sub.updated_at = self.now
        entry = self._subs.setdefault(sub.pk, (sub, set()))
        entry[1].update(fields, {"updated_at"})

    # --- writing ----------------------------------------------------------------------------------

    def flush(self) -> list[Invoice]:
        if not transaction.get_connection().in_atomic_block:
            raise RuntimeError("InvoiceWriter.flush() must run inside the transaction that holds the locks")
        if self._superseded:
            done = UsageWatermark.objects.filter(pk__in=self._superseded, superseded=False).update(superseded=True)
            if done != len(self._superseded):
                raise Conflict("Usage was re-rated concurrently; retry.", code="concurrent_billing")
        # Foreign keys are checked at commit, so lines and watermarks may go in before their invoices.
        InvoiceLine.objects.bulk_create(self._lines)
        UsageWatermark.objects.bulk_create(self._watermarks)
        for invoice_id, pending_ids in self._pending.items():
            consumed = PendingInvoiceItem.objects.filter(pk__in=pending_ids, invoice__isnull=True).update(
                invoice_id=invoice_id
            )
            if consumed != len(pending_ids):
                raise Conflict("A pending invoice item was billed concurrently.", code="concurrent_billing")
        for times in set(self._coupons.values()):
            ids = [pk for pk, n in self._coupons.items() if n == times]
            Subscription.objects.filter(pk__in=ids).update(
                coupon_periods_remaining=F("coupon_periods_remaining") - times
            )
        by_fields: dict[frozenset[str], list[Subscription]] = {}
        for sub, fields in self._subs.values():
            by_fields.setdefault(frozenset(fields), []).append(sub)
        for fields, subs in by_fields.items():
            Subscription.objects.bulk_update(subs, sorted(fields))
        # Numbers last: from here to commit, every other finalization waits on the sequence row.
        numbers = allocate_numbers("invoice", settings.INVOICE_NUMBER_PREFIX, len(self._finalizing))
        for (invoice, nothing_due), number in zip(self._finalizing, numbers, strict=True):
            invoice.number = number
            data = invoice_snapshot(invoice)
            self.emit("invoice.finalized", "invoice", invoice.id, invoice.customer_id, data, {"status": "draft"})
            if nothing_due:
                self.emit("invoice.paid", "invoice", invoice.id, invoice.customer_id, data, {"status": "open"})
        Invoice.objects.bulk_create(self.invoices)
        BillingEvent.objects.bulk_create(self._events)
        invoice_finalized_hooks_run([invoice for invoice, _ in self._finalizing], self.now)
        return self.invoices
