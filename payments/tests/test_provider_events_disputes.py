"""Stripe's dispute webhooks (charge.dispute.created|updated|closed), end to end on Stripe's own example
dispute signed for real: one Dispute per Stripe dispute whatever the order, refunds refused while it is
a chargeback, a lost one recorded as money returned and checked by `billing_audit`; the read-only API,
the admin, and the outbound events rendered like the API."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from billing_site.errors import Conflict
from payments.audit import audit_all, audit_disputes, audit_refunds
from payments.models import Dispute
from payments.services.refunds import refund_create
from payments.tests.factories import PAY_T0, ledger_invoice
from payments.tests.stripe_events import (
    CHARGE,
    T,
    charge,
    deliver,
    dispute_object,
    process_again,
    stripe_customer,
    stripe_http,
    stripe_method,
)
from webhooks.inbound import provider_handled_types
from webhooks.models import BillingEvent

pytestmark = pytest.mark.django_db

NOW = PAY_T0
DP = "dp_1Pgc71B7WZ01zgkWMevJiAUx"


@pytest.fixture
def http(settings, monkeypatch):
    return stripe_http(settings, monkeypatch)


@pytest.fixture
def paid(http):
    customer = stripe_customer()
    stripe_method(customer)
    invoice = ledger_invoice(customer, lines=(2000,))
    intent = charge(invoice, http, "succeeded")
    assert intent.status == "succeeded"
    return invoice, intent


def dispute_events() -> list[str]:
    return list(BillingEvent.objects.filter(object_type="dispute").order_by("id").values_list("type", flat=True))


def test_every_event_type_of_the_brief_has_a_handler():
    assert set(provider_handled_types(provider="stripe")) >= {
        "payment_intent.succeeded",
        "payment_intent.payment_failed",
        "payment_intent.canceled",
        "payment_intent.requires_action",
        "payment_intent.processing",
        "charge.refunded",
        "refund.created",
        "refund.updated",
        "refund.failed",
        "charge.dispute.created",
        "charge.dispute.closed",
        "setup_intent.succeeded",
        "setup_intent.setup_failed",
        "payment_method.attached",
        "payment_method.detached",
        "payment_method.updated",
        "customer.deleted",
    }


def test_a_dispute_opens_blocks_refunds_and_when_lost_is_money_returned(paid, http):
    invoice, intent = paid
    opened = dispute_object(DP, payment_ref=intent.provider_ref, amount=2000, status="needs_response")
    row = deliver("charge.dispute.created", opened, event_id="evt_dc", created=T)
    dispute = Dispute.objects.get()
    assert row.result == f"{dispute.id}: created (needs_response)"
    assert (dispute.payment_intent_id, dispute.invoice_id, dispute.customer_id) == (
        intent.id,
        invoice.id,
        invoice.customer_id,
    )
    assert (dispute.amount, dispute.currency, dispute.reason, dispute.status, dispute.amount_lost) == (
        2000,
        "usd",
        "fraudulent",
        "needs_response",
        0,
    )
    assert dispute.evidence_due_by.timestamp() == T + 7 * 86400 and dispute.provider_charge_ref == CHARGE
    with pytest.raises(Conflict) as error:
        refund_create(payment_intent=intent, amount=100, now=NOW)
    assert error.value.code == "charge_disputed"

    review = dispute_object(DP, payment_ref=intent.provider_ref, amount=2000, status="under_review")
    deliver("charge.dispute.updated", review, event_id="evt_du", created=T + 10)
    lost = dispute_object(DP, payment_ref=intent.provider_ref, amount=2000, status="lost")
    closed = deliver("charge.dispute.closed", lost, event_id="evt_dl", created=T + 20)
    assert closed.result == f"{dispute.id}: under_review -> lost"
    dispute.refresh_from_db()
    assert (dispute.status, dispute.amount_lost) == ("lost", 2000) and dispute.closed_at is not None
    assert dispute_events() == ["dispute.created", "dispute.updated", "dispute.closed"]
    closed_event = BillingEvent.objects.get(type="dispute.closed")
    assert closed_event.previous_attributes["status"] == "under_review"
    assert (closed_event.data["amount_lost"], closed_event.customer_id) == (2000, invoice.customer_id)
    # The money went back with the dispute: nothing is left to refund.
    with pytest.raises(Conflict) as error:
        refund_create(payment_intent=intent, amount=1, now=NOW)
    assert (error.value.code, error.value.message) == (
        "charge_already_refunded",
        f"PaymentIntent {intent.id} is refunded or lost in a dispute.",
    )
    invoice.refresh_from_db()
    assert invoice.status == "paid"  # the invoice stands; billing the customer again is the operator's call
    process_again(closed)
    assert dispute_events() == ["dispute.created", "dispute.updated", "dispute.closed"]
    assert audit_all() == []


def test_dispute_closed_before_created_gives_one_dispute_and_each_event_once(paid, http):
    _, intent = paid
    won = dispute_object(DP, payment_ref=intent.provider_ref, amount=2000, status="won")
    opened = dispute_object(DP, payment_ref=intent.provider_ref, amount=2000, status="needs_response")
    first = deliver("charge.dispute.closed", won, event_id="evt_closed", created=T + 30)
    late = deliver("charge.dispute.created", opened, event_id="evt_created", created=T)
    dispute = Dispute.objects.get()
    assert first.result == f"{dispute.id}: created (won)"
    assert late.result == f"{dispute.id} is closed (won)"
    assert (dispute.status, dispute.amount_lost) == ("won", 0)
    assert dispute_events() == ["dispute.created", "dispute.closed"]
    # Won: the payment can be refunded again.
    http.route(
        "POST", "/v1/refunds", (200, {"id": "re_3Won", "object": "refund", "amount": 100, "status": "succeeded"})
    )
    assert refund_create(payment_intent=intent, amount=100, now=NOW).status == "succeeded"
    assert audit_all() == []


def test_an_inquiry_escalates_but_never_goes_back(paid, http):
    _, intent = paid
    inquiry = dispute_object(DP, payment_ref=intent.provider_ref, amount=2000, status="warning_needs_response")
    chargeback = dispute_object(DP, payment_ref=intent.provider_ref, amount=2000, status="needs_response")
    deliver("charge.dispute.created", inquiry, event_id="e1", created=T)
    deliver("charge.dispute.updated", chargeback, event_id="e3", created=T + 20)
    stale = deliver("charge.dispute.updated", inquiry, event_id="e2", created=T + 10)
    assert "older" in stale.result
    assert Dispute.objects.get().status == "needs_response"
    assert dispute_events() == ["dispute.created", "dispute.updated"]


def test_a_dispute_naming_only_the_charge_finds_its_payment_by_reading_the_charge(paid, http):
    _, intent = paid
    http.route(
        "GET", f"/v1/charges/{CHARGE}", (200, {"id": CHARGE, "object": "charge", "payment_intent": intent.provider_ref})
    )
    obj = dispute_object(DP, payment_ref=None, amount=500, status="warning_needs_response")
    row = deliver("charge.dispute.created", obj, event_id="e", created=T)
    assert row.status == "processed", row.error
    assert Dispute.objects.get().payment_intent_id == intent.id
    assert any(s.path == f"/v1/charges/{CHARGE}" for s in http.sent)


def test_disputes_of_payments_that_are_not_ours_and_malformed_ones(paid, http):
    stranger = dispute_object("dp_other", payment_ref="pi_3Stranger", amount=100, status="needs_response")
    assert deliver("charge.dispute.created", stranger, event_id="x", created=T).result == (
        "dp_other disputes a payment that is not ours"
    )
    _, intent = paid
    weird = dispute_object(DP, payment_ref=intent.provider_ref, amount=100, status="in_limbo")
    row = deliver("charge.dispute.created", weird, event_id="y", created=T)
    assert row.status == "pending" and "unknown dispute status" in row.error
    assert not Dispute.objects.exists()


def test_the_audit_reports_lost_disputes_beyond_what_the_payment_received(
    paid, http, django_capture_on_commit_callbacks
):
    _, intent = paid
    http.route(
        "POST", "/v1/refunds", (200, {"id": "re_3Part", "object": "refund", "amount": 500, "status": "succeeded"})
    )
    refund_create(payment_intent=intent, amount=500, now=NOW)
    lost = dispute_object(DP, payment_ref=intent.provider_ref, amount=2000, status="lost")
    deliver("charge.dispute.closed", lost, event_id="l", created=T)
    assert audit_refunds() == [
        f"payment intent {intent.id}: refunds 500 + lost disputes 2000 are more than received 2000"
    ]
    Dispute.objects.update(currency="eur")
    assert any("in eur, its payment in usd" in p for p in audit_disputes())


# --- API, admin, outbound events --------------------------------------------------------------------


def test_disputes_api_lists_and_shows_them(paid, http, make_client):
    invoice, intent = paid
    deliver(
        "charge.dispute.created",
        dispute_object(DP, payment_ref=intent.provider_ref, amount=2000, status="needs_response"),
        event_id="a",
        created=T,
    )
    dispute = Dispute.objects.get()
    reader = make_client("payments:read")
    listed = reader.get("/api/v1/disputes", {"payment_intent": intent.id, "status": "needs_response"})
    assert listed.status_code == 200
    [body] = listed.json()["data"]
    assert body == reader.get(f"/api/v1/disputes/{dispute.id}").json()
    assert {k: body[k] for k in ("id", "object", "payment_intent", "invoice", "amount", "currency", "status")} == {
        "id": dispute.id,
        "object": "dispute",
        "payment_intent": intent.id,
        "invoice": invoice.id,
        "amount": 2000,
        "currency": "usd",
        "status": "needs_response",
    }
    assert body["amount_lost"] == 0 and body["provider_ref"] == DP and body["customer"] == invoice.customer_id
    assert reader.get("/api/v1/disputes", {"status": "lost"}).json()["data"] == []
    bad = reader.get("/api/v1/disputes", {"status": "maybe"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "status"
    assert reader.get("/api/v1/disputes", {"colour": "red"}).status_code == 400
    missing = reader.get("/api/v1/disputes/dp_nope")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "resource_missing"
    assert make_client("billing:read").get("/api/v1/disputes").status_code == 403
    assert make_client("admin").post("/api/v1/disputes", {}, format="json").status_code == 405  # read-only

    # The outbound event carries the dispute as the API shows it.
    event = BillingEvent.objects.get(type="dispute.created")
    rendered = make_client("webhooks:manage").get(f"/api/v1/events/{event.id}").json()
    assert rendered["data"]["object"] == body


def test_disputes_admin_is_read_only(paid, http, client):
    _, intent = paid
    deliver(
        "charge.dispute.created",
        dispute_object(DP, payment_ref=intent.provider_ref, amount=2000, status="needs_response"),
        event_id="a",
        created=T,
    )
    dispute = Dispute.objects.get()
    client.force_login(get_user_model().objects.create_superuser("root", "root@example.com", "pw-tests-only"))
    assert dispute.id in client.get("/admin/payments/dispute/").content.decode()
    page = client.get(f"/admin/payments/dispute/{dispute.id}/change/")
    assert page.status_code == 200 and DP in page.content.decode()
    assert client.get("/admin/payments/dispute/add/").status_code == 403
    assert client.post(f"/admin/payments/dispute/{dispute.id}/change/", {"status": "won"}).status_code == 403
    assert client.post(f"/admin/payments/dispute/{dispute.id}/delete/", {"post": "yes"}).status_code == 403
    assert Dispute.objects.get().status == "needs_response"
    assert dispute.id in client.get(f"/admin/payments/paymentintent/{intent.id}/change/").content.decode()
