"""Payment methods (attach, default, detach) and SetupIntents on the sandbox."""

from __future__ import annotations

from datetime import timedelta

import pytest

from billing_site.errors import Conflict, InvalidRequest
from customers.models import Customer
from customers.tests.factories import CustomerFactory
from payments.models import PaymentMethod, SandboxPayment, SetupIntent
from payments.processors.sandbox import SandboxProcessor
from payments.services.intents import payment_intent_confirm, payment_intent_create
from payments.services.methods import (
    payment_method_create,
    payment_method_detach,
    setup_intent_cancel,
    setup_intent_confirm,
    setup_intent_create,
)
from payments.tests.factories import PAY_T0, open_invoice
from webhooks.models import BillingEvent

pytestmark = pytest.mark.django_db

NOW = PAY_T0
S = SetupIntent.Status


def card(customer, token="tok_visa", default=False):
    return payment_method_create(customer=customer, token=token, default=default, now=NOW)


def defaults(customer):
    return list(
        PaymentMethod.objects.filter(customer=customer, is_default=True, detached_at__isnull=True).values_list(
            "id", flat=True
        )
    )


def types_of(object_id):
    return list(BillingEvent.objects.filter(object_id=object_id).order_by("id").values_list("type", flat=True))


# --- payment methods ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "brand", "last4"),
    [
        ("tok_visa", "visa", "4242"),
        ("tok_mastercard", "mastercard", "4444"),
        ("tok_chargeDeclined", "visa", "0002"),
        ("tok_insufficientFunds", "visa", "9995"),
        ("tok_authenticationRequired", "visa", "3184"),
        ("tok_timeout", "visa", "0341"),
    ],
)
def test_every_sandbox_token_attaches_with_a_plausible_card(token, brand, last4):
    method = card(CustomerFactory(), token)
    assert (method.brand, method.last4, method.provider) == (brand, last4, "sandbox")
    assert method.provider_ref == "pm_sandbox_" + token.removeprefix("tok_") and method.id.startswith("pm_")


def test_attaching_creates_the_provider_customer_once_and_pins_the_processor():
    customer = CustomerFactory()
    card(customer)
    card(customer, "tok_mastercard")
    customer.refresh_from_db()
    assert customer.provider == "sandbox"
    assert customer.provider_customer_id == f"cus_sandbox_{customer.id.removeprefix('cus_')}"


def test_the_first_method_is_the_default_and_a_new_default_replaces_it():
    customer = CustomerFactory()
    first = card(customer)
    second = card(customer, "tok_mastercard")
    assert first.is_default and not second.is_default and defaults(customer) == [first.id]
    third = card(customer, "tok_visa", default=True)
    assert defaults(customer) == [third.id]
    assert types_of(third.id) == ["payment_method.attached"]


def test_a_new_default_brings_waiting_invoice_retries_forward():
    customer = CustomerFactory()
    invoice = open_invoice(customer)
    invoice.next_payment_attempt = NOW + timedelta(days=3)
    invoice.save()
    card(customer)
    invoice.refresh_from_db()
    assert invoice.next_payment_attempt == NOW


def test_an_unknown_token_is_a_400_on_token():
    with pytest.raises(InvalidRequest) as error:
        card(CustomerFactory(), "tok_nope")
    assert (error.value.param, error.value.code) == ("token", "resource_missing")
    assert not PaymentMethod.objects.exists()


def test_detach_unsets_the_default_and_the_method_can_no_longer_pay():
    customer = CustomerFactory()
    method = card(customer)
    detached = payment_method_detach(payment_method=method, now=NOW)
    assert detached.detached_at == NOW and not detached.is_default and defaults(customer) == []
    assert types_of(method.id) == ["payment_method.attached", "payment_method.detached"]
    with pytest.raises(Conflict) as error:
        payment_method_detach(payment_method=method, now=NOW)
    assert error.value.code == "payment_method_detached"
    with pytest.raises(InvalidRequest) as error:
        payment_intent_create(customer=customer, amount=100, currency="usd", payment_method=detached, now=NOW)
    assert error.value.code == "payment_method_detached"


def test_confirming_with_a_method_detached_since_creation_is_refused():
    customer = CustomerFactory()
    method = card(customer)
    intent = payment_intent_create(customer=customer, amount=100, currency="usd", payment_method=method, now=NOW)
    payment_method_detach(payment_method=method, now=NOW)
    with pytest.raises(InvalidRequest):
        payment_intent_confirm(payment_intent=intent, now=NOW)


def test_a_deleted_customer_gets_no_method():
    customer = CustomerFactory()
    Customer.objects.filter(pk=customer.pk).update(status="deleted", deleted_at=NOW)
    customer.refresh_from_db()
    with pytest.raises(InvalidRequest) as error:
        card(customer)
    assert error.value.param == "customer"


# --- setup intents --------------------------------------------------------------------------------


def setup(customer=None, token="", **kwargs):
    return setup_intent_create(customer=customer or CustomerFactory(), token=token, now=NOW, **kwargs)


