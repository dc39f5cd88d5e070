"""Stripe's payment_intent.* webhooks, end to end: Stripe's own example objects naming our payment,
signed for real, posted to POST /billing/stripe and processed by the payments handlers. Each effect once,
whatever the repeats and the order; a success after the invoice was paid another way goes to the balance;
the books pass `billing_audit` after every scenario."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection

from customers.tests.factories import CustomerFactory
from invoicing.models import Invoice
from payments.audit import audit_all
from payments.models import BalanceTransaction, PaymentIntent
from payments.selectors import balance_get
from payments.services.intents import payment_intent_resolve_unknown_job
from payments.services.ledger import balance_adjust, balance_apply_to_invoice
from payments.tests.factories import PAY_T0, open_invoice
from payments.tests.stripe_events import (
    T,
    charge,
    deliver,
    pi_object,
    post,
    process_again,
    stripe_customer,
    stripe_http,
    stripe_method,
)
from webhooks import inbound
from webhooks.models import BillingEvent, ProviderEvent

pytestmark = pytest.mark.django_db

NOW = PAY_T0
S = PaymentIntent.Status


@pytest.fixture
def http(settings, monkeypatch):
    return stripe_http(settings, monkeypatch)


@pytest.fixture
def invoice(http):
    customer = stripe_customer()
    stripe_method(customer)
    return open_invoice(customer, amount=2000)


def types(intent_or_invoice) -> list[str]:
    return list(
        BillingEvent.objects.filter(object_id=intent_or_invoice.id).order_by("id").values_list("type", flat=True)
    )


def charges_asked(http) -> int:
    return sum(1 for s in http.sent if (s.method, s.path) == ("POST", "/v1/payment_intents"))


# --- Settling unknown and processing payments --------------------------------------------------------


def test_a_success_settles_an_unknown_payment_once_and_pays_its_invoice(invoice, http):
    intent = charge(invoice, http, None)
    assert intent.status == S.UNKNOWN and intent.provider_ref == ""
    obj = pi_object(intent, "succeeded")
    row = deliver("payment_intent.succeeded", obj, event_id="evt_ok", created=T)
    assert (row.status, row.result) == ("processed", f"{intent.id}: unknown -> succeeded")
    intent.refresh_from_db()
    invoice.refresh_from_db()
    assert (intent.status, intent.provider_ref, intent.amount_received) == (S.SUCCEEDED, obj["id"], 2000)
    assert (invoice.status, invoice.amount_paid, invoice.amount_remaining) == ("paid", 2000, 0)
    assert types(intent)[-1] == "payment_intent.succeeded" and types(invoice) == ["invoice.paid"]

    # Stripe redelivers the event (200, duplicate), an operator reprocesses it, a second event says it again.
    again = post("payment_intent.succeeded", obj, event_id="evt_ok", created=T)
    assert again.pk == row.pk and ProviderEvent.objects.filter(provider_event_id="evt_ok").count() == 1
    assert process_again(row).result == f"{intent.id} stays succeeded (Stripe: succeeded)"
    deliver("payment_intent.succeeded", obj, event_id="evt_ok_2", created=T + 1)
    invoice.refresh_from_db()
    assert invoice.amount_paid == 2000 and types(invoice) == ["invoice.paid"]
    assert types(intent).count("payment_intent.succeeded") == 1
    assert charges_asked(http) == 1  # never charged again
    assert audit_all() == []


def test_processing_then_succeeded_and_succeeded_before_processing_give_one_success(invoice, http):
    intent = charge(invoice, http, "processing")
    assert intent.status == S.PROCESSING and intent.provider_ref
    succeeded = pi_object(intent, "succeeded", ref=intent.provider_ref)
    processing = pi_object(intent, "processing", ref=intent.provider_ref)
    # Stripe created processing first (T) and succeeded later (T + 5); succeeded arrives first.
    first = deliver("payment_intent.succeeded", succeeded, event_id="evt_2", created=T + 5)
    late = deliver("payment_intent.processing", processing, event_id="evt_1", created=T)
    assert first.result == f"{intent.id}: processing -> succeeded"
    assert late.status == "processed" and "superseded" in late.result
    intent.refresh_from_db()
    invoice.refresh_from_db()
    assert intent.status == S.SUCCEEDED and invoice.status == "paid" and invoice.amount_paid == 2000
    assert types(intent).count("payment_intent.succeeded") == 1 and types(invoice) == ["invoice.paid"]
    assert audit_all() == []


def test_in_order_processing_then_succeeded(invoice, http):
    intent = charge(invoice, http, None)
    processing = deliver("payment_intent.processing", pi_object(intent, "processing"), event_id="e1", created=T)
    assert processing.result == f"{intent.id}: unknown -> processing"
    intent.refresh_from_db()
    assert intent.status == S.PROCESSING and intent.provider_ref  # learnt Stripe's id from the event
    deliver("payment_intent.succeeded", pi_object(intent, "succeeded"), event_id="e2", created=T + 3)
    intent.refresh_from_db()
    assert intent.status == S.SUCCEEDED
    assert audit_all() == []


def test_payment_failed_records_the_decline_and_a_late_requires_action_is_dropped(invoice, http):
    intent = charge(invoice, http, "requires_action")
    assert intent.status == S.REQUIRES_ACTION
    failed = pi_object(intent, "requires_payment_method", ref=intent.provider_ref)
    row = deliver("payment_intent.payment_failed", failed, event_id="evt_f", created=T + 10)
    assert row.result == f"{intent.id}: requires_action -> requires_payment_method"
    intent.refresh_from_db()
    assert intent.last_error == {
        "code": "card_declined",
        "message": "Your card has insufficient funds.",
        "decline_code": "insufficient_funds",
    }
    stale = pi_object(intent, "requires_action", ref=intent.provider_ref)
    late = deliver("payment_intent.requires_action", stale, event_id="evt_ra", created=T)
    assert "superseded" in late.result
    intent.refresh_from_db()
    invoice.refresh_from_db()
    assert intent.status == S.REQUIRES_PAYMENT_METHOD and invoice.status == "open"
    assert types(intent).count("payment_intent.payment_failed") == 1
    assert audit_all() == []


def test_canceled_at_stripe_cancels_ours_and_frees_the_invoice_for_another_payment(invoice, http):
    intent = charge(invoice, http, "requires_action")
    row = deliver(
        "payment_intent.canceled",
        pi_object(intent, "canceled", ref=intent.provider_ref),
        event_id="c",
        created=T,
    )
    assert row.result == f"{intent.id}: requires_action -> canceled"
    intent.refresh_from_db()
    assert intent.status == S.CANCELED and types(intent)[-1] == "payment_intent.canceled"
    # No longer in flight: the invoice can be charged again.
    assert charge(invoice, http, "succeeded").status == S.SUCCEEDED
    assert audit_all() == []


def test_events_about_payments_that_are_not_ours_or_an_earlier_attempt_change_nothing(invoice, http):
    intent = charge(invoice, http, "requires_payment_method")  # declined: attempt 1 ended
    assert intent.status == S.REQUIRES_PAYMENT_METHOD
    stranger = pi_object(intent, "succeeded", ref="pi_3Stranger000000000000000", metadata={})
    row = deliver("payment_intent.succeeded", stranger, event_id="s", created=T)
    assert (row.status, row.result) == ("processed", "pi_3Stranger000000000000000 is not a payment of ours")
    # Attempt 1's key, but our intent moved to a second attempt (retried with the same card): ignored.
    old_key = intent.idempotency_key
    PaymentIntent.objects.filter(pk=intent.pk).update(
        attempts=2, idempotency_key=f"{intent.id}:confirm:2", provider_ref="", status=S.PROCESSING
    )
    earlier = pi_object(
        intent, "requires_payment_method", ref="pi_3EarlierAttempt0000000000", metadata={"idempotency_key": old_key}
    )
    row = deliver("payment_intent.payment_failed", earlier, event_id="old", created=T + 1)
    assert row.result == f"pi_3EarlierAttempt0000000000 is an earlier attempt of {intent.id}"
    intent.refresh_from_db()
    assert intent.status == S.PROCESSING


def test_money_for_an_earlier_attempt_is_never_dropped_quietly(invoice, http):
    intent = charge(invoice, http, None)
    old = pi_object(intent, "succeeded", ref="pi_3EarlierAttempt0000000000")
    PaymentIntent.objects.filter(pk=intent.pk).update(attempts=2, idempotency_key=f"{intent.id}:confirm:2")
    row = deliver("payment_intent.succeeded", old, event_id="odd", created=T)
    assert row.status == "pending" and "succeeded for an earlier attempt" in row.error  # retried, then admin
    assert row.attempts == 1 and row.next_attempt_at - row.received_at >= inbound.PROCESS_RETRY_SCHEDULE[0]


def test_an_event_whose_amount_does_not_match_our_payment_is_not_applied(invoice, http):
    intent = charge(invoice, http, None)
    row = deliver("payment_intent.succeeded", pi_object(intent, "succeeded", amount=1), event_id="m", created=T)
    assert row.status == "pending" and "is 1 usd" in row.error
    intent.refresh_from_db()
    assert intent.status == S.UNKNOWN


# --- A success after the invoice was paid another way ---------------------------------------------


@pytest.mark.parametrize("balance", [2000, 500], ids=["paid-by-credit-note", "partly-by-credit-note"])
def test_a_success_after_the_invoice_was_paid_another_way_is_credited_to_the_balance(invoice, http, balance):
    from payments.services.credit_notes import credit_note_create

    intent = charge(invoice, http, None)
    customer = invoice.customer
    # While the payment is in flight the balance is not applied (issue 10: it would pay the same part twice)...
    balance_adjust(customer=customer, amount=balance, currency="usd", type="adjustment", description="", now=NOW)
    assert balance_apply_to_invoice(invoice=invoice, now=NOW) is None
    balance_adjust(customer=customer, amount=-balance, currency="usd", type="adjustment", description="", now=NOW)
    # ... but a credit note still takes its part off what is due.
    credit_note_create(invoice=Invoice.objects.get(pk=invoice.pk), amount=balance, now=NOW)
    invoice.refresh_from_db()
    assert invoice.amount_remaining == 2000 - balance and balance_get(customer, "usd") == 0

    row = deliver("payment_intent.succeeded", pi_object(intent, "succeeded"), event_id="late", created=T)
    assert row.result == f"{intent.id}: unknown -> succeeded"
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_paid, invoice.amount_remaining) == ("paid", 2000 - balance, 0)
    # 2000 received; what the invoice could not take is owed to the customer, not lost.
    credit = BalanceTransaction.objects.get(type="overpayment")
    assert (credit.amount, credit.payment_intent_id, credit.invoice_id) == (balance, intent.id, invoice.id)
    assert balance_get(customer, "usd") == balance
    assert BillingEvent.objects.filter(type="customer_balance_transaction.created", object_id=credit.id).count() == 1
    process_again(row)
    deliver("payment_intent.succeeded", pi_object(intent, "succeeded"), event_id="late_2", created=T + 1)
    assert (
        BalanceTransaction.objects.filter(type="overpayment").count() == 1 and balance_get(customer, "usd") == balance
    )
    assert audit_all() == []


def test_a_success_for_a_voided_invoice_is_credited_in_full(invoice, http):
    from invoicing.services import invoice_void

    intent = charge(invoice, http, None)
    invoice_void(invoice=Invoice.objects.get(pk=invoice.pk), now=NOW)
    deliver("payment_intent.succeeded", pi_object(intent, "succeeded"), event_id="v", created=T)
    assert balance_get(invoice.customer, "usd") == 2000
    invoice.refresh_from_db()
    assert invoice.status == "void" and invoice.amount_paid == 0
    assert audit_all() == []


def test_the_audit_reports_provider_money_applied_nowhere(invoice, http):
    intent = charge(invoice, http, "succeeded")
    assert audit_all() == []
    Invoice.objects.filter(pk=invoice.pk).update(amount_paid=500, amount_remaining=1500, status="open")
    problems = audit_all()
    assert any(p.startswith(f"payments: invoice {invoice.id}: its payments brought 2000") for p in problems)
    BalanceTransaction.objects.filter(payment_intent=intent).delete()
    PaymentIntent.objects.filter(pk=intent.pk).update(status=S.CANCELED)
    customer = CustomerFactory()
    balance_adjust(customer=customer, amount=5, currency="usd", type="adjustment", description="", now=NOW)
    BalanceTransaction.objects.filter(customer=customer).update(type="overpayment", payment_intent=intent)
    assert any(f"overpayment credit of {intent.id}: the payment did not succeed" in p for p in audit_all())


# --- The resolver and the webhook at the same moment ------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_webhook_success_racing_the_resolver_applies_the_payment_once(settings, monkeypatch):
    """Our intent is unknown; Stripe's webhook (processed on commit, as in production) and the resolver
    (which reads the same success from Stripe by our key) settle it at the same moment, five times over."""
    http = stripe_http(settings, monkeypatch)
    for round_ in range(5):
        customer = stripe_customer(provider_customer_id=f"cus_race{round_}")
        stripe_method(customer)
        invoice = open_invoice(customer, amount=2000)
        intent = charge(invoice, http, None)
        obj = pi_object(intent, "succeeded", ref=f"pi_3Race{round_:020d}", customer=customer.provider_customer_id)
        http.route("GET", f"/v1/payment_intents/{obj['id']}", (200, obj))
        http.route(
            "GET",
            "/v1/payment_intents/search",
            (200, {"object": "search_result", "data": [obj], "has_more": False, "url": "/v1/payment_intents/search"}),
        )
        barrier = threading.Barrier(2)
        errors: list[BaseException] = []

        def webhook(obj=obj, round_=round_, barrier=barrier, errors=errors) -> None:
            try:
                barrier.wait()
                post("payment_intent.succeeded", obj, event_id=f"evt_race_{round_}", created=T)
            except BaseException as exc:  # reported below, not lost in the thread
                errors.append(exc)
            finally:
                connection.close()

        def resolver(barrier=barrier, errors=errors) -> None:
            try:
                barrier.wait()
                payment_intent_resolve_unknown_job(now=NOW + timedelta(seconds=1))
            except BaseException as exc:
                errors.append(exc)
            finally:
                connection.close()

        threads = [threading.Thread(target=webhook), threading.Thread(target=resolver)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        row = ProviderEvent.objects.get(provider_event_id=f"evt_race_{round_}")
        assert row.status == "processed"
        intent.refresh_from_db()
        invoice.refresh_from_db()
        assert intent.status == S.SUCCEEDED and intent.amount_received == 2000
        assert (invoice.status, invoice.amount_paid) == ("paid", 2000)
        assert types(invoice) == ["invoice.paid"] and types(intent).count("payment_intent.succeeded") == 1
        assert not BalanceTransaction.objects.filter(customer=customer).exists()  # applied, not credited
    assert charges_asked(http) == 5  # one charge per invoice: settling only ever read Stripe
    assert audit_all() == []


# --- Stripe's currency units (issue 10, item 8) -----------------------------------------------------


def test_a_webhook_amount_in_stripes_units_settles_our_isk_payment(http):
    """ISK: 0 decimals for us (ISO), two for Stripe: our 2000 krona are Stripe's 200000."""
    customer = stripe_customer()
    stripe_method(customer)
    customer.currency = "isk"
    customer.save(update_fields=["currency"])
    invoice = open_invoice(customer, amount=2000, currency="isk")
    intent = charge(invoice, http, None)
    sent = [s for s in http.sent if (s.method, s.path) == ("POST", "/v1/payment_intents")][-1]
    assert sent.params["amount"] == "200000"
    obj = pi_object(intent, "succeeded", amount=200000, amount_received=200000, currency="isk")
    row = deliver("payment_intent.succeeded", obj, event_id="evt_isk", created=T)
    assert row.status == "processed", row.result
    intent.refresh_from_db()
    invoice.refresh_from_db()
    assert (intent.status, intent.amount_received) == (S.SUCCEEDED, 2000)
    assert (invoice.status, invoice.amount_paid) == ("paid", 2000)
    assert audit_all() == []
