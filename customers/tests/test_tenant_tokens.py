"""Tokens bound to a tenant (the `custom:tenantId` claim) act only on that tenant's own customer."""

from __future__ import annotations

import pytest
from django.utils import timezone

from billing_site.errors import InvalidRequest
from billing_site.tenancy import TenantScope
from customers.models import Customer, CustomerUser
from customers.selectors import customer_from_input
from customers.services import customer_create

pytestmark = pytest.mark.django_db

TENANT = "custom:tenantId"


@pytest.fixture
def world(api):
    """Two tenants with a user each, made by an operator."""
    out = {}
    for name in ("a", "b"):
        customer = api.post(
            "/api/v1/customers", {"external_id": f"tenant-{name}", "name": name.upper()}, format="json"
        ).json()
        user = api.post(
            f"/api/v1/customers/{customer['id']}/users", {"email": f"{name}@example.com"}, format="json"
        ).json()
        out[name] = {"customer": customer["id"], "user": user["id"]}
    return out


def _tenant(oidc, external_id: str, scope: str = "customers:read customers:write"):
    return oidc.client(sub=f"user-of-{external_id}", scope=scope, **{TENANT: external_id})


def test_list_shows_only_the_own_customer(oidc, world):
    client = _tenant(oidc, "tenant-a")
    body = client.get("/api/v1/customers").json()
    assert [c["id"] for c in body["data"]] == [world["a"]["customer"]]
    # Filtering for the other tenant finds nothing.
    assert client.get("/api/v1/customers?external_id=tenant-b").json()["data"] == []


def test_operator_token_without_the_claim_sees_everyone(oidc, world):
    body = oidc.client(scope="customers:read").get("/api/v1/customers").json()
    assert {c["id"] for c in body["data"]} == {world["a"]["customer"], world["b"]["customer"]}


def test_another_tenants_customer_is_404_exactly_like_a_missing_one(oidc, world):
    client = _tenant(oidc, "tenant-a")
    other = client.get(f"/api/v1/customers/{world['b']['customer']}")
    missing = client.get("/api/v1/customers/cus_00000000000000000000000000")
    assert other.status_code == missing.status_code == 404
    assert other.json()["error"]["code"] == missing.json()["error"]["code"] == "resource_missing"
    assert client.get(f"/api/v1/customers/{world['a']['customer']}").status_code == 200


def test_patch_of_another_tenant_is_404_and_changes_nothing(oidc, world):
    client = _tenant(oidc, "tenant-a")
    response = client.patch(f"/api/v1/customers/{world['b']['customer']}", {"name": "pwned"}, format="json")
    assert response.status_code == 404
    assert Customer.objects.get(pk=world["b"]["customer"]).name == "B"


def test_tenant_may_change_how_to_reach_it_but_not_its_terms(oidc, world):
    client = _tenant(oidc, "tenant-a")
    url = f"/api/v1/customers/{world['a']['customer']}"
    ok = client.patch(url, {"name": "Acme", "email": "billing@acme.example"}, format="json")
    assert ok.status_code == 200, ok.content
    assert ok.json()["name"] == "Acme"
    for field, value in (("tax_exempt", "exempt"), ("currency", "eur"), ("metadata", {"tier": "free"})):
        response = client.patch(url, {field: value}, format="json")
        assert response.status_code == 403, field
        assert response.json()["error"]["code"] == "operator_only_field"
        assert response.json()["error"]["param"] == field
    customer = Customer.objects.get(pk=world["a"]["customer"])
    assert (customer.tax_exempt, customer.currency, customer.metadata) == ("none", "", {})


def test_tenant_cannot_create_delete_restore_or_purge_customers(oidc, world):
    client = _tenant(oidc, "tenant-a")
    own = world["a"]["customer"]
    for method, url in (
        ("post", "/api/v1/customers"),
        ("delete", f"/api/v1/customers/{own}"),
        ("post", f"/api/v1/customers/{own}/restore"),
        ("post", f"/api/v1/customers/{own}/purge"),
        ("post", "/api/v1/control-plane/events"),
    ):
        response = getattr(client, method)(url, {"external_id": "tenant-new"}, format="json")
        assert response.status_code == 403, (method, url)
        assert response.json()["error"]["code"] == "operator_only"
    assert Customer.objects.filter(status=Customer.Status.ACTIVE).count() == 2
    assert not Customer.objects.filter(external_id="tenant-new").exists()


