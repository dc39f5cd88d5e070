"""The subscriptions endpoints: create/read/list/filter, cancel/reactivate/change/upcoming-invoice,
bad input (400 naming the field, nothing written), scopes and the outbox."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from catalog.tests.factories import CouponFactory
from customers.tests.factories import CustomerFactory
from invoicing.models import Invoice
from subscriptions.models import Subscription, SubscriptionItem
from subscriptions.tests.support import fixed_price, metered_price
from webhooks.models import BillingEvent

pytestmark = pytest.mark.django_db

URL = "/api/v1/subscriptions"


@pytest.fixture
def catalog():
    now = timezone.now()
    return {
        "customer": CustomerFactory(),
        "seats": fixed_price("1000", now=now),
        "calls": metered_price(now=now),
    }


def create(api, catalog, **body):
    payload = {
        "customer": catalog["customer"].id,
        "items": [{"price": catalog["seats"].id, "quantity": 2}, {"price": catalog["calls"].id}],
        **body,
    }
    return api.post(URL, payload, format="json")


def test_create_read_and_list(api, catalog):
    response = create(api, catalog, metadata={"plan": "team"})
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["id"].startswith("sub_") and body["object"] == "subscription"
    assert body["status"] == "active" and body["currency"] == "usd"
    assert body["customer"] == catalog["customer"].id
    assert [(i["price"], i["quantity"]) for i in body["items"]] == [
        (catalog["seats"].id, "2"),
        (catalog["calls"].id, None),
    ]
    assert body["metadata"] == {"plan": "team"}
    assert body["cancel_at_period_end"] is False and body["trial_end"] is None
    invoice = Invoice.objects.get(pk=body["latest_invoice"])
    assert invoice.status == "open" and invoice.total == 2000

    detail = api.get(f"{URL}/{body['id']}")
    assert detail.status_code == 200
    assert {k: v for k, v in detail.json().items() if k != "latest_invoice"} == {
        k: v for k, v in body.items() if k != "latest_invoice"
    }
    listed = api.get(URL, {"customer": catalog["customer"].id}).json()
    assert [s["id"] for s in listed["data"]] == [body["id"]] and listed["has_more"] is False
    assert api.get(URL, {"customer": CustomerFactory().id}).json()["data"] == []
    assert [s["id"] for s in api.get(URL, {"status": "active"}).json()["data"]] == [body["id"]]
    assert api.get(URL, {"status": "trialing"}).json()["data"] == []
    assert api.get(f"{URL}/sub_nope").status_code == 404

    types = set(BillingEvent.objects.values_list("type", flat=True))
    assert {"subscription.created", "invoice.created", "invoice.finalized"} <= types


def test_create_with_trial_days(api, catalog):
    before = timezone.now()
    body = create(api, catalog, trial_days=14).json()
    assert body["status"] == "trialing" and body["latest_invoice"] is None
    sub = Subscription.objects.get(pk=body["id"])
    assert before + timedelta(days=14) <= sub.trial_end <= timezone.now() + timedelta(days=14)
    assert sub.current_period_end == sub.trial_end
    assert not Invoice.objects.exists()


def test_send_invoice_with_days_until_due(api, catalog):
    body = create(api, catalog, collection_method="send_invoice", days_until_due=10).json()
    invoice = Invoice.objects.get(pk=body["latest_invoice"])
    assert invoice.due_date == invoice.finalized_at + timedelta(days=10)


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"items": [{"price": "price_unknown"}]}, "items[0].price"),
        ("metered_quantity", "items[0].quantity"),
        ("mixed_currency", "items[1].price"),
        ("mixed_interval", "items[1].price"),
        ({"items": []}, "items"),
        ({"items": [{"quantity": 1}]}, "items[0].price"),
        ("negative_quantity", "items[0].quantity"),
        ({"trial_days": 7, "trial_end": "2030-01-01T00:00:00Z"}, "trial_end"),
        ({"trial_days": 0}, "trial_days"),
        ({"customer": "cus_unknown"}, "customer"),
        ({"coupon": "cpn_unknown"}, "coupon"),
        ({"collection_method": "cash"}, "collection_method"),
        ({"start_date": "2999-01-01T00:00:00Z"}, "start_date"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_bad_input_is_400_naming_the_field_and_writes_nothing(api, catalog, change, param):
    now = timezone.now()
    if change == "metered_quantity":
        change = {"items": [{"price": catalog["calls"].id, "quantity": 1}]}
    elif change == "mixed_currency":
        change = {"items": [{"price": catalog["seats"].id}, {"price": fixed_price(currency="eur", now=now).id}]}
    elif change == "mixed_interval":
        change = {"items": [{"price": catalog["seats"].id}, {"price": fixed_price(interval="year", now=now).id}]}
    elif change == "negative_quantity":
        change = {"items": [{"price": catalog["seats"].id, "quantity": -1}]}
    events = BillingEvent.objects.count()
    response = create(api, catalog, **change)
    assert response.status_code == 400, response.content
    assert response.json()["error"]["param"] == param
    assert response.json()["error"]["type"] == "invalid_request"
    assert not Subscription.objects.exists() and not SubscriptionItem.objects.exists()
    assert not Invoice.objects.exists() and BillingEvent.objects.count() == events


def test_an_exhausted_coupon_is_409_and_writes_nothing(api, catalog):
    coupon = CouponFactory(max_redemptions=1)
    assert create(api, catalog, coupon=coupon.id).status_code == 201
    response = create(api, catalog, coupon=coupon.id)
    assert response.status_code == 409
    assert response.json()["error"]["param"] == "coupon"
    assert Subscription.objects.count() == 1


def test_scopes(make_client, catalog):
    reader = make_client("billing:read")
    assert reader.get(URL).status_code == 200
    assert create(reader, catalog).status_code == 403
    other = make_client("customers:write", "catalog:read")
    assert other.get(URL).status_code == 403
    assert other.get("/api/v1/invoices").status_code == 403
    writer = make_client("billing:write")
    assert create(writer, catalog).status_code == 201
    from rest_framework.test import APIClient

    assert APIClient().get(URL).status_code == 401


def test_cancel_reactivate_and_illegal_transitions(api, catalog):
    sub_id = create(api, catalog).json()["id"]
    response = api.post(f"{URL}/{sub_id}/cancel", {"at_period_end": True}, format="json")
    assert response.status_code == 200
    assert response.json()["cancel_at_period_end"] is True and response.json()["latest_invoice"] is None
    again = api.post(f"{URL}/{sub_id}/cancel", {"at_period_end": True}, format="json")
    assert again.status_code == 409 and again.json()["error"]["type"] == "conflict"
    assert api.post(f"{URL}/{sub_id}/reactivate").json()["cancel_at_period_end"] is False
    assert api.post(f"{URL}/{sub_id}/reactivate").status_code == 409

    ended = api.post(f"{URL}/{sub_id}/cancel", {"at_period_end": False, "prorate": True}, format="json")
    assert ended.status_code == 200
    assert ended.json()["status"] == "canceled" and ended.json()["ended_at"] is not None
    final = Invoice.objects.get(pk=ended.json()["latest_invoice"])
    assert final.billing_reason == "subscription_cancel"
    assert final.lines.filter(kind="proration", amount__lt=0).exists()
    assert api.post(f"{URL}/{sub_id}/reactivate").status_code == 409
    assert api.post(f"{URL}/{sub_id}/cancel", {}, format="json").status_code == 409
    change = {"items": [{"price": catalog["seats"].id, "quantity": 3}]}
    assert api.post(f"{URL}/{sub_id}/change", change, format="json").status_code == 409
    assert api.get(f"{URL}/{sub_id}/upcoming-invoice").status_code == 409
    assert "subscription.canceled" in set(BillingEvent.objects.filter(object_id=sub_id).values_list("type", flat=True))
    assert api.post(f"{URL}/sub_nope/cancel", {}, format="json").status_code == 404


def test_change_and_upcoming_invoice(api, catalog):
    sub_id = create(api, catalog).json()["id"]
    bigger = fixed_price("5000", now=timezone.now())
    body = {
        "items": [{"price": bigger.id}, {"price": catalog["calls"].id}],
        "proration_behavior": "always_invoice",
    }
    response = api.post(f"{URL}/{sub_id}/change", body, format="json")
    assert response.status_code == 200, response.content
    # Unchanged items keep their place; the new one joins at the end.
    assert [i["price"] for i in response.json()["items"]] == [catalog["calls"].id, bigger.id]
    invoice = Invoice.objects.get(pk=response.json()["latest_invoice"])
    assert [line.kind for line in invoice.lines.all()] == ["proration", "proration"]
    assert "subscription.updated" in set(BillingEvent.objects.filter(object_id=sub_id).values_list("type", flat=True))

    bad = api.post(f"{URL}/{sub_id}/change", {"items": [{"price": catalog["calls"].id, "quantity": 2}]}, format="json")
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "items[0].quantity"
    bad = api.post(f"{URL}/{sub_id}/change", {**body, "proration_behavior": "sometimes"}, format="json")
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "proration_behavior"

    counts = (Invoice.objects.count(), BillingEvent.objects.count())
    upcoming = api.get(f"{URL}/{sub_id}/upcoming-invoice")
    assert upcoming.status_code == 200, upcoming.content
    preview = upcoming.json()
    assert (preview["id"], preview["number"], preview["status"]) == (None, None, "draft")
    assert preview["billing_reason"] == "subscription_cycle" and preview["subscription"] == sub_id
    assert [(line["kind"], line["amount"]) for line in preview["lines"]] == [("fixed", 5000), ("usage", 0)]
    assert preview["total"] == 5000
    assert (Invoice.objects.count(), BillingEvent.objects.count()) == counts


def test_idempotency_key_replays_a_create(api, catalog):
    payload = {"customer": catalog["customer"].id, "items": [{"price": catalog["seats"].id}]}
    one = api.post(URL, payload, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    two = api.post(URL, payload, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert one.status_code == two.status_code == 201
    assert one.json() == two.json() and Subscription.objects.count() == 1


@pytest.mark.django_db
def test_the_fast_rendering_is_what_the_declared_fields_render():
    """`SubscriptionOutput` renders through `subscription_data` (fast, shared with events); the declared
    fields are the schema. Both must say the same, in every state a subscription can be in."""
    from rest_framework import serializers as drf

    from subscriptions.serializers import SubscriptionOutput, subscription_data
    from subscriptions.services.lifecycle import subscription_cancel
    from subscriptions.tests.support import T0, fixed_price, metered_price, subscribe

    trialing, _ = subscribe(None, fixed_price("1000"), quantity=Decimal("2.5"), trial_end=T0 + timedelta(days=3))
    active, _ = subscribe(None, fixed_price("1000"), metered_price(), metadata={"plan": "pro"})
    ended, _ = subscribe(None, fixed_price("1000"))
    subscription_cancel(subscription=ended, at_period_end=False, prorate=False, now=T0 + timedelta(days=1))
    for sub in (trialing, active, ended):
        sub.refresh_from_db()
        declared = drf.Serializer.to_representation(SubscriptionOutput(), sub)
        assert subscription_data(sub) == dict(declared)
        assert set(subscription_data(sub)) == set(SubscriptionOutput().fields)
