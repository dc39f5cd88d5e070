"""Consistency checks over the money ledgers, run by `python manage.py billing_audit` and by tests.

Each check returns a list of problems (human-readable strings naming the rows); an empty list means it
holds. They read committed state only and change nothing.

Their memory does not grow with the books (issue 15): each check is one or a few set-based statements
that return only the rows that break it (per-row totals are aggregated once per key and left-joined,
`_with_totals`), or a stream over ordered rows (`.iterator(chunk_size=CHUNK)`) that keeps one group at a
time. Nothing builds a dict or list of every row; only the problems found are kept.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from itertools import groupby
from operator import itemgetter
from typing import Any

from django.db import connection
from django.db.models import BigIntegerField, Case, Count, F, Q, QuerySet, Sum, Value, When
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
CHUNK = 2000  # rows per fetch of a streamed query (a server-side cursor on PostgreSQL)
_INT = BigIntegerField()


def _grouped(rows: QuerySet, key: str, field: Any) -> tuple[str, tuple]:
    """`SELECT key AS k, SUM(field) AS t FROM rows GROUP BY key`: the per-key totals, computed once."""
    per_key = rows.order_by().values(k=F(key)).annotate(t=Sum(field)).values("k", "t")
    sql, params = per_key.query.sql_with_params()
    return sql, tuple(params)


def _with_totals(
    outer: QuerySet,
    fields: Iterable[str],
    totals: dict[str, tuple[QuerySet, str, Any]],
    where: str,
    where_params: Iterable = (),
) -> Iterator[tuple]:
    """The rows of `outer` (its `fields`, then one column per total) for which the SQL condition `where`
    (over those column names) holds, in id order. Each total is aggregated once per key (`_grouped`) and
    left-joined to the outer rows on their id, 0 where none: the database hashes or merges the grouped
    totals once instead of running a subquery per outer row, so the cost stays linear in the books."""
    fields = list(fields)
    outer_sql, outer_params = outer.order_by().values_list(*fields).query.sql_with_params()
    params: list = list(outer_params)
    columns = [f"o.{name}" for name in fields]
    joins = []
    for name, (rows, key, field) in totals.items():
        sql, sub_params = _grouped(rows, key, field)
        joins.append(f"LEFT JOIN ({sql}) g_{name} ON g_{name}.k = o.id")
        params += sub_params
        columns.append(f"CAST(COALESCE(g_{name}.t, 0) AS BIGINT) AS {name}")
    # Column names and conditions are this module's constants; every value is a parameter.
    inner = f"SELECT {', '.join(columns)} FROM ({outer_sql}) o {' '.join(joins)}"  # noqa: S608
    query = f"SELECT * FROM ({inner}) x WHERE {where} ORDER BY id"  # noqa: S608
    params += list(where_params)
    with connection.cursor() as cursor:
        cursor.execute(query, params)
        while chunk := cursor.fetchmany(CHUNK):
            yield from chunk


def audit_balances() -> list[str]:
    """Every balance equals the sum of its transactions, and the ending balances chain along the ledger
    (in id order, which is the order they were written in)."""
    problems = []
    # One stream in ledger order; only the running sum of the balance being read is kept.
    rows = BalanceTransaction.objects.order_by("balance_id", "id").values_list(
        "id",
        "balance_id",
        "amount",
        "ending_balance",
        "customer_id",
        "currency",
        "balance__customer_id",
        "balance__currency",
    )
    current, running = None, 0
    for txn_id, balance_id, amount, ending, customer_id, currency, owner, owner_currency in rows.iterator(
        chunk_size=CHUNK
    ):
        if balance_id != current:
            current, running = balance_id, 0
        running += amount
        if ending != running:
            problems.append(
                f"balance transaction {txn_id}: ending_balance {ending}, but the ledger before it sums to "
                f"{running - amount} + {amount} = {running}"
            )
        if (owner, owner_currency) != (customer_id, currency):
            problems.append(f"balance transaction {txn_id} is filed under another customer's or currency's balance")
    wrong = _with_totals(
        CustomerBalance.objects.all(),
        ("id", "customer_id", "currency", "balance"),
        {"total": (BalanceTransaction.objects.all(), "balance_id", "amount")},
        "balance <> total",
    )
    for _, customer_id, currency, balance, total in wrong:
        problems.append(f"customer {customer_id} {currency}: balance {balance}, but its transactions sum to {total}")
    return problems


def audit_grants() -> list[str]:
    """No grant burned beyond its amount, nor below zero (more given back than burned)."""
    problems = []
    grants = (
        CreditGrant.objects.annotate(burned=Sum("burns__amount"))
        .filter(Q(burned__gt=F("amount")) | Q(burned__lt=0))
        .order_by("id")
    )
    for grant_id, amount, burned in grants.values_list("id", "amount", "burned").iterator(chunk_size=CHUNK):
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
    invoices = _with_totals(
        Invoice.objects.filter(status__in=SETTLED),
        (
            "id",
            "status",
            "total",
            "amount_due",
            "amount_paid",
            "amount_remaining",
            "credits_applied",
            "balance_applied",
        ),
        {
            "burned": (CreditBurn.objects.all(), "invoice_id", "amount"),
            "spent": (
                BalanceTransaction.objects.filter(type=BalanceTransaction.Type.INVOICE_PAYMENT),
                "invoice_id",
                "amount",
            ),
            "reduced": (CreditNote.objects.filter(status=CreditNote.Status.ISSUED), "invoice_id", "invoice_amount"),
        },
        "amount_due <> amount_paid + amount_remaining"
        " OR amount_due <> (CASE WHEN total > 0 THEN total ELSE 0 END) - reduced"
        " OR credits_applied <> burned OR balance_applied <> -spent"
        " OR (status = %s AND amount_remaining <> 0)",
        (Invoice.Status.PAID.value,),
    )
    for inv_id, status, total, due, paid, remaining, credits, balance, burned, spent, reduced in invoices:
        if paid + remaining != due:
            problems.append(f"invoice {inv_id}: amount_paid {paid} + amount_remaining {remaining} != amount_due {due}")
        expected_due = max(total, 0) - reduced
        if due != expected_due:
            problems.append(f"invoice {inv_id}: amount_due {due}, but total and credit notes make it {expected_due}")
        from_balance = -spent
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
    invoices = _with_totals(
        Invoice.objects.all(),
        ("id", "total", "credited"),
        {"issued": (CreditNote.objects.filter(status=CreditNote.Status.ISSUED), "invoice_id", "amount")},
        "credited <> issued OR issued > (CASE WHEN total > 0 THEN total ELSE 0 END)",
    )
    for inv_id, total, credited, issued in invoices:
        if issued != credited:
            problems.append(f"invoice {inv_id}: credited {credited}, but its issued credit notes sum to {issued}")
        if issued > max(total, 0):
            problems.append(f"invoice {inv_id}: credit notes total {issued}, more than the invoice's total {total}")
    issued_lines = CreditNoteLine.objects.filter(credit_note__status=CreditNote.Status.ISSUED)
    lines = _with_totals(
        InvoiceLine.objects.all(),
        ("id", "amount", "credited"),
        {"issued": (issued_lines, "invoice_line_id", "amount")},
        "credited <> issued OR issued > (CASE WHEN amount > 0 THEN amount ELSE 0 END)",
    )
    for line_id, amount, credited, issued in lines:
        if issued != credited:
            problems.append(f"invoice line {line_id}: credited {credited}, but credit note lines sum to {issued}")
        if issued > max(amount, 0):
            problems.append(f"invoice line {line_id}: credited {issued}, more than its amount {amount}")
    return problems


# Per payment intent: its refunds that did not fail (a total for `_with_totals`).
_LIVE_REFUNDS = (Refund.objects.exclude(status=Refund.Status.FAILED), "payment_intent_id", "amount")


def audit_refunds() -> list[str]:
    """Refunds (pending or succeeded) of a payment, with the money its lost disputes returned, never
    exceed what it received."""
    problems = []
    intents = _with_totals(
        PaymentIntent.objects.all(),
        ("id", "amount_received"),
        {
            "refunded": _LIVE_REFUNDS,
            "lost": (Dispute.objects.filter(status=Dispute.Status.LOST), "payment_intent_id", "amount_lost"),
        },
        "(refunded > 0 OR lost > 0) AND amount_received < refunded + lost",
    )
    for pi_id, received, total, returned in sorted(intents):  # only the violators; in Python's order as before
        if returned:
            problems.append(
                f"payment intent {pi_id}: refunds {total} + lost disputes {returned} are more than received {received}"
            )
        else:
            problems.append(f"payment intent {pi_id}: refunds total {total}, more than received {received}")
    return problems


def audit_refund_reservations() -> list[str]:
    """A payment's `amount_refunded` (what is reserved so nothing is refunded twice) is the sum of its
    refunds that did not fail: a failed refund gave its amount back to what can be refunded."""
    intents = _with_totals(
        PaymentIntent.objects.all(),
        ("id", "amount_refunded"),
        {"refunded": _LIVE_REFUNDS},
        "amount_refunded <> refunded",
    )
    return [
        f"payment intent {pi_id}: amount_refunded {reserved}, but its live refunds sum to {refunded}"
        for pi_id, reserved, refunded in intents
    ]


def _provider_totals() -> dict[str, tuple[QuerySet, str, Any]]:
    """Per invoice (for `_with_totals`): how many succeeded provider payments it has (`payments`), what they
    received (`received`), and what of that went to the balance as unapplied (`overpaid`: `overpayment`,
    at most one per payment). The provider money applied to it is `received - overpaid`."""
    succeeded = PaymentIntent.objects.filter(status=PaymentIntent.Status.SUCCEEDED)
    overpaid = BalanceTransaction.objects.filter(
        type=BalanceTransaction.Type.OVERPAYMENT, payment_intent__status=PaymentIntent.Status.SUCCEEDED
    )
    return {
        "payments": (succeeded, "invoice_id", Value(1, output_field=_INT)),
        "received": (succeeded, "invoice_id", "amount_received"),
        "overpaid": (overpaid, "payment_intent__invoice_id", "amount"),
    }


def audit_payments() -> list[str]:
    """Provider money received for an invoice is never lost: what its succeeded payments received, less
    what was credited to the balance as unapplied (`overpayment`), is at most what the invoice records as
    paid by the provider (amount_paid less credits and balance applied). Each overpayment credit names a
    succeeded payment of the same customer and currency, and is at most what that payment received."""
    problems = []
    # Only the credits that may not fit come back (a superset; the loop decides).
    credits = (
        BalanceTransaction.objects.filter(type=BalanceTransaction.Type.OVERPAYMENT)
        .filter(
            Q(payment_intent__isnull=True)
            | Q(payment_intent__invoice__isnull=True)
            | ~Q(payment_intent__status=PaymentIntent.Status.SUCCEEDED)
            | ~Q(customer_id=F("payment_intent__customer_id"))
            | ~Q(currency=F("payment_intent__currency"))
            | Q(amount__gt=F("payment_intent__amount_received"))
        )
        .order_by("id")
        .values_list(
            "payment_intent_id",
            "amount",
            "customer_id",
            "currency",
            "payment_intent__status",
            "payment_intent__invoice_id",
            "payment_intent__amount_received",
            "payment_intent__customer_id",
            "payment_intent__currency",
        )
    )
    for (
        pi_id,
        amount,
        customer_id,
        currency,
        status,
        invoice_id,
        received,
        pi_customer,
        pi_currency,
    ) in credits.iterator(chunk_size=CHUNK):
        if invoice_id is None or status != PaymentIntent.Status.SUCCEEDED:
            problems.append(f"overpayment credit of {pi_id}: the payment did not succeed")
        elif (customer_id, currency) != (pi_customer, pi_currency) or amount > received:
            problems.append(f"overpayment credit of {pi_id}: {amount} {currency} does not fit the payment")
    invoices = _with_totals(
        Invoice.objects.all(),
        ("id", "amount_paid", "credits_applied", "balance_applied"),
        _provider_totals(),
        "payments > 0 AND received - overpaid > amount_paid - credits_applied - balance_applied",
    )
    for inv_id, paid, credits_applied, balance, _, received, overpaid in invoices:
        applied = received - overpaid
        if applied > paid - credits_applied - balance:
            problems.append(
                f"invoice {inv_id}: its payments brought {applied} that was not credited elsewhere, but it "
                f"records {paid - credits_applied - balance} paid by the provider"
            )
    return problems


def audit_credit_note_refunds() -> list[str]:
    """An issued credit note's refund part is accounted for: its refunds that did not fail, plus the
    balance credits of those that did (`refund_failed`), add up to its refund_amount. Each such credit
    names a failed refund of that note, for its amount."""
    problems = []
    failed_credits = (
        BalanceTransaction.objects.filter(type=BalanceTransaction.Type.REFUND_FAILED)
        .order_by("id")
        .values_list(
            "id", "credit_note_id", "amount", "refund__id", "refund__status", "refund__credit_note_id", "refund__amount"
        )
    )
    for txn_id, note_id, amount, refund_id, *refund in failed_credits.iterator(chunk_size=CHUNK):
        if refund_id is None or tuple(refund) != (Refund.Status.FAILED, note_id, amount):
            problems.append(f"balance transaction {txn_id}: a refund_failed credit that does not match its refund")
    live = Refund.objects.filter(credit_note__isnull=False).exclude(status=Refund.Status.FAILED)
    credited = BalanceTransaction.objects.filter(type=BalanceTransaction.Type.REFUND_FAILED)
    one = Value(1, output_field=_INT)
    notes = _with_totals(
        CreditNote.objects.filter(status=CreditNote.Status.ISSUED),
        ("id", "refund_amount"),
        {
            "refunded": (live, "credit_note_id", "amount"),
            "refunds": (live, "credit_note_id", one),
            "recredited": (credited, "credit_note_id", "amount"),
            "credits": (credited, "credit_note_id", one),
        },
        "refund_amount <> refunded + recredited AND (refund_amount > 0 OR refunds > 0 OR credits > 0)",
    )
    for note_id, refund_amount, refunded, _, recredited, _ in notes:
        accounted = refunded + recredited
        problems.append(
            f"credit note {note_id}: refund_amount {refund_amount}, but its live refunds and failed-refund "
            f"credits sum to {accounted}"
        )
    return problems


def audit_disputes() -> list[str]:
    """A dispute is of a succeeded payment in the payment's currency; a lost one returned its amount."""
    problems = []
    rows = (
        Dispute.objects.filter(
            ~Q(payment_intent__status=PaymentIntent.Status.SUCCEEDED)
            | ~Q(currency=F("payment_intent__currency"))
            | ~Q(amount_lost=Case(When(status=Dispute.Status.LOST, then=F("amount")), default=Value(0)))
        )
        .order_by("id")
        .values_list(
            "id", "status", "amount", "amount_lost", "currency", "payment_intent__status", "payment_intent__currency"
        )
    )
    for dp_id, status, amount, amount_lost, currency, intent_status, intent_currency in rows.iterator(chunk_size=CHUNK):
        if intent_status != PaymentIntent.Status.SUCCEEDED:
            problems.append(f"dispute {dp_id}: its payment is {intent_status}, not succeeded")
        if currency != intent_currency:
            problems.append(f"dispute {dp_id}: in {currency}, its payment in {intent_currency}")
        if amount_lost != (amount if status == Dispute.Status.LOST else 0):
            problems.append(f"dispute {dp_id}: {status} with amount_lost {amount_lost} of {amount}")
    return problems