def confirm(intent, **kwargs):
    return setup_intent_confirm(setup_intent=intent, now=NOW, **kwargs)


def test_a_succeeded_setup_attaches_the_card_for_off_session_use():
    intent = setup()
    assert intent.status == S.REQUIRES_PAYMENT_METHOD and intent.id.startswith("seti_")
    with pytest.raises(InvalidRequest) as error:
        confirm(intent)
    assert (error.value.param, error.value.code) == ("token", "parameter_missing")
    done = confirm(intent, token="tok_visa")
    assert done.status == S.SUCCEEDED and done.provider_ref.startswith("seti_sandbox_")
    method = done.payment_method
    assert (method.brand, method.last4, method.is_default, method.customer_id) == (
        "visa",
        "4242",
        True,
        done.customer_id,
    )
    assert types_of(done.id) == ["setup_intent.created", "setup_intent.succeeded"]
    assert types_of(method.id) == ["payment_method.attached"]


def test_a_setup_created_with_a_token_needs_only_confirmation():
    intent = setup(token="tok_mastercard", usage="on_session")
    assert intent.status == S.REQUIRES_CONFIRMATION
    done = confirm(intent)
    assert (done.status, done.payment_method.brand, done.usage) == (S.SUCCEEDED, "mastercard", "on_session")


def test_a_declined_setup_goes_back_to_requires_payment_method_then_another_card_works():
    intent = confirm(setup(), token="tok_chargeDeclined")
    assert intent.status == S.REQUIRES_PAYMENT_METHOD and intent.last_error["code"] == "card_declined"
    assert types_of(intent.id)[-1] == "setup_intent.setup_failed" and not PaymentMethod.objects.exists()
    assert confirm(intent, token="tok_visa").status == S.SUCCEEDED


def test_a_setup_requiring_authentication_succeeds_once_the_customer_completes_it():
    intent = confirm(setup(), token="tok_authenticationRequired")
    assert intent.status == S.REQUIRES_ACTION and types_of(intent.id)[-1] == "setup_intent.requires_action"
    assert confirm(intent).status == S.REQUIRES_ACTION
    SandboxProcessor().complete_action(intent.provider_ref)
    done = confirm(intent)
    assert done.status == S.SUCCEEDED and done.payment_method.last4 == "3184"
    assert SandboxPayment.objects.filter(kind="setup").count() == 1


def test_a_setup_whose_answer_was_lost_is_confirmed_again_with_the_same_key():
    intent = confirm(setup(), token="tok_timeout")
    assert intent.status == S.REQUIRES_CONFIRMATION and intent.last_error["code"] == "processor_timeout"
    done = confirm(intent)
    assert done.status == S.SUCCEEDED and SandboxPayment.objects.filter(kind="setup").count() == 1


def test_a_setup_can_verify_a_method_already_attached():
    customer = CustomerFactory()
    method = card(customer)
    done = confirm(setup(customer), payment_method=method)
    assert done.status == S.SUCCEEDED and done.payment_method_id == method.id
    assert PaymentMethod.objects.count() == 1
    with pytest.raises(InvalidRequest):
        confirm(setup(customer), payment_method=method, token="tok_visa")
    with pytest.raises(InvalidRequest) as error:
        confirm(setup(), payment_method=method)  # another customer's method
    assert error.value.param == "payment_method"


@pytest.mark.parametrize("stage", [S.REQUIRES_PAYMENT_METHOD, S.REQUIRES_CONFIRMATION, S.REQUIRES_ACTION])
def test_cancel_before_success(stage):
    intent = setup(token="tok_authenticationRequired" if stage != S.REQUIRES_PAYMENT_METHOD else "")
    if stage == S.REQUIRES_ACTION:
        intent = confirm(intent)
    assert intent.status == stage
    canceled = setup_intent_cancel(setup_intent=intent, cancellation_reason="abandoned", now=NOW)
    assert (canceled.status, canceled.cancellation_reason, canceled.canceled_at) == (S.CANCELED, "abandoned", NOW)
    assert types_of(intent.id)[-1] == "setup_intent.canceled"


@pytest.mark.parametrize(
    ("action", "status"), [(a, s) for a in ("confirm", "cancel") for s in ("succeeded", "canceled", "processing")]
)
def test_illegal_setup_transitions_are_409(action, status):
    intent = setup(token="tok_visa")
    if status == S.SUCCEEDED:
        confirm(intent)
    elif status == S.CANCELED:
        setup_intent_cancel(setup_intent=intent, now=NOW)
    else:
        SetupIntent.objects.filter(pk=intent.pk).update(status=S.PROCESSING)
    call = confirm if action == "confirm" else (lambda i: setup_intent_cancel(setup_intent=i, now=NOW))
    with pytest.raises(Conflict) as error:
        call(intent)
    assert error.value.code == "setup_intent_unexpected_state"
    assert SetupIntent.objects.get(pk=intent.pk).status == status
