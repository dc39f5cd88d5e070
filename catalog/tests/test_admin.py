from __future__ import annotations

import pytest
from django.contrib.admin.utils import quote
from django.contrib.auth import get_user_model
from django.test import Client

from catalog.models import Price, Product
from catalog.tests.factories import CouponFactory, PriceFactory
from webhooks.models import BillingEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator() -> Client:
    user = get_user_model().objects.create_superuser("ops", "ops@example.com", "pw")
    client = Client()
    client.force_login(user)
    return client


def test_price_pages_show_the_tiers_and_the_generated_name(operator):
    price = PriceFactory(graduated=True, name="API calls", lookup_key="api-calls")
    PriceFactory()
    response = operator.get("/admin/catalog/price/")
    assert response.status_code == 200
    assert b"API calls" in response.content
    response = operator.get(f"/admin/catalog/price/{price.id}/change/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "Graduated, USD / month" in page  # the generated name, beside the custom one
    assert "<table><thead><tr><th>Tier</th>" in page
    assert "up to 1000" in page and "above 1000" in page
    assert "$0.005 (0.5)" in page and "$5.00 (500)" in page


def test_fixed_price_and_product_pages(operator):
    price = PriceFactory(amount={"model": "fixed", "currency": "jpy", "unit": "1000", "flat": 0})
    response = operator.get(f"/admin/catalog/price/{price.id}/change/")
    assert response.status_code == 200
    assert "¥1,000 per unit" in response.content.decode()
    response = operator.get(f"/admin/catalog/product/{price.product_id}/change/")
    assert response.status_code == 200
    assert price.id in response.content.decode()  # its prices, inline
    assert operator.get("/admin/catalog/product/").status_code == 200
    coupon = CouponFactory()
    assert operator.get("/admin/catalog/coupon/").status_code == 200
    assert operator.get(f"/admin/catalog/coupon/{coupon.id}/change/").status_code == 200


def test_admin_edits_go_through_the_services(operator):
    price = PriceFactory()
    response = operator.post(
        f"/admin/catalog/price/{price.id}/change/",
        {"name": "Seat", "description": "", "lookup_key": "seat", "active": "on"},
    )
    assert response.status_code == 302, response.content
    price.refresh_from_db()
    assert (price.name, price.lookup_key) == ("Seat", "seat")
    assert BillingEvent.objects.get(type="price.updated").previous_attributes == {
        "name": "$10.00 / month",
        "lookup_key": None,
    }
    # The partial unique constraint shows as a form error, not a 500.
    other = PriceFactory()
    response = operator.post(
        f"/admin/catalog/price/{other.id}/change/",
        {"name": other.name, "description": "", "lookup_key": "seat", "active": "on"},
    )
    assert response.status_code == 200
    assert "Another active price already has this lookup key." in response.content.decode()
    assert Price.objects.get(pk=other.id).lookup_key == ""


def test_admin_creates_products_through_the_service(operator):
    response = operator.post(
        "/admin/catalog/product/add/",
        {
            "name": "Seats",
            "description": "",
            "active": "on",
            "prices-TOTAL_FORMS": "0",
            "prices-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302, response.content
    product = Product.objects.get()  # one row: the form's own instance was not saved beside it
    assert BillingEvent.objects.get(type="product.created").object_id == product.id
    # The success message links to the row the service created.
    page = operator.get(response["Location"]).content.decode()
    assert f"/admin/catalog/product/{quote(product.id)}/change/" in page
