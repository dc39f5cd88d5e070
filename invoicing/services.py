"""Invoice state changes, numbering, and tax rates.

Every transition is compare-and-set (`filter(pk=, status=OLD).update(status=NEW)`), so a retried or
concurrent request either makes the change once or gets a 409; the outbox event commits with it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection, transaction

from billing_site.errors import Conflict, InvalidRequest
from customers.models import Customer
from invoicing.hooks import invoice_finalized_hooks_run
from invoicing.models import Invoice, NumberSequence, TaxRate
from webhooks.services import event_emit

Status = Invoice.Status


def allocate_numbers(sequence: str, prefix: str, count: int) -> list[str]:
    """Take the next `count` numbers of a gapless sequence in one statement.

    The UPDATE holds the sequence row's lock until the caller commits, so a rolled-back transaction gives
    its numbers back and nobody else can take them meanwhile. Call it as late as possible in the
    transaction: every finalization waits on this row."""
    if count <= 0:
        return []
    table = NumberSequence._meta.db_table
    update = f"UPDATE {table} SET next_value = next_value + %s WHERE name = %s RETURNING next_value"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(update, [count, sequence])
        row = cursor.fetchone()
        if row is None:
            # The migration creates the rows; a flushed test database may not have them. Creating one is
            # race-free: ON CONFLICT makes a concurrent creator's row win, and the UPDATE then waits on it.
            cursor.execute(
                f"INSERT INTO {table} (name, next_value) VALUES (%s, 1) ON CONFLICT (name) DO NOTHING",  # noqa: S608
                [sequence],
            )
            cursor.execute(update, [count, sequence])
            row = cursor.fetchone()
    first = row[0] - count
    return [f"{prefix}{value:06d}" for value in range(first, first + count)]


def finalize_fields(invoice: Invoice, *, customer: Customer, days_until_due: int | None, now: datetime) -> bool:
    """Set what finalization sets, in memory (the number comes separately). True when nothing is due, in
    which case the invoice is paid on the spot."""
    invoice.customer_snapshot = {
        "name": customer.name,
        "email": customer.email,
        "address": customer.address,
        "external_id": customer.external_id,
    }
    invoice.finalized_at = now
    if invoice.collection_method == "send_invoice":
        days = days_until_due if days_until_due is not None else settings.INVOICE_DAYS_UNTIL_DUE
        invoice.due_date = now + timedelta(days=days)
    else:
        invoice.due_date = now
    invoice.amount_remaining = invoice.amount_due - invoice.amount_paid
    nothing_due = invoice.amount_remaining == 0
    invoice.status = Status.PAID if nothing_due else Status.OPEN
    if nothing_due:
        invoice.paid_at = now
    return nothing_due


def invoice_snapshot(invoice: Invoice) -> dict[str, Any]:
    return {
        "id": invoice.id,
        "number": invoice.number,
        "customer": invoice.customer_id,
        "subscription": invoice.subscription_id,
        "status": invoice.status,
        "currency": invoice.currency,
        "total": invoice.total,
        "amount_due": invoice.amount_due,
        "amount_remaining": invoice.amount_remaining,
    }


def _emit(invoice: Invoice, type_: str, now: datetime, previous: dict[str, Any] | None = None) -> None:
    event_emit(
        type=type_,
        object_type="invoice",
        object_id=invoice.id,
        customer_id=invoice.customer_id,
        data=invoice_snapshot(invoice),
        previous_attributes=previous,
        now=now,
    )


def _illegal(invoice: Invoice, action: str) -> Conflict:
    return Conflict(f"Invoice {invoice.id} is {invoice.status}; it cannot be {action}.", code="invoice_status_conflict")


def invoice_finalize(*, invoice: Invoice, now: datetime) -> Invoice:
    """draft -> open (or straight to paid when nothing is due). Assigns the number."""
    with transaction.atomic():
        locked = Invoice.objects.select_for_update().get(pk=invoice.pk)
        if locked.status != Status.DRAFT:
            raise _illegal(locked, "finalized")
        days = locked.subscription.days_until_due if locked.subscription_id else None
        nothing_due = finalize_fields(locked, customer=locked.customer, days_until_due=days, now=now)
        # The number last: the sequence row stays locked only until this transaction commits.
        locked.number = allocate_numbers("invoice", settings.INVOICE_NUMBER_PREFIX, 1)[0]
        locked.save()
        _emit(locked, "invoice.finalized", now, {"status": Status.DRAFT})
        if nothing_due:
            _emit(locked, "invoice.paid", now, {"status": Status.OPEN})
        invoice_finalized_hooks_run([locked], now)
    return locked


def _transition(
    invoice: Invoice, *, allowed: tuple[str, ...], new: str, action: str, event: str, now: datetime, **fields: Any
) -> Invoice:
    with transaction.atomic():
        current = Invoice.objects.select_for_update().get(pk=invoice.pk)
        if current.status not in allowed:
            raise _illegal(current, action)
        changed = Invoice.objects.filter(pk=current.pk, status=current.status).update(status=new, **fields)
        if changed != 1:  # unreachable under the row lock; kept as the compare-and-set it documents
            raise _illegal(current, action)
        previous = {"status": current.status}
        current.refresh_from_db()
        _emit(current, event, now, previous)
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
        locked = TaxRate.objects.select_for_update().get(pk=rate.pk)
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
