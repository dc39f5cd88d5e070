"""The collection waterfall (credits -> balance -> provider), dunning, and POST /invoices/{id}/pay."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection

from customers.tests.factories import CustomerFactory
from invoicing.models import Invoice
from payments.models import CollectionAttempt, PaymentIntent, SandboxPayment
from payments.processors.sandbox import sandbox_charges
from payments.services.collection import invoice_collect, invoices_collect_job
from payments.services.grants import credit_grant_create
from payments.services.intents import payment_intent_resolve_unknown_job
from payments.services.ledger import balance_adjust
from payments.services.methods import payment_method_create
from payments.tests.factories import ledger_invoice, open_invoice
from subscriptions.models import Subscription
from subscriptions.tests.support import T0, fixed_price, subscribe
from webhooks.models import BillingEvent

pytestmark = pytest.mark.django_db

API = CollectionAttempt.Trigger.API
JOB = CollectionAttempt.Trigger.JOB


def card(customer, token: str = "tok_visa", now=T0):
    return payment_method_create(customer=customer, token=token, default=True, now=now)


# Money the sandbox actually took (declined attempts are recorded too, as a provider would).
charges = sandbox_charges


def test_provider_only():
    customer = CustomerFactory()
    card(customer)
    invoice = open_invoice(customer, amount=1500)
    result = invoice_collect(invoice=invoice, trigger=API, now=T0)
    assert result.attempt.success
    assert (result.attempt.credit_used, result.attempt.balance_used, result.attempt.amount_charged) == (0, 0, 1500)
    assert (result.invoice.status, result.invoice.amount_paid, result.invoice.amount_remaining) == ("paid", 1500, 0)
    assert charges() == 1


def test_credits_only_charge_nothing():
    customer = CustomerFactory()
    invoice = ledger_invoice(customer, lines=(800,))
    credit_grant_create(customer=customer, amount=1000, currency="usd", now=T0, effective_at=T0)
    result = invoice_collect(invoice=invoice, trigger=API, now=T0)
    assert result.attempt.success and result.attempt.credit_used == 800
    assert result.invoice.status == "paid" and result.invoice.credits_applied == 800
    assert charges() == 0


def test_balance_only():
    customer = CustomerFactory()
    balance_adjust(customer=customer, amount=2000, currency="usd", type="adjustment", description="goodwill", now=T0)
    invoice = open_invoice(customer, amount=1200)
    result = invoice_collect(invoice=invoice, trigger=API, now=T0)
    assert result.attempt.success and result.attempt.balance_used == 1200
    assert result.invoice.balance_applied == 1200 and result.invoice.status == "paid"
    assert charges() == 0


def test_credits_then_balance_then_provider():
    customer = CustomerFactory()
    card(customer)
    credit_grant_create(customer=customer, amount=300, currency="usd", now=T0, effective_at=T0)
    balance_adjust(customer=customer, amount=200, currency="usd", type="adjustment", description="x", now=T0)
    invoice = ledger_invoice(customer, lines=(600, 400))
    result = invoice_collect(invoice=invoice, trigger=API, now=T0)
    attempt = result.attempt
    assert (attempt.credit_used, attempt.balance_used, attempt.amount_charged) == (300, 200, 500)
    assert attempt.success
    invoice.refresh_from_db()
    assert (invoice.credits_applied, invoice.balance_applied, invoice.amount_paid) == (300, 200, 1000)
    assert SandboxPayment.objects.get(kind="payment", status="succeeded").amount == 500


def test_a_decline_leaves_the_rest_open_and_starts_dunning():
    customer = CustomerFactory()
    card(customer, "tok_chargeDeclined")
    sub, first = subscribe(customer, fixed_price("1000"))
    credit_grant_create(customer=customer, amount=250, currency="usd", now=T0, effective_at=T0)
    result = invoice_collect(invoice=first, trigger=JOB, now=T0)
    assert not result.attempt.success
    assert "card_declined" in result.attempt.error
    invoice = result.invoice
    assert (invoice.status, invoice.amount_remaining, invoice.credits_applied) == ("open", 750, 250)
    assert invoice.attempt_count == 1
    assert invoice.next_payment_attempt == T0 + timedelta(days=1)
    sub.refresh_from_db()
    assert sub.status == Subscription.Status.PAST_DUE
    assert BillingEvent.objects.filter(type="invoice.payment_failed", object_id=invoice.id).exists()


@pytest.mark.parametrize("final", ["unpaid", "canceled"])
def test_dunning_through_the_whole_schedule(settings, final):
    settings.DUNNING_FINAL_ACTION = final
    customer = CustomerFactory()
    card(customer, "tok_insufficientFunds")
    sub, invoice = subscribe(customer, fixed_price("1000"))
    # The finalizing hook scheduled the first attempt at once, written with the invoice (the instance
    # returned has it too); the job runs every few minutes.
    assert invoice.next_payment_attempt == T0
    invoice.refresh_from_db()
    assert invoice.next_payment_attempt == T0
    assert invoices_collect_job(now=T0)["failed"] == 1
    for day, attempt in ((1, 2), (3, 3), (5, 4)):
        assert invoices_collect_job(now=T0 + timedelta(days=day) - timedelta(minutes=1))["attempted"] == 0
        assert invoices_collect_job(now=T0 + timedelta(days=day))["failed"] == 1
        invoice.refresh_from_db()
        assert invoice.attempt_count == attempt
        sub.refresh_from_db()
        assert sub.status == Subscription.Status.PAST_DUE
    assert invoices_collect_job(now=T0 + timedelta(days=7))["failed"] == 1
    invoice.refresh_from_db()
    sub.refresh_from_db()
    assert invoice.status == "uncollectible" and invoice.next_payment_attempt is None
    assert sub.status == final
    assert invoices_collect_job(now=T0 + timedelta(days=30))["attempted"] == 0
    assert PaymentIntent.objects.filter(invoice=invoice).count() == 5
    assert charges() == 0  # every attempt was declined


def test_a_new_default_card_retries_now_and_success_ends_dunning():
    customer = CustomerFactory()
    card(customer, "tok_chargeDeclined")
    sub, invoice = subscribe(customer, fixed_price("1000"))
    invoices_collect_job(now=T0)
    invoice.refresh_from_db()
    assert invoice.next_payment_attempt == T0 + timedelta(days=1)
    later = T0 + timedelta(hours=2)
    card(customer, "tok_visa", now=later)
    invoice.refresh_from_db()
    assert invoice.next_payment_attempt == later
    assert invoices_collect_job(now=later)["collected"] == 1
    invoice.refresh_from_db()
    sub.refresh_from_db()
    assert invoice.status == "paid" and invoice.next_payment_attempt is None
    assert sub.status == Subscription.Status.ACTIVE


def test_send_invoice_is_never_charged_and_goes_past_due_after_its_due_date():
    customer = CustomerFactory()
    card(customer)
    sub, invoice = subscribe(customer, fixed_price("1000"), collection_method="send_invoice", days_until_due=14)
    assert invoice.due_date == T0 + timedelta(days=14)
    assert invoices_collect_job(now=T0 + timedelta(days=1))["attempted"] == 0
    assert invoices_collect_job(now=T0 + timedelta(days=15))["overdue"] == 1
    sub.refresh_from_db()
    assert sub.status == Subscription.Status.PAST_DUE
    assert charges() == 0
    # The customer may still pay it on demand.
    result = invoice_collect(invoice=invoice, trigger=API, now=T0 + timedelta(days=16))
    assert result.attempt.success and charges() == 1


def test_a_lost_answer_is_resolved_without_a_second_charge():
    customer = CustomerFactory()
    card(customer, "tok_timeout")
    invoice = open_invoice(customer, amount=900)
    result = invoice_collect(invoice=invoice, trigger=API, now=T0)
    assert not result.attempt.success
    assert result.attempt.payment_intent.status == PaymentIntent.Status.UNKNOWN
    assert result.invoice.status == "open" and result.invoice.attempt_count == 0  # not a failure: in flight
    # Another attempt meanwhile refuses to start a second payment.
    again = invoice_collect(invoice=invoice, trigger=JOB, now=T0 + timedelta(minutes=1))
    assert "payment_in_progress" in again.attempt.error
    payment_intent_resolve_unknown_job(now=T0 + timedelta(minutes=20))
    invoice.refresh_from_db()
    assert invoice.status == "paid" and invoice.amount_paid == 900
    assert charges() == 1


def test_pay_api(make_client):
    customer = CustomerFactory()
    card(customer)
    invoice = open_invoice(customer, amount=700)
    assert make_client("payments:read").post(f"/api/v1/invoices/{invoice.id}/pay").status_code == 403
    client = make_client("payments:write")
    response = client.post(f"/api/v1/invoices/{invoice.id}/pay")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["invoice"]["status"] == "paid"
    assert body["attempt"]["amount_charged"] == 700 and body["attempt"]["success"] is True
    again = client.post(f"/api/v1/invoices/{invoice.id}/pay")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "invoice_status_conflict"
    assert client.post("/api/v1/invoices/in_nope/pay").status_code == 404
    assert charges() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_collection_of_one_invoice_charges_once():
    customer = CustomerFactory()
    card(customer)
    invoice = open_invoice(customer, amount=1000)
    barrier = threading.Barrier(5)
    errors: list[Exception] = []

    def collect(trigger: str) -> None:
        barrier.wait()
        try:
            invoice_collect(invoice=Invoice.objects.get(pk=invoice.pk), trigger=trigger, now=T0)
        except Exception as exc:  # only "no longer open" is acceptable
            if getattr(exc, "code", "") != "invoice_status_conflict":
                errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=collect, args=(t,)) for t in (API, JOB, JOB, API, JOB)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    invoice.refresh_from_db()
    assert invoice.status == "paid" and invoice.amount_paid == 1000
    assert charges() == 1
    assert PaymentIntent.objects.filter(invoice=invoice, status="succeeded").count() == 1
