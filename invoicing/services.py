"""Invoice state changes, numbering, manual invoices and their pending items, and tax rates.

Every change of an invoice's status happens here: finalize, void, mark uncollectible, and paid (when the
money that payments applies covers what remains). Each is compare-and-set
(`filter(pk=, status=OLD).update(status=NEW)`) under the invoice's row lock, so a retried or concurrent
request either makes the change once or gets a 409; the outbox event commits with it.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F

from billing_site.errors import Conflict, InvalidRequest
from billing_site.locks import LockRank, lock_one
from billing_site.money import decimal_to_str
from catalog.pricing import MAX_MINOR
from customers.locks import lock_customer
from customers.models import Customer
from invoicing.drafts import Draft, DraftLine, Span, draft_finish
from invoicing.finalization import allocate_numbers, finalize_fields, invoice_snapshot
from invoicing.hooks import invoice_finalized_hooks_run, invoice_finalizing_hooks_run
from invoicing.locks import lock_invoice
from invoicing.models import Invoice, InvoiceLine, PendingInvoiceItem, TaxRate
from invoicing.selectors import TaxRateCache
from invoicing.writer import InvoiceWriter
from webhooks.services import event_emit, object_event_emit

Status = Invoice.Status


def _illegal(invoice: Invoice, action: str) -> Conflict:
    return Conflict(f"Invoice {invoice.id} is {invoice.status}; it cannot be {action}.", code="invoice_status_conflict")


def invoice_finalize(*, invoice: Invoice, now: datetime) -> Invoice:
    """draft -> open (or straight to paid when nothing is due). Assigns the number."""
    with transaction.atomic():
        locked = lock_invoice(invoice.pk)
        if locked.status != Status.DRAFT:
            raise _illegal(locked, "finalized")
        nothing_due = finalize_fields(locked, customer=locked.customer, now=now)
        # The number last: the sequence row stays locked only until this transaction commits.
        locked.number = allocate_numbers("invoice", settings.INVOICE_NUMBER_PREFIX, 1)[0]
        invoice_finalizing_hooks_run([locked], now)
        locked.save()
        object_event_emit(
            type="invoice.finalized",
            obj=locked,
            data=invoice_snapshot(locked),
            now=now,
            previous={"status": Status.DRAFT},
        )
        if nothing_due:
            object_event_emit(
                type="invoice.paid",
                obj=locked,
                data=invoice_snapshot(locked),
                now=now,
                previous={"status": Status.OPEN},
            )
        invoice_finalized_hooks_run([locked], now)
    return locked


def _transition(
    invoice: Invoice, *, allowed: tuple[str, ...], new: str, action: str, event: str, now: datetime, **fields: Any
) -> Invoice:
    with transaction.atomic():
        current = lock_invoice(invoice.pk)
        if current.status not in allowed:
            raise _illegal(current, action)
        changed = Invoice.objects.filter(pk=current.pk, status=current.status).update(status=new, **fields)
        if changed != 1:  # unreachable under the row lock; kept as the compare-and-set it documents
            raise _illegal(current, action)
        previous = {"status": current.status}
        current.refresh_from_db()
        object_event_emit(type=event, obj=current, data=invoice_snapshot(current), now=now, previous=previous)
    return current


def invoice_void(*, invoice: Invoice, now: datetime) -> Invoice:
    if invoice.amount_paid:
        raise Conflict(
            "A paid amount cannot be voided; refund it or issue a credit note.", code="invoice_status_conflict"
        )
    return _transition(
        invoice,
        allowed=(Status.DRAFT, Status.OPEN),
        new=Status.VOID,
        action="voided",
        event="invoice.voided",
        now=now,
        voided_at=now,
        amount_remaining=0,
    )


def invoice_mark_uncollectible(*, invoice: Invoice, now: datetime) -> Invoice:
    return _transition(
        invoice,
        allowed=(Status.OPEN,),
        new=Status.UNCOLLECTIBLE,
        action="marked uncollectible",
        event="invoice.marked_uncollectible",
        now=now,
        marked_uncollectible_at=now,
    )


def invoice_settle(invoice: Invoice, *, amount: int, field: str | None, now: datetime) -> Invoice:
    """Record `amount` paid on a locked open invoice from one source (`field`: credits_applied,
    balance_applied, or None for a provider payment): amount_paid grows, amount_remaining shrinks, and an
    invoice with nothing left is paid. Payments decides what money to apply; this is where the invoice
    records it. Compare-and-set on status and amount_remaining, so a stale caller changes nothing."""
    if not 0 < amount <= invoice.amount_remaining:
        raise ValueError(f"cannot settle {amount} of {invoice.amount_remaining} remaining")
    remaining = invoice.amount_remaining - amount
    updates: dict[str, Any] = {
        "amount_paid": F("amount_paid") + amount,
        "amount_remaining": remaining,
        "updated_at": now,
    }
    if field is not None:
        updates[field] = F(field) + amount
    if remaining == 0:
        updates.update(status=Status.PAID, paid_at=now, next_payment_attempt=None)
    changed = Invoice.objects.filter(
        pk=invoice.pk, status=Status.OPEN, amount_remaining=invoice.amount_remaining
    ).update(**updates)
    if changed != 1:
        raise Conflict(f"Invoice {invoice.id} changed concurrently; retry.", code="invoice_status_conflict")
    invoice.refresh_from_db()
    if remaining == 0:
        object_event_emit(
            type="invoice.paid", obj=invoice, data=invoice_snapshot(invoice), now=now, previous={"status": Status.OPEN}
        )
    return invoice


# --- Manual invoices and their items --------------------------------------------------------------


def invoice_item_snapshot(item: PendingInvoiceItem) -> dict[str, Any]:
    return {
        "id": item.id,
        "customer": item.customer_id,
        "subscription": item.subscription_id,
        "currency": item.currency,
        "description": item.description,
        "amount": item.amount,
        "quantity": None if item.quantity is None else decimal_to_str(item.quantity),
        "invoice": item.invoice_id,
    }


def _invoice_currency(customer: Customer, currency: str | None, param: str) -> str:
    """A manual invoice is in the customer's currency; a customer without one takes the first it is given."""
    if currency is None:
        if not customer.currency:
            raise InvalidRequest(
                f"Customer {customer.id} has no currency; give one.", param=param, code="parameter_missing"
            )
        return customer.currency
    if customer.currency and customer.currency != currency:
        raise InvalidRequest(
            f"Customer {customer.id} is billed in {customer.currency.upper()}, not {currency.upper()}.",
            param=param,
            code="currency_mismatch",
        )
    return currency


