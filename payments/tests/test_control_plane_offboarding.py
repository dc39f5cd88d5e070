"""Offboarding and the tenant's open invoices (CONTROL_PLANE_OFFBOARD_INVOICES): collected at once after the
offboarding commits (the provider is never called inside it), or left open with automatic charges stopped."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from billing_site.tasks import run_job
from customers.tests.factories import CustomerFactory
from invoicing.models import Invoice
from payments.models import PaymentIntent
from payments.services.methods import payment_method_create
from subscriptions.tests.support import fixed_price, metered_price, subscribe, use

pytestmark = pytest.mark.django_db

URL = "/api/v1/control-plane/events"


def offboard(api, tenant: str, event_id: str):
    body = {
        "id": event_id,
        "detail-type": "sbt_aws_offboardingRequest",
        "source": "sbt.control.plane",
        "detail": {"tenantId": tenant, "tier": "basic", "sbtaws_active": True},
    }
    return api.post(URL, body, format="json")


@pytest.fixture
def tenant():
    now = timezone.now()
    customer = CustomerFactory(external_id="t-pay")
    payment_method_create(customer=customer, token="tok_visa", now=now, default=True)
    calls = metered_price(unit="100")
    sub, first = subscribe(
        customer, fixed_price("1500"), calls, now=now - timedelta(days=2), start_date=now - timedelta(days=2)
    )
    use(customer, calls, 3, now - timedelta(hours=1), now=now)
    return customer, sub, first


def test_collect_charges_the_final_invoice_after_the_commit(api, tenant, settings, django_capture_on_commit_callbacks):
    settings.CONTROL_PLANE_OFFBOARD_INVOICES = "collect"
    customer, _, first = tenant
    with django_capture_on_commit_callbacks(execute=False) as queued:
        response = offboard(api, "t-pay", "eb-off-1")
    details = response.json()["details"]
    final = Invoice.objects.get(pk=details["final_invoices"][0])
    assert final.amount_remaining == 300
    assert sorted(details["invoices_collecting"]) == sorted([first.id, final.id])
    assert not PaymentIntent.objects.filter(invoice=final).exists()  # nothing charged inside the transaction
    for callback in queued:
        callback()
    final.refresh_from_db()
    first.refresh_from_db()
    assert (final.status, first.status) == ("paid", "paid")
    assert PaymentIntent.objects.filter(invoice=final, status="succeeded").count() == 1
    # The collection job afterwards has nothing left to charge.
    run_job("collect_invoices", (timezone.now() + timedelta(minutes=5)).isoformat())
    assert PaymentIntent.objects.filter(customer=customer).count() == 2


def test_leave_open_stops_automatic_charges(api, tenant, settings, django_capture_on_commit_callbacks):
    settings.CONTROL_PLANE_OFFBOARD_INVOICES = "leave_open"
    customer, _, first = tenant
    with django_capture_on_commit_callbacks(execute=True):
        details = offboard(api, "t-pay", "eb-off-2").json()["details"]
    assert details["invoices_collecting"] == []
    final = Invoice.objects.get(pk=details["final_invoices"][0])
    assert sorted(details["open_invoices"]) == sorted([first.id, final.id])
    run_job("collect_invoices", (timezone.now() + timedelta(days=10)).isoformat())
    for invoice in (first, final):
        invoice.refresh_from_db()
        assert (invoice.status, invoice.next_payment_attempt) == ("open", None)
    assert not PaymentIntent.objects.filter(customer=customer).exists()


def test_an_offboarded_customer_is_charged_by_the_offboarding_only(
    api, tenant, settings, django_capture_on_commit_callbacks
):
    """The final collection the offboarding queues may charge the customer it deletes; after that a deleted
    customer is never charged (issue 10): a decline is not retried, /pay is refused."""
    from payments.models import PaymentMethod

    settings.CONTROL_PLANE_OFFBOARD_INVOICES = "collect"
    customer, _, first = tenant
    PaymentMethod.objects.filter(customer=customer).update(provider_ref="pm_sandbox_chargeDeclined")
    with django_capture_on_commit_callbacks(execute=True):
        details = offboard(api, "t-pay", "eb-off-9").json()["details"]
    assert PaymentIntent.objects.filter(customer=customer).count() == len(details["invoices_collecting"]) == 2
    run_job("collect_invoices", (timezone.now() + timedelta(days=10)).isoformat())
    assert PaymentIntent.objects.filter(customer=customer).count() == 2  # no dunning retry
    response = api.post(f"/api/v1/invoices/{first.id}/pay")
    assert response.status_code == 409 and response.json()["error"]["code"] == "customer_deleted"
