"""Stripe's setup_intent.* and payment_method.* webhooks, end to end on Stripe's own example objects signed
for real: a setup whose answer was lost settled from the webhook, each card recorded once whichever of our
call and Stripe's webhooks comes first, card details kept current, detaches applied, stale events dropped."""

from __future__ import annotations

import pytest
import stripe

from payments.audit import audit_all
from payments.models import PaymentMethod, SetupIntent
from payments.services.methods import payment_method_create, setup_intent_confirm, setup_intent_create
from payments.tests.factories import PAY_T0
from payments.tests.stripe_events import (
    STRIPE_METHOD,
    T,
    deliver,
    method_object,
    post,
    process_again,
    setup_object,
    stripe_customer,
    stripe_http,
)
from webhooks.models import BillingEvent

pytestmark = pytest.mark.django_db

NOW = PAY_T0
SETI = "seti_1Pgag7B7WZ01zgkWSgwGdb8Z"


@pytest.fixture
def http(settings, monkeypatch):
    return stripe_http(settings, monkeypatch)


@pytest.fixture
def customer(http):
    return stripe_customer()


def lost_setup(customer, http) -> SetupIntent:
    """A setup of our Stripe payment method whose answer was lost: back to requires_confirmation."""
    http.route("POST", "/v1/setup_intents", stripe.APIConnectionError("Read timed out", should_retry=False))
    setup = setup_intent_create(customer=customer, token=STRIPE_METHOD, now=NOW)
    setup = setup_intent_confirm(setup_intent=setup, now=NOW)
    assert setup.status == "requires_confirmation" and setup.last_error["code"] == "processor_timeout"
    sent = next(s for s in http.sent if s.path == "/v1/setup_intents")
    assert sent.params["metadata[idempotency_key]"] == f"{setup.id}:setup:{STRIPE_METHOD}"
    return setup


def types(obj) -> list[str]:
    return list(BillingEvent.objects.filter(object_id=obj.id).order_by("id").values_list("type", flat=True))


# --- Setup intents --------------------------------------------------------------------------------


def test_setup_succeeded_then_method_attached_records_one_card_with_its_details(customer, http):
    setup = lost_setup(customer, http)
    key = f"{setup.id}:setup:{STRIPE_METHOD}"
    row = deliver("setup_intent.succeeded", setup_object(SETI, key=key, status="succeeded"), event_id="s", created=T)
    assert row.result == f"{setup.id}: requires_confirmation -> succeeded"
    setup.refresh_from_db()
    method = PaymentMethod.objects.get()
    assert (setup.status, setup.provider_ref, setup.payment_method_id) == ("succeeded", SETI, method.id)
    assert (method.provider_ref, method.is_default, method.last4) == (STRIPE_METHOD, True, "")
    assert types(setup)[-1] == "setup_intent.succeeded"

    attached = deliver("payment_method.attached", method_object(exp_year=2031), event_id="a", created=T + 1)
    assert attached.result == f"{method.id}: details updated"
    method.refresh_from_db()
    assert (method.brand, method.last4, method.exp_month, method.exp_year) == ("visa", "4242", 8, 2031)
    assert types(method) == ["payment_method.attached", "payment_method.updated"]
    process_again(row)
    process_again(attached)
    assert PaymentMethod.objects.count() == 1 and types(method).count("payment_method.updated") == 1
    assert audit_all() == []


def test_method_attached_before_setup_succeeded_is_still_one_card(customer, http):
    setup = lost_setup(customer, http)
    deliver("payment_method.attached", method_object(), event_id="a", created=T)
    method = PaymentMethod.objects.get()
    key = f"{setup.id}:setup:{STRIPE_METHOD}"
    deliver("setup_intent.succeeded", setup_object(SETI, key=key, status="succeeded"), event_id="s", created=T + 1)
    setup.refresh_from_db()
    assert setup.status == "succeeded" and setup.payment_method_id == method.id
    assert PaymentMethod.objects.count() == 1 and types(method) == ["payment_method.attached"]


def test_setup_failed_records_the_decline_once(customer, http):
    setup = lost_setup(customer, http)
    key = f"{setup.id}:setup:{STRIPE_METHOD}"
    failed = setup_object(SETI, key=key, status="requires_payment_method", payment_method=None)
    row = deliver("setup_intent.setup_failed", failed, event_id="f", created=T)
    assert row.result == f"{setup.id}: requires_confirmation -> requires_payment_method"
    setup.refresh_from_db()
    assert setup.last_error == {"code": "card_declined", "message": "Your card was declined."}
    process_again(row)
    assert types(setup).count("setup_intent.setup_failed") == 1 and not PaymentMethod.objects.exists()


