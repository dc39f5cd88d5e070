from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from catalog.models import Coupon
from catalog.tests.factories import CouponFactory
from webhooks.models import BillingEvent

pytestmark = pytest.mark.django_db


def test_create_percent_coupon(api):
    redeem_by = (timezone.now() + timedelta(days=30)).replace(microsecond=0)
    response = api.post(
        "/api/v1/coupons",
        {
            "name": "Launch",
            "percent_off": "12.5",
            "duration": "repeating",
            "duration_in_periods": 3,
            "max_redemptions": 100,
            "redeem_by": redeem_by.isoformat(),
            "metadata": {"campaign": "launch"},
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    coupon = response.json()
    coupon.pop("created_at"), coupon.pop("updated_at")
    assert coupon == {
        "id": coupon["id"],
        "object": "coupon",
        "name": "Launch",
        "percent_off": "12.5",
        "amount_off": None,
        "currency": None,
        "duration": "repeating",
        "duration_in_periods": 3,
        "max_redemptions": 100,
        "redeem_by": redeem_by.isoformat().replace("+00:00", "Z"),
        "times_redeemed": 0,
        "active": True,
        "metadata": {"campaign": "launch"},
    }
    assert coupon["id"].startswith("cpn_")
    assert Coupon.objects.get().percent_off == Decimal("12.5")
    event = BillingEvent.objects.get(type="coupon.created")
    assert event.object_id == coupon["id"] and event.data["percent_off"] == "12.5"


@pytest.mark.parametrize(("percent", "shown"), [(100, "100"), ("0.0001", "0.0001"), (Decimal("33.3300"), "33.33")])
def test_percent_bounds_and_output(api, percent, shown):
    response = api.post("/api/v1/coupons", {"percent_off": percent, "duration": "forever"}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["percent_off"] == shown


def test_create_amount_coupon(api):
    response = api.post("/api/v1/coupons", {"amount_off": 500, "currency": "EUR", "duration": "once"}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["amount_off"], body["currency"], body["percent_off"]) == (500, "eur", None)
    assert body["name"] is None and body["duration_in_periods"] is None


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"percent_off": 0, "duration": "once"}, "percent_off", "parameter_invalid"),
        ({"percent_off": "100.01", "duration": "once"}, "percent_off", "parameter_invalid"),
        ({"percent_off": "-5", "duration": "once"}, "percent_off", "parameter_invalid"),
        ({"percent_off": "12.34567", "duration": "once"}, "percent_off", "parameter_invalid"),
        ({"percent_off": "lots", "duration": "once"}, "percent_off", "parameter_invalid"),
        (
            {"percent_off": "10", "amount_off": 100, "currency": "usd", "duration": "once"},
            "amount_off",
            "parameters_exclusive",
        ),
        ({"percent_off": "10", "currency": "usd", "duration": "once"}, "currency", "parameters_exclusive"),
        ({"duration": "once"}, "percent_off", "parameter_missing"),
        ({"amount_off": 100, "duration": "once"}, "currency", "parameter_missing"),
        ({"amount_off": 0, "currency": "usd", "duration": "once"}, "amount_off", "parameter_invalid"),
        ({"amount_off": "1.5", "currency": "usd", "duration": "once"}, "amount_off", "parameter_invalid"),
        ({"amount_off": 100, "currency": "usx", "duration": "once"}, "currency", "unknown_currency"),
        ({"percent_off": "10", "duration": "repeating"}, "duration_in_periods", "parameter_missing"),
        (
            {"percent_off": "10", "duration": "repeating", "duration_in_periods": 0},
            "duration_in_periods",
            "parameter_invalid",
        ),
        (
            {"percent_off": "10", "duration": "once", "duration_in_periods": 3},
            "duration_in_periods",
            "parameter_not_allowed",
        ),
        ({"percent_off": "10", "duration": "weekly"}, "duration", "parameter_invalid"),
        ({"percent_off": "10"}, "duration", "parameter_missing"),
        ({"percent_off": "10", "duration": "once", "max_redemptions": 0}, "max_redemptions", "parameter_invalid"),
        (
            {"percent_off": "10", "duration": "once", "redeem_by": "2001-01-01T00:00:00Z"},
            "redeem_by",
            "redeem_by_in_past",
        ),
        ({"percent_off": "10", "duration": "once", "redeem_by": "tomorrow"}, "redeem_by", "parameter_invalid"),
        ({"percent_off": "10", "duration": "once", "code": "SAVE10"}, "code", "unknown_field"),
    ],
)
def test_bad_coupon_is_400_naming_the_field_and_writes_nothing(api, body, param, code):
    response = api.post("/api/v1/coupons", body, format="json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert (error["param"], error["code"]) == (param, code), error
    assert not Coupon.objects.exists()
    assert not BillingEvent.objects.exists()


def test_get_list_filter_and_unknown_id(api):
    live = CouponFactory()
    archived = CouponFactory(active=False)
    assert api.get(f"/api/v1/coupons/{live.id}").json()["percent_off"] == "25"
    assert api.get("/api/v1/coupons/cpn_nope").status_code == 404
    assert {row["id"] for row in api.get("/api/v1/coupons").json()["data"]} == {archived.id, live.id}
    assert [row["id"] for row in api.get("/api/v1/coupons", {"active": "true"}).json()["data"]] == [live.id]
    assert api.get("/api/v1/coupons", {"duration": "once"}).status_code == 400


def test_patch_changes_the_mutable_fields(api):
    coupon = CouponFactory(name="Old", max_redemptions=5)
    redeem_by = (timezone.now() + timedelta(days=1)).replace(microsecond=0)
    response = api.patch(
        f"/api/v1/coupons/{coupon.id}",
        {"name": "New", "active": False, "max_redemptions": None, "redeem_by": redeem_by.isoformat()},
        format="json",
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["name"], body["active"], body["max_redemptions"]) == ("New", False, None)
    event = BillingEvent.objects.get(type="coupon.updated")
    assert event.previous_attributes == {"name": "Old", "active": True, "max_redemptions": 5, "redeem_by": None}


def test_patch_refuses_limits_below_what_was_redeemed_and_past_dates(api):
    coupon = CouponFactory(max_redemptions=10, times_redeemed=4)
    response = api.patch(f"/api/v1/coupons/{coupon.id}", {"max_redemptions": 3}, format="json")
    assert response.status_code == 400 and response.json()["error"]["param"] == "max_redemptions"
    response = api.patch(f"/api/v1/coupons/{coupon.id}", {"redeem_by": "2001-01-01T00:00:00Z"}, format="json")
    assert response.status_code == 400 and response.json()["error"]["code"] == "redeem_by_in_past"
    assert not BillingEvent.objects.exists()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("percent_off", "50"),
        ("amount_off", 100),
        ("currency", "usd"),
        ("duration", "forever"),
        ("duration_in_periods", 2),
        ("percent_off", None),
    ],
)
def test_discount_terms_are_immutable(api, field, value):
    coupon = CouponFactory()
    response = api.patch(f"/api/v1/coupons/{coupon.id}", {field: value}, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["param"], error["code"]) == (field, "immutable")
    coupon.refresh_from_db()
    assert coupon.percent_off == Decimal("25")
