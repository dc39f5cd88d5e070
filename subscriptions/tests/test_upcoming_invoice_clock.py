"""The upcoming invoice of a customer on a test clock is previewed at the clock's time (the view reads
the clock from the customer `subscription_get` joined; without a clock that costs no query)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from subscriptions import apis

pytestmark = pytest.mark.django_db
V1 = "/api/v1"


def post(api, path, body):
    response = api.post(f"{V1}{path}", body, format="json")
    assert response.status_code in (200, 201), (path, response.json())
    return response.json()


def _subscription(api, **customer_fields) -> str:
    customer = post(api, "/customers", {"currency": "usd", **customer_fields})
    product = post(api, "/products", {"name": "P"})
    price = post(
        api,
        "/prices",
        {
            "type": "product",
            "product": product["id"],
            "duration": {"amount": 1, "unit": "month"},
            "amount": {"model": "fixed", "currency": "usd", "unit": "2500", "flat": 0},
        },
    )
    sub = post(
        api,
        "/subscriptions",
        {
            "customer": customer["id"],
            "items": [{"price": price["id"], "quantity": 1}],
            "collection_method": "send_invoice",
        },
    )
    return sub["id"]


def _previewed_at(api, monkeypatch, sub_id: str) -> datetime:
    seen = []
    real = apis.preview.subscription_upcoming_invoice
    monkeypatch.setattr(
        apis.preview, "subscription_upcoming_invoice", lambda **kw: seen.append(kw["now"]) or real(**kw)
    )
    response = api.get(f"{V1}/subscriptions/{sub_id}/upcoming-invoice")
    assert response.status_code == 200, response.json()
    assert response.json()["amount_due"] == 2500
    return seen[0]


def test_a_clocked_customer_is_previewed_at_the_clock_time(api, monkeypatch):
    clock = post(api, "/test-clocks", {"frozen_time": "2026-01-01T00:00:00Z", "name": "c"})
    sub_id = _subscription(api, external_id="clocked", test_clock=clock["id"])
    assert _previewed_at(api, monkeypatch, sub_id) == datetime(2026, 1, 1, tzinfo=UTC)


def test_a_customer_without_a_clock_is_previewed_now(api, monkeypatch):
    sub_id = _subscription(api, external_id="plain")
    before = datetime.now(tz=UTC)
    assert _previewed_at(api, monkeypatch, sub_id) >= before
