"""Admin smoke tests: meters with their usage summary, and the event browser that never counts the events
table."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from customers.tests.factories import CustomerFactory
from metering.models import MeterEvent
from metering.rollups import usage_rollup_job
from metering.tests.usage_support import ingest, make_meter
from metering.usage import usage_cancel

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client):
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw-for-tests-only")
    client.force_login(user)
    return client


@pytest.fixture
def usage():
    now = timezone.now()
    meter = make_meter("sum")
    big, small = CustomerFactory(external_id="big-tenant"), CustomerFactory(external_id="small-tenant")
    ids = ingest(big, meter, [(now - timedelta(seconds=1), "40"), (now, "2")], now=now)
    ingest(small, meter, [(now, "5")], now=now)
    usage_rollup_job(now=now)
    ingest(small, meter, [(now, "1")], now=now)  # not rolled up yet: still in the summary
    usage_cancel(event_ids=[ids[1]], reason="test", now=now)
    return meter, big, small, ids


def test_meter_pages_and_usage_summary(staff, usage):
    meter = usage[0]
    assert staff.get("/admin/metering/meter/").status_code == 200
    assert staff.get("/admin/metering/meter/?q=" + meter.code + "&aggregation__exact=sum").status_code == 200
    page = staff.get(f"/admin/metering/meter/{meter.id}/change/")
    assert page.status_code == 200
    text = page.content.decode()
    assert text.index("big-tenant") < text.index("small-tenant")  # ranked by value
    assert ">40<" in text and ">6<" in text  # exact: canceled excluded, un-rolled included


def test_meter_admin_edits_go_through_the_service(staff, usage):
    meter = usage[0]
    data = {"name": "Renamed", "description": "", "active": ""}
    response = staff.post(f"/admin/metering/meter/{meter.id}/change/", data)
    assert response.status_code == 302
    meter.refresh_from_db()
    assert (meter.name, meter.active) == ("Renamed", False)
    from webhooks.models import BillingEvent

    assert BillingEvent.objects.filter(type="meter.updated", object_id=meter.id).exists()


def test_event_browser_never_counts_the_events_table(staff, usage):
    meter, big, _, ids = usage
    table = MeterEvent._meta.db_table
    urls = [
        "/admin/metering/meterevent/",
        "/admin/metering/meterevent/?canceled=yes",
        "/admin/metering/meterevent/?canceled=no&since=1h",
        "/admin/metering/meterevent/?since=7d",
        f"/admin/metering/meterevent/?meter__id__exact={meter.id}",
        f"/admin/metering/meterevent/?q={big.id}",
        "/admin/metering/meterevent/?q=big-tenant",
        f"/admin/metering/meterevent/?q={ids[0]}",
        "/admin/metering/meterevent/?q=evt_broken",
    ]
    for url in urls:
        with CaptureQueriesContext(connection) as queries:
            response = staff.get(url)
        assert response.status_code == 200, url
        counting = [q["sql"] for q in queries if "COUNT(" in q["sql"].upper() and table in q["sql"]]
        assert not counting, (url, counting)
    assert ids[0] in staff.get(f"/admin/metering/meterevent/?q={ids[0]}").content.decode()
    canceled = staff.get("/admin/metering/meterevent/?canceled=yes").content.decode()
    assert ids[1] in canceled and ids[0] not in canceled
    event = MeterEvent.objects.first()
    assert staff.get(f"/admin/metering/meterevent/{event.pk}/change/").status_code == 200  # view only
    assert staff.get("/admin/metering/meterevent/add/").status_code == 403


def test_usage_alert_admin_goes_through_the_services(staff, usage):
    from decimal import Decimal

    from customers.models import Customer
    from metering.models import UsageAlert

    meter, big = usage[0], usage[1]
    response = staff.post(
        "/admin/metering/usagealert/add/",
        {
            "customer": big.id,
            "meter": meter.id,
            "kind": "usage",
            "name": "big spender",
            "threshold": "30",
            "recurrence": "one_time",
            "active": "on",
            "metadata": "{}",
            "triggers-TOTAL_FORMS": "0",
            "triggers-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    alert = UsageAlert.objects.get()
    assert Customer.objects.get(pk=big.pk).has_usage_alerts  # the service kept the ingestion flag
    assert alert.period_end > alert.period_start
    assert staff.get("/admin/metering/usagealert/").status_code == 200
    assert staff.get(f"/admin/metering/usagealert/{alert.id}/change/").status_code == 200
    response = staff.post(
        f"/admin/metering/usagealert/{alert.id}/change/",
        {
            "name": "big spender",
            "threshold": "31",
            "recurrence": "recurring",
            "active": "",
            "metadata": "{}",
            "triggers-TOTAL_FORMS": "0",
            "triggers-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    alert.refresh_from_db()
    assert (alert.threshold, alert.recurrence, alert.active) == (Decimal(31), "recurring", False)
    assert not Customer.objects.get(pk=big.pk).has_usage_alerts
