"""`billing_audit`: clean after real operations, and each check catches the corruption it is about."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from customers.tests.factories import CustomerFactory
from invoicing.models import Invoice, InvoiceLine
from payments.audit import audit_all, audit_balances, audit_credit_notes, audit_grants, audit_invoices, audit_refunds
from payments.models import BalanceTransaction, CreditBurn, CreditNote, CustomerBalance, PaymentIntent, Refund
from payments.services.credit_notes import credit_note_create
from payments.services.grants import credit_grant_create, credits_burn_for_invoice
from payments.services.ledger import balance_adjust, balance_apply_to_invoice
from payments.tests.factories import LEDGER_T0, ledger_invoice

pytestmark = pytest.mark.django_db

NOW = LEDGER_T0


@pytest.fixture
def books():
    """A little of everything, all consistent."""
    customer = CustomerFactory()
    balance_adjust(customer=customer, amount=700, currency="usd", type="adjustment", description="", now=NOW)
    balance_adjust(customer=customer, amount=-200, currency="usd", type="adjustment", description="", now=NOW)
    grant = credit_grant_create(customer=customer, amount=300, currency="usd", now=NOW)
    invoice = ledger_invoice(customer, lines=(600, 400))
    credits_burn_for_invoice(invoice=invoice, now=NOW)
    balance_apply_to_invoice(invoice=invoice, now=NOW)
    paid = ledger_invoice(customer, lines=(1000,), status="paid")
    note = credit_note_create(invoice=paid, amount=250, credit_amount=250, now=NOW)
    return {"customer": customer, "grant": grant, "invoice": invoice, "paid": paid, "note": note}


def run_audit() -> tuple[str, CommandError | None]:
    out = StringIO()
    try:
        call_command("billing_audit", stdout=out)
    except CommandError as error:
        return out.getvalue(), error
    return out.getvalue(), None


def test_the_command_passes_on_consistent_books(books):
    output, error = run_audit()
    assert error is None
    assert "every check passed" in output
    assert "balances: ok" in output and "refunds: ok" in output


def test_a_balance_that_is_not_the_sum_of_its_transactions_fails_the_command(books):
    CustomerBalance.objects.filter(customer=books["customer"]).update(balance=999_999)
    output, error = run_audit()
    assert error is not None and error.returncode == 1
    assert "balance 999999, but its transactions sum to 250" in output
    call_command("billing_audit", "--check", "refunds", stdout=StringIO())  # the other checks still pass


def test_a_broken_chain_of_ending_balances_is_reported():
    customer = CustomerFactory()
    for amount in (100, 50, -30):
        balance_adjust(customer=customer, amount=amount, currency="usd", type="adjustment", description="", now=NOW)
    middle = BalanceTransaction.objects.order_by("id")[1]
    BalanceTransaction.objects.filter(pk=middle.pk).update(ending_balance=40)
    [problem] = audit_balances()
    assert middle.id in problem and "sums to 100 + 50 = 150" in problem


def test_a_grant_burned_beyond_its_amount_is_reported(books):
    invoice = books["invoice"]
    CreditBurn.objects.create(grant=books["grant"], invoice=invoice, amount=1, created_at=NOW)
    assert audit_grants() == [f"credit grant {books['grant'].id}: burned 301, more than its amount 300"]
    assert any("credits_applied 300, but credit burns sum to 301" in p for p in audit_invoices())


def test_invoice_amounts_that_do_not_add_up_are_reported(books):
    Invoice.objects.filter(pk=books["invoice"].pk).update(amount_remaining=5)
    Invoice.objects.filter(pk=books["paid"].pk).update(amount_remaining=5)
    problems = audit_invoices()
    assert any("amount_paid 800 + amount_remaining 5 != amount_due 1000" in p for p in problems)
    assert any(f"invoice {books['paid'].id}: paid with 5 remaining" in p for p in problems)


def test_credit_notes_beyond_the_invoice_total_are_reported(books):
    paid = books["paid"]
    CreditNote.objects.create(
        number="CN-ROGUE", invoice=paid, customer=paid.customer, currency="usd", amount=900, out_of_band_amount=900
    )
    problems = audit_credit_notes()
    assert f"invoice {paid.id}: credited 250, but its issued credit notes sum to 1150" in problems
    assert f"invoice {paid.id}: credit notes total 1150, more than the invoice's total 1000" in problems
    InvoiceLine.objects.filter(invoice=paid).update(credited=10)
    assert any("credit note lines sum to 0" in p for p in audit_credit_notes())


def test_refunds_beyond_what_was_received_are_reported(books):
    paid = books["paid"]
    intent = PaymentIntent.objects.create(
        customer=paid.customer, invoice=paid, amount=1000, currency="usd", status="succeeded", amount_received=1000
    )
    Refund.objects.create(payment_intent=intent, invoice=paid, amount=600, currency="usd", status="succeeded")
    Refund.objects.create(payment_intent=intent, invoice=paid, amount=900, currency="usd", status="failed")
    assert audit_refunds() == []
    Refund.objects.create(payment_intent=intent, invoice=paid, amount=500, currency="usd", status="pending")
    assert audit_refunds() == [f"payment intent {intent.id}: refunds total 1100, more than received 1000"]
    assert any(p.startswith("refunds: ") for p in audit_all())
