from __future__ import annotations

import pytest

from customers.models import Customer
from customers.tests.factories import CustomerFactory
from webhooks.models import BillingEvent

pytestmark = pytest.mark.django_db

FULL = {
    "external_id": "tenant-1",
    "name": "Acme",
    "email": "billing@acme.example",
    "currency": "USD",
    "address": {"line1": "1 Main St", "city": "Springfield", "state": "IL", "postal_code": "62701", "country": "us"},
    "tax_exempt": "none",
    "metadata": {"plan": "gold", "seats": 5},
}


def test_create_returns_the_customer(api):
    response = api.post("/api/v1/customers", FULL, format="json")
    assert response.status_code == 201
    body = response.json()
    assert body["id"].startswith("cus_") and len(body["id"]) == 30
    assert body["object"] == "customer"
    assert body["external_id"] == "tenant-1"
    assert body["currency"] == "usd"
    assert body["address"]["country"] == "US"
    assert body["address"]["line2"] is None
    assert body["metadata"] == {"plan": "gold", "seats": "5"}
    assert body["status"] == "active"
    assert body["created_at"].endswith("Z")
    event = BillingEvent.objects.get(type="customer.created")
    assert event.object_id == body["id"] and event.customer_id == body["id"]
    assert event.data["external_id"] == "tenant-1"


