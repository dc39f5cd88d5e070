"""The tier -> plan table: /api/v1/tiers (billing:read / billing:write), validated against the catalog."""

from __future__ import annotations

import pytest

from subscriptions.models import Tier
from subscriptions.tests.support import fixed_price, metered_price
from webhooks.models import BillingEvent

pytestmark = pytest.mark.django_db

URL = "/api/v1/tiers"


@pytest.fixture
def prices():
    seat = fixed_price("2500")
    seat.lookup_key = "basic-seat"
    seat.save()
    calls = metered_price("apiCalls")
    calls.lookup_key = "basic-calls"
    calls.save()
    euro = fixed_price("900", currency="eur")
    euro.lookup_key = "euro-seat"
    euro.save()
    return seat, calls


def body(**changes):
    return {
        "name": "basic",
        "items": [{"lookup_key": "basic-seat", "quantity": "2"}, {"lookup_key": "basic-calls"}],
        "trial_days": 14,
        **changes,
    }


def test_create_read_list_and_update_a_tier(api, prices):
    created = api.post(URL, body(metadata={"plan": "b"}), format="json")
    assert created.status_code == 201, created.json()
    tier = created.json()
    assert tier["id"].startswith("tier_") and tier["object"] == "tier"
    assert tier["items"] == [
        {"lookup_key": "basic-seat", "quantity": "2"},
        {"lookup_key": "basic-calls", "quantity": None},
    ]
    assert (tier["trial_days"], tier["billing_mode"], tier["collection_method"], tier["active"]) == (
        14,
        "native",
        "charge_automatically",
        True,
    )
    assert api.get(f"{URL}/{tier['id']}").json() == tier
    assert [t["id"] for t in api.get(URL, {"name": "BASIC"}).json()["data"]] == [tier["id"]]

    updated = api.patch(
        f"{URL}/{tier['id']}", {"items": [{"lookup_key": "basic-seat"}], "billing_mode": "provider"}, format="json"
    )
    assert updated.status_code == 200
    assert updated.json()["items"] == [{"lookup_key": "basic-seat", "quantity": None}]
    assert updated.json()["billing_mode"] == "provider" and updated.json()["trial_days"] == 14
    assert api.patch(f"{URL}/{tier['id']}", {"active": False}, format="json").json()["active"] is False
    assert list(BillingEvent.objects.filter(object_id=tier["id"]).values_list("type", flat=True).order_by("id")) == [
        "tier.created",
        "tier.updated",
        "tier.updated",
    ]


@pytest.mark.parametrize(
    ("changes", "status", "code", "param"),
    [
        ({"items": [{"lookup_key": "nope"}]}, 400, "lookup_key_not_found", "items[0].lookup_key"),
        ({"items": []}, 400, "parameter_invalid", "items"),
        (
            {"items": [{"lookup_key": "basic-seat"}, {"lookup_key": "basic-seat"}]},
            400,
            "duplicate_lookup_key",
            "items[1].lookup_key",
        ),
        (
            {"items": [{"lookup_key": "basic-seat"}, {"lookup_key": "euro-seat"}]},
            400,
            "currency_mismatch",
            "items[1].price",
        ),
        ({"items": [{"lookup_key": "basic-calls", "quantity": "3"}]}, 400, "quantity_not_allowed", "items[0].quantity"),
        ({"trial_days": 731}, 400, "parameter_invalid", "trial_days"),
        ({"trial_days": 1.5}, 400, "parameter_invalid", "trial_days"),
        ({"billing_mode": "magic"}, 400, "parameter_invalid", "billing_mode"),
        ({"tier": "typo"}, 400, "unknown_field", "tier"),
        ({"name": ""}, 400, "parameter_missing", "name"),
    ],
)
def test_bad_input_is_a_400_naming_the_field_and_writes_nothing(api, prices, changes, status, code, param):
    response = api.post(URL, body(**changes), format="json")
    assert response.status_code == status, response.json()
    assert (response.json()["error"]["code"], response.json()["error"]["param"]) == (code, param)
    assert not Tier.objects.exists()


def test_names_are_unique_whatever_their_case(api, prices):
    assert api.post(URL, body(), format="json").status_code == 201
    second = api.post(URL, body(name="BASIC"), format="json")
    assert second.status_code == 409 and second.json()["error"]["code"] == "tier_exists"
    other = api.post(URL, body(name="premium"), format="json").json()
    clash = api.patch(f"{URL}/{other['id']}", {"name": "Basic"}, format="json")
    assert clash.status_code == 409


def test_scopes(make_client, prices):
    reader = make_client("billing:read")
    assert reader.get(URL).status_code == 200
    assert reader.post(URL, body(), format="json").status_code == 403
    assert make_client("customers:write").get(URL).status_code == 403
    assert make_client("billing:write").post(URL, body(), format="json").status_code == 201


def test_unknown_tier_id_is_404(api):
    assert api.get(f"{URL}/tier_nope").status_code == 404
    assert api.patch(f"{URL}/tier_nope", {"active": False}, format="json").status_code == 404
