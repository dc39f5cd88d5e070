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
    Dispute,
    PaymentIntent,
    Refund,
)
from subscriptions.models import ProgressiveBilling

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


def _live_refunds() -> dict[str, int]:
    return dict(
        Refund.objects.exclude(status=Refund.Status.FAILED)
        .values("payment_intent_id")
        .annotate(total=Sum("amount"))
        .values_list("payment_intent_id", "total")
    )


def audit_refunds() -> list[str]:
    """Refunds (pending or succeeded) of a payment, with the money its lost disputes returned, never
    exceed what it received."""
    problems = []
    refunded = _live_refunds()
    lost = dict(
        Dispute.objects.filter(status=Dispute.Status.LOST)
        .values("payment_intent_id")
        .annotate(total=Sum("amount_lost"))
        .values_list("payment_intent_id", "total")
    )
    received = dict(
        PaymentIntent.objects.filter(pk__in=list(refunded) + list(lost)).values_list("id", "amount_received")
    )
    for pi_id in sorted(set(refunded) | set(lost)):
        total, returned = refunded.get(pi_id) or 0, lost.get(pi_id) or 0
        if total + returned <= received.get(pi_id, 0):
            continue
        if returned:
            problems.append(
                f"payment intent {pi_id}: refunds {total} + lost disputes {returned} are more than received "
                f"{received.get(pi_id)}"
            )
        else:
            problems.append(f"payment intent {pi_id}: refunds total {total}, more than received {received.get(pi_id)}")
    return problems


def audit_refund_reservations() -> list[str]:
    """A payment's `amount_refunded` (what is reserved so nothing is refunded twice) is the sum of its
    refunds that did not fail: a failed refund gave its amount back to what can be refunded."""
    refunded = _live_refunds()
    intents = PaymentIntent.objects.filter(Q(pk__in=list(refunded)) | ~Q(amount_refunded=0))
    return [
        f"payment intent {pi_id}: amount_refunded {reserved}, but its live refunds sum to {refunded.get(pi_id) or 0}"
        for pi_id, reserved in intents.values_list("id", "amount_refunded")
        if reserved != (refunded.get(pi_id) or 0)
    ]


def audit_payments() -> list[str]:
    """Provider money received for an invoice is never lost: what its succeeded payments received, less
    what was credited to the balance as unapplied (`overpayment`), is at most what the invoice records as
    paid by the provider (amount_paid less credits and balance applied). Each overpayment credit names a
    succeeded payment of the same customer and currency, and is at most what that payment received."""
    problems = []
    credited = {
        pi_id: (amount, customer_id, currency)
        for pi_id, amount, customer_id, currency in BalanceTransaction.objects.filter(
            type=BalanceTransaction.Type.OVERPAYMENT
        ).values_list("payment_intent_id", "amount", "customer_id", "currency")
    }
    intents = {
        row[0]: row[1:]
        for row in PaymentIntent.objects.filter(Q(pk__in=list(credited)) | Q(status=PaymentIntent.Status.SUCCEEDED))
        .filter(invoice__isnull=False)
        .values_list("id", "status", "invoice_id", "amount_received", "customer_id", "currency")
    }
    for pi_id, (amount, customer_id, currency) in credited.items():
        intent = intents.get(pi_id)
        if intent is None or intent[0] != PaymentIntent.Status.SUCCEEDED:
            problems.append(f"overpayment credit of {pi_id}: the payment did not succeed")
        elif (customer_id, currency) != (intent[3], intent[4]) or amount > intent[2]:
            problems.append(f"overpayment credit of {pi_id}: {amount} {currency} does not fit the payment")
    applied: dict[str, int] = defaultdict(int)
    for pi_id, (status, invoice_id, received, _, _) in intents.items():
        if status == PaymentIntent.Status.SUCCEEDED:
            applied[invoice_id] += received - (credited[pi_id][0] if pi_id in credited else 0)
    rows = Invoice.objects.filter(pk__in=list(applied)).values_list(
        "id", "amount_paid", "credits_applied", "balance_applied"
    )
    for inv_id, paid, credits, balance in rows:
        if applied[inv_id] > paid - credits - balance:
            problems.append(
                f"invoice {inv_id}: its payments brought {applied[inv_id]} that was not credited elsewhere, but it "
                f"records {paid - credits - balance} paid by the provider"
            )
    return problems


