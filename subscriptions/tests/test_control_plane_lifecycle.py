"""The tenant lifecycle from the control plane, end to end through POST /api/v1/control-plane/events with
the payloads sbt-aws sends (tenant-registration's onboarding and offboarding details, with `tier`,
`prices` and `sbtaws_active`): a tier's subscription on onboarding, offboarding that ends every subscription
and bills its final usage exactly once, deactivation pausing renewals and activation billing what was missed."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from billing_site.tasks import run_job
from customers.models import ControlPlaneEvent, Customer
from customers.tests.factories import CustomerFactory
from invoicing.models import Invoice, InvoiceLine
from subscriptions.models import Subscription, Tier, TierItem
from subscriptions.tests.support import fixed_price, metered_price, subscribe, use

pytestmark = pytest.mark.django_db

URL = "/api/v1/control-plane/events"
TENANT = str(uuid.UUID("6f1c2b1e-3d4a-4e5f-8a9b-0c1d2e3f4a5b"))
REGISTRATION = str(uuid.UUID("0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"))


def eventbridge(detail_type: str, detail: dict, event_id: str | None, source: str = "sbt.control.plane") -> dict:
    body = {
        "version": "0",
        "detail-type": detail_type,
        "source": source,
        "account": "111111111111",
        "time": "2026-12-03T10:00:00Z",
        "region": "eu-west-1",
        "resources": [],
        "detail": detail,
    }
    if event_id:
        body["id"] = event_id
    return body


def tenant_data(tier: str = "basic") -> dict:
    # tenant-registrations' POST body, tenantData part (scripts/sbt-aws.sh create-tenant-registration)
    return {
        "tenantName": "tenant123",
        "email": "ops+tenant123@example.com",
        "tier": tier,
        "prices": [
            {"id": "price_123456789Example", "metricName": "productsSold"},
            {"id": "price_123456789AnotherExample", "metricName": "plusProductsSold"},
        ],
    }


def onboarding_detail(tier: str = "basic") -> dict:
    # tenant-registrations' onboarding event: registration data | tenant data | ids
    return {
        "registrationStatus": "In progress",
        "tenantRegistrationData1": "test",
        **tenant_data(tier),
        "tenantId": TENANT,
        "tenantRegistrationId": REGISTRATION,
    }


def offboarding_detail() -> dict:
    # tenant-registrations' offboarding event: the deleted tenant (sbtaws_active false) | the registration
    # item read before it was updated (so sbtaws_active true wins the merge, as sbt-aws sends it)
    return {
        **tenant_data(),
        "tenantId": TENANT,
        "sbtaws_active": True,
        "tenantRegistrationId": REGISTRATION,
        "registrationStatus": "In progress",
        "tenantRegistrationData1": "test",
    }


@pytest.fixture
def catalog():
    seat = fixed_price("2500")
    seat.lookup_key = "basic-seat"
    seat.save()
    calls = metered_price("productsSold", unit="50")
    calls.lookup_key = "basic-products"
    calls.save()
    return seat, calls


def make_tier(name: str = "basic", trial_days: int = 0) -> Tier:
    tier = Tier.objects.create(name=name, trial_days=trial_days)
    TierItem.objects.create(tier=tier, lookup_key="basic-seat", quantity=Decimal(2), position=0)
    TierItem.objects.create(tier=tier, lookup_key="basic-products", position=1)
    return tier


def usage_lines(customer) -> list[InvoiceLine]:
    return list(InvoiceLine.objects.filter(invoice__customer=customer, kind__in=["usage", "late_usage"]).order_by("id"))


def test_onboarding_with_a_tier_creates_the_customer_and_its_subscription(
    api, catalog, bus, django_capture_on_commit_callbacks
):
    bus.accept()
    tier = make_tier(trial_days=14)
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(
            URL, eventbridge("sbt_aws_onboardingRequest", onboarding_detail("BASIC"), "eb-on"), format="json"
        )
    assert response.status_code == 202, response.json()
    customer = Customer.objects.get(external_id=TENANT)
    assert (customer.name, customer.email) == ("tenant123", "ops+tenant123@example.com")
    sub = Subscription.objects.get(customer=customer)
    assert sub.status == "trialing" and sub.trial_end == sub.start_date + timedelta(days=14)
    assert sub.metadata == {"tier": "basic"}
    items = {(i.price_id, i.quantity) for i in sub.items.all()}
    assert items == {(catalog[0].id, Decimal(2)), (catalog[1].id, None)}
    details = response.json()["details"]
    assert details["tier"] == tier.id and details["subscription"] == sub.id and details["invoice"] is None
    sent = bus.details()[0]
    assert bus.detail_types() == ["sbt_aws_billingSuccess"]
    assert (sent["tenantId"], sent["details"]["subscription"]) == (TENANT, sub.id)


def test_onboarding_without_a_trial_issues_the_first_invoice(api, catalog):
    make_tier()
    details = api.post(URL, eventbridge("onboardingRequest", onboarding_detail(), "eb-on2"), format="json").json()[
        "details"
    ]
    invoice = Invoice.objects.get(pk=details["invoice"])
    assert invoice.status == "open" and invoice.total == 5000  # two seats in advance


@pytest.mark.parametrize("setup", ["missing", "archived", "price_gone"])
def test_an_unusable_tier_is_a_billing_failure_and_onboards_nothing(
    api, catalog, bus, django_capture_on_commit_callbacks, setup
):
    bus.accept()
    if setup == "archived":
        Tier.objects.filter(pk=make_tier().pk).update(active=False)
    elif setup == "price_gone":
        make_tier()
        catalog[0].active = False
        catalog[0].save()
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(URL, eventbridge("sbt_aws_onboardingRequest", onboarding_detail(), "eb-bad"), format="json")
    assert response.status_code == 400
    code = {"missing": "unknown_tier", "archived": "tier_inactive", "price_gone": "tier_unavailable"}[setup]
    assert (response.json()["error"]["code"], response.json()["error"]["param"]) == (code, "detail.tier")
    assert not Customer.objects.exists() and not Subscription.objects.exists()  # one transaction: nothing
    assert ControlPlaneEvent.objects.get().status == "rejected"
    failure = bus.details()[0]
    assert bus.detail_types() == ["sbt_aws_billingFailure"]
    assert failure["code"] == code and "basic" in failure["reason"]


def test_offboarding_ends_every_subscription_and_bills_final_usage_exactly_once(
    api, catalog, bus, django_capture_on_commit_callbacks
):
    bus.accept(3)
    make_tier()
    with django_capture_on_commit_callbacks(execute=True):
        api.post(URL, eventbridge("sbt_aws_onboardingRequest", onboarding_detail(), "eb-on"), format="json")
    customer = Customer.objects.get(external_id=TENANT)
    # A second, plain subscription of the same tenant (bought through the API) ends too.
    extra = subscribe(customer, fixed_price("700"), now=timezone.now())[0]
    usage = {"tenantId": TENANT, "meterApiName": "productsSold", "meterValue": 10}
    with django_capture_on_commit_callbacks(execute=True):
        api.post(URL, eventbridge("sbt_aws_ingestUsage", usage, "eb-use", "sbt.application.plane"), format="json")

    offboard = eventbridge("sbt_aws_offboardingRequest", offboarding_detail(), "eb-off")
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(URL, offboard, format="json")
    assert response.status_code == 202 and response.json()["status"] == "applied"
    subs = Subscription.objects.filter(customer=customer)
    assert {(s.status, s.cancellation_reason) for s in subs} == {("canceled", "tenant_offboarded")}
    details = response.json()["details"]
    assert sorted(details["subscriptions_ended"]) == sorted(s.id for s in subs)
    final = Invoice.objects.get(pk=details["final_invoices"][0])
    assert final.billing_reason == "subscription_cancel"
    assert [(line.kind, line.quantity, line.amount) for line in usage_lines(customer)] == [("usage", Decimal(10), 500)]
    customer.refresh_from_db()
    assert customer.status == "deleted"
    assert extra.id in details["subscriptions_ended"]

    # Redelivered, sent again without an id, and every later job: the usage is never billed again.
    assert api.post(URL, offboard, format="json").json()["status"] == "duplicate"
    offboard.pop("id")
    assert api.post(URL, offboard, format="json").json()["status"] == "no_effect"
    later = timezone.now() + timedelta(days=40)
    run_job("renew_subscriptions", later.isoformat())
    run_job("bill_ended_late_usage", (timezone.now() + timedelta(hours=2)).isoformat())
    assert len(usage_lines(customer)) == 1
    assert bus.detail_types() == ["sbt_aws_billingSuccess"] * 3  # onboarding, usage, offboarding: once each
    assert bus.details()[2]["details"]["final_invoices"] == details["final_invoices"]


def test_offboarding_can_credit_unused_time(api, catalog, settings):
    settings.CONTROL_PLANE_OFFBOARD_PRORATE = True
    make_tier()
    api.post(URL, eventbridge("onboardingRequest", onboarding_detail(), "eb-on"), format="json")
    details = api.post(URL, eventbridge("offboardingRequest", offboarding_detail(), "eb-off"), format="json").json()[
        "details"
    ]
    final = Invoice.objects.get(pk=details["final_invoices"][0])
    assert sorted((line.kind, line.amount < 0) for line in final.lines.all()) == [("proration", True), ("usage", False)]
    assert final.total < 0  # almost the whole period paid in advance comes back as a credit


def test_deactivation_pauses_renewals_and_activation_bills_the_missed_periods(
    api, catalog, django_capture_on_commit_callbacks
):
    now = timezone.now()
    customer = CustomerFactory(external_id=TENANT)
    sub, _ = subscribe(customer, catalog[0], catalog[1], now=now, start_date=now - timedelta(days=45))
    use(customer, catalog[1], 4, now - timedelta(days=20), now=now)  # in the first period, before the suspension
    first_end = sub.current_period_end
    assert first_end < now

    api.post(URL, eventbridge("sbt_aws_deactivateRequest", {"tenantId": TENANT}, "eb-d"), format="json")
    run_job("renew_subscriptions", now.isoformat())
    sub.refresh_from_db()
    assert sub.current_period_end == first_end  # paused: the ended period waits
    assert Invoice.objects.filter(subscription=sub).count() == 1

    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(URL, eventbridge("sbt_aws_activateRequest", {"tenantId": TENANT}, "eb-a"), format="json")
    assert response.json()["details"] == {"renewals_queued": [sub.id]}
    sub.refresh_from_db()
    assert sub.current_period_start == first_end and sub.current_period_end > now
    cycle = Invoice.objects.get(subscription=sub, billing_reason="subscription_cycle")
    assert sorted((line.kind, line.amount) for line in cycle.lines.all()) == [("fixed", 2500), ("usage", 200)]


def test_a_pending_cancellation_still_ends_while_the_tenant_is_deactivated(api, catalog):
    now = timezone.now()
    customer = CustomerFactory(external_id=TENANT)
    sub, _ = subscribe(customer, catalog[0], now=now, start_date=now - timedelta(days=45))
    Subscription.objects.filter(pk=sub.pk).update(cancel_at_period_end=True, canceled_at=now)
    api.post(URL, eventbridge("deactivateRequest", {"tenantId": TENANT}, "eb-d"), format="json")
    run_job("renew_subscriptions", now.isoformat())
    sub.refresh_from_db()
    assert sub.status == "canceled" and sub.ended_at == sub.current_period_end


def test_user_events_from_the_application_plane(api, catalog):
    CustomerFactory(external_id=TENANT)
    created = {
        "tenantId": TENANT,
        "userId": "2f3e4d5c-6b7a-4891-a2b3-c4d5e6f7a8b9",
        "userName": "user123",
        "email": "ops+user123@example.com",
        "userRole": "basicUser",
    }
    response = api.post(URL, eventbridge("sbt_aws_tenantUserCreated", created, "eb-u1"), format="json")
    assert response.json()["status"] == "applied"
    user_id = response.json()["details"]["user"]
    deleted = {"tenantId": TENANT, "userId": created["userId"]}
    gone = api.post(URL, eventbridge("sbt_aws_tenantUserDeleted", deleted, "eb-u2"), format="json").json()
    assert (gone["status"], gone["details"]["user"]) == ("applied", user_id)
