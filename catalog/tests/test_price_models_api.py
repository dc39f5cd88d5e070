"""Package, percentage and graduated percentage prices through the API: created, stored in canonical form,
refused with a 400 naming the field, and explained by the quote endpoint with the tiers' breakdown shape.

Worked examples are the peers' own:
- package: https://getlago.com/docs/guide/plans/charges/charge-models/package ("$5 per 100 units and offer
  the first 100 units. 201 units would cost ... $10");
- percentage: https://getlago.com/docs/templates/per-transaction/stripe (card payments 2.9 % + $0.30 per
  transaction: a $100 charge costs $3.20), and
  https://getlago.com/docs/guide/plans/charges/charge-models/percentage (1.2 % + $0.10, first 3 events
  or $500 free; a 4th transaction of $50 costs $0.70);
- graduated percentage: https://getlago.com/docs/guide/plans/charges/charge-models/graduated-percentage
  (1 % + $200 up to $1,000, 2 % + $300 up to $10,000, 3 % + $400 above).
"""

from __future__ import annotations

import pytest

from catalog.models import Price
from metering.tests.factories import MeterFactory
from webhooks.models import BillingEvent

pytestmark = pytest.mark.django_db

LAGO_PACKAGE = {"model": "package", "currency": "usd", "package_size": 100, "amount": "500", "free_units": 100}
STRIPE_CARD = {"model": "percentage", "currency": "usd", "rate": "2.9", "fixed_fee": "30"}
LAGO_PERCENTAGE = {
    "model": "percentage",
    "currency": "usd",
    "rate": "1.2",
    "fixed_fee": "10",
    "free_units_per_events": 3,
    "free_amount": "50000",
}
LAGO_GRADUATED_PERCENTAGE = {
    "model": "graduated_percentage",
    "currency": "usd",
    "tiers": [
        {"up_to": 100000, "rate": "1", "flat": 20000},
        {"up_to": 1000000, "rate": "2", "flat": 30000},
        {"up_to": None, "rate": "3", "flat": 40000},
    ],
}


def _create(api, amount, **extra):
    body = {"type": "standalone", "duration": {"amount": 1, "unit": "month"}, "amount": amount, **extra}
    return api.post("/api/v1/prices", body, format="json")


def _quote(api, price_id, **body):
    return api.post(f"/api/v1/prices/{price_id}/quote", body, format="json")


def test_package_price_is_created_canonical_and_quoted_as_lago_documents(api):
    response = _create(api, LAGO_PACKAGE)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["amount"] == {
        "model": "package",
        "currency": "usd",
        "package_size": "100",
        "amount": "500",
        "free_units": "100",
    }
    assert body["name"] == "$5.00 per 100 units, first 100 free / month"
    price = Price.objects.get(pk=body["id"])
    assert (price.model, price.mode) == ("package", "")
    quote = _quote(api, price.id, quantity="201")
    assert quote.status_code == 200, quote.content
    assert quote.json() == {
        "amount": 1000,
        "currency": "usd",
        "breakdown": [
            {"tier": 1, "quantity": "100", "unit": "0", "flat": 0, "amount": 0, "kind": "free_units"},
            {"tier": 2, "quantity": "2", "unit": "500", "flat": 0, "amount": 1000, "kind": "packages"},
        ],
    }


def test_graduated_percentage_price_quotes_each_tier_with_its_flat_fee(api):
    response = _create(api, LAGO_GRADUATED_PERCENTAGE)
    assert response.status_code == 201, response.content
    assert Price.objects.get(pk=response.json()["id"]).model == "graduated_percentage"
    # $1,050 of volume: 1 % of $1,000 + $200, then 2 % of $50 + $300 (the Lago page's first two transactions).
    quote = _quote(api, response.json()["id"], quantity=105000).json()
    assert quote == {
        "amount": 51100,
        "currency": "usd",
        "breakdown": [
            {"tier": 1, "quantity": "100000", "unit": "0.01", "flat": 20000, "amount": 21000},
            {"tier": 2, "quantity": "5000", "unit": "0.02", "flat": 30000, "amount": 30100},
        ],
    }


def test_percentage_with_a_fee_per_event_is_quoted_from_its_events(api):
    meter = MeterFactory(aggregation="sum")
    response = _create(api, STRIPE_CARD, meter=meter.id)
    assert response.status_code == 201, response.content
    price_id = response.json()["id"]
    assert response.json()["name"] == "2.9% + $0.30 per event / month"
    # One $100 card charge: $2.90 + $0.30.
    assert _quote(api, price_id, events=["10000"]).json() == {
        "amount": 320,
        "currency": "usd",
        "breakdown": [
            {"tier": 1, "quantity": "10000", "unit": "0.029", "flat": 0, "amount": 290, "kind": "rate"},
            {"tier": 2, "quantity": "1", "unit": "30", "flat": 0, "amount": 30, "kind": "fixed_fee"},
        ],
    }
    # The volume alone cannot price a fee per event: a 400 naming quantity, not a guess.
    refused = _quote(api, price_id, quantity="10000")
    assert refused.status_code == 400
    assert (refused.json()["error"]["code"], refused.json()["error"]["param"]) == ("events_required", "quantity")


