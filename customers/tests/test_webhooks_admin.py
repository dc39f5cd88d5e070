from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from customers.services import customer_create
from webhooks import delivery as d
from webhooks import inbound
from webhooks.endpoints import endpoint_create
from webhooks.models import ProviderEvent, WebhookDelivery
from webhooks.tests.helpers import Reply, local_server, stripe_event, stripe_fixture

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client):
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw-for-tests-only")
    client.force_login(user)
    return client


def test_endpoint_and_delivery_pages_show_attempts_but_never_the_secret(staff):
    with local_server() as server:
        server.script = [Reply(500, b"upstream broke")]
        endpoint = endpoint_create(url=f"{server.url}/hook", enabled_events=["customer.*"], now=timezone.now())
        customer_create(external_id="t-1", name="One", now=timezone.now())
        d.events_dispatch(now=timezone.now())
        delivery = WebhookDelivery.objects.get(endpoint=endpoint)
        d.delivery_attempt(delivery_id=delivery.id, now=timezone.now())
    for url in (
        "/admin/webhooks/webhookendpoint/",
        f"/admin/webhooks/webhookendpoint/{endpoint.id}/change/",
        "/admin/webhooks/webhookdelivery/?status__exact=pending",
        f"/admin/webhooks/webhookdelivery/{delivery.id}/change/",
        "/admin/webhooks/providerevent/",
        "/admin/webhooks/billingevent/",
    ):
        page = staff.get(url)
        assert page.status_code == 200, url
        assert endpoint.secret not in page.content.decode()
    assert "upstream broke" in staff.get(f"/admin/webhooks/webhookdelivery/{delivery.id}/change/").content.decode()


def test_redeliver_and_resend_actions(staff):
    with local_server() as server:
        server.script = [Reply(400)]
        endpoint = endpoint_create(url=f"{server.url}/hook", enabled_events=["customer.*"], now=timezone.now())
        customer_create(external_id="t-1", name="One", now=timezone.now())
        d.events_dispatch(now=timezone.now())
        delivery = WebhookDelivery.objects.get(endpoint=endpoint)
        d.delivery_attempt(delivery_id=delivery.id, now=timezone.now())
    delivery.refresh_from_db()
    assert delivery.status == "failed"
    response = staff.post(
        "/admin/webhooks/webhookdelivery/",
        {"action": "redeliver", "_confirm": "yes", "_selected_action": [delivery.id]},
        follow=True,
    )
    assert response.status_code == 200
    delivery.refresh_from_db()
    assert delivery.status == "pending"

    form = staff.post("/admin/webhooks/webhookendpoint/", {"action": "resend_since", "_selected_action": [endpoint.id]})
    assert form.status_code == 200 and b"Resend" in form.content
    since = (timezone.now() - timedelta(days=1)).strftime("%Y-%m-%d %H:%M:%S")
    done = staff.post(
        "/admin/webhooks/webhookendpoint/",
        {"action": "resend_since", "_selected_action": [endpoint.id], "apply": "1", "since": since},
        follow=True,
    )
    assert done.status_code == 200 and b"Deliveries queued: 1" in done.content


def test_reprocess_action(staff):
    event = stripe_event("plan.created", stripe_fixture("plan"), event_id="evt_admin")
    row, _ = inbound.provider_event_store(provider="stripe", event=event, source="webhook", now=timezone.now())
    assert inbound.provider_event_process(provider_event_id=row.pk, now=timezone.now()) == "ignored"
    page = staff.get(f"/admin/webhooks/providerevent/{row.pk}/change/")
    assert page.status_code == 200 and b"evt_admin" in page.content
    response = staff.post(
        "/admin/webhooks/providerevent/",
        {"action": "reprocess", "_confirm": "yes", "_selected_action": [row.pk]},
        follow=True,
    )
    assert response.status_code == 200
    assert ProviderEvent.objects.get(pk=row.pk).status == "pending"
