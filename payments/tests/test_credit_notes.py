"""Credit notes: limits (invoice and line), the split rules on open and paid invoices, numbers, void."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.db import connection

from billing_site.errors import Conflict, InvalidRequest
from customers.tests.factories import CustomerFactory
from invoicing.models import Invoice, InvoiceLine, NumberSequence
from payments.audit import audit_all
from payments.models import BalanceTransaction, CreditNote, Refund
from payments.selectors import balance_get
from payments.services.credit_notes import credit_note_create, credit_note_void
from payments.services.intents import payment_intent_charge_off_session
from payments.services.ledger import balance_adjust, balance_apply_to_invoice
from payments.services.methods import payment_method_create
from payments.services.refunds import refund_create
from payments.tests.factories import LEDGER_T0, ledger_invoice
from webhooks.models import BillingEvent

pytestmark = pytest.mark.django_db

NOW = LEDGER_T0


def issue(invoice, **kwargs):
    return credit_note_create(invoice=invoice, now=NOW, **kwargs)


def state(invoice):
    invoice.refresh_from_db()
    return (invoice.status, invoice.credited, invoice.amount_due, invoice.amount_paid, invoice.amount_remaining)


def line(invoice, position):
    return invoice.lines.get(position=position)


def fund(customer, amount):
    balance_adjust(customer=customer, amount=amount, currency="usd", type="adjustment", description="", now=NOW)


# --- Open invoices --------------------------------------------------------------------------------


def test_on_an_open_invoice_a_credit_note_reduces_what_is_due():
    invoice = ledger_invoice(lines=(1000,))
    note = issue(invoice, amount=400, reason="order_change", memo="sorry")
    assert (note.number, note.status, note.amount, note.invoice_amount, note.credit_amount) == (
        "CN-000001",
        "issued",
        400,
        400,
        0,
    )
    assert (note.reason, note.memo, note.customer_id, note.currency) == (
        "order_change",
        "sorry",
        invoice.customer_id,
        "usd",
    )
    assert state(invoice) == ("open", 400, 600, 0, 600)
    assert [(cl.invoice_line_id, cl.amount) for cl in note.lines.all()] == [(None, 400)]
    assert BillingEvent.objects.get(object_id=note.id).type == "credit_note.created"
    assert audit_all() == []


def test_a_credit_note_covering_what_remains_pays_the_invoice():
    invoice = ledger_invoice(lines=(1000,))
    issue(invoice, amount=1000)
    assert state(invoice) == ("paid", 1000, 0, 0, 0)
    assert "invoice.paid" in BillingEvent.objects.filter(object_id=invoice.id).values_list("type", flat=True)
    assert audit_all() == []


def test_on_a_partly_paid_open_invoice_the_rest_beyond_what_remains_must_be_split():
    customer = CustomerFactory()
    fund(customer, 600)
    invoice = ledger_invoice(customer, lines=(1000,))
    balance_apply_to_invoice(invoice=invoice, now=NOW)  # 600 paid, 400 remaining
    with pytest.raises(InvalidRequest) as error:
        issue(invoice, amount=1000)
    assert (error.value.param, error.value.code) == ("credit_amount", "credit_note_split_mismatch")
    assert "(400)" in error.value.message and "(600)" in error.value.message
    with pytest.raises(InvalidRequest) as error:
        issue(invoice, amount=1000, out_of_band_amount=100, credit_amount=600)
    assert error.value.param == "credit_amount"
    note = issue(invoice, amount=1000, credit_amount=500, out_of_band_amount=100)
    assert (note.invoice_amount, note.credit_amount, note.out_of_band_amount) == (400, 500, 100)
    assert state(invoice) == ("paid", 1000, 600, 600, 0)
    assert balance_get(customer, "usd") == 500
    txn = BalanceTransaction.objects.get(type="credit_note")
    assert (txn.amount, txn.credit_note_id, txn.invoice_id) == (500, note.id, invoice.id)
    assert audit_all() == []


# --- Paid invoices --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("split", "param"),
    [
        ({}, "credit_amount"),
        ({"credit_amount": 200}, "credit_amount"),
        ({"out_of_band_amount": 400}, "out_of_band_amount"),
        ({"refund_amount": 100, "credit_amount": 100}, "refund_amount"),
    ],
)
def test_on_a_paid_invoice_the_split_must_equal_the_total(split, param):
    invoice = ledger_invoice(lines=(1000,), status="paid")
    with pytest.raises(InvalidRequest) as error:
        issue(invoice, amount=300, **split)
    assert error.value.param == param
    assert not CreditNote.objects.exists() and state(invoice) == ("paid", 0, 1000, 1000, 0)


def test_a_paid_invoice_credited_to_balance_and_out_of_band():
    invoice = ledger_invoice(lines=(1000,), status="paid")
    note = issue(invoice, amount=300, credit_amount=200, out_of_band_amount=100)
    assert (note.invoice_amount, note.credit_amount, note.out_of_band_amount) == (0, 200, 100)
    assert state(invoice) == ("paid", 300, 1000, 1000, 0)
    assert balance_get(invoice.customer, "usd") == 200
    assert audit_all() == []


@pytest.mark.parametrize("status", ["draft", "void", "uncollectible"])
def test_only_open_or_paid_invoices_take_credit_notes(status):
    with pytest.raises(Conflict):
        issue(ledger_invoice(status=status), amount=100, credit_amount=100)
    assert not CreditNote.objects.exists()


# --- Limits ---------------------------------------------------------------------------------------


def test_credit_notes_never_exceed_what_is_left_to_credit_on_the_invoice():
    invoice = ledger_invoice(lines=(700, 300), tax=100, status="paid")  # total 1100
    issue(invoice, amount=800, credit_amount=800)
    with pytest.raises(InvalidRequest) as error:
        issue(invoice, amount=301, credit_amount=301)
    assert (error.value.param, error.value.code) == ("amount", "credit_note_exceeds_invoice")
    assert "300 left" in error.value.message
    issue(invoice, amount=300, out_of_band_amount=300)
    assert state(invoice)[1] == 1100
    with pytest.raises(InvalidRequest):
        issue(invoice, amount=1, credit_amount=1)
    assert audit_all() == []


def test_credit_by_line_amount_and_quantity_within_each_line():
    invoice = ledger_invoice(
        lines=(
            {"amount": 3000, "quantity": Decimal(3), "unit_amount": Decimal(1000)},
            {"amount": 500, "quantity": Decimal(4)},  # no unit amount: its average, 125
            -200,
        ),
        tax=0,
        status="paid",
    )  # total 3300
    first, second, credit_line = line(invoice, 1), line(invoice, 2), line(invoice, 3)
    note = issue(
        invoice,
        lines=[{"invoice_line": first.id, "quantity": Decimal(2)}, {"invoice_line": second, "amount": 100}],
        credit_amount=2100,
    )
    assert [(cl.invoice_line_id, cl.quantity, cl.amount) for cl in note.lines.order_by("id")] == [
        (first.id, 2, 2000),
        (second.id, None, 100),
    ]
    first.refresh_from_db()
    assert first.credited == 2000
    with pytest.raises(InvalidRequest) as error:  # 1000 left on the line; two entries add up
        issue(invoice, lines=[{"invoice_line": first.id, "amount": 600}, {"invoice_line": first.id, "quantity": 1}])
    assert (error.value.param, error.value.code) == ("lines[1].quantity", "credit_note_exceeds_line")
    with pytest.raises(InvalidRequest) as error:  # a credit line has nothing to credit
        issue(invoice, lines=[{"invoice_line": credit_line.id, "amount": 1}], credit_amount=1)
    assert error.value.param == "lines[0].amount"
    note = issue(invoice, lines=[{"invoice_line": second.id, "quantity": Decimal("0.5")}], credit_amount=63)
    assert note.amount == 63  # 0.5 x 125 = 62.5, half away from zero
    assert audit_all() == []


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({}, "amount"),
        ({"amount": 0}, "amount"),
        ({"lines": []}, "lines"),
        ({"lines": [{"amount": 5}]}, "lines[0].invoice_line"),
        ({"lines": [{"invoice_line": "il_nope", "amount": 5}]}, "lines[0].invoice_line"),
        ({"lines": [{"invoice_line": "FIRST"}]}, "lines[0].amount"),
        ({"lines": [{"invoice_line": "FIRST", "amount": 5, "quantity": 1}]}, "lines[0].amount"),
        ({"lines": [{"invoice_line": "FIRST", "amount": -5}]}, "lines[0].amount"),
        ({"lines": [{"invoice_line": "FIRST", "quantity": Decimal(0)}]}, "lines[0].quantity"),
        ({"lines": [{"invoice_line": "FIRST", "amount": 5}], "amount": 6}, "amount"),
        ({"lines": [{"invoice_line": "OTHER", "amount": 5}]}, "lines[0].invoice_line"),
        ({"amount": 5, "reason": "because"}, "reason"),
        ({"amount": 5, "memo": "x" * 1001}, "memo"),
        ({"amount": 5, "credit_amount": -1}, "credit_amount"),
    ],
)
def test_bad_credit_notes_are_refused_naming_the_field_and_write_nothing(kwargs, param):
    invoice = ledger_invoice(lines=(1000,))
    other = ledger_invoice(lines=(1000,))
    ids = {"FIRST": line(invoice, 1).id, "OTHER": line(other, 1).id}
    if "lines" in kwargs:
        kwargs = {
            **kwargs,
            "lines": [
                {**s, "invoice_line": ids.get(s.get("invoice_line"), s.get("invoice_line"))} for s in kwargs["lines"]
            ],
        }
        kwargs["lines"] = [{k: v for k, v in s.items() if v is not None} for s in kwargs["lines"]]
    with pytest.raises(InvalidRequest) as error:
        issue(invoice, **kwargs)
    assert error.value.param == param
    assert not CreditNote.objects.exists() and state(invoice) == ("open", 0, 1000, 0, 1000)


def test_numbers_are_gapless_even_when_a_credit_note_is_refused():
    invoice = ledger_invoice(lines=(1000,), status="paid")
    assert issue(invoice, amount=100, credit_amount=100).number == "CN-000001"
    with pytest.raises(InvalidRequest):
        issue(invoice, amount=5000, credit_amount=5000)
    assert issue(invoice, amount=100, credit_amount=100).number == "CN-000002"
    assert NumberSequence.objects.get(name="credit_note").next_value == 3


def test_the_prefix_comes_from_settings(settings):
    settings.CREDIT_NOTE_NUMBER_PREFIX = "AVOIR-"
    assert issue(ledger_invoice(), amount=1).number == "AVOIR-000001"


# --- Void -----------------------------------------------------------------------------------------


def test_void_gives_back_the_credit_the_lines_and_the_amount_due():
    customer = CustomerFactory()
    fund(customer, 600)
    invoice = ledger_invoice(customer, lines=(1000,))
    balance_apply_to_invoice(invoice=invoice, now=NOW)
    note = issue(invoice, lines=[{"invoice_line": line(invoice, 1).id, "amount": 500}], credit_amount=100)
    # 400 is taken off what remained, which leaves nothing due: the invoice is paid.
    assert state(invoice) == ("paid", 500, 600, 600, 0)
    assert (note.invoice_amount, note.credit_amount) == (400, 100)
    with pytest.raises(Conflict) as error:  # it reduced an invoice that is now paid
        credit_note_void(credit_note=note, now=NOW)
    assert error.value.code == "invoice_status_conflict"

    open_invoice = ledger_invoice(customer, lines=(1000,))
    note = issue(open_invoice, lines=[{"invoice_line": line(open_invoice, 1).id, "amount": 300}])
    assert state(open_invoice) == ("open", 300, 700, 0, 700)
    voided = credit_note_void(credit_note=note, now=NOW)
    assert (voided.status, voided.voided_at) == ("void", NOW)
    assert state(open_invoice) == ("open", 0, 1000, 0, 1000)
    assert line(open_invoice, 1).credited == 0
    assert BillingEvent.objects.filter(object_id=note.id, type="credit_note.voided").count() == 1
    with pytest.raises(Conflict):
        credit_note_void(credit_note=note, now=NOW)
    # What was given back can be credited again.
    issue(open_invoice, lines=[{"invoice_line": line(open_invoice, 1).id, "amount": 1000}])
    assert audit_all() == []


def test_void_reverses_the_balance_credit_unless_it_was_spent():
    invoice = ledger_invoice(lines=(1000,), status="paid")
    customer = invoice.customer
    note = issue(invoice, amount=400, credit_amount=400)
    credit_note_void(credit_note=note, now=NOW)
    assert [(t.type, t.amount, t.ending_balance) for t in BalanceTransaction.objects.order_by("id")] == [
        ("credit_note", 400, 400),
        ("reversal", -400, 0),
    ]
    assert BalanceTransaction.objects.get(type="reversal").credit_note_id == note.id
    assert state(invoice) == ("paid", 0, 1000, 1000, 0)

    spent = issue(invoice, amount=400, credit_amount=400)
    balance_apply_to_invoice(invoice=ledger_invoice(customer, lines=(100,)), now=NOW)
    with pytest.raises(Conflict) as error:
        credit_note_void(credit_note=spent, now=NOW)
    assert error.value.code == "credit_note_credit_spent"
    assert balance_get(customer, "usd") == 300
    assert audit_all() == []


# --- Refunds --------------------------------------------------------------------------------------


@pytest.fixture
def charged():
    """An invoice paid by a real (sandbox) card payment of 1000."""
    customer = CustomerFactory()
    payment_method_create(customer=customer, token="tok_visa", default=True, now=NOW)
    invoice = ledger_invoice(customer, lines=(1000,))
    intent = payment_intent_charge_off_session(invoice=invoice, amount=1000, now=NOW)
    assert intent.status == "succeeded"
    invoice.refresh_from_db()
    assert invoice.status == "paid"
    return invoice, intent


def test_the_refund_part_becomes_a_refund_sent_once_the_credit_note_commits(
    charged, django_capture_on_commit_callbacks
):
    invoice, intent = charged
    with django_capture_on_commit_callbacks(execute=True):
        note = issue(invoice, amount=600, refund_amount=400, credit_amount=200, reason="duplicate")
    refund = Refund.objects.get(credit_note=note)
    assert (refund.amount, refund.reason, refund.invoice_id, refund.payment_intent_id) == (
        400,
        "duplicate",
        invoice.id,
        intent.id,
    )
    assert refund.status == "succeeded"
    intent.refresh_from_db()
    assert intent.amount_refunded == 400
    assert balance_get(invoice.customer, "usd") == 200
    with pytest.raises(Conflict) as error:
        credit_note_void(credit_note=note, now=NOW)
    assert error.value.code == "credit_note_refunded"
    assert audit_all() == []


def test_a_refund_beyond_what_was_received_refuses_the_whole_credit_note(charged):
    invoice, intent = charged
    issue(invoice, amount=300, refund_amount=300, reason="product_unsatisfactory")
    assert Refund.objects.get().reason == "requested_by_customer"
    refund_create(payment_intent=intent, amount=500, now=NOW)  # a refund without a credit note
    # 700 of the invoice is left to credit, but only 200 of the payment is left to refund.
    with pytest.raises(InvalidRequest) as error:
        issue(invoice, amount=700, refund_amount=300, credit_amount=400)
    # 800 of the 1000 paid was given back already: the one give-back rule refuses the note first.
    assert (error.value.param, error.value.code) == ("refund_amount", "amount_exceeds_paid")

    assert CreditNote.objects.count() == 1 and balance_get(invoice.customer, "usd") == 0
    invoice.refresh_from_db()
    assert invoice.credited == 300
    assert audit_all() == []


def test_a_credit_note_whose_refund_failed_can_be_voided(charged):
    invoice, _ = charged
    note = issue(invoice, amount=300, refund_amount=300)
    Refund.objects.filter(credit_note=note).update(status="failed")
    assert credit_note_void(credit_note=note, now=NOW).status == "void"


# --- Concurrency ----------------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_credit_notes_on_one_invoice_never_exceed_its_total():
    invoice = ledger_invoice(lines=(600, 400), status="paid")
    first = line(invoice, 1)
    barrier = threading.Barrier(8)
    outcomes: list[str] = []

    def credit(kwargs) -> None:
        try:
            barrier.wait()
            credit_note_create(invoice=invoice, now=NOW, **kwargs)
            outcomes.append("ok")
        except InvalidRequest:
            outcomes.append("refused")
        finally:
            connection.close()

    requests = [{"amount": 300, "credit_amount": 300} for _ in range(4)]
    requests += [{"lines": [{"invoice_line": first.id, "amount": 250}], "out_of_band_amount": 250} for _ in range(4)]
    threads = [threading.Thread(target=credit, args=(r,)) for r in requests]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(outcomes) == 8
    invoice.refresh_from_db()
    first.refresh_from_db()
    assert invoice.credited <= 1000 and first.credited <= 600
    assert invoice.credited == sum(CreditNote.objects.values_list("amount", flat=True))
    numbers = sorted(CreditNote.objects.values_list("number", flat=True))
    assert numbers == [f"CN-{n:06d}" for n in range(1, outcomes.count("ok") + 1)]
    assert balance_get(invoice.customer, "usd") == 300 * sum(1 for n in CreditNote.objects.all() if n.credit_amount)
    assert audit_all() == []


def test_invoice_lines_and_invoice_reject_over_credit_in_the_database_too():
    """The last guard: even a write that skipped the service cannot credit more than the total."""
    from django.db import IntegrityError, transaction

    invoice = ledger_invoice(lines=(1000,))
    with pytest.raises(IntegrityError), transaction.atomic():
        Invoice.objects.filter(pk=invoice.pk).update(credited=1001)
    with pytest.raises(IntegrityError), transaction.atomic():
        InvoiceLine.objects.filter(invoice=invoice).update(credited=1001)
