"""Consistency checks over the money ledgers, run by `python manage.py billing_audit` and by tests.

Each check returns a list of problems (human-readable strings naming the rows); an empty list means it
holds. They read committed state only and change nothing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import datetime

from django.db.models import Q, Sum
from django.utils import timezone

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
from payments.services.intents import NOT_FOUND_GRACE, PROCESSING_STALE
from subscriptions.models import ProgressiveBilling, Subscription
from subscriptions.periods import Period
from subscriptions.services.builder import minimum_true_ups, period_usage_until
from subscriptions.services.context import BillingContext

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


def _provider_applied() -> dict[str, int]:
    """Per invoice: what its succeeded provider payments received, less what went to the balance as
    unapplied (`overpayment`)."""
    overpaid = dict(
        BalanceTransaction.objects.filter(type=BalanceTransaction.Type.OVERPAYMENT).values_list(
            "payment_intent_id", "amount"
        )
    )
    applied: dict[str, int] = defaultdict(int)
    rows = PaymentIntent.objects.filter(status=PaymentIntent.Status.SUCCEEDED, invoice__isnull=False).values_list(
        "id", "invoice_id", "amount_received"
    )
    for pi_id, invoice_id, received in rows.iterator(chunk_size=2000):
        applied[invoice_id] += received - overpaid.get(pi_id, 0)
    return applied


def audit_invoice_payments() -> list[str]:
    """Provider money received = applied to invoices + credited to the balance (unapplied money a payment
    brought, `overpayment`); so on every invoice, credits + balance + provider money applied is exactly
    `amount_paid`, which is at most its total. A payment without an invoice is a direct charge: held as
    received, explained by itself. (Refunds and lost disputes are what `given back` checks.)"""
    problems = []
    applied = _provider_applied()
    invoices = Invoice.objects.filter(Q(pk__in=list(applied)) | ~Q(amount_paid=0)).values_list(
        "id", "total", "amount_paid", "credits_applied", "balance_applied"
    )
    for inv_id, total, paid, credits, balance in invoices.iterator(chunk_size=2000):
        provider = applied.get(inv_id, 0)
        if credits + balance + provider != paid:
            problems.append(
                f"invoice {inv_id}: credits {credits} + balance {balance} + provider money applied {provider} = "
                f"{credits + balance + provider}, but amount_paid is {paid}"
            )
        if paid > max(total, 0):
            problems.append(f"invoice {inv_id}: amount_paid {paid} is more than its total {total}")
    return problems


def audit_given_back() -> list[str]:
    """Per invoice, what was given back (credit notes' balance, refund and out-of-band parts, refunds
    outside credit notes, lost disputes: `payments.services.giveback`) is at most what it was paid."""
    from payments.services.giveback import invoice_given_back

    candidates = set(
        CreditNote.objects.filter(status=CreditNote.Status.ISSUED).values_list("invoice_id", flat=True)
    ) | set(Refund.objects.exclude(status=Refund.Status.FAILED).values_list("payment_intent__invoice_id", flat=True))
    candidates |= set(
        Dispute.objects.filter(status=Dispute.Status.LOST).values_list("payment_intent__invoice_id", flat=True)
    )
    candidates.discard(None)
    problems = []
    for inv_id, paid in Invoice.objects.filter(pk__in=candidates).values_list("id", "amount_paid"):
        back = invoice_given_back(inv_id)
        if back > paid:
            problems.append(f"invoice {inv_id}: {back} given back (refunds, credit notes, lost disputes), paid {paid}")
    return problems


# An intent in flight that no job has settled this long after its last change is stuck: the resolver
# settles unknown and stale processing payments every few minutes, and a provider that has no record of a
# payment after NOT_FOUND_GRACE never took it.
STUCK_AFTER = PROCESSING_STALE + NOT_FOUND_GRACE
_STUCK = (
    PaymentIntent.Status.REQUIRES_CONFIRMATION,
    PaymentIntent.Status.PROCESSING,
    PaymentIntent.Status.UNKNOWN,
)


def audit_stuck_intents(now: datetime | None = None) -> list[str]:
    """No open invoice waits on a payment intent stuck in flight (requires_confirmation, processing,
    unknown) for longer than the resolver's window: every later attempt would answer payment_in_progress."""
    now = now or timezone.now()
    rows = PaymentIntent.objects.filter(
        status__in=_STUCK, invoice__status=Invoice.Status.OPEN, updated_at__lt=now - STUCK_AFTER
    ).values_list("id", "invoice_id", "status", "updated_at")
    return [
        f"payment intent {pi_id} on open invoice {inv_id}: {status} since {updated:%Y-%m-%dT%H:%M:%SZ}, past the "
        "resolver's window"
        for pi_id, inv_id, status, updated in rows
    ]


def audit_settled_invoice_intents() -> list[str]:
    """No payment intent on a paid or void invoice is still in flight (it could still take money the
    invoice no longer owes)."""
    rows = PaymentIntent.objects.filter(
        status__in=PaymentIntent.IN_FLIGHT, invoice__status__in=(Invoice.Status.PAID, Invoice.Status.VOID)
    ).values_list("id", "invoice_id", "invoice__status", "status")
    return [
        f"payment intent {pi_id} on {inv_status} invoice {inv_id} is {status}"
        for pi_id, inv_id, inv_status, status in rows
    ]


