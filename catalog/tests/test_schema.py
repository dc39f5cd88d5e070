from __future__ import annotations

import pytest
import yaml
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


def test_schema_describes_the_catalog():
    schema = yaml.safe_load(APIClient().get("/api/schema/").content)
    paths = schema["paths"]
    expected = {
        "/api/v1/products": {"get": "products_list", "post": "products_create"},
        "/api/v1/products/{product_id}": {"get": "products_retrieve", "patch": "products_update"},
        "/api/v1/prices": {"get": "prices_list", "post": "prices_create"},
        "/api/v1/prices/{price_id}": {"get": "prices_retrieve", "patch": "prices_update"},
        "/api/v1/prices/{price_id}/quote": {"post": "prices_quote"},
        "/api/v1/coupons": {"get": "coupons_list", "post": "coupons_create"},
        "/api/v1/coupons/{coupon_id}": {"get": "coupons_retrieve", "patch": "coupons_update"},
    }
    for path, operations in expected.items():
        assert path in paths, path
        assert {method: op["operationId"] for method, op in paths[path].items() if method != "parameters"} == operations
    ids = [op["operationId"] for item in paths.values() for op in item.values() if isinstance(op, dict)]
    assert len(ids) == len(set(ids))
    amount = schema["components"]["schemas"]["AmountDoc"]["properties"]
    assert set(amount) == {
        *("model", "currency", "unit", "flat", "mode", "tiers"),
        *("package_size", "amount", "free_units"),
        *("rate", "fixed_fee", "free_units_per_events", "free_amount", "per_event_min", "per_event_max"),
    }
