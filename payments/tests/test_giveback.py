"""One rule for what can still be given back (issue 10, item 3): refunds, credit notes (every part) and
lost disputes share one limit per invoice (what it was paid) and per payment (what it received)."""

from __future__ import annotations

import pytest

from billing_site.errors import Conflict, InvalidRequest
from customers.tests.factories import CustomerFactory
from payments.audit import audit_all
from payments.models import CreditNote, Dispute, PaymentIntent, Refund
from payments.selectors import balance_get
from payments.services.credit_notes import credit_note_create
from payments.services.giveback import invoice_giveback_left, invoice_given_back
from payments.services.intents import payment_intent_charge_off_session
from payments.services.methods import payment_method_create
from payments.services.refunds import refund_create
from payments.tests.factories import LEDGER_T0, ledger_invoice

pytestmark = pytest.mark.django_db

NOW = LEDGER_T0
BASE = "/api/v1"


def charged(amount=2020, customer=None):
    customer = customer or CustomerFactory()
    payment_method_create(customer=customer, token="tok_visa", default=True, now=NOW)
    invoice = ledger_invoice(customer, lines=(amount,))
    intent = payment_intent_charge_off_session(invoice=invoice, amount=amount, now=NOW)
    assert intent.status == "succeeded"
    invoice.refresh_from_db()
    assert invoice.status == "paid"
    return invoice, intent


def test_given_back_twice_is_refused_the_issue_regression(django_capture_on_commit_callbacks):
    invoice, _ = charged(2020)
    refund_create(invoice=invoice, amount=500, now=NOW)
    refund_create(invoice=invoice, amount=1320, now=NOW)
    with django_capture_on_commit_callbacks(execute=True):
        credit_note_create(invoice=invoice, amount=200, refund_amount=200, now=NOW)
    assert invoice_given_back(invoice.pk) == 2020
    # 1820 of the invoice is still "left to credit" by total, but everything paid was given back.
    with pytest.raises(InvalidRequest) as error:
        credit_note_create(invoice=invoice, amount=1520, credit_amount=1520, now=NOW)
    assert (error.value.code, error.value.param) == ("amount_exceeds_paid", "credit_amount")
    assert CreditNote.objects.count() == 1 and balance_get(invoice.customer, "usd") == 0
    assert audit_all() == []


def test_the_regression_through_the_api(api):
    invoice, _ = charged(2020)
    for amount in (500, 1320):
        response = api.post(f"{BASE}/refunds", {"invoice": invoice.id, "amount": amount}, format="json")
        assert response.status_code == 201, response.content
    response = api.post(
        f"{BASE}/credit-notes", {"invoice": invoice.id, "amount": 200, "refund_amount": 200}, format="json"
    )
    assert response.status_code == 201, response.content
    response = api.post(
        f"{BASE}/credit-notes", {"invoice": invoice.id, "amount": 1520, "credit_amount": 1520}, format="json"
    )
    assert response.status_code == 400
    body = response.json()["error"]
    assert (body["code"], body["param"]) == ("amount_exceeds_paid", "credit_amount")
    assert audit_all() == []


def test_a_balance_credit_note_limits_later_refunds():
    invoice, intent = charged(1000)
    credit_note_create(invoice=invoice, amount=700, credit_amount=700, now=NOW)
    # The payment itself still has 1000 to refund, but the invoice has only 300 left to give back.
    with pytest.raises(InvalidRequest) as error:
        refund_create(payment_intent=intent, amount=301, now=NOW)
    assert (error.value.code, error.value.param) == ("amount_exceeds_paid", "amount")
    assert refund_create(payment_intent=intent, now=NOW).amount == 300  # "all that is left": the invoice's 300
    with pytest.raises(Conflict) as conflict:
        refund_create(payment_intent=intent, now=NOW)
    assert conflict.value.code in ("charge_already_refunded",)
    assert Refund.objects.count() == 1
    assert audit_all() == []


def test_out_of_band_and_refund_parts_count_too():
    invoice, _ = charged(1000)
    refund_create(invoice=invoice, amount=300, now=NOW)
    credit_note_create(invoice=invoice, amount=300, out_of_band_amount=300, now=NOW)
    with pytest.raises(InvalidRequest) as error:
        credit_note_create(invoice=invoice, amount=401, out_of_band_amount=401, now=NOW)
    assert (error.value.code, error.value.param) == ("amount_exceeds_paid", "out_of_band_amount")
    assert invoice_giveback_left(invoice) == 400


def test_a_lost_dispute_counts_as_given_back():
    invoice, intent = charged(1000)
    Dispute.objects.create(
        customer=invoice.customer,
        payment_intent=intent,
        invoice=invoice,
        provider="sandbox",
        provider_ref="dp_lost",
        amount=800,
        amount_lost=800,
        currency="usd",
        status=Dispute.Status.LOST,
    )
    with pytest.raises(InvalidRequest) as error:
        credit_note_create(invoice=invoice, amount=201, credit_amount=201, now=NOW)
    assert error.value.code == "amount_exceeds_paid"
    credit_note_create(invoice=invoice, amount=200, credit_amount=200, now=NOW)
    assert invoice_giveback_left(invoice) == 0


def test_a_voided_credit_note_gives_its_room_back():
    from payments.services.credit_notes import credit_note_void

    invoice, intent = charged(1000)
    note = credit_note_create(invoice=invoice, amount=1000, credit_amount=1000, now=NOW)
    credit_note_void(credit_note=note, now=NOW)
    assert refund_create(payment_intent=intent, amount=1000, now=NOW).status == "succeeded"
    assert PaymentIntent.objects.get(pk=intent.pk).amount_refunded == 1000
    assert audit_all() == []