def audit_credit_note_taxes() -> list[str]:
    """Every issued credit note's tax is the tax of what it credits: its `tax` and `taxes` are the sum of
    its lines' taxes per rate, its amount is its lines plus their exclusive tax (notes with lines), and per
    invoice line and rate the live notes never credit more tax than the line carried, nor less than all
    of it once the whole line is credited."""
    problems = []
    notes = CreditNote.objects.filter(status=CreditNote.Status.ISSUED).prefetch_related("lines")
    per_line: dict[tuple[str, str], int] = defaultdict(int)
    for note in notes.iterator(chunk_size=500):
        lines = list(note.lines.all())
        by_rate: dict[str, int] = defaultdict(int)
        exclusive = 0
        for line in lines:
            for tax in line.taxes or []:
                by_rate[tax["tax_rate"]] += tax["amount"]
                exclusive += 0 if tax.get("inclusive") else tax["amount"]
                if line.invoice_line_id:
                    per_line[(line.invoice_line_id, tax["tax_rate"])] += tax["amount"]
        stated = {t["tax_rate"]: t["amount"] for t in note.taxes or []}
        if note.tax != sum(by_rate.values()) or stated != {k: v for k, v in by_rate.items()}:
            problems.append(f"credit note {note.id}: tax {note.tax} {stated}, but its lines credit {dict(by_rate)}")
        linked = [line for line in lines if line.invoice_line_id]
        if linked and note.amount != sum(line.amount for line in lines) + exclusive:
            problems.append(
                f"credit note {note.id}: amount {note.amount}, but its lines and their exclusive tax make "
                f"{sum(line.amount for line in lines) + exclusive}"
            )
    lines = InvoiceLine.objects.filter(~Q(credited=0)).values_list(
        "id", "amount", "discount_amount", "credited", "taxes"
    )
    for line_id, amount, discount, credited, taxes in lines.iterator(chunk_size=2000):
        for tax in taxes or []:
            given = per_line.get((line_id, tax["tax_rate"]), 0)
            full = credited >= amount - discount
            if (full and given != tax["amount"]) or abs(given) > abs(tax["amount"]):
                problems.append(
                    f"invoice line {line_id}: credited {credited} of {amount - discount} and {given} of its "
                    f"{tax['amount']} tax at {tax['tax_rate']}"
                )
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


def audit_minimum_spend() -> list[str]:
    """A minimum spend is always met: for each billed period (of usage, a period with watermarks) of a
    subscription with a minimum, what its live invoices billed of an item's usage (`usage` and
    `late_usage` lines) plus its `minimum` lines reaches the item's minimum, and the subscription's items
    (licensed at their price for the part served) plus every `minimum` line of the period reach the
    subscription's. Void invoices and threshold invoices (their usage is billed again by the period's
    final invoice) do not count."""
    subs = list(
        Subscription.objects.filter(Q(minimum_amount__isnull=False) | Q(items__minimum_amount__isnull=False))
        .distinct()
        .select_related("customer")
    )
    if not subs:
        return []
    ctx = BillingContext.for_subscriptions(subs, now=timezone.now())
    lines: dict[str, list[tuple[datetime, str | None, str, int]]] = defaultdict(list)
    kinds = (InvoiceLine.Kind.USAGE, InvoiceLine.Kind.LATE_USAGE, InvoiceLine.Kind.MINIMUM)
    rows = (
        InvoiceLine.objects.filter(kind__in=kinds, period_start__isnull=False)
        .filter(
            Q(subscription_id__in=[s.id for s in subs])
            | Q(subscription_id__isnull=True, invoice__subscription_id__in=[s.id for s in subs])
        )
        .exclude(invoice__status=Invoice.Status.VOID)
        .exclude(invoice__billing_reason=Invoice.BillingReason.SUBSCRIPTION_THRESHOLD)
        .values_list(
            "subscription_id", "invoice__subscription_id", "period_start", "subscription_item_id", "kind", "amount"
        )
    )
    for line_sub, invoice_sub, start, item_id, kind, amount in rows.iterator(chunk_size=2000):
        lines[line_sub or invoice_sub].append((start, item_id, kind, amount))
    problems = []
    for sub in subs:
        billed_periods = sorted({(wm.period_start, wm.period_end) for wm in ctx.watermarks(sub)})
        for start, end in billed_periods:
            usage: dict[str, int] = defaultdict(int)
            minimum: dict[str | None, int] = defaultdict(int)
            for line_start, item_id, kind, amount in lines[sub.id]:
                if not start <= line_start < end:
                    continue
                if kind == InvoiceLine.Kind.MINIMUM:
                    minimum[item_id] += amount
                elif item_id is not None:
                    usage[item_id] += amount
            period = Period(start, end)
            for owed in minimum_true_ups(sub, period, dict(usage), ctx=ctx, until=period_usage_until(sub, period)):
                if owed.item is not None:
                    covered = max(usage[owed.item.id], 0) + minimum[owed.item.id]
                    what = f"item {owed.item.id}"
                else:
                    covered = owed.licensed + sum(max(v, 0) for v in usage.values()) + sum(minimum.values())
                    what = "the subscription"
                if covered < owed.true_up.minimum:
                    problems.append(
                        f"subscription {sub.id} period {start.isoformat()}: {what} billed {covered}, "
                        f"below its minimum {owed.true_up.minimum}"
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
    "invoice payments": audit_invoice_payments,
    "given back": audit_given_back,
    "stuck intents": audit_stuck_intents,
    "settled invoice intents": audit_settled_invoice_intents,
    "credit note taxes": audit_credit_note_taxes,
    "progressive billing": audit_progressive_billing,
    "minimum spend": audit_minimum_spend,
}


def audit_all(now: datetime | None = None) -> list[str]:
    """Every check. `now` (a test's clock) is what the time-based checks measure from."""
    results = []
    for name, check in CHECKS.items():
        found = check(now) if check is audit_stuck_intents else check()  # type: ignore[call-arg]
        results.extend(f"{name}: {problem}" for problem in found)
    return results