def test_percentage_free_events_or_free_amount_lago_example(api):
    meter = MeterFactory(aggregation="sum")
    price_id = _create(api, LAGO_PERCENTAGE, meter=meter.id).json()["id"]
    quote = _quote(api, price_id, events=[20000, 10000, 10000, 5000]).json()
    assert quote["amount"] == 70
    assert [(line["kind"], line["quantity"], line["amount"]) for line in quote["breakdown"]] == [
        ("free_value", "40000", 0),
        ("free_events", "3", 0),
        ("rate", "5000", 60),
        ("fixed_fee", "1", 10),
    ]


def test_percentage_per_event_bounds(api):
    meter = MeterFactory(aggregation="sum")
    amount = {**STRIPE_CARD, "fixed_fee": "0", "per_event_min": "50", "per_event_max": "500"}
    price_id = _create(api, amount, meter=meter.id).json()["id"]
    # 2.9 % of $1 is 2.9 cents (raised to the 50 minimum), of $100 is $2.90, of $1,000 is $29 (capped at $5).
    quote = _quote(api, price_id, events=["100", "10000", "100000"]).json()
    assert quote["amount"] == 50 + 290 + 500
    kinds = {line["kind"]: (line["quantity"], line["amount"]) for line in quote["breakdown"]}
    assert kinds == {"rate": ("10000", 290), "per_event_min": ("1", 50), "per_event_max": ("1", 500)}


@pytest.mark.parametrize(
    ("amount", "param", "code"),
    [
        ({**LAGO_PACKAGE, "package_size": 0}, "amount.package_size", "not_positive"),
        ({k: v for k, v in LAGO_PACKAGE.items() if k != "amount"}, "amount.amount", "missing"),
        ({**LAGO_PACKAGE, "free_units": "-1"}, "amount.free_units", "negative"),
        ({**LAGO_PACKAGE, "packageSize": 10}, "amount.packageSize", "unknown_field"),
        ({**STRIPE_CARD, "rate": "290"}, "amount.rate", "too_large"),
        ({k: v for k, v in STRIPE_CARD.items() if k != "rate"}, "amount.rate", "missing"),
        ({**STRIPE_CARD, "per_event_min": "100", "per_event_max": "10"}, "amount.per_event_max", "min_above_max"),
        ({**STRIPE_CARD, "free_units_per_events": 1.5}, "amount.free_units_per_events", "not_integer"),
        ({**STRIPE_CARD, "per_transaction_min_amount": "1"}, "amount.per_transaction_min_amount", "unknown_field"),
        (
            {
                "model": "graduated_percentage",
                "currency": "usd",
                "tiers": [{"up_to": 10, "rate": "1"}, {"up_to": 5, "rate": "1"}, {"rate": "1"}],
            },
            "amount.tiers[1].up_to",
            "up_to_not_increasing",
        ),
        ({**LAGO_GRADUATED_PERCENTAGE, "tiers": [{"up_to": None}]}, "amount.tiers[0].rate", "missing"),
        ({**LAGO_PACKAGE, "model": "packages"}, "amount.model", "invalid_choice"),
    ],
)
def test_bad_new_model_prices_are_400_naming_the_field(api, amount, param, code):
    response = _create(api, amount)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert (error["param"], error["code"]) == (param, code), error
    assert not Price.objects.exists()
    assert not BillingEvent.objects.exists()


def test_percentage_charging_per_event_needs_a_meter(api):
    response = _create(api, STRIPE_CARD)
    assert response.status_code == 400
    assert (response.json()["error"]["param"], response.json()["error"]["code"]) == ("meter", "meter_required")
    assert not Price.objects.exists()
    # A plain rate on the volume is priced from the volume alone: a licensed quantity will do.
    plain = _create(api, {"model": "percentage", "currency": "usd", "rate": "1.5"})
    assert plain.status_code == 201, plain.content
    assert _quote(api, plain.json()["id"], quantity="10000").json()["amount"] == 150


@pytest.mark.parametrize(
    ("body", "param"),
    [({}, "quantity"), ({"quantity": "1", "events": ["1"]}, "events"), ({"events": ["1", "-2"]}, "events")],
)
def test_quote_takes_exactly_one_of_quantity_or_events(api, body, param):
    price_id = _create(api, LAGO_PACKAGE).json()["id"]
    response = _quote(api, price_id, **body)
    assert response.status_code == 400, response.content
    assert response.json()["error"]["param"].startswith(param)
