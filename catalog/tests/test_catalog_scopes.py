"""Who may do what in the catalog: catalog:read reads and quotes, catalog:write writes, others nothing."""

from __future__ import annotations

import pytest

from catalog.tests.factories import CouponFactory, PriceFactory

pytestmark = pytest.mark.django_db

CREATE_BODIES = {
    "/api/v1/products": {"name": "P"},
    "/api/v1/prices": {
        "type": "standalone",
        "duration": {"amount": 1, "unit": "month"},
        "amount": {"model": "fixed", "currency": "usd", "unit": "1"},
    },
    "/api/v1/coupons": {"percent_off": "10", "duration": "once"},
}


def _reads(price, coupon):
    return [
        "/api/v1/products",
        f"/api/v1/products/{price.product_id}",
        "/api/v1/prices",
        f"/api/v1/prices/{price.id}",
        "/api/v1/coupons",
        f"/api/v1/coupons/{coupon.id}",
    ]


def test_catalog_read_reads_and_quotes_but_cannot_write(make_client):
    price, coupon = PriceFactory(), CouponFactory()
    client = make_client("catalog:read")
    for path in _reads(price, coupon):
        assert client.get(path).status_code == 200, path
    assert client.post(f"/api/v1/prices/{price.id}/quote", {"quantity": "2"}, format="json").status_code == 200
    for path, body in CREATE_BODIES.items():
        response = client.post(path, body, format="json")
        assert response.status_code == 403, path
        assert response.json()["error"]["code"] == "missing_scope"
        assert response.json()["error"]["scope"] == "catalog:write"
    for path in (f"/api/v1/products/{price.product_id}", f"/api/v1/prices/{price.id}", f"/api/v1/coupons/{coupon.id}"):
        assert client.patch(path, {"active": False}, format="json").status_code == 403, path


def test_catalog_write_writes(make_client):
    client = make_client("catalog:write")
    for path, body in CREATE_BODIES.items():
        assert client.post(path, body, format="json").status_code == 201, path


def test_the_quote_needs_read_not_write(make_client):
    price = PriceFactory()
    response = make_client("catalog:write").post(f"/api/v1/prices/{price.id}/quote", {"quantity": "1"}, format="json")
    assert response.status_code == 403
    assert response.json()["error"]["scope"] == "catalog:read"


def test_customer_scopes_cannot_touch_the_catalog(make_client):
    price, coupon = PriceFactory(), CouponFactory()
    client = make_client("customers:read", "customers:write")
    for path in _reads(price, coupon):
        assert client.get(path).status_code == 403, path
    assert client.post(f"/api/v1/prices/{price.id}/quote", {"quantity": "1"}, format="json").status_code == 403
    for path, body in CREATE_BODIES.items():
        assert client.post(path, body, format="json").status_code == 403, path


def test_no_key_is_401(client):
    assert client.get("/api/v1/prices").status_code == 401
