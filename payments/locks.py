"""Row locks on payments' rows, in the one order of `billing_site.locks`:

    customer -> balance -> credit grants -> subscription -> invoice -> payment intent -> refund / credit note

Whatever gives money back (a refund, a credit note, a provider's refund or dispute report) touches the
invoice too, if only through a foreign key: inserting a refund that names its invoice takes a key-share
lock on the invoice row. So those services lock the invoice *before* its payment intent
(`lock_intent_with_invoice`), never after: a refund that held the payment intent and then waited for the
invoice, against a credit note that held the invoice and then waited for the payment intent, was the
deadlock behind a burst of 500s (issue 10).
"""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.db.models import QuerySet

from billing_site.locks import LockRank, lock_first, lock_one, lock_rows
from invoicing.locks import lock_invoice
from payments.models import (
    CreditGrant,
    CreditNote,
    CustomerBalance,
    Dispute,
    PaymentIntent,
    PaymentMethod,
    Refund,
    SetupIntent,
)


def lock_balance(*, customer_id: str, currency: str, now: datetime) -> CustomerBalance:
    """The customer's balance row in `currency`, created at 0 if missing, locked until commit. Creation is
    race-free: the insert ignores a conflict with a concurrent creator, and the locking read then waits
    for (and returns) whichever row won."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("lock_balance() must run inside a transaction")
    rows = CustomerBalance.objects.filter(customer_id=customer_id, currency=currency)
    row = lock_first(rows, LockRank.BALANCE)
    if row is None:
        CustomerBalance.objects.bulk_create(
            [CustomerBalance(customer_id=customer_id, currency=currency, balance=0, updated_at=now)],
            ignore_conflicts=True,
        )
        row = lock_one(rows, LockRank.BALANCE)
    return row


def lock_balance_if_exists(*, customer_id: str, currency: str) -> CustomerBalance | None:
    return lock_first(CustomerBalance.objects.filter(customer_id=customer_id, currency=currency), LockRank.BALANCE)


def lock_grants(queryset: QuerySet[CreditGrant]) -> list[CreditGrant]:
    return lock_rows(queryset, LockRank.CREDIT_GRANT)


def lock_grant(grant_id: str) -> CreditGrant:
    return lock_one(CreditGrant.objects.filter(pk=grant_id), LockRank.CREDIT_GRANT)


def claim_grants(queryset: QuerySet[CreditGrant], *, order_by: tuple[str, ...], limit: int) -> list[CreditGrant]:
    """Up to `limit` grants of `queryset` no other transaction holds (a sweep's batch)."""
    return lock_rows(queryset, LockRank.CREDIT_GRANT, skip_locked=True, limit=limit, order_by=order_by)


def lock_payment_method(payment_method_id: str) -> PaymentMethod:
    return lock_one(PaymentMethod.objects.filter(pk=payment_method_id), LockRank.PAYMENT_METHOD)


def lock_setup_intent(setup_intent_id: str) -> SetupIntent:
    return lock_one(SetupIntent.objects.filter(pk=setup_intent_id), LockRank.PAYMENT_METHOD)


def lock_payment_intent(payment_intent_id: str) -> PaymentIntent:
    return lock_one(PaymentIntent.objects.filter(pk=payment_intent_id), LockRank.PAYMENT_INTENT)


def lock_intent_with_invoice(payment_intent_id: str) -> PaymentIntent:
    """The payment intent's invoice (if it has one), then the payment intent: the order refunds, disputes
    and provider reports take, the same as credit notes (invoice, then the payment they refund)."""
    invoice_id = PaymentIntent.objects.filter(pk=payment_intent_id).values_list("invoice_id", flat=True).first()
    if invoice_id:
        lock_invoice(invoice_id)
    return lock_payment_intent(payment_intent_id)


def lock_refund(refund_id: str) -> Refund:
    return lock_one(Refund.objects.filter(pk=refund_id).select_related("payment_intent"), LockRank.REFUND)


def lock_credit_note(credit_note_id: str) -> CreditNote:
    return lock_one(CreditNote.objects.filter(pk=credit_note_id), LockRank.CREDIT_NOTE)


def lock_dispute(queryset: QuerySet[Dispute]) -> Dispute | None:
    return lock_first(queryset, LockRank.DISPUTE)
