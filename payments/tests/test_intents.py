"""PaymentIntents on the sandbox: every path of the state machine, every illegal transition, lost answers
settled with exactly one charge, manual capture, and off-session charges of invoices."""

from __future__ import annotations

import threading
from datetime import timedelta
from io import StringIO

import orjson
import pytest
from django.core.management import call_command
from django.db import connection, transaction

from billing_site.errors import Conflict, InvalidRequest
from customers.tests.factories import CustomerFactory
from invoicing.models import Invoice
from payments.models import PaymentIntent, SandboxPayment
from payments.processors.sandbox import SandboxProcessor, sandbox_charges
from payments.services import intents
from payments.services.intents import (
    payment_intent_cancel,
    payment_intent_capture,
    payment_intent_charge_off_session,
    payment_intent_confirm,
    payment_intent_create,
    payment_intent_resolve,
    payment_intent_resolve_unknown_job,
)
from payments.services.methods import payment_method_create
from payments.tests.factories import PAY_T0, open_invoice
from webhooks.models import BillingEvent

pytestmark = pytest.mark.django_db

NOW = PAY_T0
S = PaymentIntent.Status


def card(customer, token="tok_visa", default=False):
    return payment_method_create(customer=customer, token=token, default=default, now=NOW)


def new_intent(token="tok_visa", *, customer=None, amount=1000, with_method=True, **kwargs):
    customer = customer or CustomerFactory()
    method = card(customer, token) if with_method else None
    return payment_intent_create(
        customer=customer, amount=amount, currency="usd", payment_method=method, now=NOW, **kwargs
    )


def confirm(intent, **kwargs):
    return payment_intent_confirm(payment_intent=intent, now=NOW, **kwargs)


def events_of(intent):
    return list(BillingEvent.objects.filter(object_id=intent.id).order_by("id").values_list("type", flat=True))


def payments_made():
    return SandboxPayment.objects.filter(kind="payment").count()


# --- happy paths ----------------------------------------------------------------------------------


def test_automatic_capture_succeeds_with_one_charge_under_the_stored_key():
    intent = new_intent()
    assert intent.status == S.REQUIRES_CONFIRMATION and intent.id.startswith("pi_")
    done = confirm(intent)
    assert (done.status, done.amount_received, done.amount_capturable, done.attempts) == (S.SUCCEEDED, 1000, 0, 1)
    assert done.idempotency_key == f"{intent.id}:confirm:1" and done.succeeded_at == NOW
    row = SandboxPayment.objects.get(kind="payment")
    assert (row.idempotency_key, row.ref, row.amount_received) == (done.idempotency_key, done.provider_ref, 1000)
    assert events_of(done) == ["payment_intent.created", "payment_intent.succeeded"]


def test_without_a_method_it_waits_for_one_and_confirm_names_the_missing_field():
    customer = CustomerFactory()
    intent = new_intent(customer=customer, with_method=False)
    assert intent.status == S.REQUIRES_PAYMENT_METHOD
    with pytest.raises(InvalidRequest) as error:
        confirm(intent)
    assert (error.value.param, error.value.code) == ("payment_method", "parameter_missing")
    assert confirm(intent, payment_method=card(customer, "tok_mastercard")).status == S.SUCCEEDED


@pytest.mark.parametrize(
    ("token", "decline_code"),
    [("tok_chargeDeclined", "generic_decline"), ("tok_insufficientFunds", "insufficient_funds")],
)
def test_a_decline_returns_to_requires_payment_method_and_a_new_card_succeeds(token, decline_code):
    customer = CustomerFactory()
    failed = confirm(new_intent(token, customer=customer))
    assert failed.status == S.REQUIRES_PAYMENT_METHOD
    assert failed.last_error["code"] == "card_declined" and failed.last_error["decline_code"] == decline_code
    assert events_of(failed)[-1] == "payment_intent.payment_failed"
    retried = confirm(failed, payment_method=card(customer, "tok_visa"))
    assert (retried.status, retried.attempts, retried.idempotency_key) == (S.SUCCEEDED, 2, f"{failed.id}:confirm:2")
    assert retried.last_error is None and payments_made() == 2 and sandbox_charges() == 1


