"""`usage_push_reconcile`: our per-slice totals against the fake Stripe's meter event summaries, a planted
mismatch reported with its exact difference, the result stored and shown in admin; and the admin of the
push (lanes, pushes, mappings)."""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError

from metering.push.models import MeterMapping, UsagePush, UsagePushLane, UsagePushReconciliation
from metering.tests.push_support import T0, at, events, mapped_meter, provider_customer, run
from metering.tests.usage_support import make_meter

pytestmark = pytest.mark.django_db


def reconcile(*args: str) -> tuple[str, str, int]:
    out, err = StringIO(), StringIO()
    try:
        call_command("usage_push_reconcile", *args, stdout=out, stderr=err)
    except CommandError as exc:
        return out.getvalue(), err.getvalue() + str(exc), exc.returncode
    return out.getvalue(), err.getvalue(), 0


def test_reconciliation_reports_a_planted_mismatch_and_stores_it(fake_stripe, settings):
    meter, stripe_meter = mapped_meter(fake_stripe)
    first, second = provider_customer(), provider_customer()
    events(first, meter, [(at(0, 10), 4), (at(1, 10), 6)], now=at(1, 20))
    events(second, meter, [(at(0, 30), 2)], now=at(1, 20))
    run(fake_stripe, first, meter, at(2, 3))
    run(fake_stripe, second, meter, at(2, 3))
    first.refresh_from_db()
    fake_stripe.now = at(2, 30)

    out, err, code = reconcile("--start", "2026-03-02T00:00:00Z", "--end", "2026-03-03T00:00:00Z", "--no-progress")
    assert code == 0, err
    assert "3 slice(s) with usage in 2 lane(s)" in out and "0 differ" in out
    assert UsagePushReconciliation.objects.get().status == "ok"

    # Someone else sends 1.5 to the same Stripe meter for the first customer's 11:00 slice.
    fake_stripe.record_meter_event(stripe_meter["event_name"], first.provider_customer_id, "1.5", at(1, 20))
    out, err, code = reconcile("--start", "2026-03-02T00:00:00Z", "--end", "2026-03-03T00:00:00Z")

    assert code == 1 and "1 differ" in err
    lines = [line.split() for line in out.splitlines()]
    assert lines[0] == [
        "customer",
        "external_id",
        "meter",
        "slice_start",
        "usage",
        "pushed",
        "provider",
        "difference",
        "status",
    ]
    assert [
        first.id,
        first.external_id,
        meter.code,
        "2026-03-02T11:00:00+00:00",
        "6",
        "6",
        "7.5",
        "1.5",
        "mismatch",
    ] in lines
    assert [first.id, first.external_id, meter.code, "2026-03-02T10:00:00+00:00", "4", "4", "4", "0", "ok"] in lines
    assert "100%" not in err  # no progress bar when stderr is not a terminal (billing_site/progress.py)
    stored = UsagePushReconciliation.objects.order_by("-id").first()
    assert stored.status == "mismatch" and stored.mismatches == 1 and stored.lanes == 2 and stored.slices == 3
    assert stored.rows == [
        {
            "customer": first.id,
            "external_id": first.external_id,
            "meter": meter.code,
            "slice_start": "2026-03-02T11:00:00+00:00",
            "slice_end": "2026-03-02T12:00:00+00:00",
            "usage": "6",
            "pushed": "6",
            "provider": "7.5",
            "difference": "1.5",
            "status": "mismatch",
        }
    ]

    # One customer only, and only what differs.
    out, _, code = reconcile(
        "--start",
        "2026-03-02T00:00:00Z",
        "--end",
        "2026-03-03T00:00:00Z",
        "--customer",
        second.external_id,
        "--differing",
        "--no-progress",
    )
    assert code == 0 and len(out.splitlines()) == 2  # the header and the summary


def test_a_late_event_not_pushed_yet_shows_as_behind(fake_stripe):
    meter, _ = mapped_meter(fake_stripe)
    customer = provider_customer()
    events(customer, meter, [(at(0, 10), 4)], now=at(0, 20))
    run(fake_stripe, customer, meter, at(1, 3))
    events(customer, meter, [(at(0, 50), 1)], now=at(1, 10))
    fake_stripe.now = at(1, 30)
    out, _, code = reconcile("--start", "2026-03-02T10:00:00Z", "--end", "2026-03-02T11:00:00Z", "--no-progress")
    assert code == 1
    assert out.splitlines()[1].split()[-5:] == ["5", "4", "4", "-1", "behind"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--start", "2026-03-02", "--end", "2026-03-03T00:00:00Z"], "UTC offset"),
        (["--start", "2026-03-03T00:00:00Z", "--end", "2026-03-02T00:00:00Z"], "before --end"),
        (["--start", "2026-03-02T00:00:00Z", "--end", "2026-03-03T00:00:00Z", "--customer", "nobody"], "nobody"),
    ],
)
def test_bad_arguments_are_refused(fake_stripe, args, message):
    with pytest.raises(CommandError, match=message):
        call_command("usage_push_reconcile", *args, stdout=StringIO(), stderr=StringIO())
    assert not UsagePushReconciliation.objects.exists()


