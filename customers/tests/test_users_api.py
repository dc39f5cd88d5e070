from __future__ import annotations

import pytest

from customers.models import CustomerUser
from customers.tests.factories import CustomerFactory, CustomerUserFactory
from webhooks.models import BillingEvent

pytestmark = pytest.mark.django_db


def test_create_and_list_users(api):
    customer = CustomerFactory()
    response = api.post(
        f"/api/v1/customers/{customer.id}/users",
        {"external_id": "u1", "email": "ada@example.com", "name": "Ada"},
        format="json",
    )
    assert response.status_code == 201
    user = response.json()
    assert user["id"].startswith("usr_")
    assert user["customer"] == customer.id
    assert user["status"] == "enabled"
    listing = api.get(f"/api/v1/customers/{customer.id}/users").json()
    assert [u["id"] for u in listing["data"]] == [user["id"]]
    assert BillingEvent.objects.filter(type="customer_user.created", customer_id=customer.id).count() == 1


@pytest.mark.parametrize(
    ("body", "param"),
    [({}, "email"), ({"email": "nope"}, "email"), ({"email": "a@b.co", "role": "x"}, "role")],
)
def test_bad_user_input_is_400(api, body, param):
    customer = CustomerFactory()
    response = api.post(f"/api/v1/customers/{customer.id}/users", body, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    assert not CustomerUser.objects.exists()


def test_user_on_unknown_or_deleted_customer_is_404(api):
    assert api.post("/api/v1/customers/cus_nope/users", {"email": "a@b.co"}, format="json").status_code == 404
    customer = CustomerFactory()
    api.delete(f"/api/v1/customers/{customer.id}")
    response = api.post(f"/api/v1/customers/{customer.id}/users", {"email": "a@b.co"}, format="json")
    assert response.status_code == 404


def test_duplicate_user_is_409_naming_the_field(api):
    customer = CustomerFactory()
    url = f"/api/v1/customers/{customer.id}/users"
    api.post(url, {"external_id": "u1", "email": "a@example.com"}, format="json")
    response = api.post(url, {"external_id": "u1", "email": "other@example.com"}, format="json")
    assert response.status_code == 409
    assert response.json()["error"]["param"] == "external_id"
    response = api.post(url, {"external_id": "u2", "email": "a@example.com"}, format="json")
    assert response.status_code == 409
    assert response.json()["error"]["param"] == "email"
    # The same e-mail under another customer is fine.
    other = CustomerFactory()
    assert api.post(f"/api/v1/customers/{other.id}/users", {"email": "a@example.com"}, format="json").status_code == 201


def test_get_patch_delete_user(api):
    user = CustomerUserFactory()
    url = f"/api/v1/users/{user.id}"
    assert api.get(url).json()["email"] == user.email
    response = api.patch(url, {"name": "Renamed"}, format="json")
    assert response.status_code == 200 and response.json()["name"] == "Renamed"
    assert api.patch(url, {"email": "bad"}, format="json").status_code == 400
    assert api.delete(url).status_code == 204
    assert api.get(url).status_code == 404
    assert CustomerUser.objects.get(pk=user.id).deleted_at is not None
    assert api.get("/api/v1/users/usr_unknown").status_code == 404


def test_deleted_user_external_id_can_return(api):
    user = CustomerUserFactory(external_id="u-back")
    api.delete(f"/api/v1/users/{user.id}")
    response = api.post(
        f"/api/v1/customers/{user.customer_id}/users", {"external_id": "u-back", "email": user.email}, format="json"
    )
    assert response.status_code == 201


def test_disable_and_enable(api):
    user = CustomerUserFactory()
    assert api.post(f"/api/v1/users/{user.id}/disable").json()["status"] == "disabled"
    assert api.post(f"/api/v1/users/{user.id}/disable").json()["status"] == "disabled"  # a repeat is a no-op
    assert BillingEvent.objects.filter(type="customer_user.disabled").count() == 1
    listing = api.get(f"/api/v1/customers/{user.customer_id}/users", {"status": "disabled"}).json()
    assert [u["id"] for u in listing["data"]] == [user.id]
    assert api.post(f"/api/v1/users/{user.id}/enable").json()["status"] == "enabled"
    assert BillingEvent.objects.filter(type="customer_user.enabled").count() == 1


def test_users_need_customer_scopes(make_client):
    user = CustomerUserFactory()
    reader = make_client("customers:read")
    assert reader.get(f"/api/v1/users/{user.id}").status_code == 200
    assert reader.post(f"/api/v1/users/{user.id}/disable").status_code == 403
    assert make_client("usage:read").get(f"/api/v1/users/{user.id}").status_code == 403