def test_authentication_required_then_completed_settles_without_a_second_charge():
    intent = confirm(new_intent("tok_authenticationRequired"))
    assert intent.status == S.REQUIRES_ACTION and events_of(intent)[-1] == "payment_intent.requires_action"
    assert confirm(intent).status == S.REQUIRES_ACTION  # not authenticated yet: unchanged
    SandboxProcessor().complete_action(intent.provider_ref)
    done = confirm(intent)
    assert (done.status, done.amount_received, done.attempts) == (S.SUCCEEDED, 1000, 1)
    assert payments_made() == 1


def test_failed_authentication_is_a_payment_failure():
    intent = confirm(new_intent("tok_authenticationRequired"))
    SandboxProcessor().complete_action(intent.provider_ref, succeed=False)
    failed = confirm(intent)
    assert failed.status == S.REQUIRES_PAYMENT_METHOD
    assert failed.last_error["code"] == "payment_intent_authentication_failure"


def test_requires_action_refuses_another_payment_method():
    customer = CustomerFactory()
    intent = confirm(new_intent("tok_authenticationRequired", customer=customer))
    with pytest.raises(Conflict) as error:
        confirm(intent, payment_method=card(customer))
    assert error.value.code == "payment_intent_unexpected_state"


# --- manual capture -------------------------------------------------------------------------------


def test_manual_capture_of_part_releases_the_rest():
    authorized = confirm(new_intent(capture_method="manual"))
    assert (authorized.status, authorized.amount_capturable, authorized.amount_received) == (
        S.REQUIRES_CAPTURE,
        1000,
        0,
    )
    assert events_of(authorized)[-1] == "payment_intent.amount_capturable_updated"
    captured = payment_intent_capture(payment_intent=authorized, amount=600, now=NOW)
    assert (captured.status, captured.amount_received, captured.amount_capturable) == (S.SUCCEEDED, 600, 0)
    row = SandboxPayment.objects.get(kind="payment")
    assert (row.status, row.amount_received, row.amount_capturable) == ("succeeded", 600, 0)


def test_capture_defaults_to_everything_authorized():
    captured = payment_intent_capture(payment_intent=confirm(new_intent(capture_method="manual")), now=NOW)
    assert (captured.status, captured.amount_received) == (S.SUCCEEDED, 1000)


@pytest.mark.parametrize("amount", [1001, 0, -5])
def test_capture_outside_the_authorized_amount_is_a_400_on_amount(amount):
    authorized = confirm(new_intent(capture_method="manual"))
    with pytest.raises(InvalidRequest) as error:
        payment_intent_capture(payment_intent=authorized, amount=amount, now=NOW)
    assert error.value.param == "amount"
    assert PaymentIntent.objects.get(pk=authorized.pk).status == S.REQUIRES_CAPTURE


def test_cancel_releases_an_authorization_at_the_provider():
    authorized = confirm(new_intent(capture_method="manual"))
    canceled = payment_intent_cancel(payment_intent=authorized, cancellation_reason="abandoned", now=NOW)
    assert (canceled.status, canceled.amount_capturable, canceled.cancellation_reason) == (S.CANCELED, 0, "abandoned")
    assert SandboxPayment.objects.get(kind="payment").status == "canceled"
    assert events_of(canceled)[-1] == "payment_intent.canceled"


@pytest.mark.parametrize("stage", ["requires_payment_method", "requires_confirmation", "requires_action"])
def test_cancel_before_money_moved(stage):
    intent = new_intent("tok_authenticationRequired", with_method=stage != "requires_payment_method")
    if stage == "requires_action":
        intent = confirm(intent)
    assert intent.status == stage
    canceled = payment_intent_cancel(payment_intent=intent, now=NOW)
    assert canceled.status == S.CANCELED and canceled.canceled_at == NOW


# --- illegal transitions --------------------------------------------------------------------------


def _in(status):
    """An intent brought to `status` the way the service does it."""
    if status == S.SUCCEEDED:
        return confirm(new_intent())
    if status == S.CANCELED:
        return payment_intent_cancel(payment_intent=new_intent(), now=NOW)
    if status == S.UNKNOWN:
        return confirm(new_intent("tok_timeout"))
    if status == S.REQUIRES_CAPTURE:
        return confirm(new_intent(capture_method="manual"))
    if status == S.PROCESSING:
        intent = new_intent()
        PaymentIntent.objects.filter(pk=intent.pk).update(status=S.PROCESSING)
        return intent
    return new_intent(with_method=status != S.REQUIRES_PAYMENT_METHOD)


