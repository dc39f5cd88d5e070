"""The customer balance ledger: adjustments, spending a balance on an invoice, and crediting negative
invoice totals.

A `CustomerBalance` row per (customer, currency) caches the sum of its append-only `BalanceTransaction`
ledger; positive means we owe the customer. Every write locks the balance row (`select_for_update`),
appends the entry with its `ending_balance` and updates the cached sum in the same transaction, so the
two never disagree (`billing_audit` checks it). Entries of one balance get strictly increasing ids
under that lock, so the id order is the ledger order and the ending balances chain along it.

Lock order, as everywhere: the customer's rows (balance, credit grants) first, then the invoice. Call
these services without holding an invoice lock.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F

from billing_site.errors import Conflict, InvalidRequest, currency_clean
from billing_site.ids import ALPHABET, encode_base32, new_id
from customers.models import Customer
from invoicing.finalization import invoice_snapshot
from invoicing.locks import lock_invoice
from invoicing.models import Invoice
from payments.locks import lock_balance, lock_balance_if_exists
from payments.models import BalanceTransaction, CreditNote, CustomerBalance, PaymentIntent
from webhooks.services import event_emit

TxnType = BalanceTransaction.Type
_ID_PREFIX = "cbt"


# --- Balance rows ---------------------------------------------------------------------------------


def balance_row_lock(*, customer_id: str, currency: str, now: datetime) -> CustomerBalance:
    """The customer's balance row in `currency`, created at 0 if missing, locked until commit (through
    the named helper `payments.locks.lock_balance`, so the lock order is checked)."""
    return lock_balance(customer_id=customer_id, currency=currency, now=now)


def _finalization_balance_row(*, customer_id: str, currency: str, now: datetime) -> CustomerBalance:
    """The balance row for the finalization hook, the one place that locks a balance after invoices: the
    finalizing transaction (renewal, a subscription change) already holds the subscription and its new
    invoices. It cannot deadlock with the payments services, which take the balance first and then an
    invoice: none of them locks an invoice that is being finalized (a draft), and batches take balance
    rows in (customer, currency) order. So this lock is taken outside the order checker, on purpose."""
    row = CustomerBalance.objects.select_for_update().filter(customer_id=customer_id, currency=currency).first()
    if row is None:
        CustomerBalance.objects.bulk_create(
            [CustomerBalance(customer_id=customer_id, currency=currency, balance=0, updated_at=now)],
            ignore_conflicts=True,
        )
        row = CustomerBalance.objects.select_for_update().get(customer_id=customer_id, currency=currency)
    return row


def invoice_payment_in_flight(invoice_id: str) -> PaymentIntent | None:
    """The invoice's payment that may still move money (`PaymentIntent.IN_FLIGHT`), if any. Read under the
    invoice's row lock, it decides whether collection may apply credits or balance: while a charge is in
    flight nothing else is applied (it was sized for what remained when it started), or the customer
    would pay twice for the same part of the invoice."""
    return PaymentIntent.objects.filter(invoice_id=invoice_id, status__in=PaymentIntent.IN_FLIGHT).first()


# --- Appending entries ----------------------------------------------------------------------------


def _decode_base32(text: str) -> int:
    value = 0
    for char in text:
        value = value * 32 + ALPHABET.index(char)
    return value


def _txn_id_after(last_id: str | None) -> str:
    """A fresh id that sorts after `last_id`. Ids are time-ordered to the millisecond with a random
    tail, so two entries written within one millisecond could sort either way; under the balance lock
    we take the successor of the last id instead, which keeps the ledger order equal to the id order."""
    candidate = new_id(_ID_PREFIX)
    if last_id is None or candidate > last_id:
        return candidate
    body = last_id.partition("_")[2]
    return f"{_ID_PREFIX}_{encode_base32(_decode_base32(body) + 1, len(body))}"


def _append(
    row: CustomerBalance,
    *,
    amount: int,
    type: str,
    description: str,
    now: datetime,
    invoice: Invoice | None = None,
    credit_note: CreditNote | None = None,
    payment_intent_id: str | None = None,
    refund_id: str | None = None,
) -> BalanceTransaction:
    """Append one entry to a locked balance row and update its cached sum."""
    last_id = (
        BalanceTransaction.objects.filter(customer_id=row.customer_id, currency=row.currency)
        .order_by("-id")
        .values_list("id", flat=True)
        .first()
    )
    row.balance += amount
    row.updated_at = now
    txn = BalanceTransaction.objects.create(
        id=_txn_id_after(last_id),
        balance=row,
        customer_id=row.customer_id,
        currency=row.currency,
        type=type,
        amount=amount,
        ending_balance=row.balance,
        description=description[:500],
        invoice=invoice,
        credit_note=credit_note,
        payment_intent_id=payment_intent_id,
        refund_id=refund_id,
        created_at=now,
    )
    CustomerBalance.objects.filter(pk=row.pk).update(balance=row.balance, updated_at=now)
    # Every ledger entry is an outbox event, whichever service appended it.
    event_emit(
        type="customer_balance_transaction.created",
        object_type="customer_balance_transaction",
        object_id=txn.id,
        customer_id=txn.customer_id,
        data=balance_transaction_snapshot(txn),
        now=now,
    )
    return txn


def balance_adjust(
    *,
    customer: Customer,
    amount: int,
    currency: str,
    type: str,
    description: str,
    now: datetime,
    invoice: Invoice | None = None,
    credit_note: CreditNote | None = None,
    payment_intent_id: str | None = None,
    refund_id: str | None = None,
) -> BalanceTransaction:
    """Add `amount` (> 0 credits the customer, < 0 debits) to the customer's balance in `currency`.

    An adjustment may take the balance below zero (the customer then owes it); the automatic uses
    (spending on invoices, reversing a credit note) check the balance themselves."""
    if isinstance(amount, bool) or not isinstance(amount, int) or amount == 0:
        raise InvalidRequest("amount must be a non-zero integer.", param="amount")
    if type not in TxnType.values:
        raise InvalidRequest(f"Unknown balance transaction type '{type}'.", param="type")
    currency = currency_clean(currency)
    with transaction.atomic():
        row = balance_row_lock(customer_id=customer.pk, currency=currency, now=now)
        return _append(
            row,
            amount=amount,
            type=type,
            description=description,
            now=now,
            invoice=invoice,
            credit_note=credit_note,
            payment_intent_id=payment_intent_id,
            refund_id=refund_id,
        )


# --- Paying invoices ------------------------------------------------------------------------------


def invoice_settle(invoice: Invoice, *, amount: int, field: str | None, now: datetime) -> Invoice:
    """Record `amount` paid on a locked open invoice from one source (`field`: credits_applied,
    balance_applied, or None for a provider payment): amount_paid grows, amount_remaining shrinks, and an
    invoice with nothing left is paid. Compare-and-set on status and amount_remaining, so a stale caller
    changes nothing."""
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
        updates.update(status=Invoice.Status.PAID, paid_at=now, next_payment_attempt=None)
    changed = Invoice.objects.filter(
        pk=invoice.pk, status=Invoice.Status.OPEN, amount_remaining=invoice.amount_remaining
    ).update(**updates)
    if changed != 1:
        raise Conflict(f"Invoice {invoice.id} changed concurrently; retry.", code="invoice_status_conflict")
    invoice.refresh_from_db()
    if remaining == 0:
        event_emit(
            type="invoice.paid",
            object_type="invoice",
            object_id=invoice.id,
            customer_id=invoice.customer_id,
            data=invoice_snapshot(invoice),
            previous_attributes={"status": Invoice.Status.OPEN},
            now=now,
        )
    return invoice


_AMOUNT_FIELDS = (
    "status",
    "amount_due",
    "amount_paid",
    "amount_remaining",
    "credits_applied",
    "balance_applied",
    "credited",
    "paid_at",
)


def invoice_copy_amounts(target: Invoice, source: Invoice) -> None:
    """Bring the caller's invoice instance up to date after a service changed the row."""
    if target is not source:
        for name in _AMOUNT_FIELDS:
            setattr(target, name, getattr(source, name))