def test_tenant_manages_its_own_users(oidc, world):
    client = _tenant(oidc, "tenant-a")
    own = world["a"]
    created = client.post(f"/api/v1/customers/{own['customer']}/users", {"email": "new@a.example"}, format="json")
    assert created.status_code == 201
    listed = client.get(f"/api/v1/customers/{own['customer']}/users").json()["data"]
    assert {u["id"] for u in listed} == {own["user"], created.json()["id"]}
    assert client.post(f"/api/v1/users/{own['user']}/disable").json()["status"] == "disabled"
    assert client.patch(f"/api/v1/users/{own['user']}", {"name": "Ann"}, format="json").status_code == 200
    assert client.delete(f"/api/v1/users/{created.json()['id']}").status_code == 204


def test_another_tenants_users_are_404_on_every_user_endpoint(oidc, world):
    client = _tenant(oidc, "tenant-a")
    other = world["b"]
    responses = [
        client.get(f"/api/v1/customers/{other['customer']}/users"),
        client.post(f"/api/v1/customers/{other['customer']}/users", {"email": "x@b.example"}, format="json"),
        client.get(f"/api/v1/users/{other['user']}"),
        client.patch(f"/api/v1/users/{other['user']}", {"name": "pwned"}, format="json"),
        client.delete(f"/api/v1/users/{other['user']}"),
        client.post(f"/api/v1/users/{other['user']}/disable"),
        client.post(f"/api/v1/users/{other['user']}/enable"),
    ]
    assert [r.status_code for r in responses] == [404] * 7
    user = CustomerUser.objects.get(pk=other["user"])
    assert (user.name, user.status, user.deleted_at) == ("", "enabled", None)
    assert CustomerUser.objects.filter(customer_id=other["customer"]).count() == 1


def test_token_of_a_tenant_without_a_customer_sees_nothing(oidc, world):
    client = _tenant(oidc, "tenant-unknown")
    assert client.get("/api/v1/customers").json()["data"] == []
    assert client.get(f"/api/v1/customers/{world['a']['customer']}").status_code == 404


def test_tenant_bound_to_a_deleted_customer_sees_nothing(oidc, world, api):
    assert api.delete(f"/api/v1/customers/{world['a']['customer']}").status_code == 204
    client = _tenant(oidc, "tenant-a")
    assert client.get("/api/v1/customers").json()["data"] == []
    assert client.get(f"/api/v1/users/{world['a']['user']}").status_code == 404


def test_an_endpoint_that_declares_nothing_refuses_tenant_tokens(oidc, world, make_client, monkeypatch):
    """Fail closed: a view whose method is not declared in tenant_access refuses tenant tokens."""
    from customers.apis import CustomerListCreateApi

    monkeypatch.setattr(CustomerListCreateApi, "tenant_access", {})
    client = _tenant(oidc, "tenant-a", scope="admin")
    response = client.get("/api/v1/customers")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "tenant_scope_unsupported"
    # Operators are not affected.
    assert make_client("customers:read").get("/api/v1/customers").status_code == 200


def test_the_scope_check_comes_before_the_tenant_check(oidc, world):
    client = _tenant(oidc, "tenant-a", scope="customers:read")
    response = client.post(f"/api/v1/customers/{world['a']['customer']}/users", {"email": "x@a.example"}, format="json")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "missing_scope"


def test_body_customer_of_another_tenant_reads_as_missing():
    mine = customer_create(external_id="tenant-a", now=timezone.now())
    theirs = customer_create(external_id="tenant-b", now=timezone.now())
    scope = TenantScope(external_id="tenant-a", customer_id=mine.id)
    assert customer_from_input(customer_id=mine.id, tenant=scope) == mine
    with pytest.raises(InvalidRequest) as refused:
        customer_from_input(customer_id=theirs.id, tenant=scope)
    assert (refused.value.param, refused.value.code) == ("customer", "resource_missing")
