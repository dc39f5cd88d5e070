"""When collection runs: the first attempt of a new invoice, the dunning retry schedule, and retries
brought forward by a new default payment method. Only invoice scheduling fields change here."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings

from customers.models import Customer
from invoicing.models import Invoice


def retry_schedule() -> list[timedelta]:
    return [timedelta(days=int(d)) for d in settings.DUNNING_RETRY_DAYS]


def schedule_first_attempt(invoices: list[Invoice], now: datetime) -> None:
    """Finalizing hook (`on_invoice_finalizing`, before the invoices are saved): a new charge_automatically
    invoice with something due is collected by the next run of the collection job (it runs every few
    minutes). Set in memory, so the invoice is written with it."""
    for invoice in invoices:
        if (
            invoice.status == Invoice.Status.OPEN
            and invoice.collection_method == "charge_automatically"
            and invoice.amount_remaining > 0
            and invoice.next_payment_attempt is None
        ):
            invoice.next_payment_attempt = now


def retry_after_new_payment_method(*, customer: Customer, now: datetime) -> int:
    """A new default payment method: every invoice of the customer waiting for a retry is retried now."""
    return Invoice.objects.filter(
        customer=customer,
        status=Invoice.Status.OPEN,
        collection_method="charge_automatically",
        next_payment_attempt__gt=now,
    ).update(next_payment_attempt=now)
