"""Consistency checks over the money ledgers, run by `python manage.py billing_audit` and by tests.

Each check returns a list of problems (human-readable strings naming the rows); an empty list means it
holds. They read committed state only and change nothing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

from django.db.models import Q, Sum

from invoicing.models import Invoice, InvoiceLine
from payments.models import (
    BalanceTransaction,
    CreditBurn,
    CreditGrant,
    CreditNote,
    CreditNoteLine,
    CustomerBalance,
    PaymentIntent,
    Refund,
)

SETTLED = (Invoice.Status.OPEN, Invoice.Status.PAID)


def audit_balances() -> list[str]:
    """Every balance equals the sum of its transactions, and the ending balances chain along the ledger
    (in id order, which is the order they were written in)."""
    problems = []
    cached = {row.pk: row for row in CustomerBalance.objects.all()}
    running: dict[int, int] = defaultdict(int)
    rows = BalanceTransaction.objects.order_by("balance_id", "id").values_list(
        "id", "balance_id", "amount", "ending_balance", "customer_id", "currency"
    )
    for txn_id, balance_id, amount, ending, customer_id, currency in rows.iterator(chunk_size=2000):
        running[balance_id] += amount
        if ending != running[balance_id]:
            problems.append(
                f"balance transaction {txn_id}: ending_balance {ending}, but the ledger before it sums to "
                f"{running[balance_id] - amount} + {amount} = {running[balance_id]}"
            )
        row = cached.get(balance_id)
        if row is not None and (row.customer_id, row.currency) != (customer_id, currency):
            problems.append(f"balance transaction {txn_id} is filed under another customer's or currency's balance")
    sums = dict(
        BalanceTransaction.objects.values("balance_id").annotate(total=Sum("amount")).values_list("balance_id", "total")
    )
    for pk, row in cached.items():
        total = sums.get(pk) or 0
        if row.balance != total:
            problems.append(
                f"customer {row.customer_id} {row.currency}: balance {row.balance}, but its transactions sum to {total}"
            )
    return problems


def audit_grants() -> list[str]:
    """No grant burned beyond its amount, nor below zero (more given back than burned)."""
    problems = []
    grants = CreditGrant.objects.annotate(burned=Sum("burns__amount")).filter(burned__isnull=False)
    for grant_id, amount, burned in grants.values_list("id", "amount", "burned"):
        if burned > amount:
            problems.append(f"credit grant {grant_id}: burned {burned}, more than its amount {amount}")
        if burned < 0:
            problems.append(f"credit grant {grant_id}: burns sum to {burned} (more given back than burned)")
    return problems


def audit_invoices() -> list[str]:
    """On open and paid invoices: amount_paid + amount_remaining == amount_due; amount_due is the
    total (never below 0) less what credit notes took off it; credits_applied equals the net credit
    burns on it and balance_applied the balance spent on it; paid means nothing remains."""
    problems = []
    invoices = Invoice.objects.filter(status__in=SETTLED)
    burns = dict(
        CreditBurn.objects.filter(invoice__status__in=SETTLED)
        .values("invoice_id")
        .annotate(total=Sum("amount"))
        .values_list("invoice_id", "total")
    )
    spent = dict(
        BalanceTransaction.objects.filter(type=BalanceTransaction.Type.INVOICE_PAYMENT, invoice__status__in=SETTLED)
        .values("invoice_id")
        .annotate(total=Sum("amount"))
        .values_list("invoice_id", "total")
    )
    reduced = dict(
        CreditNote.objects.filter(status=CreditNote.Status.ISSUED, invoice__status__in=SETTLED)
        .values("invoice_id")
        .annotate(total=Sum("invoice_amount"))
        .values_list("invoice_id", "total")
    )
    fields = ("id", "status", "total", "amount_due", "amount_paid", "amount_remaining")
    for inv_id, status, total, due, paid, remaining, credits, balance in invoices.values_list(
        *fields, "credits_applied", "balance_applied"
    ).iterator(chunk_size=2000):
        if paid + remaining != due:
            problems.append(f"invoice {inv_id}: amount_paid {paid} + amount_remaining {remaining} != amount_due {due}")
        expected_due = max(total, 0) - (reduced.get(inv_id) or 0)
        if due != expected_due:
            problems.append(f"invoice {inv_id}: amount_due {due}, but total and credit notes make it {expected_due}")
        burned, from_balance = burns.get(inv_id) or 0, -(spent.get(inv_id) or 0)
        if credits != burned:
            problems.append(f"invoice {inv_id}: credits_applied {credits}, but credit burns sum to {burned}")
        if balance != from_balance:
            problems.append(f"invoice {inv_id}: balance_applied {balance}, but the balance paid {from_balance}")
        if status == Invoice.Status.PAID and remaining != 0:
            problems.append(f"invoice {inv_id}: paid with {remaining} remaining")
    return problems


def audit_credit_notes() -> list[str]:
    """Issued credit notes never exceed the invoice's total, and `credited` (invoice and line) is the
    sum of the issued notes."""
    problems = []
    by_invoice = dict(
        CreditNote.objects.filter(status=CreditNote.Status.ISSUED)
        .values("invoice_id")
        .annotate(total=Sum("amount"))
        .values_list("invoice_id", "total")
    )
    invoices = Invoice.objects.filter(Q(pk__in=list(by_invoice)) | ~Q(credited=0))
    for inv_id, total, credited in invoices.values_list("id", "total", "credited"):
        issued = by_invoice.get(inv_id) or 0
        if issued != credited:
            problems.append(f"invoice {inv_id}: credited {credited}, but its issued credit notes sum to {issued}")
        if issued > max(total, 0):
            problems.append(f"invoice {inv_id}: credit notes total {issued}, more than the invoice's total {total}")
    by_line = dict(
        CreditNoteLine.objects.filter(credit_note__status=CreditNote.Status.ISSUED, invoice_line__isnull=False)
        .values("invoice_line_id")
        .annotate(total=Sum("amount"))
        .values_list("invoice_line_id", "total")
    )
    lines = InvoiceLine.objects.filter(Q(pk__in=list(by_line)) | ~Q(credited=0))
    for line_id, amount, credited in lines.values_list("id", "amount", "credited"):
        issued = by_line.get(line_id) or 0
        if issued != credited:
            problems.append(f"invoice line {line_id}: credited {credited}, but credit note lines sum to {issued}")
        if issued > max(amount, 0):
            problems.append(f"invoice line {line_id}: credited {issued}, more than its amount {amount}")
    return problems


def audit_refunds() -> list[str]:
    """Refunds (pending or succeeded) of a payment never exceed what it received."""
    problems = []
    refunded = dict(
        Refund.objects.exclude(status=Refund.Status.FAILED)
        .values("payment_intent_id")
        .annotate(total=Sum("amount"))
        .values_list("payment_intent_id", "total")
    )
    received = dict(PaymentIntent.objects.filter(pk__in=list(refunded)).values_list("id", "amount_received"))
    for pi_id, total in refunded.items():
        if total > received.get(pi_id, 0):
            problems.append(f"payment intent {pi_id}: refunds total {total}, more than received {received.get(pi_id)}")
    return problems


CHECKS: dict[str, Callable[[], list[str]]] = {
    "balances": audit_balances,
    "credit grants": audit_grants,
    "invoices": audit_invoices,
    "credit notes": audit_credit_notes,
    "refunds": audit_refunds,
}


def audit_all() -> list[str]:
    return [f"{name}: {problem}" for name, check in CHECKS.items() for problem in check()]
