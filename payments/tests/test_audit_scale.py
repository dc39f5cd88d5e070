"""Issue 15: billing_audit's cost per check does not grow with the books. Every check is a fixed number of
statements (set-based, or one stream), so three customers' books take exactly the queries one takes, and
a broken row among many is still the one reported."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from customers.tests.factories import CustomerFactory
from payments.audit import audit_all
from payments.models import CustomerBalance, PaymentIntent
from payments.services.credit_notes import credit_note_create
from payments.services.intents import payment_intent_charge_off_session
from payments.services.ledger import balance_adjust
from payments.services.methods import payment_method_create
from payments.services.refunds import refund_create
from payments.tests.factories import LEDGER_T0, ledger_invoice

pytestmark = pytest.mark.django_db

NOW = LEDGER_T0
LATER = NOW + timedelta(days=30)


def _books(django_capture_on_commit_callbacks) -> dict:
    """One customer: a card payment, a refund, a credit note refunded to the card, a balance, an open invoice."""
    customer = CustomerFactory()
    payment_method_create(customer=customer, token="tok_visa", default=True, now=NOW)
    invoice = ledger_invoice(customer, lines=(2020,))
    intent = payment_intent_charge_off_session(invoice=invoice, amount=2020, now=NOW)
    refund_create(invoice=invoice, amount=500, now=NOW)
    with django_capture_on_commit_callbacks(execute=True):
        credit_note_create(invoice=invoice, amount=200, refund_amount=200, now=NOW)
    balance_adjust(customer=customer, amount=700, currency="usd", type="adjustment", description="", now=NOW)
    ledger_invoice(customer, lines=(1000,))
    return {"customer": customer, "intent": intent}


def _queries() -> tuple[list[str], int]:
    with CaptureQueriesContext(connection) as captured:
        problems = audit_all(now=LATER)
    return problems, len(captured.captured_queries)


def test_the_audit_issues_as_many_queries_for_three_books_as_for_one(django_capture_on_commit_callbacks):
    _books(django_capture_on_commit_callbacks)
    one, queries_one = _queries()
    for _ in range(2):
        _books(django_capture_on_commit_callbacks)
    three, queries_three = _queries()
    assert one == [] and three == []
    assert queries_three == queries_one


def test_one_broken_row_among_many_is_the_one_reported(django_capture_on_commit_callbacks):
    books = [_books(django_capture_on_commit_callbacks) for _ in range(3)]
    middle = books[1]
    CustomerBalance.objects.filter(customer=middle["customer"]).update(balance=701)
    PaymentIntent.objects.filter(pk=middle["intent"].pk).update(amount_refunded=600)
    problems, _ = _queries()
    assert problems == [
        f"balances: customer {middle['customer'].pk} usd: balance 701, but its transactions sum to 700",
        f"refund reservations: payment intent {middle['intent'].pk}: amount_refunded 600, but its live refunds "
        "sum to 700",
    ]