def test_setup_events_for_an_earlier_card_or_someone_else_change_nothing(customer, http):
    setup = lost_setup(customer, http)
    other_card = setup_object(SETI, key=f"{setup.id}:setup:pm_1OtherCard", status="succeeded")
    assert deliver("setup_intent.succeeded", other_card, event_id="o", created=T).result == (
        f"{SETI} is an earlier attempt of {setup.id}"
    )
    stranger = setup_object("seti_1Stranger", key="", status="succeeded")
    assert deliver("setup_intent.succeeded", stranger, event_id="x", created=T).result == (
        "seti_1Stranger is not a setup of ours"
    )
    setup.refresh_from_db()
    assert setup.status == "requires_confirmation" and not PaymentMethod.objects.exists()


# --- Payment methods ------------------------------------------------------------------------------


def test_a_card_attached_at_stripe_is_recorded_once_and_kept_current(customer, http):
    row = deliver("payment_method.attached", method_object(), event_id="a", created=T)
    method = PaymentMethod.objects.get()
    assert row.result == f"{method.id}: recorded {STRIPE_METHOD} attached at Stripe"
    assert (method.customer_id, method.provider, method.is_default, method.exp_year) == (
        customer.id,
        "stripe",
        True,
        2030,
    )
    post("payment_method.attached", method_object(), event_id="a", created=T)  # redelivery
    process_again(row)
    assert PaymentMethod.objects.count() == 1

    newer = deliver("payment_method.updated", method_object(exp_month=9, exp_year=2032), event_id="u2", created=T + 20)
    older = deliver("payment_method.updated", method_object(exp_month=1, exp_year=2031), event_id="u1", created=T + 10)
    assert newer.result == f"{method.id}: details updated" and "superseded" in older.result
    method.refresh_from_db()
    assert (method.exp_month, method.exp_year) == (9, 2032)
    updated = BillingEvent.objects.get(type="payment_method.updated", object_id=method.id)
    assert updated.previous_attributes == {"exp_month": 8, "exp_year": 2030}
    assert updated.data["exp_year"] == 2032


def test_detached_at_stripe_is_detached_here_and_never_attached_again(customer, http):
    deliver("payment_method.attached", method_object(), event_id="a", created=T)
    method = PaymentMethod.objects.get()
    detached = deliver("payment_method.detached", method_object(customer=None), event_id="d", created=T + 30)
    assert detached.result == f"{method.id}: detached"
    method.refresh_from_db()
    assert method.detached_at is not None and not method.is_default
    # An older attached, or an updated, arriving late: the method stays detached.
    late = deliver("payment_method.attached", method_object(), event_id="a_old", created=T + 5)
    assert "superseded" in late.result
    again = deliver("payment_method.attached", method_object(), event_id="a_new", created=T + 40)
    assert again.result == f"{STRIPE_METHOD} was detached here; a detached method is not attached again"
    process_again(detached)
    assert PaymentMethod.objects.count() == 1 and types(method).count("payment_method.detached") == 1


def test_our_own_attach_after_the_webhook_recorded_the_card_is_the_same_card(customer, http):
    deliver("payment_method.attached", method_object(), event_id="a", created=T)
    recorded = PaymentMethod.objects.get()
    http.route("POST", f"/v1/payment_methods/{STRIPE_METHOD}/attach", (200, method_object()))
    mine = payment_method_create(customer=customer, token=STRIPE_METHOD, default=True, now=NOW)
    assert mine.id == recorded.id and PaymentMethod.objects.count() == 1
    assert types(recorded) == ["payment_method.attached"]  # already the default: nothing changed


def test_methods_of_customers_that_are_not_ours_change_nothing(customer, http):
    foreign = method_object("pm_1Foreign", customer="cus_NotOurs")
    assert deliver("payment_method.attached", foreign, event_id="f", created=T).result == (
        "pm_1Foreign belongs to no customer of ours"
    )
    assert deliver("payment_method.detached", foreign, event_id="g", created=T).result == (
        "pm_1Foreign is not attached here"
    )
    assert not PaymentMethod.objects.exists()