def audit_invoice_payments() -> list[str]:
    """Provider money received = applied to invoices + credited to the balance (unapplied money a payment
    brought, `overpayment`); so on every invoice, credits + balance + provider money applied is exactly
    `amount_paid`, which is at most its total. A payment without an invoice is a direct charge: held as
    received, explained by itself. (Refunds and lost disputes are what `given back` checks.)"""
    problems = []
    invoices = _with_totals(
        Invoice.objects.all(),
        ("id", "total", "amount_paid", "credits_applied", "balance_applied"),
        _provider_totals(),
        "(payments > 0 OR amount_paid <> 0) AND (amount_paid <> credits_applied + balance_applied + received - overpaid"
        " OR amount_paid > (CASE WHEN total > 0 THEN total ELSE 0 END))",
    )
    for inv_id, total, paid, credits, balance, _, received, overpaid in invoices:
        provider = received - overpaid
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

    # The same sum as `invoice_given_back`, in SQL, finds the candidates; the service's own figure decides.
    candidates = _with_totals(
        Invoice.objects.all(),
        ("id", "amount_paid"),
        {
            "notes": (
                CreditNote.objects.filter(status=CreditNote.Status.ISSUED),
                "invoice_id",
                F("credit_amount") + F("refund_amount") + F("out_of_band_amount"),
            ),
            "refunds": (
                Refund.objects.filter(credit_note__isnull=True).exclude(status=Refund.Status.FAILED),
                "payment_intent__invoice_id",
                "amount",
            ),
            "lost": (Dispute.objects.filter(status=Dispute.Status.LOST), "payment_intent__invoice_id", "amount_lost"),
        },
        "notes + refunds + lost > amount_paid",
    )
    problems = []
    for inv_id, paid, *_ in list(candidates):
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
    # Every issued note with its lines (none: one row of NULLs), one note at a time.
    rows = (
        CreditNote.objects.filter(status=CreditNote.Status.ISSUED)
        .order_by("id", "lines__id")
        .values_list(
            "id", "tax", "taxes", "amount", "lines__id", "lines__invoice_line_id", "lines__amount", "lines__taxes"
        )
    )
    for _, note_rows in groupby(rows.iterator(chunk_size=CHUNK), key=itemgetter(0)):
        note_rows = list(note_rows)
        note_id, note_tax, note_taxes, note_amount = note_rows[0][:4]
        lines = [(row[5], row[6], row[7]) for row in note_rows if row[4] is not None]
        by_rate: dict[str, int] = defaultdict(int)
        exclusive = 0
        for _, _, taxes in lines:
            for tax in taxes or []:
                by_rate[tax["tax_rate"]] += tax["amount"]
                exclusive += 0 if tax.get("inclusive") else tax["amount"]
        stated = {t["tax_rate"]: t["amount"] for t in note_taxes or []}
        if note_tax != sum(by_rate.values()) or stated != {k: v for k, v in by_rate.items()}:
            problems.append(f"credit note {note_id}: tax {note_tax} {stated}, but its lines credit {dict(by_rate)}")
        linked = [line for line in lines if line[0]]
        if linked and note_amount != sum(amount for _, amount, _ in lines) + exclusive:
            problems.append(
                f"credit note {note_id}: amount {note_amount}, but its lines and their exclusive tax make "
                f"{sum(amount for _, amount, _ in lines) + exclusive}"
            )
    # Credited invoice lines in id order, merged with the issued notes' lines on those same invoice lines in
    # invoice-line order: two streams read side by side, one invoice line's credit note lines at a time.
    # Both are ordered by the database (ids are strings: its collation, not Python's, decides the order),
    # and every note line's invoice line is in the first stream, so matching needs only equality.
    credited = InvoiceLine.objects.filter(~Q(credited=0)).order_by("id")
    rows = credited.values_list("id", "amount", "discount_amount", "credited", "taxes").iterator(chunk_size=CHUNK)
    given_back = (
        CreditNoteLine.objects.filter(credit_note__status=CreditNote.Status.ISSUED, invoice_line__isnull=False)
        .exclude(invoice_line__credited=0)
        .order_by("invoice_line_id", "id")
        .values_list("invoice_line_id", "taxes")
        .iterator(chunk_size=CHUNK)
    )
    pending = next(given_back, None)
    for line_id, amount, discount, line_credited, taxes in rows:
        per_rate: dict[str, int] = defaultdict(int)
        while pending is not None and pending[0] == line_id:
            for tax in pending[1] or []:
                per_rate[tax["tax_rate"]] += tax["amount"]
            pending = next(given_back, None)
        for tax in taxes or []:
            given = per_rate.get(tax["tax_rate"], 0)
            full = line_credited >= amount - discount
            if (full and given != tax["amount"]) or abs(given) > abs(tax["amount"]):
                problems.append(
                    f"invoice line {line_id}: credited {line_credited} of {amount - discount} and {given} of "
                    f"its {tax['amount']} tax at {tax['tax_rate']}"
                )
    return problems


