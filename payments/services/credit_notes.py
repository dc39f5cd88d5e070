"""Credit notes: money given back against an open or paid invoice.

Amounts
- By line (`amount`, or `quantity` x the line's unit amount; a line without one uses its average,
  amount / quantity), or by a plain `amount`. A line credit takes the line's tax with it, per rate,
  proportionally to what it credits of what the line charged (`_LineTaxes`: exact to the minor unit,
  the whole line credits exactly its whole tax); exclusive tax is added to the note's total, inclusive
  tax is inside the line amount. A plain `amount` credits no line and no tax.
- The total never exceeds what is left to credit on the invoice (`total - credited`), and a line's
  credit never exceeds `amount - discount_amount - credited` of that line (what it charged). Both are
  checked under the invoice's row lock, so concurrent credit notes on one invoice cannot together pass
  either limit (and the database checks `credited <= total` / `<= amount` as a last guard).

Split
- Open invoice: the credit first reduces what is still due (`invoice_amount` = min(total,
  amount_remaining); amount_due and amount_remaining go down, and the invoice is paid when nothing
  remains). The rest must be split exactly: refund_amount + credit_amount + out_of_band_amount.
- Paid invoice: refund_amount + credit_amount + out_of_band_amount must equal the total.
- credit_amount goes to the customer's balance (a `credit_note` entry); refund_amount becomes a Refund
  (`payments.intents.refund_create`, which refuses more than was received); out_of_band_amount is only
  recorded.

Void (issued -> void) gives everything back: the invoice's and lines' `credited`, the amount due an
open invoice lost, and the balance credit (a `reversal` entry). Refused (409) when part was refunded
(money left; it cannot come back; a refund the provider refused does not count), when the balance
credit was already spent, or when the invoice the note reduced is no longer open.

Numbers come from the gapless `credit_note` sequence, taken last in the transaction.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Sum
from django.utils import timezone

from billing_site.errors import Conflict, InvalidRequest
from billing_site.money import round_fraction
from invoicing.finalization import allocate_numbers, invoice_snapshot
from invoicing.locks import lock_invoice
from invoicing.models import Invoice, InvoiceLine, TaxRate
from payments.locks import lock_credit_note
from payments.models import BalanceTransaction, CreditNote, CreditNoteLine, Refund
from payments.services.giveback import giveback_check
from payments.services.ledger import balance_adjust, balance_row_lock
from webhooks.services import event_emit, object_event_emit

CNStatus = CreditNote.Status
_SPLIT_FIELDS = ("refund_amount", "credit_amount", "out_of_band_amount")
# Credit note reasons that have a refund reason of the same name; the others are the customer's request.
_REFUND_REASONS = {CreditNote.Reason.DUPLICATE: "duplicate", CreditNote.Reason.FRAUDULENT: "fraudulent"}


@dataclass(frozen=True)
class _LineSpec:
    index: int
    line_id: str
    amount: int | None
    quantity: Decimal | None


def _int_param(value: Any, param: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidRequest(f"{param} must be an integer >= {minimum}.", param=param)
    return value


def _line_specs(lines: Sequence[Mapping[str, Any]]) -> list[_LineSpec]:
    specs = []
    for index, spec in enumerate(lines):
        where = f"lines[{index}]"
        if not isinstance(spec, Mapping):
            raise InvalidRequest("Each line must be an object.", param=where)
        line = spec.get("invoice_line")
        line_id = line.pk if isinstance(line, InvoiceLine) else line
        if not isinstance(line_id, str) or not line_id:
            raise InvalidRequest("invoice_line is required.", param=f"{where}.invoice_line", code="parameter_missing")
        amount, quantity = spec.get("amount"), spec.get("quantity")
        if (amount is None) == (quantity is None):
            raise InvalidRequest("Give amount or quantity (one of them).", param=f"{where}.amount")
        if amount is not None:
            _int_param(amount, f"{where}.amount", minimum=1)
        else:
            if isinstance(quantity, bool) or not isinstance(quantity, (int, Decimal)) or quantity <= 0:
                raise InvalidRequest("quantity must be a positive number.", param=f"{where}.quantity")
            quantity = Decimal(quantity)
        specs.append(_LineSpec(index=index, line_id=line_id, amount=amount, quantity=quantity))
    return specs


def _line_value(line: InvoiceLine, spec: _LineSpec) -> int:
    if spec.amount is not None:
        return spec.amount
    assert spec.quantity is not None
    if line.unit_amount is not None:
        unit = Fraction(line.unit_amount)
    elif line.quantity:
        unit = Fraction(line.amount) / Fraction(line.quantity)
    else:
        raise InvalidRequest(
            f"Invoice line {line.pk} has no quantity; credit it by amount.",
            param=f"lines[{spec.index}].quantity",
        )
    value = round_fraction(Fraction(spec.quantity) * unit)
    if value <= 0:
        raise InvalidRequest("This quantity credits nothing.", param=f"lines[{spec.index}].quantity")
    return value


class _LineTaxes:
    """The tax a line credit takes with it, per rate of the invoice line, proportionally to what it credits
    of what the line charged: after a credit the line's credited tax for a rate is round(rate's tax x
    credited / charged), less what live credit notes already credited of that rate. Cumulative, so the
    remainders land where they must and crediting the whole line credits exactly its whole tax."""

    def __init__(self, lines: Iterable[InvoiceLine]) -> None:
        lines = list(lines)
        rate_ids = {t["tax_rate"] for line in lines for t in line.taxes or []}
        self.inclusive = dict(TaxRate.objects.filter(pk__in=rate_ids).values_list("id", "inclusive"))
        self.credited: dict[tuple[str, str], int] = defaultdict(int)
        live = CreditNoteLine.objects.filter(
            invoice_line__in=[line.pk for line in lines], credit_note__status=CNStatus.ISSUED
        ).values_list("invoice_line_id", "taxes")
        for line_id, taxes in live:
            for tax in taxes or []:
                self.credited[(line_id, tax["tax_rate"])] += tax["amount"]

    def credit(self, line: InvoiceLine, *, credited_after: int) -> list[dict[str, Any]]:
        charged = line.amount - line.discount_amount
        out = []
        for tax in line.taxes or []:
            rate_id = tax["tax_rate"]
            due = round_fraction(Fraction(tax["amount"]) * credited_after / charged)
            value = due - self.credited[(line.pk, rate_id)]
            self.credited[(line.pk, rate_id)] = due
            out.append({"tax_rate": rate_id, "amount": value, "inclusive": bool(self.inclusive.get(rate_id, False))})
        return out


def _sum_taxes(groups: Iterable[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per rate, in the order rates first appear."""
    by_rate: dict[str, dict[str, Any]] = {}
    for taxes in groups:
        for tax in taxes:
            row = by_rate.setdefault(
                tax["tax_rate"], {"tax_rate": tax["tax_rate"], "amount": 0, "inclusive": tax["inclusive"]}
            )
            row["amount"] += tax["amount"]
    return list(by_rate.values())


