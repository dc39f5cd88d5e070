"""Finalizing an invoice: its gapless number, its due date, its snapshot of the customer. Shared by the
single finalization (`services.invoice_finalize`) and the bulk writer (`writer.InvoiceWriter`)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection

from customers.models import Customer
from invoicing.models import Invoice, NumberSequence

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


def finalize_fields(invoice: Invoice, *, customer: Customer, now: datetime) -> bool:
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
        days = invoice.days_until_due if invoice.days_until_due is not None else settings.INVOICE_DAYS_UNTIL_DUE
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