def balance_apply_to_invoice(*, invoice: Invoice, now: datetime) -> BalanceTransaction | None:
    """Spend the customer's balance (in the invoice's currency) on an open invoice: min(balance,
    amount_remaining), never more than either. Returns the `invoice_payment` entry, or None when
    nothing was applied (no positive balance, nothing due, invoice not open). Marks the invoice paid
    when nothing remains.

    Locks the balance row, then the invoice (customer before invoice); the caller must not hold the
    invoice's lock. An invoice that is not open is not locked at all."""
    peek = Invoice.objects.filter(pk=invoice.pk).values("status", "customer_id", "currency", "amount_remaining").first()
    if peek is None or peek["status"] != Invoice.Status.OPEN or peek["amount_remaining"] <= 0:
        return None
    with transaction.atomic():
        row = lock_balance_if_exists(customer_id=peek["customer_id"], currency=peek["currency"])
        if row is None or row.balance <= 0:
            return None
        locked = lock_invoice(invoice.pk)
        if locked.status != Invoice.Status.OPEN or locked.amount_remaining <= 0:
            return None
        if invoice_payment_in_flight(locked.pk) is not None:
            return None  # a charge is in flight: applying the balance now would take the same part twice
        amount = min(row.balance, locked.amount_remaining)
        txn = _append(
            row,
            amount=-amount,
            type=TxnType.INVOICE_PAYMENT,
            description=f"Applied to invoice {locked.number or locked.id}",
            invoice=locked,
            now=now,
        )
        invoice_settle(locked, amount=amount, field="balance_applied", now=now)
    invoice_copy_amounts(invoice, locked)
    return txn


# --- Negative invoice totals ----------------------------------------------------------------------


def invoices_negative_total_credit(invoices: list[Invoice], now: datetime) -> None:
    """The `on_invoice_finalized` hook: a finalized invoice whose total is negative (a downgrade, a
    prorated cancel) has nothing due, and its credit goes to the customer's balance, once per invoice
    (the `balance_invoice_credit_once` constraint backs the check). Runs in the finalizing transaction;
    balance rows are locked in (customer, currency) order, so concurrent batches cannot deadlock."""
    negative = sorted((i for i in invoices if i.total < 0), key=lambda i: (i.customer_id, i.currency, i.pk))
    for invoice in negative:
        if BalanceTransaction.objects.filter(invoice_id=invoice.pk, type=TxnType.INVOICE_CREDIT).exists():
            continue
        try:
            with transaction.atomic():
                row = _finalization_balance_row(customer_id=invoice.customer_id, currency=invoice.currency, now=now)
                _append(
                    row,
                    amount=-invoice.total,
                    type=TxnType.INVOICE_CREDIT,
                    description=f"Credit from invoice {invoice.number or invoice.id}",
                    invoice=invoice,
                    now=now,
                )
        except IntegrityError:  # credited concurrently: the constraint kept it to once
            continue


def balance_transaction_snapshot(txn: BalanceTransaction) -> dict[str, Any]:
    return {
        "id": txn.id,
        "customer": txn.customer_id,
        "currency": txn.currency,
        "type": txn.type,
        "amount": txn.amount,
        "ending_balance": txn.ending_balance,
        "invoice": txn.invoice_id,
        "credit_note": txn.credit_note_id,
        "payment_intent": txn.payment_intent_id,
        "refund": txn.refund_id,
    }