def test_minimal_create(api):
    response = api.post("/api/v1/customers", {"external_id": "t-min"}, format="json")
    assert response.status_code == 201
    assert response.json()["email"] is None and response.json()["currency"] is None


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"name": "no id"}, "external_id", "parameter_missing"),
        ({"external_id": ""}, "external_id", "parameter_missing"),
        ({"external_id": "t", "email": "not-an-email"}, "email", "parameter_invalid"),
        ({"external_id": "t", "currency": "usdx"}, "currency", "unknown_currency"),
        ({"external_id": "t", "currency": "abc"}, "currency", "unknown_currency"),
        ({"external_id": "t", "address": {"country": "XX"}}, "address.country", "unknown_country"),
        ({"external_id": "t", "address": {"country": "USA"}}, "address.country", "unknown_country"),
        ({"external_id": "t", "address": {"planet": "Mars"}}, "address.planet", "unknown_field"),
        ({"external_id": "t", "tax_exempt": "sometimes"}, "tax_exempt", "parameter_invalid"),
        ({"external_id": "t", "metadata": ["a"]}, "metadata", "parameter_invalid"),
        ({"external_id": "t", "metadata": {"k": {"nested": 1}}}, "metadata", "parameter_invalid"),
        ({"external_id": "x" * 256}, "external_id", "parameter_invalid"),
    ],
)
def test_bad_input_is_400_naming_the_field_and_writes_nothing(api, body, param, code):
    response = api.post("/api/v1/customers", body, format="json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["param"] == param
    assert error["code"] == code
    assert not Customer.objects.exists()
    assert not BillingEvent.objects.exists()


def test_duplicate_external_id_is_409(api):
    existing = CustomerFactory(external_id="tenant-dup")
    response = api.post("/api/v1/customers", {"external_id": "tenant-dup"}, format="json")
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "customer_exists"
    assert error["param"] == "external_id"
    assert error["customer"] == existing.id
    assert Customer.objects.count() == 1


def test_get_and_unknown_id(api):
    customer = CustomerFactory()
    assert api.get(f"/api/v1/customers/{customer.id}").json()["id"] == customer.id
    response = api.get("/api/v1/customers/cus_doesnotexist")
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found"


def test_list_filters_by_external_id_and_status(api):
    a = CustomerFactory(external_id="a")
    CustomerFactory(external_id="b", status=Customer.Status.DEACTIVATED)
    body = api.get("/api/v1/customers", {"external_id": "a"}).json()
    assert [row["id"] for row in body["data"]] == [a.id]
    body = api.get("/api/v1/customers", {"status": "deactivated"}).json()
    assert [row["external_id"] for row in body["data"]] == ["b"]
    response = api.get("/api/v1/customers", {"status": "deleted"})
    assert response.status_code == 400 and response.json()["error"]["param"] == "status"


def test_patch_updates_and_records_previous_attributes(api):
    customer = CustomerFactory(name="Old", metadata={"keep": "1", "drop": "2"})
    response = api.patch(
        f"/api/v1/customers/{customer.id}",
        {"name": "New", "metadata": {"drop": None, "add": "3"}, "address": {"country": "DE", "city": "Berlin"}},
        format="json",
    )
    assert response.status_code == 200
    body = response.json()
    assert body["name"] == "New"
    assert body["metadata"] == {"keep": "1", "add": "3"}
    assert body["address"]["country"] == "DE" and body["address"]["city"] == "Berlin"
    event = BillingEvent.objects.get(type="customer.updated")
    assert event.previous_attributes["name"] == "Old"
    assert set(event.previous_attributes) == {"name", "metadata", "address"}


def test_patch_with_no_change_emits_nothing(api):
    customer = CustomerFactory(name="Same")
    assert api.patch(f"/api/v1/customers/{customer.id}", {"name": "Same"}, format="json").status_code == 200
    assert not BillingEvent.objects.filter(type="customer.updated").exists()


def test_patch_refuses_external_id_and_bad_values(api):
    customer = CustomerFactory()
    response = api.patch(f"/api/v1/customers/{customer.id}", {"external_id": "other"}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "external_id"
    assert response.json()["error"]["code"] == "immutable"
    response = api.patch(f"/api/v1/customers/{customer.id}", {"email": "bad", "name": "X"}, format="json")
    assert response.status_code == 400
    customer.refresh_from_db()
    assert customer.name != "X"


def test_delete_is_soft(api):
    customer = CustomerFactory()
    assert api.delete(f"/api/v1/customers/{customer.id}").status_code == 204
    assert api.get(f"/api/v1/customers/{customer.id}").status_code == 404
    assert api.delete(f"/api/v1/customers/{customer.id}").status_code == 404
    assert api.get("/api/v1/customers").json()["data"] == []
    row = Customer.objects.get(pk=customer.id)
    assert row.status == "deleted" and row.deleted_at is not None
    assert BillingEvent.objects.filter(type="customer.deleted", object_id=customer.id).count() == 1


def test_deleted_external_id_is_not_silently_reused(api):
    customer = CustomerFactory(external_id="tenant-gone")
    api.delete(f"/api/v1/customers/{customer.id}")
    response = api.post("/api/v1/customers", {"external_id": "tenant-gone"}, format="json")
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "customer_deleted"
    assert f"/customers/{customer.id}/restore" in error["message"]
    assert f"/customers/{customer.id}/purge" in error["message"]


def test_restore_brings_a_deleted_customer_back(api):
    customer = CustomerFactory()
    api.delete(f"/api/v1/customers/{customer.id}")
    response = api.post(f"/api/v1/customers/{customer.id}/restore")
    assert response.status_code == 200
    assert response.json()["status"] == "active"
    assert api.get(f"/api/v1/customers/{customer.id}").status_code == 200
    assert api.post(f"/api/v1/customers/{customer.id}/restore").json()["error"]["code"] == "customer_not_deleted"


def test_purge_erases_personal_data_and_frees_the_external_id(api):
    customer = CustomerFactory(external_id="tenant-p", email="p@example.com")
    api.post(f"/api/v1/customers/{customer.id}/users", {"email": "u@example.com"}, format="json")
    assert api.post(f"/api/v1/customers/{customer.id}/purge").status_code == 409  # must delete first
    api.delete(f"/api/v1/customers/{customer.id}")
    assert api.post(f"/api/v1/customers/{customer.id}/purge").status_code == 200
    row = Customer.objects.get(pk=customer.id)
    assert row.email == "" and row.external_id == f"purged:{customer.id}"
    assert row.users.get().email == ""
    assert api.post(f"/api/v1/customers/{customer.id}/restore").json()["error"]["code"] == "customer_purged"
    response = api.post("/api/v1/customers", {"external_id": "tenant-p"}, format="json")
    assert response.status_code == 201
    assert response.json()["id"] != customer.id


def test_a_customer_created_without_a_name_reads_null_not_empty(api):
    body = api.post("/api/v1/customers", {"external_id": "tenant-nameless"}, format="json").json()
    assert body["name"] is None
    assert api.get(f"/api/v1/customers/{body['id']}").json()["name"] is None
