from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from invoicing.models import Invoice
from payments.services.methods import payment_method_create
from subscriptions.tests.support import fixed_price, metered_price, subscribe

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client):
    client.force_login(get_user_model().objects.create_superuser("root", "root@example.com", "pw-tests-only"))
    return client


def test_billing_admin_pages_render(staff):
    sub, invoice = subscribe(None, fixed_price("1000"), metered_price())
    payment_method_create(customer=sub.customer, token="tok_visa", default=True, now=invoice.finalized_at)
    pages = [
        "/admin/subscriptions/subscription/",
        f"/admin/subscriptions/subscription/{sub.id}/change/",
        "/admin/invoicing/invoice/",
        f"/admin/invoicing/invoice/{invoice.id}/change/",
        "/admin/invoicing/taxrate/",
        "/admin/invoicing/usagewatermark/",
        "/admin/payments/paymentmethod/",
        "/admin/payments/paymentintent/",
        "/admin/payments/customerbalance/",
        "/admin/payments/creditgrant/",
        "/admin/payments/creditnote/",
    ]
    for url in pages:
        assert staff.get(url).status_code == 200, url
    body = staff.get(f"/admin/invoicing/invoice/{invoice.id}/change/").content.decode()
    assert invoice.number in body and "$10.00 / month" in body


def test_void_action_goes_through_the_service(staff):
    _, invoice = subscribe(None, fixed_price("1000"))
    staff.post(
        "/admin/invoicing/invoice/",
        {"action": "void", "_confirm": "yes", "_selected_action": [invoice.id]},
        follow=True,
    )
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.VOID


def test_cancel_now_action(staff):
    sub, _ = subscribe(None, fixed_price("1000"))
    staff.post(
        "/admin/subscriptions/subscription/",
        {"action": "cancel_now", "_confirm": "yes", "_selected_action": [sub.id]},
        follow=True,
    )
    sub.refresh_from_db()
    assert sub.status == "canceled"


def test_bill_now_action_renews_what_is_due(staff):
    from datetime import timedelta

    from django.utils import timezone

    from subscriptions.models import Subscription

    now = timezone.now()
    sub, _ = subscribe(None, fixed_price("1000"), now=now - timedelta(days=40))  # one period already ended
    staff.post(
        "/admin/subscriptions/subscription/",
        {"action": "bill_now", "_confirm": "yes", "_selected_action": [sub.id]},
        follow=True,
    )
    assert Invoice.objects.filter(subscription=sub).count() == 2
    assert Subscription.objects.get(pk=sub.pk).current_period_end > now
    staff.post(
        "/admin/subscriptions/subscription/",
        {"action": "bill_now", "_confirm": "yes", "_selected_action": [sub.id]},
        follow=True,
    )
    assert Invoice.objects.filter(subscription=sub).count() == 2  # nothing more was due
