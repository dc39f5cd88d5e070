"""Entitlements (issue 16): features attached to products and prices, and what a customer may use now,
cached and invalidated on every change it depends on."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from catalog.services import product_create
from customers.tests.factories import CustomerFactory
from metering.ingest import usage_ingest
from metering.tests.factories import MeterFactory
from subscriptions.services.lifecycle import subscription_cancel
from subscriptions.tests.support import fixed_price, subscribe

pytestmark = pytest.mark.django_db

V1 = "/api/v1"


def _post(api, path, body, status=201):
    response = api.post(f"{V1}{path}", body, format="json")
    assert response.status_code == status, response.json()
    return response.json()


def _feature(api, key, type_, **extra):
    return _post(api, "/features", {"lookup_key": key, "name": key.title(), "type": type_, **extra})


def _use(customer, meter, value, at):
    body = {"customer": customer.id, "meter": meter.code, "value": str(value), "timestamp": at.isoformat()}
    assert usage_ingest(events=[body], now=timezone.now()).created == 1


def _entitlements(api, customer_id):
    response = api.get(f"{V1}/customers/{customer_id}/entitlements")
    assert response.status_code == 200, response.json()
    return {row["feature"]: row for row in response.json()["data"]}


@pytest.fixture
def plan(api):
    """A product 'Pro' with SSO (boolean) and a support level (static) on the product, and API calls
    (metered, 1000 per period) on its monthly price; the price overrides the product's support level."""
    now = timezone.now()
    meter = MeterFactory(code="api-calls")
    product = product_create(name="Pro", now=now)
    price = fixed_price("5000", now=now)
    price.product = product
    price.type = "product"
    price.save()
    sso = _feature(api, "sso", "boolean")
    support = _feature(api, "support", "static")
    calls = _feature(api, "api_calls", "metered", meter=meter.id)
    _post(api, "/feature-attachments", {"feature": sso["id"], "product": product.id})
    _post(api, "/feature-attachments", {"feature": support["id"], "product": product.id, "value": "email"})
    _post(api, "/feature-attachments", {"feature": support["id"], "price": price.id, "value": "priority"})
    limit = _post(api, "/feature-attachments", {"feature": calls["id"], "price": price.id, "limit": "1000"})
    return {"price": price, "product": product, "meter": meter, "features": (sso, support, calls), "limit": limit}


def test_what_a_subscribed_customer_may_use(api, plan):
    customer = CustomerFactory(currency="usd")
    start = timezone.now() - timedelta(days=3)
    sub, _ = subscribe(customer, plan["price"], now=start)
    _use(customer, plan["meter"], 120, start + timedelta(hours=1))

    answer = api.get(f"{V1}/customers/{customer.id}/entitlements").json()
    assert answer["object"] == "customer_entitlements" and answer["customer"] == customer.id
    rows = {row["feature"]: row for row in answer["data"]}
    assert list(rows) == ["api_calls", "sso", "support"]
    assert rows["sso"]["value"] is True and rows["sso"]["limit"] is None
    assert rows["support"]["value"] == "priority"  # the price's own attachment beats the product's
    calls = rows["api_calls"]
    assert (calls["limit"], calls["usage"], calls["remaining"]) == ("1000", "120", "880")
    assert calls["period_start"] == sub.current_period_start.isoformat().replace("+00:00", "Z")
    assert calls["subscriptions"] == [sub.id]


def test_no_subscription_no_entitlements_and_unknown_customers(api, plan):
    customer = CustomerFactory()
    assert _entitlements(api, customer.id) == {}
    missing = api.get(f"{V1}/customers/cus_nope/entitlements")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "resource_missing"