def _progressive_periods() -> Iterator[tuple[str, Any, int]]:
    """(subscription, period start, what its threshold invoices billed), one period at a time: the rows
    come in period order, and the rows of one invoice carry its amount once each."""
    rows = ProgressiveBilling.objects.order_by("subscription_id", "period_start", "invoice_id", "id").values_list(
        "subscription_id", "period_start", "invoice_id", "amount"
    )
    period, billed, last_invoice = None, 0, None
    for sub_id, period_start, invoice_id, amount in rows.iterator(chunk_size=CHUNK):
        if (sub_id, period_start) != period:
            if period is not None:
                yield (*period, billed)
            period, billed, last_invoice = (sub_id, period_start), 0, None
        if invoice_id != last_invoice:
            billed += amount
            last_invoice = invoice_id
    if period is not None:
        yield (*period, billed)


def audit_progressive_billing() -> list[str]:
    """Progressive billing bills a period's usage early, never twice: for every period whose final invoice
    (the subscription's next cycle or cancel invoice of that period) exists, its `progressive_credit`
    lines take off exactly what the period's threshold invoices billed."""
    problems = []
    for sub_id, period_start, amount in _progressive_periods():
        credits = InvoiceLine.objects.filter(
            invoice__subscription_id=sub_id,
            kind=InvoiceLine.Kind.PROGRESSIVE_CREDIT,
            period_start=period_start,
        ).exclude(invoice__status=Invoice.Status.VOID)
        # A threshold invoice's own credit only nets out the earlier ones; the final invoice's is the check.
        credits = credits.exclude(invoice__billing_reason=Invoice.BillingReason.SUBSCRIPTION_THRESHOLD)
        found = credits.aggregate(lines=Count("id"), total=Sum("amount"))
        if not found["lines"]:
            continue  # the period has not been finally billed yet
        credited = -(found["total"] or 0)
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
    subs = (
        Subscription.objects.filter(Q(minimum_amount__isnull=False) | Q(items__minimum_amount__isnull=False))
        .distinct()
        .select_related("customer")
        .order_by("id")
    )
    problems: list[str] = []
    batch: list[Subscription] = []
    # Streamed like every other check: one batch of subscriptions (their context and lines) at a time.
    for sub in subs.iterator(chunk_size=MINIMUM_BATCH):
        batch.append(sub)
        if len(batch) == MINIMUM_BATCH:
            problems += _minimum_spend_batch(batch)
            batch = []
    if batch:
        problems += _minimum_spend_batch(batch)
    return problems


MINIMUM_BATCH = 500  # subscriptions per batch of the minimum-spend check


def _minimum_spend_batch(subs: list[Subscription]) -> list[str]:
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
