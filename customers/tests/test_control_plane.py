from __future__ import annotations

import threading

import pytest
from django.db import connection

from customers.models import ControlPlaneEvent, Customer, CustomerUser
from customers.tests.factories import CustomerFactory, CustomerUserFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/control-plane/events"


def envelope(detail_type: str, detail: dict, event_id: str | None = None) -> dict:
    body = {
        "version": "0",
        "detail-type": detail_type,
        "source": "sbt.control.plane",
        "account": "123456789012",
        "time": "2026-11-21T10:00:00Z",
        "region": "eu-west-1",
        "resources": [],
        "detail": detail,
    }
    if event_id:
        body["id"] = event_id
    return body


def send(api, detail_type: str, detail: dict, event_id: str | None = None):
    return api.post(URL, envelope(detail_type, detail, event_id), format="json")


def test_onboarding_creates_the_customer(api):
    response = send(
        api, "onboardingRequest", {"tenantId": "t-1", "tenantName": "Acme", "email": "a@acme.example"}, "evt-1"
    )
    assert response.status_code == 202
    assert response.json()["status"] == "applied"
    customer = Customer.objects.get(external_id="t-1")
    assert (customer.name, customer.email) == ("Acme", "a@acme.example")
    assert response.json()["customer"] == customer.id
    stored = ControlPlaneEvent.objects.get()
    assert stored.envelope_id == "evt-1" and stored.tenant_id == "t-1" and stored.status == "applied"
    assert stored.payload["detail-type"] == "onboardingRequest"


def test_duplicate_delivery_by_id_is_applied_once_and_stored(api):
    detail = {"tenantId": "t-dup", "tenantName": "Dup"}
    assert send(api, "onboardingRequest", detail, "evt-same").json()["status"] == "applied"
    api.delete(f"/api/v1/customers/{Customer.objects.get().id}")  # something changed in between
    second = send(api, "onboardingRequest", detail, "evt-same")
    assert second.status_code == 202
    assert second.json()["status"] == "duplicate"
    assert Customer.objects.count() == 1
    assert Customer.objects.get().status == "deleted"  # the redelivery did not touch it
    assert ControlPlaneEvent.objects.count() == 2


def test_second_onboarding_without_id_changes_nothing(api):
    send(api, "onboardingRequest", {"tenantId": "t-2", "tenantName": "First"})
    response = send(api, "onboardingRequest", {"tenantId": "t-2", "tenantName": "Second"})
    assert response.status_code == 202
    assert response.json()["status"] == "no_effect"
    assert Customer.objects.get(external_id="t-2").name == "First"


def test_prefixed_detail_types_work(api):
    assert send(api, "sbt_aws_onboardingRequest", {"tenantId": "t-3"}).json()["status"] == "applied"
    assert send(api, "sbt_aws_deactivateRequest", {"tenantId": "t-3"}).json()["status"] == "applied"
    assert Customer.objects.get(external_id="t-3").status == "deactivated"


def test_offboarding_soft_deletes(api):
    customer = CustomerFactory(external_id="t-off")
    response = send(api, "offboardingRequest", {"tenantId": "t-off"})
    assert response.json()["status"] == "applied"
    customer.refresh_from_db()
    assert customer.status == "deleted"
    assert send(api, "offboardingRequest", {"tenantId": "t-off"}).json()["status"] == "no_effect"
    assert send(api, "offboardingRequest", {"tenantId": "never-existed"}).status_code == 202


def test_activate_and_deactivate(api):
    CustomerFactory(external_id="t-act")
    assert send(api, "deactivateRequest", {"tenantId": "t-act"}).json()["status"] == "applied"
    assert send(api, "deactivateRequest", {"tenantId": "t-act"}).json()["status"] == "no_effect"
    assert Customer.objects.get(external_id="t-act").status == "deactivated"
    assert send(api, "activateRequest", {"tenantId": "t-act"}).json()["status"] == "applied"
    assert Customer.objects.get(external_id="t-act").status == "active"