def test_the_cached_answer_needs_no_database_and_changes_drop_it(api, plan, django_capture_on_commit_callbacks):
    """Each change drops the answer after its commit (the test suite's transaction never commits, so
    the commit callbacks are run by `django_capture_on_commit_callbacks`)."""
    customer = CustomerFactory(currency="usd")
    now = timezone.now()
    sub, _ = subscribe(customer, plan["price"], now=now - timedelta(days=1))
    assert "sso" in _entitlements(api, customer.id)

    from subscriptions.entitlements import customer_entitlements

    with CaptureQueriesContext(connection) as queries:
        customer_entitlements(customer_id=customer.id, now=now)
    assert len(queries) == 0

    def committed(change):
        with django_capture_on_commit_callbacks(execute=True):
            result = change()
        return result

    # Usage ingested: the metered row moves.
    committed(lambda: _use(customer, plan["meter"], 7, now - timedelta(minutes=5)))
    assert _entitlements(api, customer.id)["api_calls"]["usage"] == "7"

    # A feature archived: gone for everyone. Until the commit, the cached answer stands.
    sso = plan["features"][0]
    with django_capture_on_commit_callbacks(execute=False) as pending:
        assert api.patch(f"{V1}/features/{sso['id']}", {"active": False}, format="json").status_code == 200
    assert "sso" in _entitlements(api, customer.id)
    for callback in pending:
        callback()
    assert "sso" not in _entitlements(api, customer.id)

    # An attachment removed: gone.
    assert committed(lambda: api.delete(f"{V1}/feature-attachments/{plan['limit']['id']}")).status_code == 204
    assert "api_calls" not in _entitlements(api, customer.id)

    # A new attachment: there.
    body = {"feature": plan["features"][2]["id"], "price": plan["price"].id}
    committed(lambda: _post(api, "/feature-attachments", body))
    assert _entitlements(api, customer.id)["api_calls"]["limit"] is None  # unlimited

    # The subscription canceled: nothing left.
    committed(lambda: subscription_cancel(subscription=sub, at_period_end=False, prorate=False, now=now))
    assert _entitlements(api, customer.id) == {}

    # The customer deleted: 404, not its last answer.
    assert committed(lambda: api.delete(f"{V1}/customers/{customer.id}")).status_code == 204
    assert api.get(f"{V1}/customers/{customer.id}/entitlements").status_code == 404


def test_a_build_that_raced_a_change_is_never_served(api, plan):
    """A reader that read the rows before a change and stores its answer after the change committed
    stores it under the old version, which nobody reads."""
    from django.core.cache import cache

    from customers.entitlements_cache import entitlements_invalidate, entitlements_key, entitlements_state

    customer = CustomerFactory(currency="usd")
    subscribe(customer, plan["price"], now=timezone.now() - timedelta(days=1))
    state = entitlements_state(customer.id)  # the reader starts
    entitlements_invalidate([customer.id])  # a change commits meanwhile
    cache.set(entitlements_key(customer.id, state), {"stale": True})  # the reader stores what it built
    assert "stale" not in api.get(f"{V1}/customers/{customer.id}/entitlements").json()


def test_limits_add_up_across_subscriptions_and_past_due_keeps_features(api, plan):
    customer = CustomerFactory(currency="usd")
    now = timezone.now()
    first, _ = subscribe(customer, plan["price"], now=now - timedelta(days=2))
    second, _ = subscribe(customer, plan["price"], now=now - timedelta(days=1))
    row = _entitlements(api, customer.id)["api_calls"]
    assert row["limit"] == "2000" and row["subscriptions"] == sorted([first.id, second.id])

    from subscriptions.services.status import subscription_status_change

    subscription_status_change(subscription=first, to="past_due", now=now)
    subscription_status_change(subscription=second, to="past_due", now=now)
    assert _entitlements(api, customer.id)["api_calls"]["limit"] == "2000"
    second.refresh_from_db()
    subscription_status_change(subscription=second, to="unpaid", now=now)
    assert _entitlements(api, customer.id)["api_calls"]["limit"] == "1000"


def test_a_tenant_sees_only_its_own(oidc, api, plan):
    mine = CustomerFactory(external_id="tenant-a", currency="usd")
    other = CustomerFactory(external_id="tenant-b", currency="usd")
    for customer in (mine, other):
        subscribe(customer, plan["price"], now=timezone.now() - timedelta(days=1))
    client = oidc.client(scope="admin", **{"custom:tenantId": "tenant-a"})
    assert client.get(f"{V1}/customers/{mine.id}/entitlements").status_code == 200
    refused = client.get(f"{V1}/customers/{other.id}/entitlements")
    assert refused.status_code == 404
    # Not even after an operator warmed the cache for the other tenant.
    assert api.get(f"{V1}/customers/{other.id}/entitlements").status_code == 200
    assert client.get(f"{V1}/customers/{other.id}/entitlements").status_code == 404


