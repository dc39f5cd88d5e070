"""Every list endpoint costs the same number of queries whatever the page size: no N+1.

Each resource is made several times through the API (so the rows are what clients make), then each
list is read with limit=1 and with limit=5; the query counts must be equal. The set of list endpoints
is discovered from the URL configuration (every view whose GET pages with `paginate`), so a new list
endpoint without an entry here fails the test instead of going unchecked."""

from __future__ import annotations

import inspect
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import get_resolver
from django.utils import timezone

from metering.push.models import UsagePush, UsagePushLane
from payments.models import Dispute
from webhooks.delivery import events_dispatch

pytestmark = pytest.mark.django_db
V1 = "/api/v1"
ROWS = 5


def post(api, path, body):
    response = api.post(f"{V1}{path}", body, format="json")
    assert response.status_code in (200, 201), (path, response.json())
    return response.json()


def seed(api) -> dict[str, str]:
    """ROWS of every listed resource; returns the ids the nested lists need."""
    first = None
    for i in range(ROWS):
        customer = post(api, "/customers", {"external_id": f"t-{i}", "name": f"T {i}", "currency": "usd"})
        first = first or customer
        post(api, f"/customers/{first['id']}/users", {"external_id": f"u-{i}", "email": f"u{i}@example.com"})
        post(api, "/meters", {"code": f"m-{i}", "name": f"M {i}", "aggregation": "sum"})
        product = post(api, "/products", {"name": f"P {i}"})
        price = post(
            api,
            "/prices",
            {
                "type": "product",
                "product": product["id"],
                "duration": {"amount": 1, "unit": "month"},
                "amount": {"model": "fixed", "currency": "usd", "unit": str(1000 + i), "flat": 0},
                "lookup_key": f"plan-{i}",
            },
        )
        meter = api.get(f"{V1}/meters", {"code": f"m-{i}"}).json()["data"][0]
        post(api, "/meter-mappings", {"meter": meter["id"], "event_name": f"event_{i}"})
        # Alerts with a crossing each, so the page renders its triggers too.
        post(api, "/alerts", {"customer": first["id"], "meter": meter["id"], "threshold": "1"})
        post(api, "/events", {"customer": first["id"], "meter": meter["code"], "value": "2"})
        post(api, "/tiers", {"name": f"Tier {i}", "items": [{"lookup_key": f"plan-{i}"}]})
        post(api, "/invoice-items", {"customer": first["id"], "amount": 100 + i, "description": f"item {i}"})
        endpoint = post(api, "/webhook-endpoints", {"url": f"http://127.0.0.1:9/hook-{i}", "enabled_events": ["*"]})
        post(api, "/coupons", {"name": f"C {i}", "percent_off": "10", "duration": "once"})
        post(
            api, "/tax-rates", {"display_name": f"Tax {i}", "percentage": "8.875", "inclusive": False, "country": "US"}
        )
        subscription = post(
            api,
            "/subscriptions",
            {
                "customer": first["id"],
                "items": [{"price": price["id"], "quantity": 1}],
                "collection_method": "send_invoice",
            },
        )
        invoice = subscription["latest_invoice"]
        invoice_id = invoice["id"] if isinstance(invoice, dict) else invoice
        post(api, "/credit-notes", {"invoice": invoice_id, "amount": 10, "memo": f"n{i}"})
        method = post(api, "/payment-methods", {"customer": first["id"], "token": "tok_visa"})
        intent = post(
            api,
            "/payment-intents",
            {"customer": first["id"], "amount": 5000, "currency": "usd", "payment_method": method["id"]},
        )
        post(api, f"/payment-intents/{intent['id']}/confirm", {})
        post(api, "/refunds", {"payment_intent": intent["id"], "amount": 100 + i})
        post(api, f"/customers/{first['id']}/balance-transactions", {"amount": 100 + i, "currency": "usd"})
        post(api, "/credit-grants", {"customer": first["id"], "amount": 1000 + i, "currency": "usd"})
        feature = post(api, "/features", {"lookup_key": f"feature-{i}", "name": f"F {i}", "type": "boolean"})
        post(api, "/feature-attachments", {"feature": feature["id"], "price": price["id"]})
        clock = post(api, "/test-clocks", {"frozen_time": "2026-01-01T00:00:00Z", "name": f"clock {i}"})
        post(api, "/customers", {"external_id": f"clocked-{i}", "test_clock": clock["id"]})
        _seed_without_an_api(first["id"], intent["id"], meter["id"], i)
    # Deliveries: the events so far fanned out to the endpoints (normally a task right after each commit).
    events_dispatch(now=timezone.now())
    return {"customer_id": first["id"], "endpoint_id": endpoint["id"]}