def test_user_created_and_deleted(api):
    customer = CustomerFactory(external_id="t-u")
    detail = {"tenantId": "t-u", "userId": "u-9", "email": "nine@example.com", "userName": "nine"}
    assert send(api, "tenantUserCreated", detail).json()["status"] == "applied"
    assert send(api, "tenantUserCreated", detail).json()["status"] == "no_effect"
    user = CustomerUser.objects.get(customer=customer)
    assert (user.external_id, user.email) == ("u-9", "nine@example.com")
    assert send(api, "tenantUserDeleted", {"tenantId": "t-u", "userId": "u-9"}).json()["status"] == "applied"
    user.refresh_from_db()
    assert user.deleted_at is not None
    assert send(api, "tenantUserDeleted", {"tenantId": "t-u", "userId": "u-9"}).json()["status"] == "no_effect"


def test_user_deleted_by_email(api):
    user = CustomerUserFactory(customer=CustomerFactory(external_id="t-e"), email="x@example.com")
    response = send(api, "sbt_aws_tenantUserDeleted", {"tenantId": "t-e", "email": "X@example.com"})
    assert response.json()["status"] == "applied"
    user.refresh_from_db()
    assert user.deleted_at is not None


def test_user_event_for_unknown_tenant_is_404_and_stored_rejected(api):
    response = send(api, "tenantUserCreated", {"tenantId": "ghost", "userId": "u", "email": "u@example.com"})
    assert response.status_code == 404
    assert response.json()["error"]["param"] == "detail.tenantId"
    stored = ControlPlaneEvent.objects.get()
    assert stored.status == "rejected" and stored.dedup_key is None


def test_unknown_detail_type_is_stored_and_accepted_without_effect(api):
    response = send(api, "tenantTierChanged", {"tenantId": "t-x"})
    assert response.status_code == 202
    assert response.json()["status"] == "ignored"
    assert ControlPlaneEvent.objects.get().status == "ignored"
    assert not Customer.objects.exists()


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ([1, 2], None),
        ({"detail": {"tenantId": "t"}}, "detail-type"),
        ({"detail-type": "onboardingRequest"}, "detail"),
        ({"detail-type": "onboardingRequest", "detail": "not an object"}, "detail"),
        ({"detail-type": "onboardingRequest", "detail": {}}, "detail.tenantId"),
        ({"detail-type": "onboardingRequest", "detail": {"tenantId": "t", "email": "bad"}}, "detail.email"),
        ({"id": 5, "detail-type": "onboardingRequest", "detail": {"tenantId": "t"}}, "id"),
    ],
)
def test_malformed_envelope_is_400_and_stored(api, body, param):
    response = api.post(URL, body, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    assert ControlPlaneEvent.objects.get().status == "rejected"
    assert not Customer.objects.exists()


def test_onboarding_a_deleted_tenant_is_409(api):
    customer = CustomerFactory(external_id="t-del")
    api.delete(f"/api/v1/customers/{customer.id}")
    response = send(api, "onboardingRequest", {"tenantId": "t-del"})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "customer_deleted"


def test_needs_customers_write_scope(make_client):
    client = make_client("customers:read")
    assert send(client, "onboardingRequest", {"tenantId": "t"}).status_code == 403
    assert not ControlPlaneEvent.objects.exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_duplicate_deliveries_apply_once(make_client):
    raw = make_client("customers:write").raw_key
    barrier = threading.Barrier(6)
    statuses: list[str] = []

    def deliver():
        from rest_framework.test import APIClient

        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
        barrier.wait()
        try:
            statuses.append(send(client, "onboardingRequest", {"tenantId": "t-race"}, "evt-race").json()["status"])
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert Customer.objects.filter(external_id="t-race").count() == 1
    assert sorted(statuses) == ["applied"] + ["duplicate"] * 5
    assert ControlPlaneEvent.objects.count() == 6
