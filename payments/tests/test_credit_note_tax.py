"""Tax credited with the line (issue 10, item 4): a line credit takes the line's tax with it, per rate,
exact to the minor unit, so the whole line credits exactly its whole tax."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing_site.errors import InvalidRequest
from customers.tests.factories import CustomerFactory
from invoicing.models import InvoiceLine, TaxRate
from payments.audit import audit_all
from payments.models import CreditNote
from payments.selectors import balance_get
from payments.services.credit_notes import credit_note_create, credit_note_void
from payments.tests.factories import LEDGER_T0, ledger_invoice

pytestmark = pytest.mark.django_db

NOW = LEDGER_T0


def rate(percentage, *, inclusive=False, name="VAT"):
    return TaxRate.objects.create(display_name=name, percentage=Decimal(percentage), inclusive=inclusive, country="FR")


def taxed_invoice(lines, *, status="paid", currency="eur"):
    """An invoice whose lines carry `taxes` [(rate, amount), ...] (exclusive ones added to the total)."""
    amounts = [amount for amount, _ in lines]
    exclusive = sum(tax for _, taxes in lines for r, tax in taxes if not r.inclusive)
    invoice = ledger_invoice(CustomerFactory(), lines=amounts, tax=exclusive, currency=currency, status=status)
    for line, (_, taxes) in zip(invoice.lines.order_by("position"), lines, strict=True):
        line.taxes = [{"tax_rate": r.pk, "amount": tax} for r, tax in taxes]
        line.save(update_fields=["taxes"])
    return invoice


def test_crediting_a_whole_line_credits_its_tax_the_issue_regression():
    vat = rate("20")
    invoice = taxed_invoice([(76900, [(vat, 15380)])])
    line = invoice.lines.get()
    note = credit_note_create(
        invoice=invoice, lines=[{"invoice_line": line.pk, "amount": 76900}], credit_amount=92280, now=NOW
    )
    assert (note.amount, note.tax) == (92280, 15380)
    assert note.taxes == [{"tax_rate": vat.pk, "amount": 15380, "inclusive": False}]
    assert note.lines.get().taxes == [{"tax_rate": vat.pk, "amount": 15380, "inclusive": False}]
    invoice.refresh_from_db()
    assert invoice.credited == invoice.total == 92280
    assert balance_get(invoice.customer, "eur") == 92280
    with pytest.raises(InvalidRequest) as error:
        credit_note_create(invoice=invoice, lines=[{"invoice_line": line.pk, "amount": 1}], credit_amount=1, now=NOW)
    assert (error.value.code, error.value.param) == ("credit_note_exceeds_line", "lines[0].amount")
    assert audit_all() == []


def test_partial_credits_add_up_to_exactly_the_lines_tax_per_rate():
    vat, city = rate("20"), rate("8.875", name="City")
    invoice = taxed_invoice([(1001, [(vat, 200), (city, 89)])])
    line = invoice.lines.get()
    # Cumulative per rate: round(200 x 333/1001) = 67, round(200 x 666/1001) = 133, ... the last cent 0.
    expected = [(333, 67, 30), (333, 66, 29), (334, 67, 30), (1, 0, 0)]
    for amount, vat_tax, city_tax in expected:
        note = credit_note_create(
            invoice=invoice,
            lines=[{"invoice_line": line.pk, "amount": amount}],
            credit_amount=amount + vat_tax + city_tax,
            now=NOW,
        )
        assert [t["amount"] for t in note.taxes] == [vat_tax, city_tax]
        assert note.tax == vat_tax + city_tax and note.amount == amount + note.tax
    assert sum(e[1] for e in expected) == 200 and sum(e[2] for e in expected) == 89
    invoice.refresh_from_db()
    assert invoice.credited == invoice.total == 1290
    assert audit_all() == []


def test_inclusive_tax_is_credited_inside_the_line_amount():
    vat = rate("20", inclusive=True)
    invoice = taxed_invoice([(1200, [(vat, 200)])])
    line = invoice.lines.get()
    note = credit_note_create(
        invoice=invoice, lines=[{"invoice_line": line.pk, "amount": 600}], credit_amount=600, now=NOW
    )
    assert (note.amount, note.tax, note.taxes[0]["inclusive"]) == (600, 100, True)
    assert audit_all() == []


def test_a_discounted_line_credits_what_it_charged_and_its_tax():
    vat = rate("20")
    invoice = ledger_invoice(
        CustomerFactory(), lines=({"amount": 2900, "discount_amount": 1450},), tax=290, currency="eur", status="paid"
    )
    line = invoice.lines.get()
    InvoiceLine.objects.filter(pk=line.pk).update(taxes=[{"tax_rate": vat.pk, "amount": 290}])
    with pytest.raises(InvalidRequest) as error:
        credit_note_create(
            invoice=invoice, lines=[{"invoice_line": line.pk, "amount": 1451}], credit_amount=1451, now=NOW
        )
    assert error.value.code == "credit_note_exceeds_line"
    note = credit_note_create(
        invoice=invoice, lines=[{"invoice_line": line.pk, "amount": 1450}], credit_amount=1740, now=NOW
    )
    assert (note.amount, note.tax) == (1740, 290)
    assert audit_all() == []


def test_a_voided_note_gives_its_tax_back_and_the_next_note_takes_it():
    vat = rate("20")
    invoice = taxed_invoice([(76900, [(vat, 15380)])])
    line = invoice.lines.get()
    first = credit_note_create(
        invoice=invoice, lines=[{"invoice_line": line.pk, "amount": 100}], credit_amount=120, now=NOW
    )
    credit_note_void(credit_note=first, now=NOW)
    note = credit_note_create(
        invoice=invoice, lines=[{"invoice_line": line.pk, "amount": 76900}], credit_amount=92280, now=NOW
    )
    assert note.tax == 15380
    assert CreditNote.objects.filter(status="issued").count() == 1
    assert audit_all() == []


def test_the_api_shows_tax_per_rate(api):
    vat = rate("20")
    invoice = taxed_invoice([(76900, [(vat, 15380)])])
    line = invoice.lines.get()
    response = api.post(
        "/api/v1/credit-notes",
        {"invoice": invoice.id, "lines": [{"invoice_line": line.pk, "amount": 76900}], "credit_amount": 92280},
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["amount"], body["tax"]) == (92280, 15380)
    assert body["taxes"] == [{"tax_rate": vat.pk, "amount": 15380, "inclusive": False}]
    assert body["lines"][0]["taxes"] == body["taxes"]
