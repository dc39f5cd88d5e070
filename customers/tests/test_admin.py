from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from billing_site.models import ApiKey
from customers.models import Customer
from customers.tests.factories import CustomerFactory, CustomerUserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client):
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw-for-tests-only")
    client.force_login(user)
    return client


def test_customer_pages_render_with_users_inline(staff):
    user = CustomerUserFactory()
    assert staff.get("/admin/customers/customer/?q=" + user.customer.external_id).status_code == 200
    page = staff.get(f"/admin/customers/customer/{user.customer_id}/change/")
    assert page.status_code == 200
    assert user.email in page.content.decode()
    assert staff.get("/admin/customers/customer/?status__exact=active").status_code == 200
    assert staff.get("/admin/customers/controlplaneevent/").status_code == 200
    assert staff.get("/admin/webhooks/billingevent/").status_code == 200


def test_soft_delete_action_keeps_the_row(staff):
    customer = CustomerFactory()
    response = staff.post(
        "/admin/customers/customer/",
        {"action": "soft_delete", "_confirm": "yes", "_selected_action": [customer.id]},
        follow=True,
    )
    assert response.status_code == 200
    assert Customer.objects.get(pk=customer.id).status == "deleted"


def test_api_key_created_in_admin_is_shown_once_and_works(staff):
    response = staff.post(
        "/admin/billing_site/apikey/add/", {"name": "ops", "scopes": '["customers:read"]'}, follow=True
    )
    assert response.status_code == 200
    key = ApiKey.objects.get(name="ops")
    text = response.content.decode()
    assert key.prefix in text
    raw = text[text.index(key.prefix) : text.index(key.prefix) + 43]
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert client.get("/api/v1/customers").status_code == 200


def test_api_key_admin_refuses_unknown_scopes(staff):
    response = staff.post("/admin/billing_site/apikey/add/", {"name": "ops", "scopes": '["everything"]'})
    assert response.status_code == 200  # the form again, with the error
    assert "Unknown scope" in response.content.decode()
    assert not ApiKey.objects.exists()