ILLEGAL = [
    ("confirm", S.SUCCEEDED),
    ("confirm", S.CANCELED),
    ("confirm", S.PROCESSING),
    ("confirm", S.REQUIRES_CAPTURE),
    ("capture", S.SUCCEEDED),
    ("capture", S.CANCELED),
    ("capture", S.REQUIRES_CONFIRMATION),
    ("capture", S.REQUIRES_PAYMENT_METHOD),
    ("capture", S.UNKNOWN),
    ("capture", S.PROCESSING),
    ("cancel", S.SUCCEEDED),
    ("cancel", S.CANCELED),
    ("cancel", S.UNKNOWN),
    ("cancel", S.PROCESSING),
    ("resolve", S.SUCCEEDED),
    ("resolve", S.REQUIRES_CONFIRMATION),
]


@pytest.mark.parametrize(("action", "status"), ILLEGAL)
def test_every_illegal_transition_is_a_409(action, status):
    intent = _in(status)
    assert PaymentIntent.objects.get(pk=intent.pk).status == status
    calls = {
        "confirm": lambda: confirm(intent),
        "capture": lambda: payment_intent_capture(payment_intent=intent, now=NOW),
        "cancel": lambda: payment_intent_cancel(payment_intent=intent, now=NOW),
        "resolve": lambda: payment_intent_resolve(payment_intent=intent, now=NOW),
    }
    with pytest.raises(Conflict) as error:
        calls[action]()
    assert error.value.status_code == 409 and error.value.code == "payment_intent_unexpected_state"
    assert PaymentIntent.objects.get(pk=intent.pk).status == status


def test_create_refuses_bad_amounts_and_a_detached_method():
    customer = CustomerFactory()
    method = card(customer)
    with pytest.raises(InvalidRequest) as error:
        payment_intent_create(customer=customer, amount=0, currency="usd", now=NOW)
    assert error.value.param == "amount"
    with pytest.raises(InvalidRequest) as error:
        payment_intent_create(customer=CustomerFactory(), amount=5, currency="usd", payment_method=method, now=NOW)
    assert error.value.param == "payment_method"


# --- lost answers: unknown, then settled from the provider's records ------------------------------


def test_timeout_ends_unknown_and_the_job_settles_it_with_exactly_one_charge():
    intent = confirm(new_intent("tok_timeout"))
    assert intent.status == S.UNKNOWN and intent.last_error["code"] == "processor_timeout"
    assert events_of(intent)[-1] == "payment_intent.unknown"
    assert payments_made() == 1  # the charge happened; only its answer was lost
    result = payment_intent_resolve_unknown_job(now=NOW + timedelta(minutes=10))
    assert result == {"checked": 1, "succeeded": 1}
    settled = PaymentIntent.objects.get(pk=intent.pk)
    assert (settled.status, settled.amount_received, settled.last_error) == (S.SUCCEEDED, 1000, None)
    assert settled.provider_ref == SandboxPayment.objects.get().ref
    assert events_of(settled)[-1] == "payment_intent.succeeded"
    # Running it again finds nothing and charges nothing.
    assert payment_intent_resolve_unknown_job(now=NOW + timedelta(minutes=20)) == {"checked": 0}
    assert payments_made() == 1 and sandbox_charges() == 1


def test_a_client_retrying_confirm_on_an_unknown_payment_settles_it_without_charging_again():
    intent = confirm(new_intent("tok_timeout"))
    retried = confirm(intent)
    assert (retried.status, retried.attempts) == (S.SUCCEEDED, 1)
    assert confirm_refused(retried) and payment_intent_resolve_unknown_job(now=NOW) == {"checked": 0}
    assert payments_made() == 1


def confirm_refused(intent):
    with pytest.raises(Conflict):
        confirm(intent)
    return True


def test_the_same_idempotency_key_replays_the_first_payment():
    intent = confirm(new_intent())
    again = SandboxProcessor().charge(
        provider_customer="cus_x",
        method_ref="pm_sandbox_visa",
        amount=1000,
        currency="usd",
        idempotency_key=intent.idempotency_key,
    )
    assert again.ref == intent.provider_ref and payments_made() == 1