@pytest.fixture
def staff(client):
    user = User.objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(user)
    return client


def test_admin_shows_reconciliations_pushes_lanes_and_mappings(staff, fake_stripe):
    meter, stripe_meter = mapped_meter(fake_stripe)
    customer = provider_customer()
    events(customer, meter, [(at(0, 10), 4)], now=at(0, 20))
    run(fake_stripe, customer, meter, at(1, 3))
    customer.refresh_from_db()
    fake_stripe.record_meter_event(stripe_meter["event_name"], customer.provider_customer_id, "2", T0)
    fake_stripe.now = at(1, 30)
    reconcile("--start", "2026-03-02T00:00:00Z", "--end", "2026-03-03T00:00:00Z", "--no-progress")
    record = UsagePushReconciliation.objects.get()

    page = staff.get(f"/admin/metering/usagepushreconciliation/{record.id}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Slices that differ" in html and "<td>mismatch</td>" in html and "<td>2</td>" in html
    assert staff.get("/admin/metering/usagepushreconciliation/").status_code == 200
    push = UsagePush.objects.get()
    assert staff.get("/admin/metering/usagepush/?attention=yes").status_code == 200
    assert staff.get(f"/admin/metering/usagepush/{push.id}/change/").status_code == 200
    assert staff.get("/admin/metering/usagepushlane/?blocked=yes").status_code == 200
    assert staff.get("/admin/metering/metermapping/").status_code == 200
    assert staff.get(f"/admin/customers/customer/{customer.id}/change/").status_code == 200


def test_admin_unblocks_a_lane_and_settles_an_outstanding_push(staff, fake_stripe):
    meter, _ = mapped_meter(fake_stripe)
    customer = provider_customer()
    events(customer, meter, [(at(0, 10), 4)], now=at(0, 20))
    fake_stripe.fail_next("POST /v1/billing/meter_events", "timeout", "timeout", "timeout")
    run(fake_stripe, customer, meter, at(1, 3))
    push = UsagePush.objects.get()
    assert push.status == "unknown"

    response = staff.post(
        "/admin/metering/usagepush/", {"action": "mark_recorded", "_selected_action": [push.id]}, follow=True
    )
    assert response.status_code == 200
    push.refresh_from_db()
    assert push.status == "sent" and push.settled_by == "operator"

    lane = UsagePushLane.objects.get()
    UsagePushLane.objects.filter(pk=lane.pk).update(blocked_at=at(1, 5), error="refused")
    staff.post("/admin/metering/usagepushlane/", {"action": "unblock", "_selected_action": [lane.pk]})
    lane.refresh_from_db()
    assert lane.blocked_at is None and lane.error == ""


def test_admin_creates_mappings_through_the_service_and_refuses_max_meters(staff):
    summed = make_meter("sum")
    maxed = make_meter("max")
    response = staff.post("/admin/metering/metermapping/add/", {"meter": summed.id, "event_name": "api_calls"})
    assert response.status_code == 302
    assert MeterMapping.objects.get().event_name == "api_calls"
    refused = staff.post("/admin/metering/metermapping/add/", {"meter": maxed.id, "event_name": "peak"})
    assert refused.status_code == 200 and "only sum and count meters" in refused.content.decode()
    assert MeterMapping.objects.count() == 1


def test_admin_switches_a_customer_to_provider_mode_through_the_service(staff, fake_stripe):
    from customers.models import BillingModeChange
    from metering.tests.push_support import native_customer

    customer = native_customer()
    page = staff.get(f"/admin/customers/customer/{customer.id}/change/")
    form = page.context["adminform"].form
    data = {name: form.initial.get(name) or "" for name in form.fields}
    data.update({"billing_mode": "provider", "metadata": "{}"})
    for inline in page.context["inline_admin_formsets"]:  # the page's read-only inlines post no rows
        data.update({f"{inline.formset.prefix}-TOTAL_FORMS": "0", f"{inline.formset.prefix}-INITIAL_FORMS": "0"})
    response = staff.post(f"/admin/customers/customer/{customer.id}/change/", data)
    assert response.status_code == 302, response.content.decode()[:2000]
    customer.refresh_from_db()
    assert customer.billing_mode == "provider"
    assert BillingModeChange.objects.get(customer=customer).source == "admin"