def credit_note_snapshot(note: CreditNote) -> dict[str, Any]:
    return {
        "id": note.id,
        "number": note.number,
        "invoice": note.invoice_id,
        "customer": note.customer_id,
        "currency": note.currency,
        "amount": note.amount,
        "invoice_amount": note.invoice_amount,
        "credit_amount": note.credit_amount,
        "refund_amount": note.refund_amount,
        "out_of_band_amount": note.out_of_band_amount,
        "tax": note.tax,
        "reason": note.reason or None,
        "status": note.status,
    }


def _check_status(invoice: Invoice) -> None:
    if invoice.status not in (Invoice.Status.OPEN, Invoice.Status.PAID):
        raise Conflict(
            f"Invoice {invoice.id} is {invoice.status}; credit notes are issued against open or paid invoices.",
            code="invoice_status_conflict",
        )


def _split_error(message: str, parts: dict[str, int]) -> InvalidRequest:
    # Name the first part the caller set (the one to fix), or credit_amount when none was set.
    param = next((name for name in _SPLIT_FIELDS if parts[name]), "credit_amount")
    return InvalidRequest(message, param=param, code="credit_note_split_mismatch")


def credit_note_create(
    *,
    invoice: Invoice,
    now: datetime,
    lines: Sequence[Mapping[str, Any]] | None = None,
    amount: int | None = None,
    reason: str = "",
    memo: str = "",
    refund_amount: int = 0,
    credit_amount: int = 0,
    out_of_band_amount: int = 0,
) -> CreditNote:
    """Issue a credit note against an open or paid invoice (module docstring: amounts, split). Any bad
    input is a 400 naming the field, an invoice in another state a 409; either way nothing is written."""
    parts = {
        "refund_amount": _int_param(refund_amount, "refund_amount", minimum=0),
        "credit_amount": _int_param(credit_amount, "credit_amount", minimum=0),
        "out_of_band_amount": _int_param(out_of_band_amount, "out_of_band_amount", minimum=0),
    }
    reason = reason or ""
    if reason and reason not in CreditNote.Reason.values:
        raise InvalidRequest(f"Unknown reason '{reason}'.", param="reason")
    memo = memo or ""
    if len(memo) > 1000:
        raise InvalidRequest("memo is at most 1000 characters.", param="memo")
    if lines is None and amount is None:
        raise InvalidRequest("Give lines or amount.", param="amount", code="parameter_missing")
    if lines is not None and len(lines) == 0:
        raise InvalidRequest("lines must not be empty.", param="lines")
    if amount is not None:
        _int_param(amount, "amount", minimum=1)
    specs = _line_specs(lines) if lines is not None else []
    # Refuse a draft without taking any lock: its finalization holds the invoice and then takes the
    # balance row (negative totals), the reverse of this service's order.
    _check_status(Invoice.objects.filter(pk=invoice.pk).only("status").first() or invoice)

    with transaction.atomic():
        # The customer's balance row before the invoice: the lock order every payments service keeps.
        if parts["credit_amount"]:
            balance_row_lock(customer_id=invoice.customer_id, currency=invoice.currency, now=now)
        locked = lock_invoice(invoice.pk)
        _check_status(locked)
        rows = {row.pk: row for row in InvoiceLine.objects.filter(invoice=locked, pk__in=[s.line_id for s in specs])}
        taxing = _LineTaxes(rows.values())
        per_line: dict[str, int] = defaultdict(int)
        note_lines: list[CreditNoteLine] = []
        for spec in specs:
            line = rows.get(spec.line_id)
            if line is None:
                raise InvalidRequest(
                    f"Invoice {locked.id} has no line {spec.line_id}.",
                    param=f"lines[{spec.index}].invoice_line",
                    code="resource_missing",
                )
            value = _line_value(line, spec)
            # What the line charged: its amount after its discount (its tax was computed on that).
            left = line.amount - line.discount_amount - line.credited - per_line[line.pk]
            if value > left:
                raise InvalidRequest(
                    f"Line {line.pk} has {max(left, 0)} left to credit; this asks for {value}.",
                    param=f"lines[{spec.index}].{'amount' if spec.amount is not None else 'quantity'}",
                    code="credit_note_exceeds_line",
                )
            per_line[line.pk] += value
            note_lines.append(
                CreditNoteLine(
                    invoice_line=line,
                    description=line.description,
                    quantity=spec.quantity,
                    amount=value,
                    taxes=taxing.credit(line, credited_after=line.credited + per_line[line.pk]),
                )
            )
        note_taxes = _sum_taxes(note_line.taxes for note_line in note_lines)
        exclusive_tax = sum(t["amount"] for t in note_taxes if not t["inclusive"])
        total = sum(per_line.values()) + exclusive_tax if specs else amount
        assert total is not None
        if specs and amount is not None and amount != total:
            raise InvalidRequest(
                f"amount ({amount}) must equal the sum of the lines with their exclusive tax ({total}).",
                param="amount",
            )
        left = locked.total - locked.credited
        if total > left:
            raise InvalidRequest(
                f"Invoice {locked.id} has {max(left, 0)} left to credit; this credit note is {total}.",
                param="amount" if not specs else "lines",
                code="credit_note_exceeds_invoice",
            )
        invoice_amount = min(total, locked.amount_remaining) if locked.status == Invoice.Status.OPEN else 0
        rest = total - invoice_amount
        if sum(parts.values()) != rest:
            if invoice_amount:
                message = (
                    f"On an open invoice a credit note first reduces the amount remaining ({invoice_amount}); "
                    f"refund_amount + credit_amount + out_of_band_amount must equal the rest ({rest})."
                )
            else:
                message = (
                    f"refund_amount + credit_amount + out_of_band_amount must equal the credit note's total ({total})."
                )
            raise _split_error(message, parts)
        # What is given back of what was paid (the balance credit, the refund, out of band) shares one
        # limit with the invoice's refunds and lost disputes.
        giveback_check(
            invoice=locked,
            amount=rest,
            param=next((name for name in _SPLIT_FIELDS if parts[name]), "credit_amount"),
        )

        note = CreditNote(
            invoice=locked,
            customer_id=locked.customer_id,
            currency=locked.currency,
            amount=total,
            invoice_amount=invoice_amount,
            tax=sum(t["amount"] for t in note_taxes),
            taxes=note_taxes,
            reason=reason,
            memo=memo,
            **parts,
        )
        note.number = note.id  # a unique placeholder until the real number is taken, last
        note.save(force_insert=True)
        if not note_lines:
            note_lines = [CreditNoteLine(description=f"Credit on invoice {locked.number}", amount=total)]
        for note_line in note_lines:
            note_line.credit_note = note
        CreditNoteLine.objects.bulk_create(note_lines)
        for line_id, value in per_line.items():
            InvoiceLine.objects.filter(pk=line_id).update(credited=F("credited") + value)
        paid_now = _invoice_credit(locked, total=total, invoice_amount=invoice_amount, now=now)
        if parts["credit_amount"]:
            balance_adjust(
                customer=locked.customer,
                amount=parts["credit_amount"],
                currency=locked.currency,
                type=BalanceTransaction.Type.CREDIT_NOTE,
                description=f"Credit note on invoice {locked.number}",
                invoice=locked,
                credit_note=note,
                now=now,
            )
        if parts["refund_amount"]:
            from payments.services.refunds import refund_create  # payments.intents imports far more than we need here

            refund_create(
                payment_intent=None,
                invoice=locked,
                amount=parts["refund_amount"],
                reason=_REFUND_REASONS.get(reason, Refund.Reason.REQUESTED_BY_CUSTOMER),
                now=now,
                credit_note=note,
            )
        # The number last: from here to commit every other credit note waits on the sequence row.
        note.number = allocate_numbers("credit_note", settings.CREDIT_NOTE_NUMBER_PREFIX, 1)[0]
        CreditNote.objects.filter(pk=note.pk).update(number=note.number)
        object_event_emit(type="credit_note.created", obj=note, data=credit_note_snapshot(note), now=now)
        if paid_now:
            event_emit(
                type="invoice.paid",
                object_type="invoice",
                object_id=locked.id,
                customer_id=locked.customer_id,
                data=invoice_snapshot(locked),
                previous_attributes={"status": Invoice.Status.OPEN},
                now=now,
            )
    return note


