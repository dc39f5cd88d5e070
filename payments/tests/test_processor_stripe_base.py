"""The Stripe processor sends its API calls to STRIPE_API_BASE (Stripe by default, a local fake or a proxy
otherwise), like the inbound side's resync does."""

from __future__ import annotations

import pytest

from payments.processors import get_processor
from payments.tests.stripe_events import pi_object, stripe_http

pytestmark = pytest.mark.django_db


def test_calls_go_to_the_configured_api_base_and_a_new_base_gets_a_new_client(settings, monkeypatch):
    http = stripe_http(settings, monkeypatch)

    class _Intent:  # what pi_object reads from our intent
        amount, currency, idempotency_key = 700, "usd", "pi_x:confirm:1"

    obj = pi_object(_Intent(), "succeeded", ref="pi_3Base")
    http.route("GET", "/v1/payment_intents/pi_3Base", (200, obj))
    assert get_processor("stripe").fetch_payment(idempotency_key="k", payment_ref="pi_3Base").status == "succeeded"
    assert http.sent[-1].url == "https://api.stripe.com/v1/payment_intents/pi_3Base"  # the default

    settings.STRIPE_API_BASE = "http://127.0.0.1:8765"
    processor = get_processor("stripe")
    assert processor.fetch_payment(idempotency_key="k", payment_ref="pi_3Base").amount_received == 700
    assert http.sent[-1].url == "http://127.0.0.1:8765/v1/payment_intents/pi_3Base"
    assert get_processor("stripe") is processor  # cached per key, base and HTTP client
