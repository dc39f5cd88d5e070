"""Test helpers for Stripe's webhooks into payments: Stripe's own example objects (`../shared/stripe/
fixtures3.json`) adjusted to name our rows, posted to `POST /billing/stripe` signed for real, and a
Stripe HTTP layer for the SDK that answers by route (no network), which records every URL it was asked.

The reusable fake Stripe server (`billing_site/testing/fake_stripe.py`) comes from another branch; until
then the SDK is faked at its HTTP client, as `test_processor_stripe.py` does."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import stripe
from django.test import Client
from django.utils import timezone

from customers.tests.factories import CustomerFactory
from invoicing.models import Invoice
from payments.models import PaymentIntent, PaymentMethod, Refund
from payments.processors import stripe as stripe_processor
from payments.services.intents import payment_intent_charge_off_session
from payments.tests.factories import PAY_T0
from webhooks import inbound
from webhooks.models import ProviderEvent
from webhooks.tests.helpers import STRIPE_SECRET, stripe_event, stripe_fixture, stripe_signature

API_KEY = "sk_test_51HandlersOnly0123456789abcdefXYZ"
STRIPE_CUSTOMER = "cus_QXg1o8vcGmoR32"
STRIPE_METHOD = "pm_1Pgc75B7WZ01zgkWlHVgdEGJ"
CHARGE = "ch_1PgafuB7WZ01zgkWXYmPNZs8"
# Event creation times (Stripe's clock, seconds): what `provider_event_superseded` orders by.
T = 1_780_000_000


def stripe_customer(**fields: Any):
    fields.setdefault("provider_customer_id", STRIPE_CUSTOMER)
    return CustomerFactory(provider="stripe", currency="usd", **fields)


def stripe_method(customer, **fields: Any) -> PaymentMethod:
    values = {
        "customer": customer,
        "provider": "stripe",
        "provider_ref": STRIPE_METHOD,
        "brand": "visa",
        "last4": "4242",
        "exp_month": 8,
        "exp_year": 2030,
        "is_default": True,
    }
    values.update(fields)
    return PaymentMethod.objects.create(**values)


# --- Stripe's objects, naming ours -----------------------------------------------------------------


def pi_object(intent: PaymentIntent, status: str, *, ref: str = "pi_3PgafyB7WZ01zgkW0Handlr", **fields: Any) -> dict:
    """Stripe's example PaymentIntent as Stripe would send it about our `intent`'s current attempt."""
    succeeded = status == "succeeded"
    obj = stripe_fixture(
        "payment_intent",
        id=ref,
        amount=intent.amount,
        amount_received=intent.amount if succeeded else 0,
        amount_capturable=0,
        currency=intent.currency,
        customer=STRIPE_CUSTOMER,
        payment_method=STRIPE_METHOD,
        status=status,
        canceled_at=None,
        client_secret=f"{ref}_secret_test",
        confirmation_method="automatic",
        metadata={"idempotency_key": intent.idempotency_key},
        latest_charge=CHARGE if succeeded else None,
        last_payment_error=None,
        next_action={"type": "use_stripe_sdk"} if status == "requires_action" else None,
        processing=None,
    )
    if status == "requires_payment_method":
        obj["last_payment_error"] = {
            "type": "card_error",
            "code": "card_declined",
            "decline_code": "insufficient_funds",
            "message": "Your card has insufficient funds.",
        }
    if status == "canceled":
        obj.update(canceled_at=T, cancellation_reason="abandoned")
    obj.update(fields)
    return obj


def refund_object(ref: str, *, amount: int, status: str = "succeeded", refund: Refund | None = None, **fields) -> dict:
    obj = stripe_fixture(
        "refund",
        id=ref,
        amount=amount,
        charge=CHARGE,
        currency="usd",
        status=status,
        payment_intent=fields.pop("payment_intent", None),
        metadata={"idempotency_key": refund.idempotency_key} if refund is not None else {},
    )
    if status == "failed":
        obj["failure_reason"] = "expired_or_canceled_card"
    obj.update(fields)
    return obj


def charge_object(payment_ref: str, *, amount: int, refunds: list[dict] | None, **fields: Any) -> dict:
    """Stripe's example charge; `refunds=None` leaves them out, as API versions since 2022-11-15 do."""
    refunded = sum(r["amount"] for r in refunds or [] if r["status"] in ("succeeded", "pending"))
    obj = stripe_fixture(
        "charge",
        amount=amount,
        amount_captured=amount,
        amount_refunded=refunded,
        captured=True,
        refunded=refunded == amount,
        customer=STRIPE_CUSTOMER,
        payment_intent=payment_ref,
        payment_method=STRIPE_METHOD,
    )
    if refunds is None:
        obj.pop("refunds")
    else:
        obj["refunds"] = {"object": "list", "data": refunds, "has_more": False, "url": f"/v1/charges/{CHARGE}/refunds"}
    obj.update(fields)
    return obj


def dispute_object(ref: str, *, payment_ref: str | None, amount: int, status: str, **fields: Any) -> dict:
    obj = stripe_fixture(
        "dispute", id=ref, amount=amount, payment_intent=payment_ref, status=status, reason="fraudulent"
    )
    obj["evidence_details"] = {**obj["evidence_details"], "due_by": T + 7 * 86400}
    obj.update(fields)
    return obj


