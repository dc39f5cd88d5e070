"""The payments API (payment methods, setup intents, payment intents, refunds): flows, scopes, bad input,
Idempotency-Key replay; and the admin pages and actions."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from customers.tests.factories import CustomerFactory
from payments.models import PaymentIntent, SandboxPayment
from payments.tests.factories import open_invoice

pytestmark = pytest.mark.django_db

BASE = "/api/v1"


def post(client, path, body=None, **headers):
    return client.post(f"{BASE}{path}", body or {}, format="json", **headers)


def error_of(response):
    body = response.json()["error"]
    return response.status_code, body["code"], body["param"]


@pytest.fixture
def customer():
    return CustomerFactory()


@pytest.fixture
def method(api, customer):
    response = post(api, "/payment-methods", {"customer": customer.id, "token": "tok_visa"})
    assert response.status_code == 201, response.content
    return response.json()


def test_payment_methods_create_list_retrieve_detach(api, customer, method):
    assert (method["object"], method["brand"], method["last4"], method["default"]) == (
        "payment_method",
        "visa",
        "4242",
        True,
    )
    assert "provider_ref" not in method and "token" not in method
    second = post(api, "/payment-methods", {"customer": customer.id, "token": "tok_mastercard", "default": True})
    assert second.json()["default"] is True
    listed = api.get(f"{BASE}/payment-methods", {"customer": customer.id}).json()
    assert [m["id"] for m in listed["data"]] == [second.json()["id"], method["id"]]
    assert api.get(f"{BASE}/payment-methods/{method['id']}").json()["default"] is False
    detached = post(api, f"/payment-methods/{method['id']}/detach")
    assert detached.status_code == 200 and detached.json()["detached_at"] is not None
    assert error_of(post(api, f"/payment-methods/{method['id']}/detach"))[:2] == (409, "payment_method_detached")
    assert len(api.get(f"{BASE}/payment-methods", {"customer": customer.id}).json()["data"]) == 1


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"token": "tok_visa"}, "customer"),
        ({"customer": "cus_nope", "token": "tok_visa"}, "customer"),
        ({"customer": None}, "token"),
        ({"customer": None, "token": "tok_nope"}, "token"),
        ({"customer": None, "token": "tok_visa", "default": "maybe"}, "default"),
        ({"customer": None, "token": "tok_visa", "colour": "red"}, "colour"),
    ],
)
def test_payment_method_bad_input_names_the_field(api, customer, body, param):
    body = {key: customer.id if value is None else value for key, value in body.items()}
    status, _, named = error_of(post(api, "/payment-methods", body))
    assert (status, named) == (400, param)


def test_payment_intent_flow_with_manual_capture_and_refund(api, customer, method):
    created = post(
        api,
        "/payment-intents",
        {
            "customer": customer.id,
            "amount": 5000,
            "currency": "USD",
            "payment_method": method["id"],
            "capture_method": "manual",
            "description": "setup fee",
        },
    )
    assert created.status_code == 201, created.content
    intent = created.json()
    assert (intent["object"], intent["status"], intent["currency"]) == (
        "payment_intent",
        "requires_confirmation",
        "usd",
    )
    confirmed = post(api, f"/payment-intents/{intent['id']}/confirm").json()
    assert (confirmed["status"], confirmed["amount_capturable"]) == ("requires_capture", 5000)
    assert error_of(post(api, f"/payment-intents/{intent['id']}/capture", {"amount": 5001})) == (
        400,
        "amount_too_large",
        "amount",
    )
    captured = post(api, f"/payment-intents/{intent['id']}/capture", {"amount": 3000}).json()
    assert (captured["status"], captured["amount_received"], captured["amount_capturable"]) == ("succeeded", 3000, 0)
    assert error_of(post(api, f"/payment-intents/{intent['id']}/cancel")) == (
        409,
        "payment_intent_unexpected_state",
        None,
    )
    assert error_of(post(api, "/refunds", {"payment_intent": intent["id"], "amount": 3001}))[0] == 400
    refund = post(api, "/refunds", {"payment_intent": intent["id"], "amount": 1000, "reason": "duplicate"})
    assert refund.status_code == 201 and refund.json()["status"] == "succeeded"
    assert api.get(f"{BASE}/refunds/{refund.json()['id']}").json()["amount"] == 1000
    listed = api.get(f"{BASE}/refunds", {"payment_intent": intent["id"]}).json()["data"]
    assert [r["id"] for r in listed] == [refund.json()["id"]]
    assert api.get(f"{BASE}/payment-intents/{intent['id']}").json()["amount_refunded"] == 1000


def test_payment_intent_lists_filter(api, customer, method):
    for amount in (100, 200):
        post(api, "/payment-intents", {"customer": customer.id, "amount": amount, "currency": "usd"})
    other = CustomerFactory()
    post(api, "/payment-intents", {"customer": other.id, "amount": 300, "currency": "usd"})
    mine = api.get(f"{BASE}/payment-intents", {"customer": customer.id, "status": "requires_payment_method"}).json()
    assert sorted(i["amount"] for i in mine["data"]) == [100, 200]
    assert error_of(api.get(f"{BASE}/payment-intents", {"status": "sideways"}))[::2] == (400, "status")
    assert error_of(api.get(f"{BASE}/payment-intents", {"colour": "red"}))[::2] == (400, "colour")


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"amount": "100"}, "amount"),
        ({"amount": 0}, "amount"),
        ({"amount": 10.5}, "amount"),
        ({"amount": True}, "amount"),
        ({"currency": "xyz"}, "currency"),
        ({"capture_method": "later"}, "capture_method"),
        ({"payment_method": "pm_nope"}, "payment_method"),
        ({"invoice": "in_nope"}, "invoice"),
        ({"customer": "cus_nope"}, "customer"),
    ],
)
def test_payment_intent_bad_input_names_the_field(api, customer, change, param):
    body = {"customer": customer.id, "amount": 100, "currency": "usd", **change}
    status, _, named = error_of(post(api, "/payment-intents", body))
    assert (status, named) == (400, param)
    assert not PaymentIntent.objects.exists()


def test_a_declined_confirm_answers_200_with_the_error_and_the_invoice_stays_open(api, customer):
    declining = post(api, "/payment-methods", {"customer": customer.id, "token": "tok_chargeDeclined"}).json()
    invoice = open_invoice(customer, amount=800)
    intent = post(
        api,
        "/payment-intents",
        {"customer": customer.id, "amount": 800, "currency": "usd", "invoice": invoice.id},
    ).json()
    assert intent["status"] == "requires_payment_method" and intent["invoice"] == invoice.id
    failed = post(api, f"/payment-intents/{intent['id']}/confirm", {"payment_method": declining["id"]})
    assert failed.status_code == 200
    assert failed.json()["last_error"]["code"] == "card_declined"
    assert error_of(post(api, "/refunds", {"invoice": invoice.id}))[:2] == (409, "charge_already_refunded")


def test_a_confirm_replayed_with_its_idempotency_key_charges_once(api, customer, method):
    intent = post(
        api,
        "/payment-intents",
        {"customer": customer.id, "amount": 700, "currency": "usd", "payment_method": method["id"]},
    ).json()
    first = post(api, f"/payment-intents/{intent['id']}/confirm", HTTP_IDEMPOTENCY_KEY="confirm-1")
    again = post(api, f"/payment-intents/{intent['id']}/confirm", HTTP_IDEMPOTENCY_KEY="confirm-1")
    assert first.status_code == again.status_code == 200
    assert again.content == first.content and again["Idempotent-Replayed"] == "true"
    assert SandboxPayment.objects.filter(kind="payment").count() == 1


def test_setup_intent_flow(api, customer):
    created = post(api, "/setup-intents", {"customer": customer.id}).json()
    assert (created["object"], created["status"], created["usage"]) == (
        "setup_intent",
        "requires_payment_method",
        "off_session",
    )
    assert error_of(post(api, f"/setup-intents/{created['id']}/confirm")) == (400, "parameter_missing", "token")
    done = post(api, f"/setup-intents/{created['id']}/confirm", {"token": "tok_authenticationRequired"}).json()
    assert done["status"] == "requires_action"
    canceled = post(api, f"/setup-intents/{created['id']}/cancel", {"cancellation_reason": "abandoned"}).json()
    assert (canceled["status"], canceled["cancellation_reason"]) == ("canceled", "abandoned")
    assert api.get(f"{BASE}/setup-intents/{created['id']}").json()["status"] == "canceled"
    assert error_of(post(api, f"/setup-intents/{created['id']}/confirm", {"token": "tok_visa"}))[:2] == (
        409,
        "setup_intent_unexpected_state",
    )
    other = post(api, "/setup-intents", {"customer": customer.id, "token": "tok_visa"}).json()
    succeeded = post(api, f"/setup-intents/{other['id']}/confirm").json()
    assert succeeded["status"] == "succeeded" and succeeded["payment_method"].startswith("pm_")
    both = {"token": "tok_visa", "payment_method": succeeded["payment_method"]}
    assert error_of(post(api, f"/setup-intents/{other['id']}/confirm", both))[::2] == (400, "token")
    assert error_of(post(api, "/setup-intents", {"customer": customer.id, "usage": "sometimes"}))[::2] == (400, "usage")


def test_refund_input(api):
    assert error_of(post(api, "/refunds", {"amount": 5})) == (400, "parameter_missing", "payment_intent")
    assert error_of(post(api, "/refunds", {"payment_intent": "pi_nope"}))[::2] == (400, "payment_intent")
    assert error_of(post(api, "/refunds", {"payment_intent": "pi_x", "reason": "why"}))[::2] == (400, "reason")


@pytest.mark.parametrize(
    "path", ["/payment-methods/pm_nope", "/setup-intents/seti_nope", "/payment-intents/pi_nope", "/refunds/re_nope"]
)
def test_unknown_ids_are_404(api, path):
    assert error_of(api.get(f"{BASE}{path}"))[:2] == (404, "resource_missing")


def test_scopes(make_client, customer):
    reader = make_client("payments:read")
    assert reader.get(f"{BASE}/payment-intents").status_code == 200
    for path, body in [
        ("/payment-methods", {"customer": customer.id, "token": "tok_visa"}),
        ("/payment-intents", {"customer": customer.id, "amount": 1, "currency": "usd"}),
        ("/setup-intents", {"customer": customer.id}),
        ("/refunds", {"payment_intent": "pi_x"}),
    ]:
        response = post(reader, path, body)
        assert (response.status_code, response.json()["error"]["code"]) == (403, "missing_scope"), path
    writer = make_client("payments:write")
    assert post(writer, "/payment-methods", {"customer": customer.id, "token": "tok_visa"}).status_code == 201
    assert writer.get(f"{BASE}/payment-methods").status_code == 403
    assert make_client("billing:write").get(f"{BASE}/refunds").status_code == 403


# --- admin ----------------------------------------------------------------------------------------


@pytest.fixture
def staff(client):
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw-for-tests-only")
    client.force_login(user)
    return client


def test_admin_pages_and_actions(staff, api, customer, method):
    unknown = post(api, "/payment-methods", {"customer": customer.id, "token": "tok_timeout", "default": True}).json()
    lost = post(
        api,
        "/payment-intents",
        {"customer": customer.id, "amount": 900, "currency": "usd", "payment_method": unknown["id"]},
    ).json()
    assert post(api, f"/payment-intents/{lost['id']}/confirm").json()["status"] == "unknown"
    held = post(
        api,
        "/payment-intents",
        {
            "customer": customer.id,
            "amount": 400,
            "currency": "usd",
            "payment_method": method["id"],
            "capture_method": "manual",
        },
    ).json()
    post(api, f"/payment-intents/{held['id']}/confirm")
    for page in ("paymentmethod", "setupintent", "paymentintent", "refund"):
        assert staff.get(f"/admin/payments/{page}/").status_code == 200, page
    assert staff.get(f"/admin/payments/paymentintent/{lost['id']}/change/").status_code == 200
    assert staff.get("/admin/payments/paymentintent/add/").status_code == 403
    changelist = "/admin/payments/paymentintent/"
    staff.post(changelist, {"action": "resolve_now", "_confirm": "yes", "_selected_action": [lost["id"]]}, follow=True)
    staff.post(changelist, {"action": "cancel", "_confirm": "yes", "_selected_action": [held["id"]]}, follow=True)
    assert PaymentIntent.objects.get(pk=lost["id"]).status == "succeeded"
    assert PaymentIntent.objects.get(pk=held["id"]).status == "canceled"
    assert SandboxPayment.objects.filter(kind="payment").count() == 2
