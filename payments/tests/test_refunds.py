"""Refunds: full and partial, of a payment or of an invoice, never more than was received (also under
concurrency), a refused refund giving its reservation back, and refunds inside a caller's transaction."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection, transaction

from billing_site.errors import Conflict, InvalidRequest
from customers.tests.factories import CustomerFactory
from payments.models import PaymentIntent, Refund, SandboxPayment
from payments.processors import ProcessorError, ProcessorTimeout
from payments.processors.sandbox import SandboxProcessor
from payments.services.intents import (
    payment_intent_capture,
    payment_intent_charge_off_session,
    payment_intent_confirm,
    payment_intent_create,
    payment_intent_resolve_unknown_job,
)
from payments.services.methods import payment_method_create
from payments.services.refunds import refund_create
from payments.tests.factories import PAY_T0, open_invoice
from webhooks.models import BillingEvent

pytestmark = pytest.mark.django_db

NOW = PAY_T0


def paid(amount=1000, *, capture_method="automatic", customer=None):
    customer = customer or CustomerFactory()
    method = payment_method_create(customer=customer, token="tok_visa", now=NOW)
    intent = payment_intent_create(
        customer=customer,
        amount=amount,
        currency="usd",
        payment_method=method,
        capture_method=capture_method,
        now=NOW,
    )
    return payment_intent_confirm(payment_intent=intent, now=NOW)


def refunded(intent):
    return PaymentIntent.objects.get(pk=intent.pk).amount_refunded


def at_provider(intent):
    return SandboxPayment.objects.get(ref=intent.provider_ref).amount_refunded


def test_a_full_refund_takes_everything_left():
    intent = paid()
    refund = refund_create(payment_intent=intent, reason="requested_by_customer", now=NOW)
    assert (refund.status, refund.amount, refund.currency, refund.reason) == (
        "succeeded",
        1000,
        "usd",
        "requested_by_customer",
    )
    assert refund.id.startswith("re_") and refund.idempotency_key == f"{refund.id}:refund"
    assert refund.provider_ref == SandboxPayment.objects.get(kind="refund", idempotency_key=refund.idempotency_key).ref
    assert refunded(intent) == 1000 and at_provider(intent) == 1000
    types = list(BillingEvent.objects.filter(object_id=refund.id).order_by("id").values_list("type", flat=True))
    assert types == ["refund.created", "refund.succeeded"]


def test_partial_refunds_add_up_to_at_most_what_was_received():
    intent = paid()
    assert refund_create(payment_intent=intent, amount=300, now=NOW).status == "succeeded"
    with pytest.raises(InvalidRequest) as error:
        refund_create(payment_intent=intent, amount=701, now=NOW)
    assert (error.value.param, error.value.code) == ("amount", "amount_too_large")
    assert refund_create(payment_intent=intent, now=NOW).amount == 700  # all that is left
    with pytest.raises(Conflict) as error:
        refund_create(payment_intent=intent, amount=1, now=NOW)
    assert error.value.code == "charge_already_refunded"
    assert refunded(intent) == 1000 and at_provider(intent) == 1000 and Refund.objects.count() == 2


def test_after_a_partial_capture_only_the_captured_amount_is_refundable():
    authorized = paid(capture_method="manual")
    captured = payment_intent_capture(payment_intent=authorized, amount=600, now=NOW)
    with pytest.raises(InvalidRequest):
        refund_create(payment_intent=captured, amount=601, now=NOW)
    assert refund_create(payment_intent=captured, now=NOW).amount == 600


@pytest.mark.parametrize("capture_method", ["automatic", "manual"])
def test_only_succeeded_payments_are_refunded(capture_method):
    intent = paid(capture_method=capture_method) if capture_method == "manual" else None
    if intent is None:
        customer = CustomerFactory()
        intent = payment_intent_create(customer=customer, amount=100, currency="usd", now=NOW)
    with pytest.raises(Conflict) as error:
        refund_create(payment_intent=intent, now=NOW)
    assert error.value.code == "payment_intent_unexpected_state" and not Refund.objects.exists()


def test_bad_input_names_the_field():
    intent = paid()
    for kwargs, param in [
        ({"payment_intent": intent, "amount": 0}, "amount"),
        ({"payment_intent": intent, "reason": "because"}, "reason"),
        ({}, "payment_intent"),
        ({"payment_intent": intent, "invoice": open_invoice(intent.customer)}, "payment_intent"),
    ]:
        with pytest.raises(InvalidRequest) as error:
            refund_create(now=NOW, **kwargs)
        assert error.value.param == param
    assert refunded(intent) == 0


def test_an_invoice_is_refunded_through_its_succeeded_payment():
    customer = CustomerFactory()
    payment_method_create(customer=customer, token="tok_visa", now=NOW)
    invoice = open_invoice(customer, amount=1200)
    intent = payment_intent_charge_off_session(invoice=invoice, amount=1200, now=NOW)
    refund = refund_create(invoice=invoice, amount=200, reason="duplicate", now=NOW)
    assert (refund.payment_intent_id, refund.invoice_id, refund.status) == (intent.id, invoice.id, "succeeded")
    assert refund_create(invoice=invoice, now=NOW).amount == 1000
    with pytest.raises(Conflict) as error:
        refund_create(invoice=invoice, now=NOW)
    assert error.value.code == "charge_already_refunded"


def test_an_invoice_without_payments_has_nothing_to_refund():
    with pytest.raises(Conflict):
        refund_create(invoice=open_invoice(), now=NOW)


def test_a_refund_the_provider_refuses_gives_the_reservation_back(monkeypatch):
    intent = paid()

    def refuse(self, **kwargs):
        raise ProcessorError("charge_disputed", "The charge is disputed.")

    monkeypatch.setattr(SandboxProcessor, "refund", refuse)
    refund = refund_create(payment_intent=intent, amount=400, now=NOW)
    assert refund.status == "failed" and refund.last_error["code"] == "charge_disputed"
    assert refunded(intent) == 0
    assert BillingEvent.objects.filter(object_id=refund.id).latest("id").type == "refund.failed"
    monkeypatch.undo()
    assert refund_create(payment_intent=intent, now=NOW).amount == 1000


def test_a_refund_whose_answer_is_lost_stays_pending_and_keeps_its_reservation(monkeypatch):
    intent = paid()

    def lose(self, **kwargs):
        raise ProcessorTimeout("no answer")

    monkeypatch.setattr(SandboxProcessor, "refund", lose)
    refund = refund_create(payment_intent=intent, amount=400, now=NOW)
    assert refund.status == "pending" and refund.last_error["code"] == "processor_timeout"
    assert refunded(intent) == 400
    with pytest.raises(InvalidRequest):
        refund_create(payment_intent=intent, amount=601, now=NOW)


@pytest.mark.parametrize("refunded_before_the_answer_was_lost", [False, True])
def test_the_job_asks_again_for_a_lost_refund_with_its_own_key(monkeypatch, refunded_before_the_answer_was_lost):
    intent = paid()
    real_refund = SandboxProcessor.refund

    def lose(self, **kwargs):
        if refunded_before_the_answer_was_lost:
            real_refund(self, **kwargs)
        raise ProcessorTimeout("no answer")

    monkeypatch.setattr(SandboxProcessor, "refund", lose)
    refund = refund_create(payment_intent=intent, amount=400, now=NOW)
    assert refund.status == "pending"
    monkeypatch.undo()
    assert payment_intent_resolve_unknown_job(now=NOW + timedelta(minutes=5)) == {"checked": 0}  # too soon
    assert payment_intent_resolve_unknown_job(now=NOW + timedelta(minutes=15)) == {"checked": 0, "refunds_retried": 1}
    assert Refund.objects.get(pk=refund.pk).status == "succeeded"
    assert SandboxPayment.objects.filter(kind="refund").count() == 1 and at_provider(intent) == 400
    assert refunded(intent) == 400


def test_inside_a_callers_transaction_the_provider_is_called_after_commit(django_capture_on_commit_callbacks):
    intent = paid()
    with django_capture_on_commit_callbacks(execute=False) as callbacks, transaction.atomic():
        refund = refund_create(payment_intent=intent, amount=250, now=NOW)
        assert refund.status == "pending" and refunded(intent) == 250
    assert at_provider(intent) == 0 and len(callbacks) == 1  # nothing sent yet
    callbacks[0]()
    assert Refund.objects.get(pk=refund.pk).status == "succeeded" and at_provider(intent) == 250


def test_a_callers_rollback_takes_the_refund_with_it(django_capture_on_commit_callbacks):
    intent = paid()
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(ZeroDivisionError), transaction.atomic():
        refund_create(payment_intent=intent, amount=250, now=NOW)
        1 / 0  # noqa: B018
    assert not Refund.objects.exists() and refunded(intent) == 0 and at_provider(intent) == 0


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_refunds_never_exceed_what_was_received():
    intent = paid(1000)
    barrier = threading.Barrier(8)
    outcomes: list[str] = []

    def run():
        try:
            barrier.wait()
            outcomes.append(refund_create(payment_intent=intent, amount=300, now=NOW).status)
        except (InvalidRequest, Conflict) as exc:
            outcomes.append(exc.code)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("succeeded") == 3, outcomes
    assert outcomes.count("amount_too_large") == 5
    assert refunded(intent) == 900 and at_provider(intent) == 900
    assert sum(Refund.objects.filter(status="succeeded").values_list("amount", flat=True)) == 900
