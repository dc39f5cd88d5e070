"""A customer's time zone: validated on the API, the calendar of its subscriptions (monthly periods from
local midnight of the anchor day, stored in UTC, across DST changes) and the dates of its documents."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from customers.models import Customer
from customers.tests.factories import CustomerFactory
from invoicing.documents.invoice import invoice_document_context
from subscriptions.services.renewal import renew_subscriptions_job
from subscriptions.tests.support import fixed_price, invoices_of, subscribe

pytestmark = pytest.mark.django_db


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize("zone", ["America/New_York", "Australia/Lord_Howe", "UTC", "Asia/Kathmandu"])
def test_timezone_is_accepted_and_shown(api, zone):
    response = api.post("/api/v1/customers", {"external_id": f"t-{zone}", "timezone": zone}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["timezone"] == zone
    customer_id = response.json()["id"]
    cleared = api.patch(f"/api/v1/customers/{customer_id}", {"timezone": None}, format="json")
    assert cleared.status_code == 200 and cleared.json()["timezone"] is None


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "america/new_york", "Etc/GMT+25", "../etc/passwd", 5])
def test_unknown_timezone_is_a_400_naming_it(api, zone):
    response = api.post("/api/v1/customers", {"external_id": "tz-bad", "timezone": zone}, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["param"] == "timezone"
    assert not Customer.objects.exists()
    customer = CustomerFactory()
    patched = api.patch(f"/api/v1/customers/{customer.id}", {"timezone": zone}, format="json")
    assert patched.status_code == 400 and patched.json()["error"]["param"] == "timezone"
    customer.refresh_from_db()
    assert customer.timezone == ""


def _periods(sub, renewals):
    seen = [(sub.current_period_start, sub.current_period_end)]
    for _ in range(renewals):
        renew_subscriptions_job(now=sub.current_period_end)
        sub.refresh_from_db()
        seen.append((sub.current_period_start, sub.current_period_end))
    return seen


def test_monthly_periods_in_new_york_start_at_local_midnight_across_both_dst_changes():
    customer = CustomerFactory(timezone="America/New_York")
    # 10:00 in New York (EST, UTC-5) on Feb 15: the period starts at that day's local midnight.
    sub, invoice = subscribe(customer, fixed_price("1000"), now=utc(2026, 2, 15, 15))
    assert sub.timezone == "America/New_York"
    assert sub.billing_cycle_anchor == utc(2026, 2, 15, 5)
    assert invoice.lines.get().amount == 1000  # the whole first period: the day it started on is billed
    periods = _periods(sub, 9)
    # DST starts Mar 8 (UTC-4) and ends Nov 1 (UTC-5): midnight moves by an hour in UTC, never locally.
    assert periods[:3] == [
        (utc(2026, 2, 15, 5), utc(2026, 3, 15, 4)),
        (utc(2026, 3, 15, 4), utc(2026, 4, 15, 4)),
        (utc(2026, 4, 15, 4), utc(2026, 5, 15, 4)),
    ]
    assert periods[8:] == [
        (utc(2026, 10, 15, 4), utc(2026, 11, 15, 5)),
        (utc(2026, 11, 15, 5), utc(2026, 12, 15, 5)),
    ]
    # Stored in UTC; each boundary is local midnight of the 15th.
    assert all(start.tzinfo == UTC for start, _ in periods)
    # The March period is an hour short of 28 days (the clock jumped), the October one an hour long.
    assert (periods[0][1] - periods[0][0]).total_seconds() == 28 * 86400 - 3600
    assert (periods[8][1] - periods[8][0]).total_seconds() == 31 * 86400 + 3600
    # Every period was billed in full: a DST hour is not a proration.
    assert [inv.total for inv in invoices_of(sub)] == [1000] * 10


def test_monthly_periods_on_lord_howe_island_across_its_half_hour_dst_changes():
    customer = CustomerFactory(timezone="Australia/Lord_Howe")
    # Lord Howe is UTC+11 in summer, UTC+10:30 in winter: DST ends Apr 5 and starts Oct 4, 2026.
    sub, _ = subscribe(customer, fixed_price("1000"), now=utc(2026, 3, 14, 20))  # 07:00 local, Mar 15
    periods = _periods(sub, 7)
    assert periods[:2] == [
        (utc(2026, 3, 14, 13), utc(2026, 4, 14, 13, 30)),
        (utc(2026, 4, 14, 13, 30), utc(2026, 5, 14, 13, 30)),
    ]
    assert periods[6:] == [
        (utc(2026, 9, 14, 13, 30), utc(2026, 10, 14, 13)),
        (utc(2026, 10, 14, 13), utc(2026, 11, 14, 13)),
    ]


def test_an_explicit_anchor_is_kept_and_a_customer_without_zone_is_unchanged():
    zoned = CustomerFactory(timezone="America/New_York")
    anchor = utc(2026, 2, 15, 15)
    sub, _ = subscribe(zoned, fixed_price("1000"), now=anchor, billing_cycle_anchor=anchor)
    # Kept as given, and still on the zone's calendar: 10:00 in New York each month (EDT from March).
    assert (sub.current_period_start, sub.current_period_end) == (anchor, utc(2026, 3, 15, 14))
    plain, _ = subscribe(CustomerFactory(), fixed_price("1000"), now=anchor)
    assert (plain.billing_cycle_anchor, plain.timezone) == (anchor, "")


def test_documents_show_dates_in_the_customers_zone():
    customer = CustomerFactory(timezone="Australia/Lord_Howe")
    _, invoice = subscribe(customer, fixed_price("1000"), now=utc(2026, 3, 14, 20))
    meta = dict(invoice_document_context(invoice=invoice, now=utc(2026, 3, 14, 20))["meta"])
    # 20:00 UTC on Mar 14 is Mar 15 on the island; the period is Mar 15 - Apr 15 there.
    assert meta["Date of issue"] == "Mar 15, 2026"
    assert meta["Billing period"] == "Mar 15\u2009\u2013\u2009Apr 15, 2026"
    customer.timezone = ""
    customer.save()
    invoice.refresh_from_db()
    utc_meta = dict(invoice_document_context(invoice=invoice, now=utc(2026, 3, 14, 20))["meta"])
    assert utc_meta["Date of issue"] == "Mar 14, 2026"