def setup_object(ref: str, *, key: str, status: str, payment_method: str | None = STRIPE_METHOD) -> dict:
    obj = stripe_fixture(
        "setup_intent",
        id=ref,
        customer=STRIPE_CUSTOMER,
        payment_method=payment_method,
        status=status,
        metadata={"idempotency_key": key},
        last_setup_error=None,
        next_action=None,
        client_secret=f"{ref}_secret_test",
    )
    if status == "requires_payment_method":
        obj["last_setup_error"] = {"type": "card_error", "code": "card_declined", "message": "Your card was declined."}
    return obj


def method_object(ref: str = STRIPE_METHOD, *, customer: str | None = STRIPE_CUSTOMER, **card: Any) -> dict:
    obj = stripe_fixture("payment_method", id=ref, customer=customer)
    obj["card"] = {**obj["card"], **card}
    return obj


# --- Posting and processing ------------------------------------------------------------------------


def post(event_type: str, obj: dict, *, event_id: str, created: int) -> ProviderEvent:
    """Sign the event with the test secret and post it to `POST /billing/stripe`, as Stripe does."""
    body = json.dumps(stripe_event(event_type, obj, event_id=event_id, created=created))
    response = Client().post(
        "/billing/stripe", data=body, content_type="application/json", HTTP_STRIPE_SIGNATURE=stripe_signature(body)
    )
    assert response.status_code == 200, response.content
    return ProviderEvent.objects.get(provider="stripe", provider_event_id=event_id)


def deliver(event_type: str, obj: dict, *, event_id: str, created: int, now: datetime | None = None) -> ProviderEvent:
    """Post the event and run its handler (the processing task's service), as the worker would (by
    default now: a received event is due at once)."""
    row = post(event_type, obj, event_id=event_id, created=created)
    inbound.provider_event_process(provider_event_id=row.pk, now=now or timezone.now())
    row.refresh_from_db()
    return row


def process_again(row: ProviderEvent, now: datetime | None = None) -> ProviderEvent:
    """An admin "reprocess" (or a resync of the same event): the handler runs once more."""
    now = now or timezone.now()
    assert inbound.provider_event_reprocess(provider_event=row, now=now)
    inbound.provider_event_process(provider_event_id=row.pk, now=now)
    row.refresh_from_db()
    return row


# --- The SDK's HTTP layer, by route ----------------------------------------------------------------


@dataclass
class Sent:
    method: str
    url: str
    path: str
    headers: dict[str, str]
    params: dict[str, str]


Route = Callable[[Sent], tuple[int, dict] | Exception]


class RoutedStripeHttp(stripe.HTTPClient):
    """Answers each request by its (method, path) route; unknown routes are Stripe's 404. Thread-safe:
    concurrent tests call it from several threads."""

    name = "routed-fake"

    def __init__(self) -> None:
        super().__init__()
        self.routes: dict[tuple[str, str], Route] = {}
        self.sent: list[Sent] = []
        self._lock = threading.Lock()

    def route(self, method: str, path: str, answer: Route | tuple[int, dict] | Exception) -> None:
        self.routes[(method, path)] = answer if callable(answer) else (lambda _sent: answer)

    def request(self, method, url, headers, post_data=None, *, _usage=None):
        parts = urlsplit(url)
        params = dict(parse_qsl(post_data or parts.query or "", keep_blank_values=True))
        sent = Sent(method.upper(), url, parts.path, dict(headers or {}), params)
        with self._lock:
            self.sent.append(sent)
            answer = self.routes.get((sent.method, sent.path))
        reply = (
            answer(sent) if answer else (404, {"error": {"type": "invalid_request_error", "code": "resource_missing"}})
        )
        if isinstance(reply, Exception):
            raise reply
        status, body = reply
        return json.dumps(body), status, {"request-id": "req_routed", "stripe-should-retry": "false"}

    def close(self) -> None:
        pass


def stripe_http(settings: Any, monkeypatch: Any) -> RoutedStripeHttp:
    """Stripe for the processor (our test key, the SDK's HTTP layer answering by route) and for inbound
    webhooks (the test signing secret). Each test module turns it into its `http` fixture."""
    settings.STRIPE_API_KEY = API_KEY
    settings.STRIPE_WEBHOOK_SECRET = STRIPE_SECRET
    fake = RoutedStripeHttp()
    monkeypatch.setattr(stripe_processor, "HTTP_CLIENT", fake)
    return fake


def charge(invoice: Invoice, http: RoutedStripeHttp, stripe_status: str | None) -> PaymentIntent:
    """An off-session charge of the invoice through the Stripe processor. `None`: the answer is lost (our
    intent is `unknown`, Stripe has only our idempotency key); otherwise Stripe answers with that status."""
    if stripe_status is None:
        http.route("POST", "/v1/payment_intents", stripe.APIConnectionError("Read timed out", should_retry=False))
    else:

        def answer(sent: Sent) -> tuple[int, dict]:
            # Stripe's PaymentIntent for our create call, carrying the key we sent in its metadata.
            ours = PaymentIntent.objects.get(idempotency_key=sent.params["metadata[idempotency_key]"])
            return 200, pi_object(ours, stripe_status)

        http.route("POST", "/v1/payment_intents", answer)
    return payment_intent_charge_off_session(invoice=invoice, amount=invoice.amount_remaining, now=PAY_T0)