def audit_credit_note_refunds() -> list[str]:
    """An issued credit note's refund part is accounted for: its refunds that did not fail, plus the
    balance credits of those that did (`refund_failed`), add up to its refund_amount. Each such credit
    names a failed refund of that note, for its amount."""
    problems = []
    live = dict(
        Refund.objects.filter(credit_note__isnull=False)
        .exclude(status=Refund.Status.FAILED)
        .values("credit_note_id")
        .annotate(total=Sum("amount"))
        .values_list("credit_note_id", "total")
    )
    failed_credits = list(
        BalanceTransaction.objects.filter(type=BalanceTransaction.Type.REFUND_FAILED).values_list(
            "id", "credit_note_id", "refund_id", "amount"
        )
    )
    refunds = {
        row[0]: row[1:]
        for row in Refund.objects.filter(pk__in=[r for _, _, r, _ in failed_credits]).values_list(
            "id", "status", "credit_note_id", "amount"
        )
    }
    credited: dict[str, int] = defaultdict(int)
    for txn_id, note_id, refund_id, amount in failed_credits:
        refund = refunds.get(refund_id)
        if refund is None or refund != (Refund.Status.FAILED, note_id, amount):
            problems.append(f"balance transaction {txn_id}: a refund_failed credit that does not match its refund")
        credited[note_id] += amount
    notes = CreditNote.objects.filter(status=CreditNote.Status.ISSUED).filter(
        Q(refund_amount__gt=0) | Q(pk__in=list(live)) | Q(pk__in=list(credited))
    )
    for note_id, refund_amount in notes.values_list("id", "refund_amount"):
        accounted = (live.get(note_id) or 0) + credited.get(note_id, 0)
        if accounted != refund_amount:
            problems.append(
                f"credit note {note_id}: refund_amount {refund_amount}, but its live refunds and failed-refund "
                f"credits sum to {accounted}"
            )
    return problems


def audit_disputes() -> list[str]:
    """A dispute is of a succeeded payment in the payment's currency; a lost one returned its amount."""
    problems = []
    rows = Dispute.objects.values_list(
        "id", "status", "amount", "amount_lost", "currency", "payment_intent__status", "payment_intent__currency"
    )
    for dp_id, status, amount, amount_lost, currency, intent_status, intent_currency in rows:
        if intent_status != PaymentIntent.Status.SUCCEEDED:
            problems.append(f"dispute {dp_id}: its payment is {intent_status}, not succeeded")
        if currency != intent_currency:
            problems.append(f"dispute {dp_id}: in {currency}, its payment in {intent_currency}")
        if amount_lost != (amount if status == Dispute.Status.LOST else 0):
            problems.append(f"dispute {dp_id}: {status} with amount_lost {amount_lost} of {amount}")
    return problems


def audit_progressive_billing() -> list[str]:
    """Progressive billing bills a period's usage early, never twice: for every period whose final invoice
    (the subscription's next cycle or cancel invoice of that period) exists, its `progressive_credit`
    lines take off exactly what the period's threshold invoices billed."""
    billed: dict[tuple[str, object], int] = defaultdict(int)
    seen: set[tuple[str, object, str]] = set()
    for row in ProgressiveBilling.objects.values("subscription_id", "period_start", "invoice_id", "amount"):
        key = (row["subscription_id"], row["period_start"], row["invoice_id"])
        if key not in seen:  # the rows of one invoice carry its amount once each
            seen.add(key)
            billed[(row["subscription_id"], row["period_start"])] += row["amount"]
    problems = []
    for (sub_id, period_start), amount in billed.items():
        credits = InvoiceLine.objects.filter(
            invoice__subscription_id=sub_id,
            kind=InvoiceLine.Kind.PROGRESSIVE_CREDIT,
            period_start=period_start,
        ).exclude(invoice__status=Invoice.Status.VOID)
        # A threshold invoice's own credit only nets out the earlier ones; the final invoice's is the check.
        credits = credits.exclude(invoice__billing_reason=Invoice.BillingReason.SUBSCRIPTION_THRESHOLD)
        if not credits.exists():
            continue  # the period has not been finally billed yet
        credited = -(credits.aggregate(total=Sum("amount"))["total"] or 0)
        if credited != amount:
            problems.append(
                f"subscription {sub_id} period {period_start}: threshold invoices billed {amount}, "
                f"the final invoice took off {credited}"
            )
    return problems


CHECKS: dict[str, Callable[[], list[str]]] = {
    "balances": audit_balances,
    "credit grants": audit_grants,
    "invoices": audit_invoices,
    "credit notes": audit_credit_notes,
    "refunds": audit_refunds,
    "refund reservations": audit_refund_reservations,
    "payments": audit_payments,
    "credit note refunds": audit_credit_note_refunds,
    "disputes": audit_disputes,
    "progressive billing": audit_progressive_billing,
}


def audit_all() -> list[str]:
    return [f"{name}: {problem}" for name, check in CHECKS.items() for problem in check()]
