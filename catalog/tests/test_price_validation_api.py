"""Every price rule through the API: a 400 that names the field (the engine's path, tiers 0-based as in
the request) and the engine's code, with nothing written."""

from __future__ import annotations

import pytest

from catalog.models import Price
from catalog.tests.factories import ProductFactory
from webhooks.models import BillingEvent

pytestmark = pytest.mark.django_db

FIXED = {"model": "fixed", "currency": "usd", "unit": "1000", "flat": 0}
OPEN = {"up_to": None, "unit": "0.1", "flat": 0}


def tiered(*tiers, **extra):
    return {"model": "tiered", "currency": "usd", "mode": "graduated", "tiers": list(tiers), **extra}


MISSING = object()  # the key is left out of the body
BASE = {"type": "standalone", "duration": {"amount": 1, "unit": "month"}, "amount": FIXED}

CASES = [
    # the amount (pricing engine)
    ("no tiers", {"amount": tiered()}, "amount.tiers", "tiers_empty"),
    ("tiers missing", {"amount": {"model": "tiered", "currency": "usd", "mode": "total"}}, "amount.tiers", "missing"),
    (
        "bounded last tier",
        {"amount": tiered({"up_to": 10, "unit": "1"}, {"up_to": 20, "unit": "1"})},
        "amount.tiers[1].up_to",
        "last_tier_bounded",
    ),
    (
        "non-increasing up_to",
        {"amount": tiered({"up_to": 10, "unit": "1"}, {"up_to": 10, "unit": "1"}, OPEN)},
        "amount.tiers[1].up_to",
        "up_to_not_increasing",
    ),
    (
        "decreasing up_to",
        {"amount": tiered({"up_to": 10, "unit": "1"}, {"up_to": 5, "unit": "1"}, OPEN)},
        "amount.tiers[1].up_to",
        "up_to_not_increasing",
    ),
    (
        "open tier not last",
        {"amount": tiered(OPEN, {"up_to": 5, "unit": "1"})},
        "amount.tiers[0].up_to",
        "unbounded_tier_not_last",
    ),
    (
        "up_to beyond 64 bits",
        {"amount": tiered({"up_to": str(2**63), "unit": "1"}, OPEN)},
        "amount.tiers[0].up_to",
        "too_large",
    ),
    ("up_to zero", {"amount": tiered({"up_to": 0, "unit": "1"}, OPEN)}, "amount.tiers[0].up_to", "up_to_not_positive"),
    ("negative unit", {"amount": {**FIXED, "unit": "-1"}}, "amount.unit", "negative"),
    ("negative flat", {"amount": {**FIXED, "flat": -5}}, "amount.flat", "negative"),
    ("negative tier unit", {"amount": tiered({"up_to": 5, "unit": "-0.1"}, OPEN)}, "amount.tiers[0].unit", "negative"),
    ("negative tier flat", {"amount": tiered({"up_to": 5, "flat": -1}, OPEN)}, "amount.tiers[0].flat", "negative"),
    ("13 decimals", {"amount": {**FIXED, "unit": "0.0000000000001"}}, "amount.unit", "too_many_decimals"),
    (
        "13 decimals in a tier",
        {"amount": tiered({"up_to": 5, "unit": "1"}, {**OPEN, "unit": "1.1234567890123"})},
        "amount.tiers[1].unit",
        "too_many_decimals",
    ),
    ("fractional flat", {"amount": {**FIXED, "flat": "1.5"}}, "amount.flat", "not_integer"),
    ("unit not a number", {"amount": {**FIXED, "unit": "ten"}}, "amount.unit", "invalid_number"),
    ("unit with exponent", {"amount": {**FIXED, "unit": "1e3"}}, "amount.unit", "invalid_number"),
    ("unknown currency", {"amount": {**FIXED, "currency": "usx"}}, "amount.currency", "unknown_currency"),
    ("currency missing", {"amount": {"model": "fixed", "unit": "1"}}, "amount.currency", "missing"),
    ("mode missing", {"amount": {"model": "tiered", "currency": "usd", "tiers": [OPEN]}}, "amount.mode", "missing"),
    ("mode invalid", {"amount": tiered(OPEN, mode="flat")}, "amount.mode", "invalid_choice"),
    ("mode on fixed", {"amount": {**FIXED, "mode": "total"}}, "amount.mode", "mode_on_fixed"),
    ("unit on both levels", {"amount": tiered(OPEN, unit="1")}, "amount.unit", "price_on_both_levels"),
    ("flat on both levels", {"amount": tiered(OPEN, flat=100)}, "amount.flat", "price_on_both_levels"),
    ("model missing", {"amount": {"currency": "usd", "unit": "1"}}, "amount.model", "missing"),
    ("model invalid", {"amount": {**FIXED, "model": "metered"}}, "amount.model", "invalid_choice"),
    ("camelCase upTo", {"amount": tiered({"upTo": 5, "unit": "1"}, OPEN)}, "amount.tiers[0].upTo", "unknown_field"),
    ("amount not an object", {"amount": [FIXED]}, "amount", "parameter_invalid"),
    ("amount null", {"amount": None}, "amount", "parameter_missing"),
    # type and product
    ("product type without product", {"type": "product"}, "product", "parameter_missing"),
    ("standalone with product", {"product": "prod_x"}, "product", "product_not_allowed"),
    ("unknown product", {"type": "product", "product": "prod_missing"}, "product", "resource_missing"),
    ("type invalid", {"type": "bundle"}, "type", "parameter_invalid"),
    ("type missing", {"type": MISSING}, "type", "parameter_missing"),
    # duration
    ("duration unit invalid", {"duration": {"amount": 1, "unit": "fortnight"}}, "duration.unit", "parameter_invalid"),
    ("duration amount 0", {"duration": {"amount": 0, "unit": "month"}}, "duration.amount", "parameter_invalid"),
    (
        "duration amount fraction",
        {"duration": {"amount": "1.5", "unit": "day"}},
        "duration.amount",
        "parameter_invalid",
    ),
    ("duration over 3 years", {"duration": {"amount": 37, "unit": "month"}}, "duration.amount", "duration_too_long"),
    (
        "duration unknown key",
        {"duration": {"amount": 1, "unit": "month", "anchor": 1}},
        "duration.anchor",
        "unknown_field",
    ),
    ("duration missing", {"duration": MISSING}, "duration", "parameter_missing"),
    # the rest of the body
    ("unknown field", {"interval": "month"}, "interval", "unknown_field"),
    ("lookup_key too long", {"lookup_key": "k" * 201}, "lookup_key", "parameter_invalid"),
    ("metadata not an object", {"metadata": "x"}, "metadata", "parameter_invalid"),
]


@pytest.mark.parametrize(("case", "changes", "param", "code"), CASES, ids=[case[0] for case in CASES])
def test_bad_price_is_400_naming_the_field_and_writes_nothing(api, case, changes, param, code):
    body = {**BASE, **changes}
    body = {key: value for key, value in body.items() if value is not MISSING}
    response = api.post("/api/v1/prices", body, format="json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["type"] == "invalid_request"
    assert (error["param"], error["code"]) == (param, code), error
    assert error["message"]
    assert not Price.objects.exists()
    assert not BillingEvent.objects.exists()


def test_unknown_product_is_a_400_not_a_404_of_the_route(api):
    ProductFactory()
    response = api.post("/api/v1/prices", {**BASE, "type": "product", "product": "prod_missing"}, format="json")
    assert response.status_code == 400
    assert "prod_missing" in response.json()["error"]["message"]


def test_a_valid_body_passes_the_same_checks(api):
    # Guards the table above: each case fails for its own reason, not because BASE is broken.
    assert api.post("/api/v1/prices", BASE, format="json").status_code == 201
