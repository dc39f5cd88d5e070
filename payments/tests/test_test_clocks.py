"""Test clocks (issue 16): a customer on a clock lives on the clock's time; advancing runs every per-customer
job at each due moment in order; the real-time jobs never touch it; refused when TEST_CLOCKS_ENABLED is off.

Stripe's model (https://docs.stripe.com/billing/testing/test-clocks): create a clock at a frozen time,
attach customers at creation, advance forward only (`advancing` -> `ready`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from billing_site.jobs import JOBS, job_run, per_customer_jobs
from customers.models import Customer
from customers.models import TestClock as Clock
from customers.tests.factories import CustomerFactory
from invoicing.models import Invoice
from payments.clocks import test_clock_run as clock_run
from payments.models import CollectionAttempt, CreditGrant
from payments.services.collection import invoices_collect_job
from payments.services.grants import credit_grant_create, credit_grants_expire_job
from payments.services.methods import payment_method_create
from subscriptions.models import Subscription
from subscriptions.services.renewal import renew_subscriptions_job
from subscriptions.tests.support import fixed_price, subscribe
from webhooks.models import BillingEvent

pytestmark = pytest.mark.django_db

START = datetime(2026, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def _clock(api, at=START, name="plan test"):
    response = api.post("/api/v1/test-clocks", {"frozen_time": _iso(at), "name": name}, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def _customer(api, clock_id, external_id="clocked"):
    body = {"external_id": external_id, "currency": "usd", "test_clock": clock_id}
    response = api.post("/api/v1/customers", body, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def _advance(api, clock_id, to):
    return api.post(f"/api/v1/test-clocks/{clock_id}/advance", {"frozen_time": _iso(to)}, format="json")


def _pay_with(api, customer_id, token):
    body = {"customer": customer_id, "token": token, "default": True}
    response = api.post("/api/v1/payment-methods", body, format="json")
    assert response.status_code == 201, response.json()


def test_create_list_get_and_delete_a_clock(api):
    clock = _clock(api)
    assert clock["object"] == "test_clock"
    assert clock["id"].startswith("clock_")
    assert clock["frozen_time"] == "2026-01-01T00:00:00Z"
    assert clock["status"] == "ready" and clock["status_details"] == {}
    assert clock["livemode"] is False and clock["customers"] == 0
    customer = _customer(api, clock["id"])
    assert customer["test_clock"] == clock["id"]

    listed = api.get("/api/v1/test-clocks").json()
    assert [(c["id"], c["customers"]) for c in listed["data"]] == [(clock["id"], 1)]
    assert api.get(f"/api/v1/test-clocks/{clock['id']}").json()["name"] == "plan test"
    assert api.get(f"/api/v1/customers?test_clock={clock['id']}").json()["data"][0]["id"] == customer["id"]

    assert api.delete(f"/api/v1/test-clocks/{clock['id']}").status_code == 204
    assert api.get(f"/api/v1/test-clocks/{clock['id']}").status_code == 404
    assert Customer.objects.get(pk=customer["id"]).status == Customer.Status.DELETED
    assert api.get("/api/v1/test-clocks").json()["data"] == []
    types = list(BillingEvent.objects.filter(object_id=clock["id"]).order_by("id").values_list("type", flat=True))
    assert types == ["test_clock.created", "test_clock.deleted"]


def test_bad_input_is_refused_with_the_field_named(api):
    bad = api.post("/api/v1/test-clocks", {"name": "x"}, format="json")
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "frozen_time"
    bad = api.post("/api/v1/test-clocks", {"frozen_time": "yesterday"}, format="json")
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "frozen_time"
    bad = api.post("/api/v1/test-clocks", {"frozen_time": _iso(START), "speed": 2}, format="json")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "unknown_field"
    far = api.post("/api/v1/test-clocks", {"frozen_time": "2090-01-01T00:00:00Z"}, format="json")
    assert far.status_code == 400 and far.json()["error"]["param"] == "frozen_time"
    # Unix seconds, as Stripe takes them.
    unix = api.post("/api/v1/test-clocks", {"frozen_time": int(START.timestamp())}, format="json")
    assert unix.status_code == 201 and unix.json()["frozen_time"] == "2026-01-01T00:00:00Z"

    missing = api.post("/api/v1/customers", {"external_id": "a", "test_clock": "clock_nope"}, format="json")
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "test_clock"
    assert not Customer.objects.filter(external_id="a").exists()

    clock = unix.json()["id"]
    provider = api.post(
        "/api/v1/customers", {"external_id": "b", "test_clock": clock, "billing_mode": "provider"}, format="json"
    )
    assert provider.status_code == 400 and provider.json()["error"]["code"] == "test_clock_billing_mode"
    assert not Customer.objects.filter(external_id="b").exists()

    backwards = _advance(api, clock, START - DAY)
    assert backwards.status_code == 400 and backwards.json()["error"]["code"] == "test_clock_backwards"
    assert api.post(f"/api/v1/test-clocks/{clock}/advance", {}, format="json").json()["error"]["param"] == "frozen_time"
    assert _advance(api, "clock_nope", START + DAY).status_code == 404
    assert Clock.objects.get(pk=clock).frozen_time == START


def test_refused_in_live_mode(api, settings):
    clock = _clock(api)
    settings.TEST_CLOCKS_ENABLED = False
    for response in (
        api.post("/api/v1/test-clocks", {"frozen_time": _iso(START)}, format="json"),
        api.get("/api/v1/test-clocks"),
        api.get(f"/api/v1/test-clocks/{clock['id']}"),
        _advance(api, clock["id"], START + DAY),
        api.delete(f"/api/v1/test-clocks/{clock['id']}"),
        api.post("/api/v1/customers", {"external_id": "x", "test_clock": clock["id"]}, format="json"),
    ):
        assert response.status_code == 403, response.json()
        assert response.json()["error"]["code"] == "test_clocks_disabled"
    assert Clock.objects.get(pk=clock["id"]).frozen_time == START
    assert not Customer.objects.filter(external_id="x").exists()


def test_a_trial_three_renewals_a_declined_payment_and_dunning_to_cancellation(api, settings):
    settings.DUNNING_FINAL_ACTION = "canceled"
    settings.DUNNING_RETRY_DAYS = [1, 3, 5, 7]
    clock = _clock(api)
    customer = _customer(api, clock["id"])
    _pay_with(api, customer["id"], "tok_visa")
    price = fixed_price("1000", now=START)

    created = api.post(
        "/api/v1/subscriptions",
        {"customer": customer["id"], "items": [{"price": price.id}], "trial_days": 14},
        format="json",
    )
    assert created.status_code == 201, created.json()
    sub = created.json()
    # Created at the clock's time, not the wall clock's.
    assert sub["status"] == "trialing"
    assert sub["trial_start"] == "2026-01-01T00:00:00Z" and sub["trial_end"] == "2026-01-15T00:00:00Z"

    # Over the trial's end and three renewals in one advance: each step at its own moment, in order.
    advanced = _advance(api, clock["id"], datetime(2026, 4, 20, tzinfo=UTC))
    assert advanced.status_code == 200, advanced.json()
    assert advanced.json()["status"] == "ready" and advanced.json()["frozen_time"] == "2026-04-20T00:00:00Z"
    invoices = list(Invoice.objects.filter(subscription_id=sub["id"]).order_by("period_start"))
    assert [(i.billing_reason, i.status, i.total, i.period_start.date().isoformat()) for i in invoices] == [
        ("subscription_create", "paid", 1000, "2026-01-15"),
        ("subscription_cycle", "paid", 1000, "2026-02-15"),
        ("subscription_cycle", "paid", 1000, "2026-03-15"),
        ("subscription_cycle", "paid", 1000, "2026-04-15"),
    ]
    # Paid at the moment each was issued, not at the end of the advance.
    assert [i.paid_at for i in invoices] == [i.period_start for i in invoices]
    shown = api.get(f"/api/v1/subscriptions/{sub['id']}").json()
    assert shown["status"] == "active"
    assert (shown["current_period_start"], shown["current_period_end"]) == (
        "2026-04-15T00:00:00Z",
        "2026-05-15T00:00:00Z",
    )
    numbers = [i.number for i in invoices]
    assert numbers == sorted(numbers)  # numbered in the order they were issued

    # The card now declines: the next renewal fails, dunning retries 1, 3, 5 and 7 days after, then cancels.
    _pay_with(api, customer["id"], "tok_chargeDeclined")
    assert _advance(api, clock["id"], datetime(2026, 6, 1, tzinfo=UTC)).json()["status"] == "ready"
    failed = Invoice.objects.get(subscription_id=sub["id"], period_start=datetime(2026, 5, 15, tzinfo=UTC))
    assert failed.status == "uncollectible" and failed.attempt_count == 5
    attempts = list(CollectionAttempt.objects.filter(invoice=failed).order_by("created_at"))
    renewal = datetime(2026, 5, 15, tzinfo=UTC)
    assert [a.created_at for a in attempts] == [renewal + d * DAY for d in (0, 1, 3, 5, 7)]
    assert not any(a.success for a in attempts)
    shown = api.get(f"/api/v1/subscriptions/{sub['id']}").json()
    assert shown["status"] == "canceled" and shown["cancellation_reason"] == "payment_failed"
    assert shown["ended_at"] == "2026-05-22T00:00:00Z"
    statuses = list(
        BillingEvent.objects.filter(object_id=sub["id"], type__startswith="subscription.")
        .order_by("created_at", "id")
        .values_list("type", "created_at")
    )
    assert statuses[0] == ("subscription.created", START)
    assert ("subscription.trial_ended", datetime(2026, 1, 15, tzinfo=UTC)) in statuses
    assert statuses[-1][0] == "subscription.canceled" and statuses[-1][1] == datetime(2026, 5, 22, tzinfo=UTC)
    assert Invoice.objects.filter(subscription_id=sub["id"]).count() == 5  # nothing billed after the end
    assert Clock.objects.get(pk=clock["id"]).frozen_time == datetime(2026, 6, 1, tzinfo=UTC)


def test_advancing_is_idempotent_and_never_goes_back(api):
    clock = _clock(api)
    customer = _customer(api, clock["id"])
    _pay_with(api, customer["id"], "tok_visa")
    price = fixed_price("500", now=START)
    api.post("/api/v1/subscriptions", {"customer": customer["id"], "items": [{"price": price.id}]}, format="json")
    to = datetime(2026, 3, 10, tzinfo=UTC)
    assert _advance(api, clock["id"], to).status_code == 200
    before = sorted(Invoice.objects.filter(customer_id=customer["id"]).values_list("id", "status", "amount_paid"))
    assert len(before) == 3  # Jan 1 (create), Feb 1, Mar 1

    again = _advance(api, clock["id"], to)  # the same time: a no-op
    assert again.status_code == 200 and again.json()["frozen_time"] == "2026-03-10T00:00:00Z"
    # A duplicate run of the task, and every job run again at every moment already passed, change nothing.
    assert clock_run(clock_id=clock["id"]) == {"skipped": 1}
    for moment in (START, datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC), to):
        for job in per_customer_jobs():
            job_run(job.name, now=moment, clock=clock["id"])
    after = sorted(Invoice.objects.filter(customer_id=customer["id"]).values_list("id", "status", "amount_paid"))
    assert after == before
    assert CollectionAttempt.objects.filter(invoice__customer_id=customer["id"]).count() == 3

    # With an Idempotency-Key, a retried advance is replayed.
    key = {"HTTP_IDEMPOTENCY_KEY": "advance-1"}
    body = {"frozen_time": "2026-04-10T00:00:00Z"}
    first = api.post(f"/api/v1/test-clocks/{clock['id']}/advance", body, format="json", **key)
    second = api.post(f"/api/v1/test-clocks/{clock['id']}/advance", body, format="json", **key)
    assert first.status_code == second.status_code == 200
    assert second["Idempotent-Replayed"] == "true"
    assert Invoice.objects.filter(customer_id=customer["id"]).count() == 4


def test_an_advancing_clock_refuses_a_second_advance_and_new_customers(api):
    clock = _clock(api)
    Clock.objects.filter(pk=clock["id"]).update(status="advancing", target_frozen_time=START + DAY)
    busy = _advance(api, clock["id"], START + 2 * DAY)
    assert busy.status_code == 409 and busy.json()["error"]["code"] == "test_clock_advancing"
    shown = api.get(f"/api/v1/test-clocks/{clock['id']}").json()
    assert shown["status_details"] == {"advancing": {"target_frozen_time": "2026-01-02T00:00:00Z"}}
    refused = api.post("/api/v1/customers", {"external_id": "late", "test_clock": clock["id"]}, format="json")
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "test_clock_not_ready"


def test_a_failing_advance_is_reported_and_can_be_retried(api, monkeypatch):
    clock = _clock(api)
    customer = _customer(api, clock["id"])
    price = fixed_price("500", now=START)
    api.post("/api/v1/subscriptions", {"customer": customer["id"], "items": [{"price": price.id}]}, format="json")

    import subscriptions.services.renewal as renewal

    real = renewal.renew_subscriptions_job

    def broken(**kwargs):
        raise RuntimeError("renewal is down")

    monkeypatch.setattr(renewal, "renew_subscriptions_job", broken)
    failed = _advance(api, clock["id"], datetime(2026, 2, 10, tzinfo=UTC))
    assert failed.status_code == 200
    assert failed.json()["status"] == "internal_failure"
    assert failed.json()["status_details"] == {"internal_failure": {"message": "renewal is down"}}
    monkeypatch.setattr(renewal, "renew_subscriptions_job", real)
    retried = _advance(api, clock["id"], datetime(2026, 2, 10, tzinfo=UTC))
    assert retried.json()["status"] == "ready"
    assert Invoice.objects.filter(customer_id=customer["id"]).count() == 2


def test_real_time_jobs_never_touch_clock_customers(api):
    clock = _clock(api)
    clocked = Customer.objects.get(pk=_customer(api, clock["id"])["id"])
    plain = CustomerFactory(currency="usd")
    for customer in (clocked, plain):
        payment_method_create(customer=customer, token="tok_visa", default=True, now=START)
    price = fixed_price("700", now=START)
    clocked_sub, _ = subscribe(clocked, price, now=START)
    plain_sub, _ = subscribe(plain, price, now=START)
    grants = {
        c.pk: credit_grant_create(customer=c, amount=100, currency="usd", expires_at=START + DAY, now=START)
        for c in (clocked, plain)
    }

    later = datetime(2026, 3, 5, tzinfo=UTC)
    renew_subscriptions_job(now=later)
    invoices_collect_job(now=later)
    credit_grants_expire_job(now=later)
    for job in JOBS:
        if job.per_customer:
            job_run(job.name, now=later)

    assert Invoice.objects.filter(subscription=plain_sub).count() == 3
    assert Invoice.objects.filter(subscription=clocked_sub).count() == 1
    clocked_first = Invoice.objects.get(subscription=clocked_sub)
    assert clocked_first.status == "open" and not clocked_first.collection_attempts.exists()
    assert CreditGrant.objects.get(pk=grants[plain.pk].pk).status == "expired"
    assert CreditGrant.objects.get(pk=grants[clocked.pk].pk).status == "active"
    assert Subscription.objects.get(pk=clocked_sub.pk).current_period_start == START

    # The clock's own advance does it, at the clock's moments; the plain customer is not touched again.
    plain_invoices = Invoice.objects.filter(customer=plain).count()
    assert _advance(api, clock["id"], datetime(2026, 2, 2, tzinfo=UTC)).json()["status"] == "ready"
    assert CreditGrant.objects.get(pk=grants[clocked.pk].pk).expired_at == START + DAY
    assert Invoice.objects.filter(subscription=clocked_sub).count() == 2
    assert Invoice.objects.filter(customer=plain).count() == plain_invoices


def test_every_per_customer_job_takes_a_clock():
    import inspect

    from django.utils.module_loading import import_string

    assert {job.name for job in per_customer_jobs()} >= {
        "renew_subscriptions",
        "bill_ended_late_usage",
        "expire_credit_grants",
        "collect_invoices",
        "resolve_unknown_payments",
        "evaluate_usage_alerts",
        "progressive_billing",
    }
    for job in per_customer_jobs():
        assert "clock" in inspect.signature(import_string(job.function)).parameters, job.name
        if job.next_due:
            assert set(inspect.signature(import_string(job.next_due)).parameters) == {"clock", "after"}


# --- Usage, alerts and progressive billing on a clock's time ---------------------------------------------


def _far_clock(api, days=120, **kwargs):
    """A clock months from the wall clock (usage at its time is outside the wall clock's window)."""
    from django.utils import timezone

    at = (timezone.now() + timedelta(days=days)).replace(minute=0, second=0, microsecond=0)
    return _clock(api, at=at, **kwargs), at


def _ingest(events, **kwargs):
    from django.utils import timezone

    from metering.ingest import usage_ingest

    return usage_ingest(events=events, now=timezone.now(), **kwargs)


def test_a_clock_customer_records_usage_at_its_clock_time_and_the_advance_bills_it(api):
    from django.utils import timezone

    from metering.models import MeterEvent
    from subscriptions.tests.support import metered_price

    clock, start = _far_clock(api)
    clocked = Customer.objects.get(pk=_customer(api, clock["id"])["id"])
    payment_method_create(customer=clocked, token="tok_visa", default=True, now=start)
    plain = CustomerFactory(currency="usd")
    calls = metered_price(unit="2", now=start - 200 * DAY)
    sub, _ = subscribe(clocked, calls, now=start)
    assert _advance(api, clock["id"], start + 10 * DAY).json()["status"] == "ready"
    at = start + 10 * DAY  # the clock's time
    wall = timezone.now()

    def event(customer, when=None, value="1", **extra):
        body = {"customer": customer.id, "meter": calls.meter.code, "value": value, **extra}
        if when is not None:
            body["timestamp"] = _iso(when)
        return body

    result = _ingest(
        [
            event(clocked, at - timedelta(hours=1), "30"),  # months ahead of the wall clock: fine on the clock
            event(clocked, None, "5"),  # no timestamp: the clock's time
            event(clocked, at + timedelta(hours=1)),  # in the clock's future
            event(clocked, at - 36 * DAY),  # before the clock's backfill window (still ahead of the wall clock)
            event(plain, at - timedelta(hours=1)),  # a wall-clock customer: its window is the wall clock's
            event(plain, wall - timedelta(hours=1), "7"),
            event(clocked, wall - timedelta(hours=1)),  # the wall clock's time is long past on the clock
        ]
    )
    outcome = [(r["status"], r["error"]["code"] if r["error"] else None) for r in result.results]
    assert outcome == [
        ("created", None),
        ("created", None),
        ("rejected", "timestamp_in_future"),
        ("rejected", "timestamp_too_old"),
        ("rejected", "timestamp_in_future"),
        ("created", None),
        ("rejected", "timestamp_too_old"),
    ]
    stored = sorted(MeterEvent.objects.filter(customer=clocked).values_list("timestamp", "value"))
    assert [(t, int(v)) for t, v in stored] == [(at - timedelta(hours=1), 30), (at, 5)]
    assert MeterEvent.objects.filter(customer=plain).count() == 1
    # A retry of the same keyed event is a duplicate on the clock too.
    keyed = event(clocked, at, "4", idempotency_key="k-1")
    assert _ingest([keyed]).created == 1
    assert _ingest([keyed, keyed]).duplicates == 2

    # The HTTP endpoints go through the same path.
    body = [{"TenantID": clocked.external_id, "ProductCode": calls.meter.code, "Quantity": 1, "Timestamp": _iso(at)}]
    response = api.post("/api/v1/events/billing-events", body, format="json")
    assert response.status_code == 200 and response.json()["created"] == 1, response.json()
    assert MeterEvent.objects.filter(customer=clocked).count() == 4

    # Over the period's end: renewal bills exactly that usage, 40 units at 2.
    assert _advance(api, clock["id"], start + 40 * DAY).json()["status"] == "ready"
    cycle = Invoice.objects.get(subscription=sub, billing_reason="subscription_cycle")
    usage = [(line.kind, line.amount) for line in cycle.lines.all()]
    assert usage == [("usage", 80)], usage
    assert cycle.status == "paid"
    # The next renewal bills none of it again.
    assert _advance(api, clock["id"], start + 70 * DAY).json()["status"] == "ready"
    cycles = Invoice.objects.filter(subscription=sub, billing_reason="subscription_cycle").order_by("period_start")
    assert [sum(line.amount for line in i.lines.all()) for i in cycles] == [80, 0]


def test_an_advance_evaluates_usage_alerts_once_and_real_time_ignores_clock_customers(api):
    from decimal import Decimal

    from django.utils import timezone

    from metering.alerts import usage_alert_create, usage_alerts_job
    from metering.models import UsageAlert, UsageAlertTrigger
    from subscriptions.tests.support import metered_price

    clock, start = _far_clock(api)
    clocked = Customer.objects.get(pk=_customer(api, clock["id"])["id"])
    plain = CustomerFactory(currency="usd")
    wall = timezone.now()
    calls = metered_price(unit="100", now=wall - 200 * DAY)
    clocked_sub, _ = subscribe(clocked, calls, now=start)
    subscribe(plain, calls, now=wall - DAY)
    amount = {
        c.pk: usage_alert_create(customer=c, kind="invoice_amount", threshold=Decimal(1000), now=n)
        for c, n in ((clocked, start), (plain, wall))
    }
    usage = usage_alert_create(
        customer=clocked, meter=calls.meter, threshold=Decimal(10), recurrence="per_period", now=start
    )
    assert (usage.period_start, usage.period_end) == (clocked_sub.current_period_start, clocked_sub.current_period_end)

    def use(customer, when, value):
        body = {"customer": customer.id, "meter": calls.meter.code, "value": value, "timestamp": _iso(when)}
        assert _ingest([body]).created == 1

    use(clocked, start, "15")  # 1500 upcoming; and 15 >= 10 of the usage alert, evaluated at the clock's time
    use(plain, wall - timedelta(minutes=1), "15")
    triggers = UsageAlertTrigger.objects.filter(alert=usage)
    assert list(triggers.values_list("period_start", "level")) == [(start, 1)]

    # Ingestion evaluated both amount alerts (a task each), the clock customer's at its clock's time; the
    # real-time job finds nothing more.
    assert UsageAlertTrigger.objects.filter(alert=amount[plain.pk]).count() == 1
    clocked_triggers = UsageAlertTrigger.objects.filter(alert=amount[clocked.pk])
    assert list(clocked_triggers.values_list("triggered_at", flat=True)) == [start]
    assert usage_alerts_job(now=wall)["triggered"] == 0

    # The advance evaluates it again at the clock's time: still once; over the renewal the alerts move on in order.
    assert _advance(api, clock["id"], start + DAY).json()["status"] == "ready"
    assert _advance(api, clock["id"], start + 2 * DAY).json()["status"] == "ready"
    (trigger,) = UsageAlertTrigger.objects.filter(alert=amount[clocked.pk])
    assert (trigger.triggered_at, trigger.period_start, trigger.level) == (start, start, 1)
    renewal = clocked_sub.current_period_end
    assert _advance(api, clock["id"], renewal + DAY).json()["status"] == "ready"
    moved = UsageAlert.objects.get(pk=usage.pk)
    assert moved.period_start == renewal  # the period renewal just started, not a calendar month
    use(clocked, renewal + DAY, "10")
    assert list(triggers.order_by("period_start").values_list("period_start", "level")) == [(start, 1), (renewal, 1)]
    # The new period's 1000 of usage crosses the amount alert again, on ingestion: once per period.
    assert list(clocked_triggers.order_by("period_start").values_list("period_start", "level")) == [
        (start, 1),
        (renewal, 1),
    ]
    assert BillingEvent.objects.filter(type="usage_alert.triggered", object_id=amount[clocked.pk].pk).count() == 2


def test_an_advance_bills_progressive_thresholds_and_real_time_ignores_clock_customers(api):
    from django.utils import timezone

    from subscriptions.services.progressive import progressive_billing_job
    from subscriptions.tests.support import metered_price

    clock, start = _far_clock(api)
    clocked = Customer.objects.get(pk=_customer(api, clock["id"])["id"])
    payment_method_create(customer=clocked, token="tok_visa", default=True, now=start)
    plain = CustomerFactory(currency="usd")
    wall = timezone.now()
    calls = metered_price(unit="100", now=wall - 200 * DAY)
    clocked_sub, _ = subscribe(clocked, calls, now=start, progressive_billing_thresholds=[1000])
    plain_sub, _ = subscribe(plain, calls, now=wall - DAY, progressive_billing_thresholds=[1000])
    at = start + 2 * DAY
    assert _advance(api, clock["id"], at).json()["status"] == "ready"
    for customer, when in ((clocked, at - timedelta(minutes=1)), (plain, wall - timedelta(minutes=1))):
        body = {"customer": customer.id, "meter": calls.meter.code, "value": "15", "timestamp": _iso(when)}
        assert _ingest([body]).created == 1

    def thresholds(sub):
        return list(
            Invoice.objects.filter(subscription=sub, billing_reason="subscription_threshold").values_list(
                "total", "period_end"
            )
        )

    # Ingestion bills each at its own time (the clocked customer's at its clock's), once; the job and the
    # advances add nothing, and the renewal's final invoice subtracts it.
    (plain_billed,) = thresholds(plain_sub)
    assert plain_billed[0] == 1500 and plain_billed[1] <= timezone.now()
    assert thresholds(clocked_sub) == [(1500, at + timedelta(microseconds=1))]
    assert progressive_billing_job(now=wall)["invoices"] == 0
    assert _advance(api, clock["id"], at + DAY).json()["status"] == "ready"
    assert _advance(api, clock["id"], at + 2 * DAY).json()["status"] == "ready"
    assert thresholds(clocked_sub) == [(1500, at + timedelta(microseconds=1))]
    assert thresholds(plain_sub) == [plain_billed]
    assert _advance(api, clock["id"], clocked_sub.current_period_end + DAY).json()["status"] == "ready"
    cycle = Invoice.objects.get(subscription=clocked_sub, billing_reason="subscription_cycle")
    assert sorted((line.kind, line.amount) for line in cycle.lines.all()) == [
        ("progressive_credit", -1500),
        ("usage", 1500),
    ]
    assert thresholds(plain_sub) == [plain_billed]


def test_clock_customers_cost_ingestion_one_query_per_batch_and_others_nothing(api):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from metering.tests.factories import MeterFactory

    clock, at = _far_clock(api)
    clocked = Customer.objects.get(pk=_customer(api, clock["id"])["id"])
    plain = CustomerFactory(currency="usd")
    meter = MeterFactory()
    wall = timezone.now().replace(minute=30, second=0, microsecond=0) - timedelta(hours=1)

    def batch(customer, base, tag, n=20):
        return [
            {
                "customer": customer.id,
                "meter": meter.code,
                "value": "1",
                "timestamp": _iso(base + timedelta(seconds=i)),
                "idempotency_key": f"{tag}-{i}",
            }
            for i in range(n)
        ]

    # Warm-up (a partition for the clock's months, the meter's first events), then the same batch shapes.
    assert _ingest(batch(plain, wall, "w", 1)).created == 1
    assert _ingest(batch(clocked, at - timedelta(minutes=30), "w", 1)).created == 1
    with CaptureQueriesContext(connection) as on_wall:
        assert _ingest(batch(plain, wall + timedelta(minutes=1), "m")).created == 20
    with CaptureQueriesContext(connection) as on_clock:
        assert _ingest(batch(clocked, at - timedelta(minutes=29), "m")).created == 20
    assert len(on_clock) == len(on_wall) + 1
    clocks = Clock._meta.db_table
    assert not any(clocks in q["sql"] for q in on_wall.captured_queries)
    assert sum(clocks in q["sql"] for q in on_clock.captured_queries) == 1
