"""Writing invoices in bulk: everything a batch of drafts implies, in a handful of statements.

`InvoiceWriter.add(draft)` turns a draft into unsaved rows (invoice, lines, watermarks, events) and
records what it consumes (pending items, superseded watermarks); `flush()` writes them all in the caller's
transaction. Each guard of a single write holds in bulk: consumptions are compare-and-set with a checked
row count, and the invoice numbers are allocated last, in one UPDATE, so the sequence row is locked for
the shortest time. Builders above invoicing (the subscription lifecycle) subclass it to write what their
invoices imply for their own rows in the same flush.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction

from billing_site.errors import Conflict
from invoicing.drafts import Draft
from invoicing.finalization import allocate_numbers, finalize_fields, invoice_snapshot
from invoicing.hooks import invoice_finalized_hooks_run, invoice_finalizing_hooks_run
from invoicing.models import Invoice, InvoiceLine, PendingInvoiceItem, UsageWatermark
from webhooks.models import BillingEvent


class InvoiceWriter:
    def __init__(self, *, now: datetime) -> None:
        self.now = now
        self.invoices: list[Invoice] = []
        self._finalizing: list[tuple[Invoice, bool]] = []
        self._lines: list[InvoiceLine] = []
        self._watermarks: list[UsageWatermark] = []
        self._superseded: list[int] = []
        self._pending: dict[str, list[str]] = {}
        self._events: list[BillingEvent] = []

    # --- collecting -------------------------------------------------------------------------------

    def add(self, draft: Draft, *, finalize: bool | None = None) -> Invoice:
        invoice = Invoice(
            customer=draft.customer,
            subscription_id=draft.subscription_id,
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
            collection_method=draft.collection_method,
            days_until_due=draft.days_until_due,
            description=draft.description,
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
                subscription_item_id=line.subscription_item_id,
                subscription_id=line.subscription_id or draft.subscription_id,
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
            if line.watermark is not None and line.subscription_item_id is not None:
                wm = line.watermark
                if wm.supersedes is not None:
                    self._superseded.append(wm.supersedes.pk)
                wm.written = UsageWatermark(
                    subscription_item_id=line.subscription_item_id,
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
                self._watermarks.append(wm.written)
        self.invoices.append(invoice)
        self.emit("invoice.created", "invoice", invoice.id, invoice.customer_id, invoice_snapshot(invoice))
        if finalize if finalize is not None else settings.INVOICE_AUTO_FINALIZE:
            nothing_due = finalize_fields(invoice, customer=draft.customer, now=self.now)
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
        """An outbox event written with the batch (same transaction, one bulk insert)."""
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
        self.flush_related()
        # Numbers last: from here to commit, every other finalization waits on the sequence row.
        numbers = allocate_numbers("invoice", settings.INVOICE_NUMBER_PREFIX, len(self._finalizing))
        for (invoice, nothing_due), number in zip(self._finalizing, numbers, strict=True):
            invoice.number = number
            data = invoice_snapshot(invoice)
            self.emit("invoice.finalized", "invoice", invoice.id, invoice.customer_id, data, {"status": "draft"})
            if nothing_due:
                self.emit("invoice.paid", "invoice", invoice.id, invoice.customer_id, data, {"status": "open"})
        invoice_finalizing_hooks_run([invoice for invoice, _ in self._finalizing], self.now)
        Invoice.objects.bulk_create(self.invoices)
        BillingEvent.objects.bulk_create(self._events)
        invoice_finalized_hooks_run([invoice for invoice, _ in self._finalizing], self.now)
        return self.invoices

    def flush_related(self) -> None:
        """Where a subclass writes its own rows, before the invoice numbers are taken."""
