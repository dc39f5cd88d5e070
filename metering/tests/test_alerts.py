"""Usage alerts: crossings recorded once per level and period, on ingestion (one statement per batch,
none for customers without alerts) and by the job; the /alerts API; check-threshold."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from customers.models import Customer
from customers.tests.factories import CustomerFactory
from metering.alerts import calendar_month, usage_alert_create, usage_alerts_job
from metering.ingest import usage_ingest
from metering.models import MeterEvent, UsageAlert, UsageAlertTrigger
from metering.rollups import usage_rollup_job
from metering.tests.usage_support import make_meter
from metering.usage import usage_cancel
from webhooks.models import BillingEvent

NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)
MAR1, APR1 = datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC)


def send(customer, meter, *values, at=NOW, now=NOW):
    result = usage_ingest(
        events=[
            {"customer": customer.id, "meter": meter.code, "value": str(v), "timestamp": at.isoformat()} for v in values
        ],
        now=now,
    )
    assert result.created == len(values), result.results


def triggered(alert=None):
    events = BillingEvent.objects.filter(type="usage_alert.triggered").order_by("id")
    if alert is not None:
        events = events.filter(object_id=alert.id)
    return [(e.data["level"], e.data["crossed"], e.data["value"]) for e in events]


@pytest.mark.django_db
def test_a_one_time_alert_triggers_once_per_period_when_ingestion_crosses_it():
    customer, meter = CustomerFactory(), make_meter("sum")
    alert = usage_alert_create(customer=customer, meter=meter, threshold=Decimal(10), now=NOW)
    assert (alert.period_start, alert.period_end) == (MAR1, APR1)  # no subscription: the UTC month
    assert Customer.objects.get(pk=customer.pk).has_usage_alerts
    send(customer, meter, "6")
    assert triggered() == []
    send(customer, meter, "4.5")
    assert triggered() == [(1, "10", "10.5")]
    event = BillingEvent.objects.get(type="usage_alert.triggered")
    assert (event.object_type, event.object_id, event.customer_id) == ("usage_alert", alert.id, customer.id)
    assert event.data["period_start"] == "2026-03-01T00:00:00Z" and event.data["meter"] == meter.id
    send(customer, meter, "100")  # further usage: one_time stays at one crossing per period
    usage_alerts_job(now=NOW)
    assert triggered() == [(1, "10", "10.5")]
    assert UsageAlertTrigger.objects.count() == 1
    # Usage before the period does not count; a new period can trigger again (the job moves it on).
    send(customer, meter, "50", at=datetime(2026, 2, 27, tzinfo=UTC))
    apr = datetime(2026, 4, 2, tzinfo=UTC)
    assert usage_alerts_job(now=apr)["periods_moved"] == 1
    send(customer, meter, "11", at=apr, now=apr)
    assert triggered() == [(1, "10", "10.5"), (1, "10", "11")]


@pytest.mark.django_db
def test_a_recurring_alert_triggers_at_every_multiple_once():
    customer, meter = CustomerFactory(), make_meter("count")
    alert = usage_alert_create(customer=customer, meter=meter, threshold=Decimal(3), recurrence="recurring", now=NOW)
    send(customer, meter, *[1] * 7)  # 7 events: levels 1 and 2 at once
    assert triggered(alert) == [(1, "3", "7"), (2, "6", "7")]
    send(customer, meter, 1, 1)  # 9: level 3
    assert triggered(alert) == [(1, "3", "7"), (2, "6", "7"), (3, "9", "9")]
    usage_rollup_job(now=NOW)
    usage_alerts_job(now=NOW)  # the job after roll-up finds nothing new
    send(customer, meter, 1)
    assert len(triggered(alert)) == 3


@pytest.mark.django_db
def test_alerts_honor_meter_filters_and_every_bulk_aggregation():
    customer = CustomerFactory()
    filtered = make_meter("sum", filters={"region": ["eu"]})
    latest, maximum = make_meter("latest"), make_meter("max")
    a1 = usage_alert_create(customer=customer, meter=filtered, threshold=Decimal(5), now=NOW)
    a2 = usage_alert_create(customer=customer, meter=latest, threshold=Decimal(5), now=NOW)
    a3 = usage_alert_create(customer=customer, meter=maximum, threshold=Decimal(5), now=NOW)
    usage_ingest(
        events=[
            {"customer": customer.id, "meter": filtered.code, "value": "9", "dimensions": {"region": "us"}},
            {"customer": customer.id, "meter": filtered.code, "value": "2", "dimensions": {"region": "eu"}},
            {"customer": customer.id, "meter": maximum.code, "value": "4"},
        ],
        now=NOW,
    )
    # Roll up, so the next evaluation reads roll-up rows plus the new raw events.
    usage_rollup_job(now=NOW)
    usage_ingest(
        events=[
            {"customer": customer.id, "meter": filtered.code, "value": "3", "dimensions": {"region": "eu"}},
            {
                "customer": customer.id,
                "meter": latest.code,
                "value": "6",
                "timestamp": (NOW - timedelta(hours=1)).isoformat(),
            },
            {"customer": customer.id, "meter": latest.code, "value": "1", "timestamp": NOW.isoformat()},
            {"customer": customer.id, "meter": maximum.code, "value": "5"},
        ],
        now=NOW,
    )
    assert triggered(a1) == [(1, "5", "5")]  # 2 + 3 in eu; the 9 in us does not count
    assert triggered(a2) == []  # latest is 1
    assert triggered(a3) == [(1, "5", "5")]


@pytest.mark.django_db
def test_ingestion_costs_nothing_without_alerts_and_one_statement_with_them():
    quiet, loud, meter = CustomerFactory(), CustomerFactory(), make_meter("sum")
    usage_alert_create(customer=loud, meter=meter, threshold=Decimal(10**6), now=NOW)

    def statements(customer):
        with CaptureQueriesContext(connection) as queries:
            send(customer, meter, *[1] * 50)
        # Savepoints are the test's own transaction showing through (in production the evaluation's
        # transaction is outermost: BEGIN goes with its statement, COMMIT is not a statement).
        return [q["sql"] for q in queries.captured_queries if "SAVEPOINT" not in q["sql"]]

    send(quiet, meter, 1)  # the meter's first event sets its flag once; measure after it
    send(loud, meter, 1)  # and a customer's first batch reads what higher apps' listeners cache per customer
    without = statements(quiet)
    assert not [sql for sql in without if "usagealert" in sql.lower()]
    with_alerts = statements(loud)
    alert_sql = [sql for sql in with_alerts if "usagealert" in sql.lower()]
    if connection.vendor == "postgresql":
        assert len(alert_sql) == 1 and len(with_alerts) == len(without) + 1
    else:  # SQLite (development) evaluates with the generic reads
        assert alert_sql


@pytest.mark.django_db
def test_canceling_events_does_not_trigger_and_alert_updates_apply():
    customer, meter = CustomerFactory(), make_meter("sum")
    alert = usage_alert_create(customer=customer, meter=meter, threshold=Decimal(10), now=NOW)
    result = usage_ingest(events=[{"customer": customer.id, "meter": meter.code, "value": "8"}], now=NOW)
    usage_cancel(event_ids=[result.results[0]["id"]], reason="test", now=NOW)
    send(customer, meter, "5")
    assert triggered(alert) == []
    # Deactivated: nothing, and the customer's flag goes off with its last active alert.
    from metering.alerts import usage_alert_update

    usage_alert_update(alert=alert, active=False, now=NOW)
    assert not Customer.objects.get(pk=customer.pk).has_usage_alerts
    send(customer, meter, "50")
    usage_alerts_job(now=NOW)
    assert triggered(alert) == []
    usage_alert_update(alert=alert, active=True, threshold=Decimal(20), now=NOW)
    usage_alerts_job(now=NOW)  # the job catches what ingestion did not see
    assert triggered(alert) == [(1, "20", "55")]


@pytest.mark.django_db
def test_unique_count_and_weighted_sum_alerts_are_evaluated_on_ingestion():
    customer = CustomerFactory()
    users = make_meter("unique_count", unique_key="user")
    seats = make_meter("weighted_sum")
    a1 = usage_alert_create(customer=customer, meter=users, threshold=Decimal(2), now=NOW)
    a2 = usage_alert_create(customer=customer, meter=seats, threshold=Decimal(1), now=NOW)
    usage_ingest(
        events=[
            {"customer": customer.id, "meter": users.code, "dimensions": {"user": "a"}},
            {"customer": customer.id, "meter": users.code, "dimensions": {"user": "a"}},
            {"customer": customer.id, "meter": seats.code, "value": "100", "timestamp": MAR1.isoformat()},
        ],
        now=NOW,
    )
    assert triggered(a1) == []  # one distinct user so far
    weighted = triggered(a2)
    assert len(weighted) == 1 and weighted[0][:2] == (1, "1")  # 100 seats for half the month: reached
    usage_ingest(events=[{"customer": customer.id, "meter": users.code, "dimensions": {"user": "b"}}], now=NOW)
    assert triggered(a1) == [(1, "2", "2")]
    assert usage_alerts_job(now=NOW)["triggered"] == 0  # the job finds nothing ingestion missed
    assert UsageAlertTrigger.objects.count() == 2


@pytest.mark.django_db
def test_a_recurring_unique_count_alert_crosses_several_levels_in_one_batch():
    customer = CustomerFactory()
    users = make_meter("unique_count", unique_key="user")
    alert = usage_alert_create(customer=customer, meter=users, threshold=Decimal(2), recurrence="recurring", now=NOW)

    def users_seen(*names):
        result = usage_ingest(
            events=[{"customer": customer.id, "meter": users.code, "dimensions": {"user": n}} for n in names], now=NOW
        )
        assert result.created == len(names), result.results

    users_seen(*"abcdefg", "a", "b")  # 7 distinct users: levels 1, 2 and 3 at once
    assert triggered(alert) == [(1, "2", "7"), (2, "4", "7"), (3, "6", "7")]
    users_seen("a", "c", "g")  # still 7 distinct: nothing new
    assert len(triggered(alert)) == 3
    users_seen("h")  # 8: level 4
    assert triggered(alert)[3:] == [(4, "8", "8")]
    assert list(UsageAlertTrigger.objects.filter(alert=alert).values_list("level", flat=True).order_by("level")) == [
        1,
        2,
        3,
        4,
    ]


def _batch(customers, meter, per_customer, value="1"):
    events = []
    for index, customer in enumerate(customers):
        for n in range(per_customer):
            events.append(
                {
                    "customer": customer.id,
                    "meter": meter.code,
                    "value": value,
                    "dimensions": {"user": f"u{index}-{n}"},
                    "timestamp": (NOW - timedelta(minutes=n)).isoformat(),
                }
            )
    return events


def _evaluation_statements(monkeypatch, events):
    """The SQL statements of ingestion's alert evaluation (savepoints of the test's transaction left out),
    and the amount evaluations it enqueued (recorded here, not run)."""
    from billing_site import tasks
    from metering import alerts

    evaluate = alerts.usage_alerts_evaluate_ingested
    captured: list[str] = []
    enqueued: list[tuple] = []

    def measured(**kwargs):
        with CaptureQueriesContext(connection) as queries:
            result = evaluate(**kwargs)
        captured.extend(q["sql"] for q in queries.captured_queries if "SAVEPOINT" not in q["sql"])
        return result

    monkeypatch.setattr(alerts, "usage_alerts_evaluate_ingested", measured)
    monkeypatch.setattr(tasks, "enqueue", lambda task, *args: enqueued.append((task.name, *args)))
    result = usage_ingest(events=events, now=NOW)
    assert result.rejected == 0, result.results
    monkeypatch.undo()
    return captured, enqueued


# Statements of one evaluation with no crossing, whatever the batch holds (PostgreSQL): the bulk statement
# (which also names the batch's other alerts); for unique_count/weighted_sum, + the alerts' load, the usage
# read per (meter, period) (one statement for unique_count, two for weighted_sum: the opening values and
# the period's events; outside the test's transaction a SET TRANSACTION ISOLATION goes first) and the read
# of levels already recorded. invoice_amount: the bulk statement only (the amount is a task's). On SQLite
# (development) the generic usage read costs a few statements per customer, never per event.
EXPECTED_STATEMENTS = {"sum": 1, "unique_count": 4, "weighted_sum": 5, "invoice_amount": 1}


@pytest.mark.django_db
@pytest.mark.parametrize("kind", ["sum", "unique_count", "weighted_sum", "invoice_amount"])
def test_ingestion_evaluates_in_a_fixed_number_of_statements_per_batch(monkeypatch, kind):
    if kind == "unique_count":
        meter = make_meter("unique_count", unique_key="user")
    else:
        meter = make_meter("sum" if kind == "invoice_amount" else kind)
    customers = [CustomerFactory() for _ in range(20)]
    for customer in customers:
        if kind == "invoice_amount":
            usage_alert_create(customer=customer, kind="invoice_amount", threshold=Decimal(10**9), now=NOW)
        else:
            usage_alert_create(customer=customer, meter=meter, threshold=Decimal(10**9), now=NOW)
    send(customers[0], meter, 1)  # the meter's first event sets its flag once; measure after it
    small, small_enqueued = _evaluation_statements(monkeypatch, _batch(customers[:1], meter, 2))
    large, large_enqueued = _evaluation_statements(monkeypatch, _batch(customers, meter, 10))
    few_events, _ = _evaluation_statements(monkeypatch, _batch(customers, meter, 1))
    assert len(large) == len(few_events), (large, few_events)  # nothing per event
    if connection.vendor == "postgresql" or kind == "invoice_amount":  # nothing per customer either
        assert len(small) == len(large) == EXPECTED_STATEMENTS[kind], (small, large)
    if kind == "invoice_amount":  # one task per customer; the batch itself never prices an invoice
        assert small_enqueued == [("metering.evaluate_amount_alerts", customers[0].id, NOW.isoformat())]
        # The first customer's task is still pending (recorded here, not run): not enqueued again.
        assert sorted(args[1] for args in large_enqueued) == sorted(c.id for c in customers[1:])
        assert not [sql for sql in large if "invoicing_" in sql or "subscriptions_" in sql]
    else:
        assert small_enqueued == large_enqueued == []
    # Crossing every customer's threshold in one batch adds the triggers' insert and one outbox insert
    # per crossing, nothing per event.
    if kind != "invoice_amount":
        UsageAlert.objects.update(threshold=Decimal("0.1"))  # weighted_sum: 1 held for half a month is 0.5
        crossing, _ = _evaluation_statements(monkeypatch, _batch(customers, meter, 10))
        assert len(triggered()) == 20
        extra = 0 if connection.vendor == "postgresql" and kind == "sum" else 1
        assert len(crossing) == len(large) + extra + 20, crossing


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_batches_crossing_a_unique_count_threshold_give_one_alert():
    customer = CustomerFactory()
    users = make_meter("unique_count", unique_key="user")
    alert = usage_alert_create(customer=customer, meter=users, threshold=Decimal(30), now=NOW)
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def batch(thread: int):
        try:
            start.wait()
            for round_ in range(3):
                events = [
                    {"customer": customer.id, "meter": users.code, "dimensions": {"user": f"t{thread}-{round_}-{n}"}}
                    for n in range(2)
                ]
                assert usage_ingest(events=events, now=NOW).created == 2
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=batch, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    # 8 x 3 x 2 = 48 distinct users: the 30 crossed once, by whichever batch saw it first.
    assert UsageAlertTrigger.objects.filter(alert=alert).count() == 1
    assert len(triggered(alert)) == 1
    assert usage_alerts_job(now=NOW)["triggered"] == 0
    assert len(triggered(alert)) == 1


# --- invoice_amount alerts on ingestion (the amount reader here is a stand-in; subscriptions' own is
# tested in subscriptions/tests/test_usage_alerts_periods.py) -----------------------------------------


@pytest.fixture
def amounts(monkeypatch):
    from metering import alerts

    found: dict[str, int] = {}
    monkeypatch.setattr(
        alerts, "_amount_readers", [lambda ids, now: {c: (found[c], "usd", MAR1, APR1) for c in ids if c in found}]
    )
    return found


@pytest.mark.django_db
def test_an_amount_alert_sets_the_ingestion_flag_and_is_evaluated_by_a_task_once_per_burst(monkeypatch, amounts):
    from billing_site import tasks
    from metering import alerts
    from metering.tasks import evaluate_amount_alerts

    customer, meter = CustomerFactory(), make_meter("sum")
    alert = usage_alert_create(customer=customer, kind="invoice_amount", threshold=Decimal(500), now=NOW)
    assert Customer.objects.get(pk=customer.pk).has_usage_alerts  # an amount alert alone sets the flag
    enqueued: list[tuple] = []
    monkeypatch.setattr(tasks, "enqueue", lambda task, *args: enqueued.append(args))
    amounts[customer.id] = 700
    for _ in range(4):  # a burst: the task is pending after the first batch
        send(customer, meter, 1)
    assert enqueued == [(customer.id, NOW.isoformat())]
    assert triggered(alert) == []  # the batch itself never prices the invoice
    assert evaluate_amount_alerts.apply(args=enqueued[0]).get() == {"triggered": 1}
    assert triggered(alert) == [(1, "500", "700")]
    assert evaluate_amount_alerts.apply(args=enqueued[0]).get() == {"triggered": 0}  # a retry: nothing twice
    send(customer, meter, 1)  # the task started: the next batch enqueues again
    assert len(enqueued) == 2
    # Failures are logged, never raised into ingestion (the job catches up).
    monkeypatch.setattr(alerts.cache, "add", lambda *a, **k: (_ for _ in ()).throw(ConnectionError("cache down")))
    send(customer, meter, 1)
    assert len(enqueued) == 2
    assert len(triggered(alert)) == 1


@pytest.mark.django_db
def test_amount_alerts_triggered_on_ingestion_run_the_task_inline_and_recur(amounts):
    customer, meter = CustomerFactory(), make_meter("sum")
    alert = usage_alert_create(
        customer=customer, kind="invoice_amount", threshold=Decimal(100), recurrence="recurring", now=NOW
    )
    amounts[customer.id] = 99
    send(customer, meter, 1)
    assert triggered(alert) == []
    amounts[customer.id] = 350  # three levels in one batch
    send(customer, meter, 1)
    assert triggered(alert) == [(1, "100", "350"), (2, "200", "350"), (3, "300", "350")]
    event = BillingEvent.objects.filter(type="usage_alert.triggered").first()
    assert (event.data["kind"], event.data["meter"]) == ("invoice_amount", None)
    assert usage_alerts_job(now=NOW)["triggered"] == 0


@pytest.mark.django_db
def test_a_failing_amount_task_never_fails_the_batch(monkeypatch):
    from metering import alerts

    def broken(ids, now):
        raise RuntimeError("pricing failed")

    monkeypatch.setattr(alerts, "_amount_readers", [broken])
    customer, meter = CustomerFactory(), make_meter("sum")
    alert = usage_alert_create(customer=customer, kind="invoice_amount", threshold=Decimal(1), now=NOW)
    send(customer, meter, 5)  # the eager task raised: logged, the batch answered
    assert triggered(alert) == []
    assert MeterEvent.objects.filter(customer=customer).count() == 1


@pytest.mark.django_db
def test_the_flag_migration_sets_the_flag_of_amount_only_customers():
    import importlib

    from django.apps import apps

    migration = importlib.import_module("metering.migrations.0009_alerts_amount_alert_flag")
    customer = CustomerFactory()
    usage_alert_create(customer=customer, kind="invoice_amount", threshold=Decimal(5), now=NOW)
    inactive = CustomerFactory()
    alert = usage_alert_create(customer=inactive, kind="invoice_amount", threshold=Decimal(5), now=NOW)
    UsageAlert.objects.filter(pk=alert.pk).update(active=False)
    Customer.objects.update(has_usage_alerts=False)  # as before the migration
    migration.forwards(apps, None)
    assert Customer.objects.get(pk=customer.pk).has_usage_alerts
    assert not Customer.objects.get(pk=inactive.pk).has_usage_alerts


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_batches_crossing_the_threshold_give_one_alert():
    customer, meter = CustomerFactory(), make_meter("sum")
    alert = usage_alert_create(customer=customer, meter=meter, threshold=Decimal(40), now=NOW)
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def batch():
        try:
            start.wait()
            for _ in range(3):
                send(customer, meter, *[1] * 5)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=batch) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    # 8 x 3 x 5 = 120 units: the 40 crossed once, by whichever batch saw it first.
    assert UsageAlertTrigger.objects.filter(alert=alert).count() == 1
    assert len(triggered(alert)) == 1
    usage_alerts_job(now=NOW)
    assert len(triggered(alert)) == 1


# --- API --------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_alerts_api_crud_and_validation(api, make_client):
    customer, meter = CustomerFactory(), make_meter("sum")
    body = {"customer": customer.id, "meter": meter.id, "threshold": "100", "recurrence": "recurring"}
    created = api.post("/api/v1/alerts", body, format="json")
    assert created.status_code == 201, created.json()
    alert = created.json()
    assert (alert["object"], alert["kind"], alert["threshold"], alert["triggers"]) == (
        "usage_alert",
        "usage",
        "100",
        [],
    )
    assert alert["period_start"].startswith(calendar_month(datetime.now(UTC))[0].strftime("%Y-%m-%d"))
    assert api.get(f"/api/v1/alerts/{alert['id']}").json()["id"] == alert["id"]
    assert [a["id"] for a in api.get("/api/v1/alerts", {"customer": customer.id}).json()["data"]] == [alert["id"]]
    patched = api.patch(f"/api/v1/alerts/{alert['id']}", {"threshold": "5.5", "active": False}, format="json")
    assert patched.status_code == 200 and patched.json()["threshold"] == "5.5" and not patched.json()["active"]
    assert api.delete(f"/api/v1/alerts/{alert['id']}").status_code == 204
    assert api.get(f"/api/v1/alerts/{alert['id']}").status_code == 404
    for bad, param in [
        ({**body, "threshold": "0"}, "threshold"),
        ({**body, "threshold": "ten"}, "threshold"),
        ({**body, "meter": None}, "meter"),
        ({**body, "meter": "mtr_nope"}, "meter"),
        ({**body, "customer": "cus_nope"}, "customer"),
        ({**body, "recurrence": "weekly"}, "recurrence"),
        ({**body, "colour": "red"}, "colour"),
        ({"customer": customer.id, "kind": "invoice_amount", "threshold": "10.5"}, "threshold"),
        ({"customer": customer.id, "kind": "invoice_amount", "meter": meter.id, "threshold": "10"}, "meter"),
    ]:
        response = api.post("/api/v1/alerts", bad, format="json")
        assert response.status_code == 400, (bad, response.json())
        assert response.json()["error"]["param"] == param, (bad, response.json())
    assert UsageAlert.objects.count() == 0
    assert api.patch("/api/v1/alerts/alrt_nope", {"threshold": "1"}, format="json").status_code == 404
    # Scopes.
    assert make_client("usage:read").post("/api/v1/alerts", body, format="json").status_code == 403
    assert make_client("usage:read").get("/api/v1/alerts").status_code == 200
    assert make_client("customers:read").get("/api/v1/alerts").status_code == 403


@pytest.mark.django_db
def test_check_threshold_answers_as_the_seed_describes(api):
    customer, meter = CustomerFactory(external_id="tenant-check"), make_meter("sum")
    now = datetime.now(UTC)
    usage_ingest(events=[{"customer": customer.id, "meter": meter.code, "value": "7.5"}], now=now)
    url = f"/api/v1/usage/{meter.id}/check-threshold"
    body = api.get(url, {"customer": customer.id, "threshold": "7.5"}).json()
    assert (body["exceeded"], body["current_value"]) == (True, "7.5")
    body = api.get(url, {"external_id": "tenant-check", "threshold": "8"}).json()
    assert (body["exceeded"], body["current_value"]) == (False, "7.5")
    for params, param in [
        ({"customer": customer.id}, "threshold"),
        ({"customer": customer.id, "threshold": "x"}, "threshold"),
        ({"threshold": "1"}, "customer"),
        ({"customer": customer.id, "threshold": "1", "extra": "1"}, "extra"),
    ]:
        response = api.get(url, params)
        assert response.status_code == 400 and response.json()["error"]["param"] == param, response.json()
    assert (
        api.get("/api/v1/usage/mtr_nope/check-threshold", {"customer": customer.id, "threshold": "1"}).status_code
        == 404
    )


@pytest.mark.django_db(transaction=True)
def test_a_failed_evaluation_never_fails_a_committed_batch(monkeypatch):
    from django.db import DatabaseError

    from metering import alerts

    customer, meter = CustomerFactory(), make_meter("sum")
    alert = usage_alert_create(customer=customer, meter=meter, threshold=Decimal(1), now=NOW)

    def broken(**kwargs):
        raise DatabaseError("evaluation failed")

    monkeypatch.setattr(alerts, "usage_alerts_evaluate_ingested", broken)
    result = usage_ingest(events=[{"customer": customer.id, "meter": meter.code, "value": "5"}], now=NOW)
    assert result.created == 1  # answered, and the event is stored
    assert triggered(alert) == []
    monkeypatch.undo()
    usage_alerts_job(now=NOW)  # the job catches up
    assert triggered(alert) == [(1, "1", "5")]