def _check_amount(amount: int, param: str) -> None:
    if amount == 0 or abs(amount) > MAX_MINOR:
        raise InvalidRequest(
            f"amount must be a non-zero integer of at most {MAX_MINOR} minor units.", param=param, code="amount_invalid"
        )


def invoice_item_create(
    *,
    customer: Customer,
    amount: int,
    description: str,
    now: datetime,
    currency: str | None = None,
    quantity: Decimal | None = None,
    period_start: datetime | None = None,
    period_end: datetime | None = None,
    metadata: dict[str, str] | None = None,
) -> PendingInvoiceItem:
    """A one-off item (a setup fee, a goodwill credit when negative) for the customer's next manual invoice."""
    _check_amount(amount, "amount")
    if not description.strip():
        raise InvalidRequest("description is required.", param="description", code="parameter_missing")
    if (period_start is None) != (period_end is None) or (period_start and period_end and period_end <= period_start):
        raise InvalidRequest("Give period_start and period_end, with the end after the start.", param="period_end")
    with transaction.atomic():
        locked = lock_customer(customer.pk)
        if locked.status == Customer.Status.DELETED:
            raise InvalidRequest(f"Customer {customer.id} is deleted.", param="customer", code="customer_deleted")
        item = PendingInvoiceItem.objects.create(
            customer=locked,
            kind=InvoiceLine.Kind.INVOICE_ITEM,
            currency=_invoice_currency(locked, currency, "currency"),
            description=description.strip(),
            quantity=quantity,
            amount=amount,
            period_start=period_start,
            period_end=period_end,
            metadata=metadata or {},
            created_at=now,
        )
        object_event_emit(type="invoice_item.created", obj=item, data=invoice_item_snapshot(item), now=now)
    return item


def invoice_item_delete(*, item: PendingInvoiceItem, now: datetime) -> None:
    """Remove an item not yet invoiced (one on an invoice is part of that document for good)."""
    with transaction.atomic():
        lock_customer(item.customer_id)
        deleted, _ = PendingInvoiceItem.objects.filter(pk=item.pk, invoice__isnull=True).delete()
        if not deleted:
            raise Conflict(f"Invoice item {item.id} is on an invoice already.", code="invoice_item_invoiced")
        object_event_emit(type="invoice_item.deleted", obj=item, data=invoice_item_snapshot(item), now=now)


