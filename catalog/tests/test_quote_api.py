from __future__ import annotations

import pytest

from catalog.tests.factories import GRADUATED_USD, PriceFactory
from webhooks.models import BillingEvent

pytestmark = pytest.mark.django_db


def _quote(client, price, quantity):
    return client.post(f"/api/v1/prices/{price.id}/quote", {"quantity": quantity}, format="json")


def test_graduated_quote_is_the_api_md_example(api):
    price = PriceFactory(graduated=True)
    response = _quote(api, price, "1500")
    assert response.status_code == 200, response.content
    assert response.json() == {
        "amount": 1050,
        "currency": "usd",
        "breakdown": [
            {"tier": 1, "quantity": "1000", "unit": "0.5", "flat": 0, "amount": 500},
            {"tier": 2, "quantity": "500", "unit": "0.1", "flat": 500, "amount": 550},
        ],
    }
    assert not BillingEvent.objects.exists()  # a quote reads; it writes nothing


def test_total_mode_prices_the_whole_quantity_by_one_tier(api):
    price = PriceFactory(amount={**GRADUATED_USD, "mode": "total"})
    assert _quote(api, price, "1500").json() == {
        "amount": 650,
        "currency": "usd",
        "breakdown": [{"tier": 2, "quantity": "1500", "unit": "0.1", "flat": 500, "amount": 650}],
    }
    # Exactly at up_to stays in the first tier.
    assert _quote(api, price, 1000).json()["breakdown"] == [
        {"tier": 1, "quantity": "1000", "unit": "0.5", "flat": 0, "amount": 500}
    ]


def test_fixed_quote_rounds_once_half_up(api):
    price = PriceFactory(amount={"model": "fixed", "currency": "usd", "unit": "0.04", "flat": 100})
    assert _quote(api, price, "12345").json() == {
        "amount": 594,  # 493.8 + 100, rounded once
        "currency": "usd",
        "breakdown": [{"tier": 1, "quantity": "12345", "unit": "0.04", "flat": 100, "amount": 594}],
    }


@pytest.mark.parametrize(
    ("quantity", "amount"),
    [(0, 0), ("0", 0), ("1", 1), ("0.5", 0), ("3", 2), (1000, 500), ("1001", 1000), ("10.25", 5)],
)
def test_graduated_quantities(api, quantity, amount):
    # 0 costs 0 on a tiered price; 1001 is the first unit of tier 2, which adds its flat fee once.
    price = PriceFactory(graduated=True)
    response = _quote(api, price, quantity)
    assert response.status_code == 200, response.content
    assert response.json()["amount"] == amount


def test_an_archived_price_still_quotes(api):
    price = PriceFactory(active=False)
    assert _quote(api, price, "2").json()["amount"] == 2000


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"quantity": "-1"}, "negative_quantity"),
        ({"quantity": -1}, "negative_quantity"),
        ({"quantity": "abc"}, "invalid_number"),
        ({"quantity": "1e3"}, "invalid_number"),
        ({"quantity": True}, "invalid_number"),
        ({"quantity": [1]}, "invalid_number"),
        ({"quantity": None}, "parameter_missing"),
        ({}, "parameter_missing"),
        ({"quantity": "1" + "0" * 200}, "quantity_out_of_range"),  # too many digits to price exactly
        ({"quantity": str(10**20)}, "quantity_out_of_range"),  # exact, but 10**19 is over a BIGINT
    ],
)
def test_bad_quantity_is_400_naming_quantity(api, body, code):
    price = PriceFactory(graduated=True)
    response = api.post(f"/api/v1/prices/{price.id}/quote", body, format="json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert (error["param"], error["code"]) == ("quantity", code)


def test_unknown_price_and_unknown_field(api):
    assert api.post("/api/v1/prices/price_nope/quote", {"quantity": "1"}, format="json").status_code == 404
    price = PriceFactory()
    response = api.post(f"/api/v1/prices/{price.id}/quote", {"quantity": "1", "qty": 2}, format="json")
    assert response.status_code == 400 and response.json()["error"]["param"] == "qty"