def test_features_api_and_bad_input(api):
    meter = MeterFactory()
    product = product_create(name="Basic", now=timezone.now())
    price = fixed_price("100")
    bad = api.post(f"{V1}/features", {"lookup_key": "x", "name": "X", "type": "metered"}, format="json")
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "meter"
    bad = api.post(
        f"{V1}/features", {"lookup_key": "x", "name": "X", "type": "boolean", "meter": meter.id}, format="json"
    )
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "meter"
    bad = api.post(f"{V1}/features", {"lookup_key": "has space", "name": "X", "type": "boolean"}, format="json")
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "lookup_key"
    bad = api.post(f"{V1}/features", {"lookup_key": "x", "name": "X", "type": "color"}, format="json")
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "type"
    flag = _feature(api, "flag", "boolean")
    assert flag["object"] == "feature" and flag["id"].startswith("feat_") and flag["meter"] is None
    dup = api.post(f"{V1}/features", {"lookup_key": "flag", "name": "again", "type": "boolean"}, format="json")
    assert dup.status_code == 409 and dup.json()["error"]["code"] == "feature_exists"
    level = _feature(api, "level", "static")

    def attach(body):
        return api.post(f"{V1}/feature-attachments", body, format="json")

    assert attach({"feature": flag["id"]}).json()["error"]["param"] == "product"
    assert attach({"feature": flag["id"], "product": product.id, "price": price.id}).status_code == 400
    assert attach({"feature": "feat_nope", "product": product.id}).json()["error"]["param"] == "feature"
    assert attach({"feature": flag["id"], "product": "prod_nope"}).json()["error"]["param"] == "product"
    assert attach({"feature": flag["id"], "product": product.id, "limit": "5"}).json()["error"]["param"] == "limit"
    assert attach({"feature": flag["id"], "product": product.id, "value": "on"}).json()["error"]["param"] == "value"
    assert attach({"feature": level["id"], "price": price.id}).json()["error"]["param"] == "value"
    assert attach({"feature": level["id"], "price": price.id, "value": "x", "x": 1}).json()["error"]["code"] == (
        "unknown_field"
    )
    made = attach({"feature": flag["id"], "product": product.id})
    assert made.status_code == 201
    assert made.json() | {"id": None, "created_at": None} == {
        "id": None,
        "object": "feature_attachment",
        "feature": flag["id"],
        "product": product.id,
        "price": None,
        "value": None,
        "limit": None,
        "created_at": None,
    }
    again = attach({"feature": flag["id"], "product": product.id})
    assert again.status_code == 409 and again.json()["error"]["code"] == "feature_attachment_exists"
    listed = api.get(f"{V1}/feature-attachments", {"product": product.id}).json()["data"]
    assert [a["id"] for a in listed] == [made.json()["id"]]
    assert api.get(f"{V1}/features", {"type": "static"}).json()["data"][0]["lookup_key"] == "level"
    assert api.get(f"{V1}/features", {"colour": "x"}).status_code == 400
    assert api.delete(f"{V1}/feature-attachments/fatt_nope").status_code == 404


def test_a_clock_customer_is_answered_at_its_clocks_time(api, plan):
    clock = _post(api, "/test-clocks", {"frozen_time": "2026-01-01T00:00:00Z"})
    customer = _post(api, "/customers", {"external_id": "c", "currency": "usd", "test_clock": clock["id"]})
    _post(api, "/subscriptions", {"customer": customer["id"], "items": [{"price": plan["price"].id}]})
    answer = api.get(f"{V1}/customers/{customer['id']}/entitlements").json()
    assert answer["as_of"] == "2026-01-01T00:00:00Z"
    assert answer["data"][0]["period_start"] == "2026-01-01T00:00:00Z"  # the clock's time, not the wall's


def test_a_cache_outage_answers_from_the_database(api, plan, monkeypatch):
    from django.core.cache import cache

    customer = CustomerFactory(currency="usd")
    subscribe(customer, plan["price"], now=timezone.now() - timedelta(days=1))

    def down(*args, **kwargs):
        raise ConnectionError("cache down")

    from subscriptions.entitlements import customer_entitlements

    def answer():
        rows = customer_entitlements(customer_id=customer.id, now=timezone.now())["data"]
        return {row["feature"]: row for row in rows}

    # (The selector, not the endpoint: the API's rate limiter needs the cache too.)
    for name in ("get", "get_many", "set", "set_many", "add"):
        monkeypatch.setattr(cache, name, down)
    assert "sso" in answer()
    _use(customer, plan["meter"], 3, timezone.now() - timedelta(minutes=1))  # ingestion is not failed by it
    assert answer()["api_calls"]["usage"] == "3"
