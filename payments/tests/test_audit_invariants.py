"""The invariants added for issue 10: each reports the rows that break it, and a clean book passes."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from customers.tests.factories import CustomerFactory
from invoicing.models import Invoice, InvoiceLine, TaxRate
from payments.audit import (
    STUCK_AFTER,
    audit_all,
    audit_credit_note_taxes,
    audit_given_back,
    audit_invoice_payments,
    audit_settled_invoice_intents,
    audit_stuck_intents,
)
from payments.models import CreditNote, CreditNoteLine, PaymentIntent, Refund
from payments.services.credit_notes import credit_note_create
from payments.services.intents import payment_intent_charge_off_session
from payments.services.methods import payment_method_create
from payments.services.refunds import refund_create
from payments.tests.factories import LEDGER_T0, ledger_invoice, open_invoice

pytestmark = pytest.mark.django_db

NOW = LEDGER_T0


@pytest.fixture
def clean_books(django_capture_on_commit_callbacks):
    """A card payment, a refund, a taxed credit note, a balance credit note, an open invoice."""
    customer = CustomerFactory()
    payment_method_create(customer=customer, token="tok_visa", default=True, now=NOW)
    invoice = ledger_invoice(customer, lines=(2020,))
    intent = payment_intent_charge_off_session(invoice=invoice, amount=2020, now=NOW)
    refund_create(invoice=invoice, amount=500, now=NOW)
    with django_capture_on_commit_callbacks(execute=True):
        credit_note_create(invoice=invoice, amount=200, refund_amount=200, now=NOW)
    vat = TaxRate.objects.create(display_name="VAT", percentage=Decimal("20"), country="FR")
    taxed = ledger_invoice(customer, lines=(76900,), tax=15380, status="paid")
    line = taxed.lines.get()
    InvoiceLine.objects.filter(pk=line.pk).update(taxes=[{"tax_rate": vat.pk, "amount": 15380}])
    credit_note_create(invoice=taxed, lines=[{"invoice_line": line.pk, "amount": 76900}], credit_amount=92280, now=NOW)
    open_one = ledger_invoice(customer, lines=(1000,))
    return {"invoice": invoice, "intent": intent, "taxed": taxed, "line": line, "vat": vat, "open": open_one}


def test_a_clean_book_passes_every_invariant(clean_books):
    assert audit_all(now=NOW + timedelta(days=30)) == []


def test_provider_money_applied_to_nothing_is_reported(clean_books):
    # Item 1: the invoice was paid 1000 by a card and 300 by the balance, for 1000 owed.
    invoice = open_invoice(amount=1000)
    PaymentIntent.objects.create(
        customer=invoice.customer,
        invoice=invoice,
        amount=1000,
        currency="usd",
        status="succeeded",
        amount_received=1000,
        provider="sandbox",
    )
    Invoice.objects.filter(pk=invoice.pk).update(
        status="paid", amount_paid=1000, amount_remaining=0, balance_applied=300
    )
    [problem] = audit_invoice_payments()
    assert invoice.id in problem and "= 1300, but amount_paid is 1000" in problem


def test_amount_paid_nothing_explains_is_reported(clean_books):
    Invoice.objects.filter(pk=clean_books["open"].pk).update(amount_paid=400, amount_remaining=600)
    [problem] = audit_invoice_payments()
    assert clean_books["open"].id in problem and "amount_paid is 400" in problem


def test_given_back_twice_is_reported(clean_books):
    # Item 3: 2020 back to the card already; a balance credit note of 1520 written past the rule.
    invoice = clean_books["invoice"]
    CreditNote.objects.create(
        number="CN-ROGUE", invoice=invoice, customer=invoice.customer, currency="usd", amount=1520, credit_amount=1520
    )
    Refund.objects.create(
        payment_intent=clean_books["intent"], invoice=invoice, amount=1320, currency="usd", status="succeeded"
    )
    [problem] = audit_given_back()
    assert problem == f"invoice {invoice.id}: 3540 given back (refunds, credit notes, lost disputes), paid 2020"


def test_a_stuck_intent_on_an_open_invoice_is_reported(clean_books):
    invoice = clean_books["open"]
    intent = PaymentIntent.objects.create(
        customer=invoice.customer,
        invoice=invoice,
        amount=1000,
        currency="usd",
        status="requires_confirmation",
        provider="sandbox",
    )
    PaymentIntent.objects.filter(pk=intent.pk).update(updated_at=NOW)
    assert audit_stuck_intents(NOW + STUCK_AFTER - timedelta(seconds=1)) == []  # within the window
    [problem] = audit_stuck_intents(NOW + STUCK_AFTER + timedelta(seconds=1))
    assert intent.id in problem and invoice.id in problem and "requires_confirmation" in problem


def test_an_intent_in_flight_on_a_paid_invoice_is_reported(clean_books):
    # Item 6: a /pay that lost the race left its intent on the paid invoice.
    invoice = clean_books["invoice"]
    intent = PaymentIntent.objects.create(
        customer=invoice.customer,
        invoice=invoice,
        amount=1000,
        currency="usd",
        status="requires_confirmation",
        provider="sandbox",
    )
    assert audit_settled_invoice_intents() == [
        f"payment intent {intent.id} on paid invoice {invoice.id} is requires_confirmation"
    ]


def test_a_credit_note_that_left_the_tax_behind_is_reported(clean_books):
    # Item 4: the whole line credited, none of its tax.
    taxed, line = clean_books["taxed"], clean_books["line"]
    note = CreditNote.objects.get(invoice=taxed)
    CreditNoteLine.objects.filter(credit_note=note).update(taxes=[])
    CreditNote.objects.filter(pk=note.pk).update(tax=0, taxes=[], amount=76900, credit_amount=76900)
    Invoice.objects.filter(pk=taxed.pk).update(credited=76900)
    problems = audit_credit_note_taxes()
    assert any(f"invoice line {line.pk}: credited 76900 of 76900 and 0 of its 15380 tax" in p for p in problems)


def test_a_credit_note_whose_tax_does_not_match_its_lines_is_reported(clean_books):
    note = CreditNote.objects.get(invoice=clean_books["taxed"])
    CreditNote.objects.filter(pk=note.pk).update(tax=15379)
    [problem] = audit_credit_note_taxes()
    assert note.id in problem and "tax 15379" in problem
