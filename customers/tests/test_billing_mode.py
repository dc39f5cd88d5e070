"""A customer's billing mode: set by the control plane's onboarding, by the default setting, and kept as
a history of when each mode took effect (the provider intervals the usage push reads)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from billing_site.errors import Conflict, InvalidRequest
from customers.hooks import check_register, on_billing_mode_change
from customers.models import BillingModeChange, Customer
from customers.selectors import provider_intervals
from customers.services import customer_create, customer_update
from customers.tests.test_control_plane import send

pytestmark = pytest.mark.django_db

T = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


@pytest.fixture
def stripe_key(settings):
    settings.STRIPE_API_KEY = "sk_test_51ForBillingModeTests000000000"


def test_onboarding_can_put_the_tenant_in_provider_mode(api, stripe_key):
    response = send(api, "sbt_aws_onboardingRequest", {"tenantId": "t-p", "tenantName": "P", "billingMode": "provider"})
    assert response.status_code == 202 and response.json()["status"] == "applied"
    customer = Customer.objects.get(external_id="t-p")
    assert customer.billing_mode == "provider"
    assert BillingModeChange.objects.get(customer=customer).source == "control_plane"


def test_onboarding_with_a_bad_billing_mode_is_refused_naming_the_field(api, stripe_key):
    response = send(api, "onboardingRequest", {"tenantId": "t-x", "billingMode": "maybe"})
    assert response.status_code == 400 and response.json()["error"]["param"] == "detail.billingMode"
    assert not Customer.objects.filter(external_id="t-x").exists()


def test_the_default_mode_applies_to_customers_created_without_one(api, settings, stripe_key):
    settings.BILLING_MODE_DEFAULT = "provider"
    send(api, "onboardingRequest", {"tenantId": "t-d"})
    assert Customer.objects.get(external_id="t-d").billing_mode == "provider"


def test_provider_intervals_follow_the_history(stripe_key):
    customer = customer_create(external_id="t-h", now=T - timedelta(days=1))
    customer_update(customer=customer, changes={"billing_mode": "provider"}, now=T)
    customer_update(customer=customer, changes={"billing_mode": "native"}, now=T + timedelta(hours=2))
    customer_update(customer=customer, changes={"billing_mode": "provider"}, now=T + timedelta(hours=5))
    native = customer_create(external_id="t-n", now=T)
    assert provider_intervals(customer_ids=[customer.id, native.id]) == {
        customer.id: [(T, T + timedelta(hours=2)), (T + timedelta(hours=5), None)],
        native.id: [],
    }
    with pytest.raises(Conflict) as backdated:
        customer_update(customer=customer, changes={"billing_mode": "native"}, now=T + timedelta(hours=4))
    assert backdated.value.code == "billing_mode_backdated"
    assert BillingModeChange.objects.filter(customer=customer).count() == 3


def test_a_registered_check_can_refuse_a_switch_and_nothing_is_written(stripe_key):
    customer = customer_create(external_id="t-c", now=T)

    def refuse(candidate: Customer, mode: str) -> None:
        raise Conflict("not now", code="refused_by_check", param="billing_mode")

    check_register(on_billing_mode_change, refuse)
    check_register(on_billing_mode_change, refuse)  # registering twice keeps one
    try:
        assert on_billing_mode_change.count(refuse) == 1
        with pytest.raises(Conflict):
            customer_update(customer=customer, changes={"billing_mode": "provider"}, now=T)
    finally:
        on_billing_mode_change.remove(refuse)
    customer.refresh_from_db()
    assert customer.billing_mode == "native" and not BillingModeChange.objects.exists()


def test_a_customer_pinned_to_another_payment_provider_cannot_use_provider_mode(stripe_key):
    customer = customer_create(external_id="t-s", now=T)
    Customer.objects.filter(pk=customer.pk).update(provider="sandbox", provider_customer_id="cus_sandbox_1")
    customer.refresh_from_db()
    with pytest.raises(InvalidRequest) as refused:
        customer_update(customer=customer, changes={"billing_mode": "provider"}, now=T)
    assert refused.value.code == "provider_conflict" and refused.value.param == "billing_mode"