def _invoice_credit(invoice: Invoice, *, total: int, invoice_amount: int, now: datetime) -> bool:
    """Add a credit note to the locked invoice (compare-and-set on status and credited); True when it
    leaves an open invoice with nothing to pay, which makes it paid."""
    updates: dict[str, Any] = {"credited": F("credited") + total, "updated_at": timezone.now()}
    paid_now = False
    if invoice_amount:
        updates["amount_due"] = F("amount_due") - invoice_amount
        updates["amount_remaining"] = F("amount_remaining") - invoice_amount
        if invoice.amount_remaining == invoice_amount:
            updates.update(status=Invoice.Status.PAID, paid_at=now, next_payment_attempt=None)
            paid_now = True
    changed = Invoice.objects.filter(pk=invoice.pk, status=invoice.status, credited=invoice.credited).update(**updates)
    if changed != 1:  # unreachable under the row lock; kept as the compare-and-set it documents
        raise Conflict(f"Invoice {invoice.id} changed concurrently; retry.", code="invoice_status_conflict")
    invoice.refresh_from_db()
    return paid_now


def credit_note_void(*, credit_note: CreditNote, now: datetime) -> CreditNote:
    """issued -> void, giving back everything the note did (module docstring). 409 when it cannot."""
    with transaction.atomic():
        row = None
        # A refund of the note that failed was credited to the balance (`refund_failed`): voiding takes it
        # back with the note's own balance credit.
        if credit_note.credit_amount or credit_note.refund_amount:
            row = balance_row_lock(customer_id=credit_note.customer_id, currency=credit_note.currency, now=now)
        invoice = lock_invoice(credit_note.invoice_id)
        note = lock_credit_note(credit_note.pk)
        if note.status != CNStatus.ISSUED:
            raise Conflict(f"Credit note {note.id} is {note.status}.", code="credit_note_status_conflict")
        if note.refund_amount and Refund.objects.filter(credit_note=note).exclude(status=Refund.Status.FAILED).exists():
            raise Conflict(
                f"Credit note {note.id} refunded {note.refund_amount}; a refund cannot be voided.",
                code="credit_note_refunded",
            )
        if note.invoice_amount and invoice.status != Invoice.Status.OPEN:
            raise Conflict(
                f"Credit note {note.id} reduced invoice {invoice.id}, which is now {invoice.status}; it cannot "
                "be voided.",
                code="invoice_status_conflict",
            )
        credited = note.credit_amount + (
            BalanceTransaction.objects.filter(credit_note=note, type=BalanceTransaction.Type.REFUND_FAILED).aggregate(
                total=Sum("amount")
            )["total"]
            or 0
        )
        if credited:
            assert row is not None
            if row.balance < credited:
                raise Conflict(
                    f"The customer's balance ({row.balance}) no longer holds the {credited} this credit "
                    "note credited; it was spent.",
                    code="credit_note_credit_spent",
                )
            balance_adjust(
                customer=invoice.customer,
                amount=-credited,
                currency=note.currency,
                type=BalanceTransaction.Type.REVERSAL,
                description=f"Void of credit note {note.number}",
                invoice=invoice,
                credit_note=note,
                now=now,
            )
        by_line: dict[str, int] = defaultdict(int)
        for line_id, value in note.lines.filter(invoice_line__isnull=False).values_list("invoice_line_id", "amount"):
            by_line[line_id] += value
        for line_id, value in by_line.items():
            InvoiceLine.objects.filter(pk=line_id).update(credited=F("credited") - value)
        updates: dict[str, Any] = {"credited": F("credited") - note.amount, "updated_at": timezone.now()}
        if note.invoice_amount:
            updates["amount_due"] = F("amount_due") + note.invoice_amount
            updates["amount_remaining"] = F("amount_remaining") + note.invoice_amount
        changed = Invoice.objects.filter(pk=invoice.pk, status=invoice.status, credited=invoice.credited).update(
            **updates
        )
        voided = CreditNote.objects.filter(pk=note.pk, status=CNStatus.ISSUED).update(
            status=CNStatus.VOID, voided_at=now, updated_at=timezone.now()
        )
        if changed != 1 or voided != 1:  # unreachable under the row locks
            raise Conflict(f"Credit note {note.id} changed concurrently; retry.", code="credit_note_status_conflict")
        note.refresh_from_db()
        object_event_emit(
            type="credit_note.voided",
            obj=note,
            data=credit_note_snapshot(note),
            now=now,
            previous={"status": CNStatus.ISSUED},
        )
    return note


# --- Reading --------------------------------------------------------------------------------------