def test_a_crash_after_the_provider_call_is_settled_by_the_job_from_the_stored_key(monkeypatch):
    intent = new_intent()

    def crash(*args, **kwargs):
        raise RuntimeError("worker died before recording the outcome")

    monkeypatch.setattr(intents, "_settle", crash)
    with pytest.raises(RuntimeError):
        confirm(intent)
    monkeypatch.undo()
    stuck = PaymentIntent.objects.get(pk=intent.pk)
    assert stuck.status == S.PROCESSING and payments_made() == 1
    assert payment_intent_resolve_unknown_job(now=NOW + timedelta(minutes=5)) == {"checked": 0}  # not stale yet
    assert payment_intent_resolve_unknown_job(now=NOW + timedelta(minutes=16)) == {"checked": 1, "succeeded": 1}
    assert payments_made() == 1


def test_a_payment_the_provider_never_saw_fails_after_the_grace_period():
    intent = new_intent()
    PaymentIntent.objects.filter(pk=intent.pk).update(
        status=S.UNKNOWN, attempts=1, idempotency_key=f"{intent.id}:confirm:1", updated_at=NOW
    )
    assert payment_intent_resolve_unknown_job(now=NOW + timedelta(minutes=30)) == {"checked": 1, "unknown": 1}
    result = payment_intent_resolve_unknown_job(now=NOW + timedelta(hours=2))
    assert result == {"checked": 1, "requires_payment_method": 1}
    failed = PaymentIntent.objects.get(pk=intent.pk)
    assert failed.last_error["code"] == "payment_not_found" and payments_made() == 0


def test_the_job_is_registered_and_runs_from_the_command_line():
    intent = confirm(new_intent("tok_timeout"))
    out = StringIO()
    call_command("run_job", "resolve_unknown_payments", "--now", "2026-03-01T13:00:00Z", stdout=out)
    assert orjson.loads(out.getvalue())["result"] == {"checked": 1, "succeeded": 1}
    assert PaymentIntent.objects.get(pk=intent.pk).status == S.SUCCEEDED


def test_a_capture_whose_answer_is_lost_is_settled_from_the_provider(monkeypatch):
    authorized = confirm(new_intent(capture_method="manual"))
    real_capture = SandboxProcessor.capture

    def capture_then_lose_the_answer(self, **kwargs):
        real_capture(self, **kwargs)
        raise intents.ProcessorTimeout("lost")

    monkeypatch.setattr(SandboxProcessor, "capture", capture_then_lose_the_answer)
    lost = payment_intent_capture(payment_intent=authorized, amount=400, now=NOW)
    assert lost.status == S.UNKNOWN
    settled = payment_intent_resolve(payment_intent=lost, now=NOW)
    assert (settled.status, settled.amount_received) == (S.SUCCEEDED, 400)


def test_services_that_call_the_provider_refuse_to_run_inside_a_transaction():
    intent = new_intent()
    with pytest.raises(RuntimeError, match="durable"), transaction.atomic():
        confirm(intent)


# --- invoices: off-session charges ----------------------------------------------------------------


def test_off_session_charge_pays_the_invoice_with_the_default_method(monkeypatch):
    customer = CustomerFactory()
    card(customer, "tok_visa")  # the first method is the default
    invoice = open_invoice(customer, amount=2500)
    seen = {}
    real_charge = SandboxProcessor.charge

    def spy(self, **kwargs):
        seen.update(kwargs)
        return real_charge(self, **kwargs)

    monkeypatch.setattr(SandboxProcessor, "charge", spy)
    intent = payment_intent_charge_off_session(invoice=invoice, amount=2500, now=NOW)
    assert (intent.status, intent.invoice_id, intent.amount_received) == (S.SUCCEEDED, invoice.id, 2500)
    assert seen["off_session"] is True and seen["idempotency_key"] == intent.idempotency_key
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_paid, invoice.amount_remaining) == (Invoice.Status.PAID, 2500, 0)


def test_off_session_charge_without_a_default_method_is_no_payment_method():
    invoice = open_invoice(amount=100)
    with pytest.raises(InvalidRequest) as error:
        payment_intent_charge_off_session(invoice=invoice, amount=100, now=NOW)
    assert error.value.code == "no_payment_method"


