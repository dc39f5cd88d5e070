from __future__ import annotations

import pytest

from catalog.models import Product
from catalog.tests.factories import ProductFactory
from webhooks.models import BillingEvent

pytestmark = pytest.mark.django_db


def test_create_returns_the_product_and_emits_an_event(api):
    body = {"name": "API calls", "description": "Metered API access", "metadata": {"tier": "pro", "rank": 2}}
    response = api.post("/api/v1/products", body, format="json")
    assert response.status_code == 201, response.content
    product = response.json()
    assert product["id"].startswith("prod_") and len(product["id"]) == 31
    assert product["object"] == "product"
    assert product["name"] == "API calls"
    assert product["description"] == "Metered API access"
    assert product["active"] is True
    assert product["metadata"] == {"tier": "pro", "rank": "2"}
    assert product["created_at"].endswith("Z") and product["updated_at"].endswith("Z")
    event = BillingEvent.objects.get(type="product.created")
    assert event.object_type == "product" and event.object_id == product["id"]
    assert event.data["name"] == "API calls"


def test_minimal_create_has_null_description(api):
    response = api.post("/api/v1/products", {"name": "Seats"}, format="json")
    assert response.status_code == 201
    assert response.json()["description"] is None


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({}, "name", "parameter_missing"),
        ({"name": ""}, "name", "parameter_missing"),
        ({"name": "x" * 256}, "name", "parameter_invalid"),
        ({"name": "A", "colour": "red"}, "colour", "unknown_field"),
        ({"name": "A", "metadata": {"k": {"nested": True}}}, "metadata", "parameter_invalid"),
        ({"name": "A", "active": "maybe"}, "active", "parameter_invalid"),
    ],
)
def test_bad_input_is_400_naming_the_field_and_writes_nothing(api, body, param, code):
    response = api.post("/api/v1/products", body, format="json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert (error["param"], error["code"]) == (param, code)
    assert not Product.objects.exists()
    assert not BillingEvent.objects.exists()


def test_get_and_unknown_id(api):
    product = ProductFactory()
    assert api.get(f"/api/v1/products/{product.id}").json()["id"] == product.id
    response = api.get("/api/v1/products/prod_nope")
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found"


def test_list_filters_by_active(api):
    old = ProductFactory(active=False)
    new = ProductFactory()
    body = api.get("/api/v1/products").json()
    assert {row["id"] for row in body["data"]} == {new.id, old.id}
    assert body["has_more"] is False
    assert [row["id"] for row in api.get("/api/v1/products", {"active": "false"}).json()["data"]] == [old.id]
    assert [row["id"] for row in api.get("/api/v1/products", {"active": "true"}).json()["data"]] == [new.id]
    for params in ({"active": "yes"}, {"colour": "red"}):
        response = api.get("/api/v1/products", params)
        assert response.status_code == 400
        assert response.json()["error"]["param"] == next(iter(params))


def test_patch_updates_archives_and_records_previous_attributes(api):
    product = ProductFactory(name="Old", metadata={"keep": "1", "drop": "2"})
    response = api.patch(
        f"/api/v1/products/{product.id}",
        {"name": "New", "active": False, "metadata": {"drop": None, "add": "3"}},
        format="json",
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["name"] == "New" and body["active"] is False
    assert body["metadata"] == {"keep": "1", "add": "3"}
    event = BillingEvent.objects.get(type="product.updated")
    assert event.previous_attributes == {"name": "Old", "active": True, "metadata": {"keep": "1", "drop": "2"}}
    # Reactivating is a PATCH too.
    assert api.patch(f"/api/v1/products/{product.id}", {"active": True}, format="json").json()["active"] is True


def test_patch_with_no_change_emits_nothing_and_bad_patch_changes_nothing(api):
    product = ProductFactory(name="Same")
    assert api.patch(f"/api/v1/products/{product.id}", {"name": "Same"}, format="json").status_code == 200
    response = api.patch(f"/api/v1/products/{product.id}", {"name": "", "description": "x"}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "name"
    product.refresh_from_db()
    assert product.description == ""
    assert not BillingEvent.objects.exists()
    assert api.patch("/api/v1/products/prod_nope", {"name": "x"}, format="json").status_code == 404


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/products", {"name": "A", "metadata": None}),
        ("/api/v1/coupons", {"percent_off": "5", "duration": "once", "metadata": None}),
        (
            "/api/v1/prices",
            {"type": "standalone", "duration": {"amount": 1, "unit": "day"}, "amount": {}, "metadata": None},
        ),
    ],
)
def test_null_metadata_is_a_400_not_a_500(api, path, body):
    response = api.post(path, body, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "metadata"
