"""The Stripe processor against the real SDK with its HTTP layer replaced by recorded responses (shaped
like Stripe's API; no network): request parameters, Idempotency-Key headers, error mapping, and the API
key never appearing in a log line, an error or a response."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import stripe

from customers.tests.factories import CustomerFactory
from payments.processors import ProcessorError, ProcessorTimeout
from payments.processors import stripe as stripe_processor
from payments.processors.stripe import StripeProcessor
from payments.services.intents import payment_intent_confirm, payment_intent_create, payment_intent_resolve_unknown_job
from payments.services.methods import payment_method_create
from payments.services.refunds import refund_create
from payments.tests.factories import PAY_T0

NOW = PAY_T0
API_KEY = "sk_test_51SecretDoNotLogMe0123456789abcdefXYZ"


@dataclass
class Sent:
    method: str
    path: str
    headers: dict[str, str]
    params: dict[str, str]


class FakeStripeHttp(stripe.HTTPClient):
    """Answers each request with the next recorded response (or raises the next recorded exception)."""

    name = "fake"

    def __init__(self, *responses: Any) -> None:
        super().__init__()
        self.responses = list(responses)
        self.sent: list[Sent] = []

    def request(self, method, url, headers, post_data=None, *, _usage=None):
        parts = urlsplit(url)
        params = dict(parse_qsl(post_data or parts.query or "", keep_blank_values=True))
        self.sent.append(Sent(method.upper(), parts.path, dict(headers or {}), params))
        answer = self.responses.pop(0)
        if isinstance(answer, Exception):
            raise answer
        status, body = answer
        return json.dumps(body), status, {"Request-Id": "req_fake123"}

    def close(self) -> None:
        pass


def payment_intent(status="succeeded", **fields):
    body = {
        "id": "pi_3PfakeABC",
        "object": "payment_intent",
        "amount": 2000,
        "amount_capturable": 0,
        "amount_received": 2000 if status == "succeeded" else 0,
        "capture_method": "automatic",
        "currency": "usd",
        "customer": "cus_Pfake",
        "payment_method": "pm_1Pfake",
        "status": status,
        "last_payment_error": None,
        "latest_charge": "ch_3Pfake" if status == "succeeded" else None,
        "metadata": {},
        "livemode": False,
    }
    body.update(fields)
    return 200, body


CARD_DECLINED = (
    402,
    {
        "error": {
            "type": "card_error",
            "code": "card_declined",
            "decline_code": "insufficient_funds",
            "message": "Your card has insufficient funds.",
            "payment_intent": payment_intent("requires_payment_method")[1],
        }
    },
)
PAYMENT_METHOD = (
    200,
    {
        "id": "pm_1Pfake",
        "object": "payment_method",
        "type": "card",
        "customer": "cus_Pfake",
        "card": {"brand": "visa", "last4": "4242", "exp_month": 8, "exp_year": 2031},
    },
)


def processor(*responses):
    http = FakeStripeHttp(*responses)
    return StripeProcessor(api_key=API_KEY, http_client=http, max_network_retries=0), http


def test_charge_sends_a_confirmed_off_session_payment_with_our_idempotency_key():
    stripe_, http = processor(payment_intent("succeeded"))
    result = stripe_.charge(
        provider_customer="cus_Pfake",
        method_ref="pm_1Pfake",
        amount=2000,
        currency="usd",
        idempotency_key="pi_ours:confirm:1",
        description="Invoice INV-000001",
        off_session=True,
    )
    assert (result.ref, result.status, result.amount_received) == ("pi_3PfakeABC", "succeeded", 2000)
    (sent,) = http.sent
    assert (sent.method, sent.path) == ("POST", "/v1/payment_intents")
    assert sent.headers["Idempotency-Key"] == "pi_ours:confirm:1"
    assert {k: sent.params[k] for k in ("amount", "currency", "customer", "payment_method")} == {
        "amount": "2000",
        "currency": "usd",
        "customer": "cus_Pfake",
        "payment_method": "pm_1Pfake",
    }
    assert (sent.params["confirm"], sent.params["capture_method"], sent.params["off_session"]) == (
        "true",
        "automatic",
        "true",
    )
    assert sent.params["metadata[idempotency_key]"] == "pi_ours:confirm:1"
    assert sent.params["description"] == "Invoice INV-000001"


def test_authorize_asks_for_manual_capture_and_capture_sends_the_amount():
    stripe_, http = processor(
        payment_intent("requires_capture", amount_capturable=2000, capture_method="manual"),
        payment_intent("succeeded", amount_received=1500, capture_method="manual"),
    )
    held = stripe_.authorize(
        provider_customer="cus_Pfake", method_ref="pm_1Pfake", amount=2000, currency="usd", idempotency_key="k1"
    )
    assert (held.status, held.amount_capturable) == ("requires_capture", 2000)
    assert (http.sent[0].params["capture_method"], http.sent[0].params["off_session"]) == ("manual", "false")
    captured = stripe_.capture(payment_ref="pi_3PfakeABC", amount=1500, idempotency_key="pi_ours:capture")
    assert (captured.status, captured.amount_received) == ("succeeded", 1500)
    sent = http.sent[1]
    assert (sent.path, sent.params, sent.headers["Idempotency-Key"]) == (
        "/v1/payment_intents/pi_3PfakeABC/capture",
        {"amount_to_capture": "1500"},
        "pi_ours:capture",
    )


def test_a_card_error_is_a_processor_error_with_the_decline_code():
    stripe_, _ = processor(CARD_DECLINED)
    with pytest.raises(ProcessorError) as error:
        stripe_.charge(
            provider_customer="cus_Pfake", method_ref="pm_1Pfake", amount=2000, currency="usd", idempotency_key="k"
        )
    assert (error.value.code, error.value.decline_code) == ("card_declined", "insufficient_funds")
    assert error.value.message == "Your card has insufficient funds."


@pytest.mark.parametrize(
    "failure",
    [
        stripe.APIConnectionError("Request timed out", should_retry=False),
        (500, {"error": {"type": "api_error", "message": "An unknown error occurred"}}),
    ],
    ids=["network", "stripe-5xx"],
)
def test_no_usable_answer_is_a_timeout(failure):
    stripe_, _ = processor(failure)
    with pytest.raises(ProcessorTimeout):
        stripe_.charge(
            provider_customer="cus_Pfake", method_ref="pm_1Pfake", amount=2000, currency="usd", idempotency_key="k"
        )


def test_cancel_refund_and_fetch():
    stripe_, http = processor(
        payment_intent("canceled"),
        (200, {"id": "re_3Pfake", "object": "refund", "amount": 700, "status": "succeeded", "currency": "usd"}),
        payment_intent("succeeded"),
        (200, {"object": "search_result", "data": [payment_intent("succeeded")[1]], "has_more": False, "url": "/"}),
        (200, {"object": "search_result", "data": [], "has_more": False, "url": "/"}),
    )
    assert stripe_.cancel(payment_ref="pi_3PfakeABC", idempotency_key="pi_ours:cancel", reason="abandoned").status == (
        "canceled"
    )
    assert http.sent[0].params == {"cancellation_reason": "abandoned"}
    refund = stripe_.refund(
        payment_ref="pi_3PfakeABC", amount=700, reason="duplicate", idempotency_key="re_ours:refund"
    )
    assert (refund.ref, refund.status, refund.amount) == ("re_3Pfake", "succeeded", 700)
    sent = http.sent[1]
    assert (sent.path, sent.headers["Idempotency-Key"]) == ("/v1/refunds", "re_ours:refund")
    assert (sent.params["payment_intent"], sent.params["amount"], sent.params["reason"]) == (
        "pi_3PfakeABC",
        "700",
        "duplicate",
    )
    assert stripe_.fetch_payment(idempotency_key="x", payment_ref="pi_3PfakeABC").status == "succeeded"
    assert (http.sent[2].method, http.sent[2].path) == ("GET", "/v1/payment_intents/pi_3PfakeABC")
    assert stripe_.fetch_payment(idempotency_key="pi_ours:confirm:1").ref == "pi_3PfakeABC"
    assert http.sent[3].path == "/v1/payment_intents/search"
    assert http.sent[3].params["query"] == "metadata['idempotency_key']:'pi_ours:confirm:1'"
    assert stripe_.fetch_payment(idempotency_key="never-sent") is None


def test_a_token_becomes_a_payment_method_that_is_attached_and_setups_confirm():
    stripe_, http = processor(
        PAYMENT_METHOD,
        PAYMENT_METHOD,
        PAYMENT_METHOD,
        (
            200,
            {
                "id": "seti_1Pfake",
                "object": "setup_intent",
                "status": "succeeded",
                "payment_method": PAYMENT_METHOD[1],
                "usage": "off_session",
            },
        ),
    )
    method = stripe_.attach_method(provider_customer="cus_Pfake", token="tok_visa", idempotency_key="pm_ours:attach")
    assert (method.ref, method.brand, method.last4, method.exp_year) == ("pm_1Pfake", "visa", "4242", 2031)
    create, attach = http.sent[0], http.sent[1]
    assert (create.path, create.params["card[token]"], create.headers["Idempotency-Key"]) == (
        "/v1/payment_methods",
        "tok_visa",
        "pm_ours:attach:method",
    )
    assert (attach.path, attach.params, attach.headers["Idempotency-Key"]) == (
        "/v1/payment_methods/pm_1Pfake/attach",
        {"customer": "cus_Pfake"},
        "pm_ours:attach",
    )
    setup = stripe_.setup(provider_customer="cus_Pfake", token="tok_visa", idempotency_key="seti_ours:setup:tok_visa")
    assert (setup.status, setup.method.last4) == ("succeeded", "4242")
    sent = http.sent[3]
    assert (sent.path, sent.params["confirm"], sent.params["usage"], sent.params["customer"]) == (
        "/v1/setup_intents",
        "true",
        "off_session",
        "cus_Pfake",
    )
    assert sent.headers["Idempotency-Key"] == "seti_ours:setup:tok_visa"


# --- through the services: the key stored on our row is the key Stripe receives -------------------


@pytest.fixture
def stripe_customer(db, settings, monkeypatch):
    settings.STRIPE_API_KEY = API_KEY
    http = FakeStripeHttp()
    monkeypatch.setattr(stripe_processor, "HTTP_CLIENT", http)
    customer = CustomerFactory(provider="stripe")
    return customer, http


def test_a_payment_through_the_services_carries_the_key_stored_on_the_intent(stripe_customer):
    customer, http = stripe_customer
    http.responses += [(200, {"id": "cus_Pfake", "object": "customer"}), PAYMENT_METHOD]
    method = payment_method_create(customer=customer, token="pm_card_visa", now=NOW)
    assert (method.provider, method.provider_ref) == ("stripe", "pm_1Pfake")
    assert http.sent[0].headers["Idempotency-Key"] == f"{customer.id}:customer:stripe"
    http.responses.append(payment_intent("succeeded"))
    intent = payment_intent_create(customer=customer, amount=2000, currency="usd", payment_method=method, now=NOW)
    intent = payment_intent_confirm(payment_intent=intent, now=NOW)
    assert (intent.status, intent.provider, intent.provider_ref) == ("succeeded", "stripe", "pi_3PfakeABC")
    sent = http.sent[-1]
    assert sent.headers["Idempotency-Key"] == intent.idempotency_key == f"{intent.id}:confirm:1"
    assert (sent.params["customer"], sent.params["payment_method"], sent.params["off_session"]) == (
        "cus_Pfake",
        "pm_1Pfake",
        "false",
    )
    http.responses.append(
        (200, {"id": "re_3Pfake", "object": "refund", "amount": 500, "status": "succeeded", "currency": "usd"})
    )
    refund = refund_create(payment_intent=intent, amount=500, now=NOW)
    assert refund.status == "succeeded" and http.sent[-1].headers["Idempotency-Key"] == refund.idempotency_key


def test_a_lost_stripe_answer_is_resolved_by_searching_for_our_key(stripe_customer, caplog):
    caplog.set_level(logging.DEBUG)
    customer, http = stripe_customer
    http.responses += [(200, {"id": "cus_Pfake", "object": "customer"}), PAYMENT_METHOD]
    method = payment_method_create(customer=customer, token="pm_1Pfake", now=NOW)
    http.responses.append(stripe.APIConnectionError("Read timed out", should_retry=False))
    intent = payment_intent_create(customer=customer, amount=2000, currency="usd", payment_method=method, now=NOW)
    intent = payment_intent_confirm(payment_intent=intent, now=NOW)
    assert intent.status == "unknown"
    http.responses.append(
        (200, {"object": "search_result", "data": [payment_intent("succeeded")[1]], "has_more": False, "url": "/"})
    )
    assert payment_intent_resolve_unknown_job(now=NOW) == {"checked": 1, "succeeded": 1}
    search = http.sent[-1]
    assert search.params["query"] == f"metadata['idempotency_key']:'{intent.idempotency_key}'"
    assert [s.path for s in http.sent].count("/v1/payment_intents") == 1  # charged once, then only read
    assert_no_secret(caplog)


def test_the_api_key_never_reaches_a_log_line_an_error_or_a_response(stripe_customer, caplog, api):
    caplog.set_level(logging.DEBUG)
    customer, http = stripe_customer
    http.responses.append(
        (
            401,
            {"error": {"type": "invalid_request_error", "message": f"Invalid API Key provided: {API_KEY[:12]}****XYZ"}},
        )
    )
    response = api.post("/api/v1/payment-methods", {"customer": customer.id, "token": "tok_visa"}, format="json")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "processor_unavailable"
    assert API_KEY not in response.content.decode() and "sk_test" not in response.content.decode()
    assert http.sent[0].headers["Authorization"] == f"Bearer {API_KEY}"  # only ever to Stripe
    assert "sk_test" not in repr(StripeProcessor(api_key=API_KEY))
    assert_no_secret(caplog)


def assert_no_secret(caplog):
    assert caplog.records, "expected the SDK and the services to log something"
    for record in caplog.records:
        text = record.getMessage() + repr(record.__dict__)
        assert API_KEY not in text and "sk_test" not in text, record.name