def invoice_create(
    *,
    customer: Customer,
    now: datetime,
    currency: str | None = None,
    lines: list[dict[str, Any]] | None = None,
    include_pending: bool = True,
    collection_method: str = "charge_automatically",
    days_until_due: int | None = None,
    description: str = "",
    finalize: bool = False,
) -> Invoice:
    """A manual (one-off) invoice: the customer's pending one-off items in the invoice's currency (unless
    `include_pending` is off) plus `lines` ({description, amount, quantity}), taxed like every invoice.
    A draft unless `finalize`: the operator reviews it and calls finalize."""
    for index, line in enumerate(lines or []):
        _check_amount(line["amount"], f"lines[{index}].amount")
    if collection_method == "send_invoice" and days_until_due is None:
        days_until_due = settings.INVOICE_DAYS_UNTIL_DUE
    with transaction.atomic():
        locked = lock_customer(customer.pk)
        if locked.status == Customer.Status.DELETED:
            raise InvalidRequest(f"Customer {customer.id} is deleted.", param="customer", code="customer_deleted")
        currency = _invoice_currency(locked, currency, "currency")
        draft = Draft(
            customer=locked,
            currency=currency,
            billing_reason=Invoice.BillingReason.MANUAL,
            collection_method=collection_method,
            days_until_due=days_until_due,
            description=description,
        )
        if include_pending:
            pending = PendingInvoiceItem.objects.filter(
                customer=locked, currency=currency, subscription__isnull=True, invoice__isnull=True
            ).order_by("created_at", "id")
            for item in pending:
                period = Span(item.period_start, item.period_end) if item.period_start and item.period_end else None
                draft.lines.append(
                    DraftLine(
                        kind=item.kind,
                        description=item.description,
                        amount=item.amount,
                        quantity=item.quantity,
                        period=period,
                        pending_item_id=item.id,
                    )
                )
        for line in lines or []:
            draft.lines.append(
                DraftLine(
                    kind=InvoiceLine.Kind.INVOICE_ITEM,
                    description=line["description"],
                    amount=line["amount"],
                    quantity=line.get("quantity"),
                )
            )
        if not draft.lines:
            raise InvalidRequest(
                "The invoice would be empty: give lines, or add invoice items first.",
                param="lines",
                code="invoice_empty",
            )
        writer = InvoiceWriter(now=now)
        invoice = writer.add(draft_finish(draft, taxes=TaxRateCache()), finalize=finalize)
        writer.flush()
    return invoice


# --- Tax rates ------------------------------------------------------------------------------------


def tax_rate_create(
    *,
    display_name: str,
    percentage: Decimal,
    country: str,
    now: datetime,
    inclusive: bool = False,
    state: str = "",
    description: str = "",
    active: bool = True,
) -> TaxRate:
    if not display_name.strip():
        raise InvalidRequest("display_name is required.", param="display_name", code="parameter_missing")
    with transaction.atomic():
        rate = TaxRate.objects.create(
            display_name=display_name.strip(),
            percentage=percentage,
            inclusive=inclusive,
            country=country.upper(),
            state=state.strip().upper(),
            description=description,
            active=active,
        )
        event_emit(
            type="tax_rate.created", object_type="tax_rate", object_id=rate.id, data=tax_rate_snapshot(rate), now=now
        )
    return rate


def tax_rate_update(*, rate: TaxRate, changes: dict[str, Any], now: datetime) -> TaxRate:
    """Only the label and `active` change: invoices already carry the percentage they were taxed at."""
    with transaction.atomic():
        locked = lock_one(TaxRate.objects.filter(pk=rate.pk), LockRank.CATALOG)
        for field in ("display_name", "description", "active"):
            if field in changes:
                setattr(locked, field, changes[field])
        locked.save()
        event_emit(
            type="tax_rate.updated",
            object_type="tax_rate",
            object_id=locked.id,
            data=tax_rate_snapshot(locked),
            now=now,
        )
    return locked


def tax_rate_snapshot(rate: TaxRate) -> dict[str, Any]:
    return {
        "id": rate.id,
        "display_name": rate.display_name,
        "percentage": str(rate.percentage),
        "inclusive": rate.inclusive,
        "country": rate.country,
        "state": rate.state or None,
        "active": rate.active,
    }