def _seed_without_an_api(customer_id: str, intent_id: str, meter_id: str, i: int) -> None:
    """Rows only a provider creates (a dispute) or a job writes (a usage push): made directly."""
    now = timezone.now()
    Dispute.objects.create(
        customer_id=customer_id,
        payment_intent_id=intent_id,
        provider="stripe",
        provider_ref=f"dp_{i}",
        amount=100,
        currency="usd",
        status="needs_response",
    )
    start = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=ROWS + 1)
    lane = UsagePushLane.objects.create(
        customer_id=customer_id,
        meter_id=meter_id,
        started_at=start,
        pushed_through=start,
        changes_checked_at=start,
        created_at=now,
    )
    UsagePush.objects.create(
        lane=lane,
        customer_id=customer_id,
        meter_id=meter_id,
        kind="push",
        status="sent",
        sent_at=now,
        attempts=1,
        first_attempt_at=now,
        last_attempt_at=now,
        slice_start=start,
        slice_end=start + timedelta(hours=1),
        value=Decimal(i + 1),
        identifier=f"push-{i}",
        created_at=now,
        updated_at=now,
    )


def list_endpoints() -> list[str]:
    """URL patterns (with <kwargs>) under /api/v1 whose view's GET pages through `paginate`."""
    found = []

    def walk(patterns, prefix=""):
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if hasattr(pattern, "url_patterns"):
                walk(pattern.url_patterns, route)
                continue
            view = getattr(pattern.callback, "view_class", None)
            get = getattr(view, "get", None)
            allowed = "get" in getattr(view, "http_method_names", ())
            if get is not None and allowed and "paginate(" in inspect.getsource(get):
                found.append("/" + route)

    walk(get_resolver().url_patterns)
    return sorted(found)


# Query parameters a list needs (a customer's ledger is read per currency, say) beyond its path.
EXTRA = {"/api/v1/customers/<str:customer_id>/balance-transactions": {"currency": "usd"}}


def test_list_queries_do_not_grow_with_the_page(api):
    ids = seed(api)
    endpoints = list_endpoints()
    assert len(endpoints) >= 15, endpoints
    counts = {}
    for route in endpoints:
        path = route.replace("<str:customer_id>", ids["customer_id"]).replace("<str:endpoint_id>", ids["endpoint_id"])
        assert "<" not in path, f"{route}: add the id it needs to seed()"
        per_size = []
        for limit in (1, ROWS):
            with CaptureQueriesContext(connection) as captured:
                response = api.get(path, {"limit": limit, **EXTRA.get(route, {})})
            assert response.status_code == 200, (route, response.json())
            assert len(response.json()["data"]) == limit, (route, limit, response.json())
            per_size.append(len(captured.captured_queries))
        counts[route] = per_size
    growing = {route: sizes for route, sizes in counts.items() if sizes[0] != sizes[1]}
    assert not growing, f"queries per page grow with the page size (limit 1 vs {ROWS}): {growing}"


# --- The hot reads (bench/load.py): a fixed number of queries, none for the API key -------------------


def _hot_read_queries(api, path: str, params: dict | None = None) -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        response = api.get(path, params or {})
    assert response.status_code == 200, (path, response.json())
    return [q["sql"] for q in captured.captured_queries]


def test_hot_reads_cost_a_fixed_number_of_queries_whatever_the_size(api):
    customer = post(api, "/customers", {"external_id": "hot", "name": "Hot", "currency": "usd"})
    prices = []
    for i in range(ROWS):
        product = post(api, "/products", {"name": f"Hot {i}"})
        prices.append(
            post(
                api,
                "/prices",
                {
                    "type": "product",
                    "product": product["id"],
                    "duration": {"amount": 1, "unit": "month"},
                    "amount": {"model": "fixed", "currency": "usd", "unit": str(100 + i), "flat": 0},
                },
            )
        )
    subscriptions = {
        size: post(
            api,
            "/subscriptions",
            {
                "customer": customer["id"],
                "items": [{"price": price["id"], "quantity": 1} for price in prices[:size]],
                "collection_method": "send_invoice",
            },
        )
        for size in (1, ROWS)
    }
    # Warm: the key's lookup is cached by the first request, as in a running worker.
    api.get(f"{V1}/customers/{customer['id']}")

    detail = _hot_read_queries(api, f"{V1}/customers/{customer['id']}")
    pages = {
        limit: _hot_read_queries(api, f"{V1}/invoices", {"customer": customer["id"], "limit": limit})
        for limit in (1, 2)
    }
    upcoming = {
        size: _hot_read_queries(api, f"{V1}/subscriptions/{sub['id']}/upcoming-invoice")
        for size, sub in subscriptions.items()
    }
    every = [detail, *pages.values(), *upcoming.values()]
    assert not [sql for queries in every for sql in queries if "billing_site_apikey" in sql]  # cached
    assert len(detail) == 1  # the customer
    assert len(pages[1]) == len(pages[2]) == 3  # the page, its lines, its hosted links
    # The subscription, then the preview's own reads (re-read subscription, items, pending items, price
    # migrations, watermarks, tax rates); the customer's clock is read only for a customer on a clock.
    assert len(upcoming[1]) == len(upcoming[ROWS]) == 7, upcoming
