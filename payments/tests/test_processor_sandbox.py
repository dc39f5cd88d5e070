"""The sandbox processor on its own (outcomes by token, idempotency by key, state in the database) and
which processor a customer gets."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from billing_site.errors import InvalidRequest
from customers.tests.factories import CustomerFactory
from payments.models import SandboxPayment
from payments.processors import (
    ProcessorError,
    ProcessorTimeout,
    UnknownProcessor,
    get_processor,
    processor_for_customer,
)
from payments.processors.sandbox import SandboxProcessor, card_name
from payments.processors.stripe import StripeProcessor
from payments.services.intents import payment_intent_confirm, payment_intent_create
from payments.services.methods import payment_method_create
from payments.tests.factories import PAY_T0, PaymentMethodFactory

pytestmark = pytest.mark.django_db

sandbox = SandboxProcessor()


def pay(token, key="k1", amount=500, manual=False):
    call = sandbox.authorize if manual else sandbox.charge
    return call(provider_customer="cus_sb", method_ref=token, amount=amount, currency="eur", idempotency_key=key)


@pytest.mark.parametrize("token", ["tok_visa", "tok_mastercard", "pm_sandbox_visa", "pm_card_mastercard"])
def test_good_cards_succeed(token):
    payment = pay(token)
    assert (payment.status, payment.amount_received, payment.amount) == ("succeeded", 500, 500)
    row = SandboxPayment.objects.get(ref=payment.ref)
    assert (row.kind, row.currency, row.customer_ref, row.card) == ("payment", "eur", "cus_sb", card_name(token))


@pytest.mark.parametrize(
    ("token", "decline_code"),
    [("tok_chargeDeclined", "generic_decline"), ("tok_insufficientFunds", "insufficient_funds")],
)
def test_declines_raise_and_replay_the_same_decline(token, decline_code):
    for _ in range(2):
        with pytest.raises(ProcessorError) as error:
            pay(token)
        assert (error.value.code, error.value.decline_code) == ("card_declined", decline_code)
    assert SandboxPayment.objects.count() == 1


def test_authentication_required_waits_for_the_customer():
    payment = pay("tok_authenticationRequired")
    assert payment.status == "requires_action"
    sandbox.complete_action(payment.ref)
    assert sandbox.fetch_payment(idempotency_key="k1").status == "succeeded"


def test_timeout_charges_then_loses_the_answer_and_a_replay_returns_the_charge():
    with pytest.raises(ProcessorTimeout):
        pay("tok_timeout")
    row = SandboxPayment.objects.get()
    assert (row.status, row.amount_received) == ("succeeded", 500)
    assert pay("tok_timeout").ref == row.ref  # the same key: the first result, no second charge
    assert sandbox.fetch_payment(idempotency_key="k1").ref == row.ref
    assert SandboxPayment.objects.count() == 1


def test_a_key_reused_with_other_parameters_is_refused():
    pay("tok_visa")
    with pytest.raises(ProcessorError) as error:
        pay("tok_visa", amount=501)
    assert error.value.code == "idempotency_key_in_use"


def test_unknown_tokens_and_payments():
    with pytest.raises(ProcessorError) as error:
        pay("tok_bogus")
    assert error.value.code == "resource_missing"
    assert sandbox.fetch_payment(idempotency_key="never") is None
    with pytest.raises(ProcessorError):
        sandbox.capture(payment_ref="pi_sandbox_nope", amount=1, idempotency_key="c")


def test_capture_cancel_and_refund_follow_the_payment_state():
    held = pay("tok_visa", manual=True)
    assert (held.status, held.amount_capturable) == ("requires_capture", 500)
    with pytest.raises(ProcessorError):
        sandbox.capture(payment_ref=held.ref, amount=501, idempotency_key="c")
    captured = sandbox.capture(payment_ref=held.ref, amount=200, idempotency_key="c")
    assert (captured.status, captured.amount_received, captured.amount_capturable) == ("succeeded", 200, 0)
    assert sandbox.capture(payment_ref=held.ref, amount=200, idempotency_key="c").amount_received == 200
    with pytest.raises(ProcessorError):
        sandbox.cancel(payment_ref=held.ref, idempotency_key="x")
    first = sandbox.refund(payment_ref=held.ref, amount=150, reason="", idempotency_key="r1")
    assert sandbox.refund(payment_ref=held.ref, amount=150, reason="", idempotency_key="r1") == first  # replay
    with pytest.raises(ProcessorError):
        sandbox.refund(payment_ref=held.ref, amount=51, reason="", idempotency_key="r2")
    assert SandboxPayment.objects.get(ref=held.ref).amount_refunded == 150


def test_setups_by_token():
    assert sandbox.setup(provider_customer="c", token="tok_visa", idempotency_key="s1").method.last4 == "4242"
    with pytest.raises(ProcessorError):
        sandbox.setup(provider_customer="c", token="tok_insufficientFunds", idempotency_key="s2")
    pending = sandbox.setup(provider_customer="c", token="tok_authenticationRequired", idempotency_key="s3")
    assert pending.status == "requires_action" and sandbox.fetch_setup(setup_ref=pending.ref).method is None
    with pytest.raises(ProcessorTimeout):
        sandbox.setup(provider_customer="c", token="tok_timeout", idempotency_key="s4")
    assert sandbox.setup(provider_customer="c", token="tok_timeout", idempotency_key="s4").status == "succeeded"


# --- which processor ------------------------------------------------------------------------------


def test_the_setting_chooses_by_default_and_a_customers_provider_wins(settings):
    assert get_processor().name == "sandbox"
    settings.PAYMENTS_PROCESSOR = "stripe"
    settings.STRIPE_API_KEY = "sk_test_choice123"
    assert isinstance(get_processor(), StripeProcessor)
    assert processor_for_customer(CustomerFactory()).name == "stripe"
    assert processor_for_customer(CustomerFactory(provider="sandbox")).name == "sandbox"
    settings.PAYMENTS_PROCESSOR = "sandbox"
    assert processor_for_customer(CustomerFactory(provider="stripe")).name == "stripe"
    assert get_processor("sandbox").name == "sandbox"


def test_stripe_without_a_key_and_unknown_processors_are_refused(settings):
    settings.STRIPE_API_KEY = None
    with pytest.raises(ImproperlyConfigured, match="STRIPE_API_KEY"):
        get_processor("stripe")
    with pytest.raises(UnknownProcessor):
        get_processor("paypal")
    with pytest.raises(InvalidRequest) as error:
        payment_method_create(customer=CustomerFactory(provider="paypal"), token="tok_visa", now=PAY_T0)
    assert error.value.code == "unknown_processor"


def test_an_intent_keeps_the_processor_of_its_method(settings):
    method = PaymentMethodFactory()
    settings.PAYMENTS_PROCESSOR = "stripe"
    intent = payment_intent_create(
        customer=method.customer, amount=100, currency="usd", payment_method=method, now=PAY_T0
    )
    assert intent.provider == "sandbox"


def test_a_misconfigured_processor_fails_before_anything_is_marked_processing(settings):
    method = PaymentMethodFactory(provider="stripe", provider_ref="pm_1Pfake")
    intent = payment_intent_create(
        customer=method.customer, amount=100, currency="usd", payment_method=method, now=PAY_T0
    )
    settings.STRIPE_API_KEY = None
    with pytest.raises(ImproperlyConfigured):
        payment_intent_confirm(payment_intent=intent, now=PAY_T0)
    intent.refresh_from_db()
    assert (intent.status, intent.attempts) == ("requires_confirmation", 0)
