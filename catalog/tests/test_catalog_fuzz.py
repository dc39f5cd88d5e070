"""Arbitrary JSON into the catalog's write endpoints: a 201 or a 4xx in the envelope, never a 5xx, and a
created price always reads back (a row that cannot be rendered would break every list after it)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from catalog.tests.factories import CouponFactory, PriceFactory

pytestmark = pytest.mark.django_db

numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.decimals(allow_nan=False, allow_infinity=False, places=14),
    st.sampled_from(["0", "1", "0.5", "-1", "1e3", "NaN", "", " 1", "9" * 30, "0." + "0" * 11 + "1"]),
    st.booleans(),
    st.none(),
)
scalars = st.one_of(numbers, st.text(max_size=8), st.sampled_from(["usd", "JPY", "kwd", "fixed", "tiered"]))
tier = st.fixed_dictionaries({}, optional={"up_to": numbers, "unit": numbers, "flat": numbers, "upTo": numbers})
amount = st.one_of(
    st.fixed_dictionaries(
        {"model": st.sampled_from(["fixed", "tiered", "other"]), "currency": st.sampled_from(["usd", "jpy", "xx"])},
        optional={
            "unit": numbers,
            "flat": numbers,
            "mode": st.sampled_from(["graduated", "total", "x", None]),
            "tiers": st.one_of(st.lists(tier, max_size=4), scalars),
        },
    ),
    scalars,
)
price_bodies = st.fixed_dictionaries(
    {"amount": amount},
    optional={
        "type": st.sampled_from(["standalone", "product", "x"]),
        "duration": st.one_of(
            st.fixed_dictionaries({}, optional={"amount": numbers, "unit": st.sampled_from(["day", "year", "x"])}),
            scalars,
        ),
        "name": scalars,
        "lookup_key": scalars,
        "meter": scalars,
        "metadata": st.one_of(st.dictionaries(st.text(max_size=3), scalars, max_size=3), scalars),
    },
)
coupon_bodies = st.fixed_dictionaries(
    {},
    optional={
        "percent_off": numbers,
        "amount_off": numbers,
        "currency": scalars,
        "duration": st.sampled_from(["once", "repeating", "forever", "x"]),
        "duration_in_periods": numbers,
        "max_redemptions": numbers,
        "redeem_by": st.one_of(scalars, st.just("2099-01-01T00:00:00Z")),
    },
)

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _check(response) -> None:
    assert response.status_code < 500, response.content
    if response.status_code >= 400:
        assert set(response.json()["error"]) >= {"type", "code", "message", "param"}


@FUZZ
@given(body=price_bodies)
def test_price_create_never_fails_with_a_5xx(api, body):
    response = api.post(
        "/api/v1/prices", {"type": "standalone", "duration": {"amount": 1, "unit": "month"}, **body}, format="json"
    )
    _check(response)
    if response.status_code == 201:
        _check(api.get(f"/api/v1/prices/{response.json()['id']}"))
        _check(api.get("/api/v1/prices"))


@FUZZ
@given(body=coupon_bodies)
def test_coupon_create_never_fails_with_a_5xx(api, body):
    response = api.post("/api/v1/coupons", body, format="json")
    _check(response)
    if response.status_code == 201:
        _check(api.get(f"/api/v1/coupons/{response.json()['id']}"))


@FUZZ
@given(quantity=st.one_of(numbers, scalars, st.lists(numbers, max_size=2)))
def test_quote_never_fails_with_a_5xx(api, quantity):
    price = PriceFactory(graduated=True)
    _check(api.post(f"/api/v1/prices/{price.id}/quote", {"quantity": quantity}, format="json"))
    _check(api.post(f"/api/v1/prices/{price.id}/quote", {"quantity": Decimal(1)}, format="json"))


price_patches = st.fixed_dictionaries(
    {},
    optional={
        "name": scalars,
        "description": scalars,
        "lookup_key": scalars,
        "active": scalars,
        "metadata": st.one_of(st.dictionaries(st.text(max_size=3), scalars, max_size=3), scalars),
        "amount": scalars,
    },
)
coupon_patches = st.fixed_dictionaries(
    {},
    optional={
        "name": scalars,
        "active": scalars,
        "max_redemptions": numbers,
        "redeem_by": st.one_of(scalars, st.just("2099-01-01T00:00:00Z")),
        "metadata": st.one_of(st.dictionaries(st.text(max_size=3), scalars, max_size=3), scalars),
        "duration": scalars,
    },
)


@FUZZ
@given(body=price_patches)
def test_price_patch_never_fails_with_a_5xx(api, body):
    price = PriceFactory(graduated=True)
    _check(api.patch(f"/api/v1/prices/{price.id}", body, format="json"))
    _check(api.get(f"/api/v1/prices/{price.id}"))


@FUZZ
@given(body=coupon_patches)
def test_coupon_patch_never_fails_with_a_5xx(api, body):
    coupon = CouponFactory(max_redemptions=3)
    _check(api.patch(f"/api/v1/coupons/{coupon.id}", body, format="json"))
    _check(api.get(f"/api/v1/coupons/{coupon.id}"))