@pytest.mark.parametrize(
    ("token", "status"),
    [("tok_chargeDeclined", S.REQUIRES_PAYMENT_METHOD), ("tok_authenticationRequired", S.REQUIRES_ACTION)],
)
def test_off_session_charge_returns_how_it_ended(token, status):
    customer = CustomerFactory()
    card(customer, token)
    invoice = open_invoice(customer, amount=100)
    intent = payment_intent_charge_off_session(invoice=invoice, amount=100, now=NOW)
    assert intent.status == status
    assert Invoice.objects.get(pk=invoice.pk).status == Invoice.Status.OPEN


def test_an_unknown_off_session_charge_pays_the_invoice_once_resolved():
    customer = CustomerFactory()
    card(customer, "tok_timeout")
    invoice = open_invoice(customer, amount=700)
    intent = payment_intent_charge_off_session(invoice=invoice, amount=700, now=NOW)
    assert intent.status == S.UNKNOWN
    # While it is unknown, nothing else may charge the invoice.
    with pytest.raises(Conflict) as error:
        payment_intent_charge_off_session(invoice=invoice, amount=700, now=NOW)
    assert error.value.code == "payment_in_progress"
    payment_intent_resolve_unknown_job(now=NOW)
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_paid) == (Invoice.Status.PAID, 700) and payments_made() == 1


def test_one_payment_in_flight_per_invoice():
    customer = CustomerFactory()
    method = card(customer)
    invoice = open_invoice(customer, amount=500)
    first = payment_intent_create(
        customer=customer, amount=500, currency="usd", payment_method=method, invoice=invoice, now=NOW
    )
    with pytest.raises(Conflict) as error:
        payment_intent_create(
            customer=customer, amount=500, currency="usd", payment_method=method, invoice=invoice, now=NOW
        )
    assert error.value.code == "payment_in_progress"
    # One waiting for a method is not in flight; confirming it while another is, is refused.
    waiting = payment_intent_create(customer=customer, amount=500, currency="usd", invoice=invoice, now=NOW)
    with pytest.raises(Conflict):
        confirm(waiting, payment_method=method)
    assert confirm(first).status == S.SUCCEEDED


@pytest.mark.parametrize(
    ("change", "param"),
    [({"amount": 501}, "amount"), ({"currency": "eur"}, "currency"), ({"other_customer": True}, "invoice")],
)
def test_an_intent_for_an_invoice_must_fit_it(change, param):
    customer = CustomerFactory()
    invoice = open_invoice(customer, amount=500)
    owner = CustomerFactory() if change.get("other_customer") else customer
    with pytest.raises(InvalidRequest) as error:
        payment_intent_create(
            customer=owner,
            amount=change.get("amount", 500),
            currency=change.get("currency", "usd"),
            invoice=invoice,
            now=NOW,
        )
    assert error.value.param == param


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_off_session_charges_of_one_invoice_charge_once():
    customer = CustomerFactory()
    card(customer)
    invoice = open_invoice(customer, amount=900)
    outcomes: list[str] = []
    barrier = threading.Barrier(6)

    def run():
        try:
            barrier.wait()
            outcomes.append(payment_intent_charge_off_session(invoice=invoice, amount=900, now=NOW).status)
        except Conflict as exc:
            outcomes.append(exc.code)
        except InvalidRequest as exc:  # the invoice was already paid by the winner
            outcomes.append(exc.code)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count(S.SUCCEEDED) == 1, outcomes
    assert sandbox_charges() == 1
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_paid) == (Invoice.Status.PAID, 900)


def test_an_intent_for_an_invoice_paid_meanwhile_is_not_charged():
    customer = CustomerFactory()
    invoice = open_invoice(customer, amount=300)
    intent = payment_intent_create(
        customer=customer, amount=300, currency="usd", payment_method=card(customer), invoice=invoice, now=NOW
    )
    Invoice.objects.filter(pk=invoice.pk).update(status="paid", amount_paid=300, amount_remaining=0)
    with pytest.raises(Conflict) as error:
        confirm(intent)
    assert error.value.code == "invoice_not_open" and payments_made() == 0
    # Not left in flight on a paid invoice (an orphan): the confirmation that found it closed canceled it.
    intent.refresh_from_db()
    assert intent.status == S.CANCELED and intent.cancellation_reason == "abandoned"
