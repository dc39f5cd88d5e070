"""The hosted invoice page with Stripe as the processor, against recorded Stripe answers (no network):
Stripe.js's PaymentMethod is attached, the payment asks for 3-D Secure, the page hands Stripe.js the
intent's client secret for `next_action`, and coming back reads the outcome (no second charge)."""

from __future__ import annotations

import pytest

from customers.tests.factories import CustomerFactory
from invoicing.models import Invoice
from payments.models import PaymentIntent
from payments.processors import stripe as stripe_processor
from payments.tests.test_processor_stripe import API_KEY, PAYMENT_METHOD, FakeStripeHttp, payment_intent
from portal.tests.support import finalized_invoice, nonce_of, path_of

pytestmark = pytest.mark.django_db

NEXT_ACTION = {"type": "use_stripe_sdk", "use_stripe_sdk": {"type": "three_d_secure_redirect", "source": "src_1Pfake"}}


@pytest.fixture
def stripe_http(settings, monkeypatch):
    settings.STRIPE_API_KEY = API_KEY
    settings.STRIPE_PUBLISHABLE_KEY = "pk_test_hosted"
    http = FakeStripeHttp()
    monkeypatch.setattr(stripe_processor, "HTTP_CLIENT", http)
    return http


def test_three_d_secure_with_stripe_js_then_the_return_reads_the_outcome(api, client, stripe_http):
    customer = CustomerFactory(provider="stripe")
    invoice = finalized_invoice(api, customer, amount=2000)
    path = path_of(invoice["hosted_invoice_url"])
    html = client.get(path).content.decode()
    assert 'data-stripe="pk_test_hosted"' in html and "js.stripe.com/v3" in html

    stripe_http.responses += [
        (200, {"id": "cus_Pfake", "object": "customer"}),
        PAYMENT_METHOD,
        payment_intent("requires_action", client_secret="pi_3PfakeABC_secret_xyz", next_action=NEXT_ACTION),
    ]
    sent = client.post(f"{path}/pay", {"token": "pm_1Pfake", "nonce": nonce_of(html)})
    assert sent.status_code == 303 and "?payment=pi_" in sent["Location"]
    intent = PaymentIntent.objects.get(invoice_id=invoice["id"])
    assert (intent.status, intent.client_secret, intent.next_action) == (
        "requires_action",
        "pi_3PfakeABC_secret_xyz",
        NEXT_ACTION,
    )
    shown = api.get(f"/api/v1/payment-intents/{intent.id}").json()
    assert shown["next_action"] == NEXT_ACTION and shown["client_secret"] == "pi_3PfakeABC_secret_xyz"
    page = client.get(sent["Location"]).content.decode()
    assert 'data-client-secret="pi_3PfakeABC_secret_xyz"' in page
    assert f"/return?payment_intent={intent.id}" in page

    # Stripe.js finished the challenge and came back: we read the intent (a GET), never charge again.
    stripe_http.responses.append(payment_intent("succeeded", client_secret="pi_3PfakeABC_secret_xyz"))
    back = client.get(f"{path}/return", {"payment_intent": intent.id})
    assert back.status_code == 303 and back["Location"].endswith(f"?payment={intent.id}")
    assert stripe_http.sent[-1].method == "GET" and stripe_http.sent[-1].path == "/v1/payment_intents/pi_3PfakeABC"
    assert [s.method for s in stripe_http.sent].count("POST") == 3  # customer, attach, one payment
    intent.refresh_from_db()
    assert intent.status == "succeeded" and intent.next_action is None
    assert Invoice.objects.get(pk=invoice["id"]).status == "paid"
    assert b"Payment received" in client.get(back["Location"]).content
