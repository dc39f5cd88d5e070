"""Builders for the portal's tests: invoices finalized through the API (so the finalization hook makes
their hosted link), a customer with a metered subscription and usage through real ingestion."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from customers.tests.factories import CustomerFactory
from subscriptions.tests.support import metered_price, subscribe, use


def finalized_invoice(api: Any, customer: Any = None, *, amount: int = 2500, currency: str = "usd") -> dict:
    customer = customer or CustomerFactory(name="Łukasz 東京", email="lukasz@example.com")
    created = api.post(
        "/api/v1/invoices",
        {
            "customer": customer.id,
            "currency": currency,
            "lines": [{"description": "Onboarding workshop", "amount": amount}],
        },
        format="json",
    )
    assert created.status_code == 201, created.json()
    finalized = api.post(f"/api/v1/invoices/{created.json()['id']}/finalize")
    assert finalized.status_code == 200, finalized.json()
    return finalized.json()


def path_of(url: str) -> str:
    return urlsplit(url).path


def nonce_of(html: str) -> str:
    return re.search(r'name="nonce" value="([0-9a-f]+)"', html).group(1)


def metered_customer(now: datetime, *, values=(5, 7, 11)) -> tuple[Any, Any, Any]:
    """A customer subscribed (since two days ago) to a metered price, with usage on two days of it."""
    customer = CustomerFactory(name="Acme GmbH", email="billing@acme.example")
    start = now - timedelta(days=2)
    price = metered_price(unit="0.5", now=start)
    sub, _ = subscribe(customer, price, now=start)
    for index, value in enumerate(values):
        use(customer, price, value, start + timedelta(hours=1 + 20 * index), now=now)
    return customer, price, sub
