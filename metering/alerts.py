"""Usage alerts: thresholds on a customer's usage of a meter, or on the amount of its current period's
upcoming invoice, evaluated on ingestion (in bulk) and by the `evaluate_usage_alerts` job.

Exactly once: a crossing is a `UsageAlertTrigger` row, unique per (alert, period start, level), inserted
with ON CONFLICT DO NOTHING in the same transaction as its `usage_alert.triggered` billing event. Two
concurrent ingestion batches (or a batch and the job) that both see the threshold reached both try to
insert the row; the database lets one in, the other inserts nothing and emits nothing. Evaluation runs
after the batch's events are committed, so the last of two concurrent batches sees both.

Cost on ingestion: nothing for a batch whose customers have no active alert of any kind (ingestion reads
`Customer.has_usage_alerts` in the query that resolves the batch's customers); otherwise a fixed number
of statements for the whole batch, whatever its events and customers: ONE statement (PostgreSQL) finds
the alerts of the batch's (customer, meter) pairs, computes the value of those on count/sum/max/latest
meters from the hourly roll-ups plus raw edges and dirty hours (exact, as usage queries are), inserts
the triggers reached, and names the batch's other alerts; for unique_count and weighted_sum meters, one
load of those alerts, one `usage_aggregate_many` read per (meter, period) and one multi-row insert of
their triggers; plus one outbox insert per crossing. Invoice-amount alerts price the upcoming invoice,
too slow for the ingest request: the batch enqueues the `metering.evaluate_amount_alerts` task per
customer, once while one is pending (a cache mark the task clears before it reads the amount, so a batch
committed after that read enqueues again). The job (every `USAGE_ALERTS_INTERVAL`) evaluates every alert
again, and `check-threshold` reads usage exactly on demand.

Periods: an alert watches `period_start/end`, the customer's current billing period as given by the
period resolver a higher app registers (subscriptions: the current period of the customer's live
subscription), or the UTC calendar month without one. The job moves ended periods on.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Min, Q

from billing_site.errors import Conflict, InvalidRequest
from billing_site.money import decimal_to_str
from customers.clocks import clock_scope
from customers.models import Customer
from metering.alerts_models import UsageAlert, UsageAlertTrigger
from metering.models import Meter, MeterEvent, UsageDirtyHour, UsageHourly
from webhooks.services import event_emit

logger = logging.getLogger(__name__)

MAX_LEVELS_PER_EVALUATION = 100  # a recurring alert far behind catches up 100 crossings per evaluation
BULK_AGGREGATIONS = ("count", "sum", "max", "latest")

Period = tuple[datetime, datetime]
PeriodResolver = Callable[[list[str], datetime], dict[str, Period]]
AmountReader = Callable[[list[str], datetime], dict[str, tuple[int, str, datetime, datetime]]]

_period_resolvers: list[PeriodResolver] = []
_amount_readers: list[AmountReader] = []


def register_period_resolver(resolver: PeriodResolver) -> None:
    """`resolver(customer_ids, now)` -> {customer id: (start, end)} of the current billing period (a higher
    app registers it from `AppConfig.ready()`); customers it leaves out watch the UTC calendar month."""
    if resolver not in _period_resolvers:
        _period_resolvers.append(resolver)


def register_amount_reader(reader: AmountReader) -> None:
    """`reader(customer_ids, now)` -> {customer id: (amount in minor units, currency, period start, period
    end)} of the current period's upcoming invoice(s)."""
    if reader not in _amount_readers:
        _amount_readers.append(reader)


def calendar_month(now: datetime) -> Period:
    now = now.astimezone(UTC)
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    return start, end


def current_periods(customer_ids: Iterable[str], now: datetime) -> dict[str, Period]:
    wanted = sorted(set(customer_ids))
    found: dict[str, Period] = {}
    for resolver in _period_resolvers:
        for customer_id, (start, end) in resolver(wanted, now).items():
            if customer_id not in found and start <= now < end:
                found[customer_id] = (start, end)
    fallback = calendar_month(now)
    return {customer_id: found.get(customer_id, fallback) for customer_id in wanted}


# --- Services -------------------------------------------------------------------------------------


def _refresh_flag(customer_id: str) -> None:
    # Any kind: ingestion skips the customers without it, and an invoice_amount alert is evaluated on
    # ingestion too (by a task, see `usage_alerts_evaluate_ingested`).
    flag = UsageAlert.objects.filter(customer_id=customer_id, active=True).exists()
    Customer.objects.filter(pk=customer_id).exclude(has_usage_alerts=flag).update(has_usage_alerts=flag)


def _check_threshold(kind: str, threshold: Decimal) -> None:
    if threshold <= 0:
        raise InvalidRequest("threshold must be greater than 0.", param="threshold", code="invalid_threshold")
    if kind == UsageAlert.Kind.INVOICE_AMOUNT and threshold != threshold.to_integral_value():
        raise InvalidRequest(
            "An invoice_amount threshold is an integer amount in minor units.",
            param="threshold",
            code="invalid_threshold",
        )


def usage_alert_create(
    *,
    customer: Customer,
    threshold: Decimal,
    now: datetime,
    kind: str = UsageAlert.Kind.USAGE,
    meter: Meter | None = None,
    recurrence: str = UsageAlert.Recurrence.ONE_TIME,
    name: str = "",
    metadata: dict[str, Any] | None = None,
) -> UsageAlert:
    if kind == UsageAlert.Kind.USAGE and meter is None:
        raise InvalidRequest("A usage alert needs a meter.", param="meter", code="parameter_missing")
    if kind == UsageAlert.Kind.INVOICE_AMOUNT and meter is not None:
        raise InvalidRequest("An invoice_amount alert has no meter.", param="meter", code="parameter_unknown")
    if customer.status == Customer.Status.DELETED:
        raise Conflict(f"Customer {customer.id} is deleted.", code="customer_deleted")
    _check_threshold(kind, threshold)
    start, end = current_periods([customer.id], now)[customer.id]
    with transaction.atomic():
        alert = UsageAlert.objects.create(
            customer=customer,
            meter=meter,
            kind=kind,
            threshold=threshold,
            recurrence=recurrence,
            name=name,
            metadata=metadata or {},
            period_start=start,
            period_end=end,
        )
        _refresh_flag(customer.id)
    return alert


def usage_alert_update(*, alert: UsageAlert, now: datetime, **changes: Any) -> UsageAlert:
    allowed = {"threshold", "recurrence", "active", "name", "metadata"}
    unknown = set(changes) - allowed
    if unknown:
        raise InvalidRequest(f"Cannot change {sorted(unknown)[0]}.", param=sorted(unknown)[0], code="parameter_unknown")
    if "threshold" in changes:
        _check_threshold(alert.kind, changes["threshold"])
    with transaction.atomic():
        UsageAlert.objects.filter(pk=alert.pk).update(**changes, updated_at=now)
        _refresh_flag(alert.customer_id)
    alert.refresh_from_db()
    return alert


def usage_alert_delete(*, alert: UsageAlert, now: datetime) -> None:
    with transaction.atomic():
        UsageAlert.objects.filter(pk=alert.pk).delete()
        _refresh_flag(alert.customer_id)


# --- Triggers -------------------------------------------------------------------------------------


def _emit(rows: Iterable[tuple], now: datetime) -> int:
    """One `usage_alert.triggered` per inserted trigger row (alert id, customer id, period start, period
    end, level, crossed, value, meter id, recurrence, threshold), in the caller's transaction."""
    emitted = 0
    for alert_id, customer_id, start, end, level, crossed, value, meter_id, recurrence, threshold in rows:
        event_emit(
            type="usage_alert.triggered",
            object_type="usage_alert",
            object_id=alert_id,
            customer_id=customer_id,
            data={
                "alert": alert_id,
                "customer": customer_id,
                "meter": meter_id,
                "kind": UsageAlert.Kind.USAGE if meter_id else UsageAlert.Kind.INVOICE_AMOUNT,
                "recurrence": recurrence,
                "threshold": _text(threshold),
                "level": level,
                "crossed": _text(crossed),
                "value": _text(value),
                "period_start": _iso(start),
                "period_end": _iso(end),
            },
            now=now,
        )
        emitted += 1
    return emitted


def _text(value: Any) -> str:
    return decimal_to_str(Decimal(value))


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def levels_reached(value: Decimal, threshold: Decimal, recurrence: str) -> int:
    """How many crossings `value` means in a period: 0 or 1 for one_time, floor(value / threshold) else."""
    if value < threshold:
        return 0
    if recurrence == UsageAlert.Recurrence.ONE_TIME:
        return 1
    return int(value // threshold)


INSERT_CHUNK = 1000  # rows per INSERT statement (8 parameters a row: far under SQLite's and PG's limits)


def _insert_triggers(values: list[tuple[UsageAlert, Decimal]], now: datetime) -> int:
    """Insert the crossings not yet recorded for these (alert, value) pairs and emit their events: one read
    of the levels already recorded, then ONE multi-row `INSERT ... ON CONFLICT DO NOTHING RETURNING` (per
    1,000 crossings) in a transaction with the events of the rows it inserted. The unique constraint
    (alert, period start, level) decides between concurrent evaluations; rows go in (alert, level) order
    so two concurrent inserts of the same crossings wait on each other instead of deadlocking."""
    if not values:
        return 0
    done: dict[tuple[str, datetime], int] = defaultdict(int)
    for alert_id, start, level in UsageAlertTrigger.objects.filter(
        alert_id__in=[alert.pk for alert, _ in values]
    ).values_list("alert_id", "period_start", "level"):
        done[(alert_id, start)] = max(done[(alert_id, start)], level)
    wanted: list[tuple[UsageAlert, int, Decimal]] = []
    for alert, value in sorted(values, key=lambda item: item[0].pk):
        reached = levels_reached(value, alert.threshold, alert.recurrence)
        first = done[(alert.pk, alert.period_start)] + 1
        wanted += [
            (alert, level, value) for level in range(first, min(reached, first + MAX_LEVELS_PER_EVALUATION - 1) + 1)
        ]
    if not wanted:
        return 0
    table = UsageAlertTrigger._meta.db_table
    ops = connection.ops  # values as the ORM stores them (SQLite keeps datetimes as naive UTC text)
    inserted: set[tuple[str, int]] = set()
    with transaction.atomic(), connection.cursor() as cursor:
        for offset in range(0, len(wanted), INSERT_CHUNK):
            chunk = wanted[offset : offset + INSERT_CHUNK]
            params: list[Any] = []
            for alert, level, value in chunk:
                params += [
                    alert.pk,
                    alert.customer_id,
                    ops.adapt_datetimefield_value(alert.period_start),
                    ops.adapt_datetimefield_value(alert.period_end),
                    level,
                    ops.adapt_decimalfield_value(alert.threshold * level),
                    ops.adapt_decimalfield_value(value),
                    ops.adapt_datetimefield_value(now),
                ]
            cursor.execute(
                f"INSERT INTO {table} (alert_id, customer_id, period_start, period_end, level, threshold, value, "  # noqa: S608
                "triggered_at) VALUES " + ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s)"] * len(chunk)) + " "
                "ON CONFLICT (alert_id, period_start, level) DO NOTHING RETURNING alert_id, level",
                params,
            )
            # One period per alert in a statement: (alert, level) names the row.
            inserted.update((alert_id, int(level)) for alert_id, level in cursor.fetchall())
        return _emit(
            [
                (
                    alert.pk,
                    alert.customer_id,
                    alert.period_start,
                    alert.period_end,
                    level,
                    alert.threshold * level,
                    value,
                    alert.meter_id,
                    alert.recurrence,
                    alert.threshold,
                )
                for alert, level, value in wanted
                if (alert.pk, level) in inserted
            ],
            now,
        )


def _usage_values(alerts: list[UsageAlert]) -> list[tuple[UsageAlert, Decimal]]:
    """Each usage alert's exact value over its period: one usage read per (meter, period)."""
    from metering.selectors import usage_aggregate_many  # selectors build on this app's models only

    groups: dict[tuple[str, datetime, datetime], list[UsageAlert]] = defaultdict(list)
    for alert in alerts:
        groups[(alert.meter_id, alert.period_start, alert.period_end)].append(alert)
    values = []
    for (_, start, end), members in groups.items():
        meter = members[0].meter
        read = usage_aggregate_many(meter=meter, customer_ids=[a.customer_id for a in members], start=start, end=end)
        values += [(alert, read[alert.customer_id].value) for alert in members]
    return values


# --- On ingestion -----------------------------------------------------------------------------------


AMOUNT_PENDING_SECONDS = 300  # an amount evaluation is pending for a customer at most this long


def _amount_pending_key(customer_id: str) -> str:
    return f"metering:usage-alerts:amount-pending:{customer_id}"


def usage_alerts_evaluate_ingested(*, pairs: set[tuple[str, str]], now: datetime) -> int:
    """Evaluate the alerts of the (customer, meter) pairs a committed batch wrote events for, in a fixed
    number of statements whatever the batch holds. Returns how many crossings it recorded.

    - sum/count/max/latest meters: ONE statement (PostgreSQL) computes every value and inserts the
      triggers; it also names the batch's other alerts, so a batch without them costs nothing more;
    - unique_count/weighted_sum meters: one usage read (`usage_aggregate_many`) per (meter, period) of
      those alerts, then one insert of their triggers;
    - invoice_amount alerts of the batch's customers: pricing the upcoming invoice is too slow for
      ingestion, so the `metering.evaluate_amount_alerts` task is enqueued per customer, once per burst
      (see `_enqueue_amount_evaluations`)."""
    if not pairs:
        return 0
    customers = {c for c, _ in pairs}
    if connection.vendor != "postgresql":
        found = list(
            UsageAlert.objects.select_related("meter").filter(
                Q(kind=UsageAlert.Kind.USAGE, meter_id__in={m for _, m in pairs})
                | Q(kind=UsageAlert.Kind.INVOICE_AMOUNT),
                customer_id__in=customers,
                active=True,
                period_start__lte=now,
                period_end__gt=now,
            )
        )
        usage = [a for a in found if a.kind == UsageAlert.Kind.USAGE and (a.customer_id, a.meter_id) in pairs]
        _enqueue_amount_evaluations({a.customer_id for a in found if a.kind != UsageAlert.Kind.USAGE}, now)
        return _insert_triggers(_usage_values(usage), now)
    ordered = sorted(pairs)
    params = {
        "cs": [c for c, _ in ordered],
        "ms": [m for _, m in ordered],
        "now": now,
        "aggs": list(BULK_AGGREGATIONS),
        "cap": MAX_LEVELS_PER_EVALUATION,
    }
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_BULK_SQL, params)
        rows = cursor.fetchall()
        triggered = _emit([row[1:] for row in rows if row[0] == "triggered"], now)
    others = [row[1] for row in rows if row[0] == "other"]
    amounts = {row[2] for row in rows if row[0] == "amount"}
    _enqueue_amount_evaluations(amounts, now)
    if others:
        alerts = list(UsageAlert.objects.select_related("meter").filter(pk__in=others))
        triggered += _insert_triggers(_usage_values(alerts), now)
    return triggered


def _enqueue_amount_evaluations(customer_ids: set[str], now: datetime) -> None:
    """Enqueue `metering.evaluate_amount_alerts` for each customer that has no evaluation pending: a
    cache key (`cache.add`, so one of concurrent batches wins) marks it pending until the task starts
    (the task deletes it before it reads the amount, so a batch committed after that read enqueues again)
    or `AMOUNT_PENDING_SECONDS` pass (a lost task). One cache read for the batch's customers, one add per
    customer not pending. Failures are logged: the batch is committed, and the job evaluates every alert
    within minutes."""
    if not customer_ids:
        return
    from billing_site.tasks import enqueue_unless_pending
    from metering.tasks import evaluate_amount_alerts  # the tasks module imports services that import us

    at = now.astimezone(UTC).isoformat()
    try:
        calls = {_amount_pending_key(c): (c, at) for c in customer_ids}
        enqueue_unless_pending(evaluate_amount_alerts, calls, timeout=AMOUNT_PENDING_SECONDS)
    except Exception:
        logger.exception("invoice_amount alert evaluation not enqueued after a committed batch; the job will")


def usage_alerts_evaluate_amounts(*, customer_ids: Iterable[str], now: datetime) -> int:
    """Evaluate the active invoice_amount alerts of these customers (the `metering.evaluate_amount_alerts`
    task): the amount from the registered amount reader(s), the crossings through the same insert as
    every other evaluation. Returns how many crossings it recorded."""
    wanted = sorted(set(customer_ids))
    cache.delete_many([_amount_pending_key(c) for c in wanted])  # later batches enqueue again
    alerts = list(
        UsageAlert.objects.filter(
            customer_id__in=wanted,
            kind=UsageAlert.Kind.INVOICE_AMOUNT,
            active=True,
            period_start__lte=now,
            period_end__gt=now,
        ).order_by("pk")
    )
    return _insert_triggers(_amount_values(alerts, now), now)


_LATEST = "ORDER BY {t} DESC, {i} DESC"
_BULK_SQL = f"""
WITH pairs AS (SELECT DISTINCT * FROM unnest(%(cs)s::text[], %(ms)s::text[]) AS p(c, m)),
a AS MATERIALIZED (
    SELECT al.id, al.customer_id AS c, al.meter_id AS m, al.period_start AS ps, al.period_end AS pe,
           al.threshold AS t, al.recurrence AS rec, mt.aggregation AS agg, mt.filters AS f,
           CASE WHEN date_trunc('hour', al.period_start, 'UTC') = al.period_start THEN al.period_start
                ELSE date_trunc('hour', al.period_start, 'UTC') + interval '1 hour' END AS hs,
           date_trunc('hour', al.period_end, 'UTC') AS he
    FROM {UsageAlert._meta.db_table} al
    JOIN pairs p ON al.customer_id = p.c AND al.meter_id = p.m
    JOIN {Meter._meta.db_table} mt ON mt.id = al.meter_id
    WHERE al.active AND al.kind = 'usage' AND al.period_start <= %(now)s AND %(now)s < al.period_end
      AND mt.aggregation = ANY(%(aggs)s::text[])
),
rolled AS (
    SELECT a.id, sum(u.event_count) AS n, sum(u.value_sum) AS s, max(u.value_max) AS mx, max(u.latest_timestamp) AS lt,
           (array_agg(u.latest_event_id {_LATEST.format(t="u.latest_timestamp", i="u.latest_event_id")}))[1] AS li,
           (array_agg(u.latest_value {_LATEST.format(t="u.latest_timestamp", i="u.latest_event_id")}))[1] AS lv
    FROM a JOIN {UsageHourly._meta.db_table} u
      ON u.meter_id = a.m AND u.customer_id = a.c AND u.hour >= a.hs AND u.hour < a.he
    WHERE NOT EXISTS (SELECT 1 FROM {UsageDirtyHour._meta.db_table} d
                      WHERE d.meter_id = a.m AND d.customer_id = a.c AND d.hour = u.hour)
    GROUP BY a.id
),
ranges (id, lo, hi) AS (
    SELECT a.id, a.ps, a.pe FROM a WHERE a.hs >= a.he
    UNION ALL SELECT a.id, a.ps, a.hs FROM a WHERE a.hs < a.he AND a.ps < a.hs
    UNION ALL SELECT a.id, a.he, a.pe FROM a WHERE a.hs < a.he AND a.he < a.pe
    UNION ALL SELECT a.id, d.hour, d.hour + interval '1 hour'
        FROM a JOIN {UsageDirtyHour._meta.db_table} d
          ON d.meter_id = a.m AND d.customer_id = a.c AND d.hour >= a.hs AND d.hour < a.he
        WHERE a.hs < a.he
),
raw AS (
    SELECT r.id, count(*) AS n, sum(x.value) AS s, max(x.value) AS mx, max(x.timestamp) AS lt,
           (array_agg(x.eid {_LATEST.format(t="x.timestamp", i="x.eid")}))[1] AS li,
           (array_agg(x.value {_LATEST.format(t="x.timestamp", i="x.eid")}))[1] AS lv
    FROM ranges r JOIN a ON a.id = r.id CROSS JOIN LATERAL (
        SELECT e.value, e.timestamp, e.id AS eid FROM {MeterEvent._meta.db_table} e
        WHERE e.customer_id = a.c AND e.meter_id = a.m AND e.timestamp >= r.lo AND e.timestamp < r.hi
          AND e.canceled_at IS NULL
          -- The meter's own filters: every filtered dimension has one of its allowed values.
          AND NOT EXISTS (
              SELECT 1 FROM jsonb_each(a.f) AS f(k, vals)
              WHERE NOT coalesce((e.dimensions ->> f.k) IN (SELECT jsonb_array_elements_text(f.vals)), false)
          )
    ) x
    GROUP BY r.id
),
vals AS (
    SELECT a.*, CASE a.agg
        WHEN 'count' THEN coalesce(r.n, 0) + coalesce(x.n, 0)
        WHEN 'sum' THEN coalesce(r.s, 0) + coalesce(x.s, 0)
        WHEN 'max' THEN coalesce(greatest(r.mx, x.mx), 0)
        ELSE coalesce(CASE WHEN x.lt IS NULL OR (r.lt IS NOT NULL AND (r.lt, r.li) > (x.lt, x.li)) THEN r.lv
                           ELSE x.lv END, 0)
    END AS v
    FROM a LEFT JOIN rolled r ON r.id = a.id LEFT JOIN raw x ON x.id = a.id
),
reached AS (
    SELECT v.*,
           coalesce((SELECT max(g.level) FROM {UsageAlertTrigger._meta.db_table} g
                     WHERE g.alert_id = v.id AND g.period_start = v.ps), 0) AS done,
           CASE WHEN v.v < v.t THEN 0 WHEN v.rec = 'one_time' THEN 1 ELSE floor(v.v / v.t) END AS n
    FROM vals v
),
ins AS (
    INSERT INTO {UsageAlertTrigger._meta.db_table}
        (alert_id, customer_id, period_start, period_end, level, threshold, value, triggered_at)
    SELECT r.id, r.c, r.ps, r.pe, l.level, r.t * l.level, r.v, %(now)s
    FROM reached r CROSS JOIN LATERAL generate_series(r.done + 1, least(r.n, r.done + %(cap)s)::integer) AS l(level)
    ORDER BY r.id, l.level
    ON CONFLICT (alert_id, period_start, level) DO NOTHING
    RETURNING alert_id, customer_id, period_start, period_end, level, threshold, value
),
-- The batch's alerts this statement does not compute: other meters' (read next), invoice amounts (a task).
others AS (
    SELECT 'other' AS what, al.id, al.customer_id AS c
    FROM {UsageAlert._meta.db_table} al
    JOIN pairs p ON al.customer_id = p.c AND al.meter_id = p.m
    JOIN {Meter._meta.db_table} mt ON mt.id = al.meter_id
    WHERE al.active AND al.kind = 'usage' AND al.period_start <= %(now)s AND %(now)s < al.period_end
      AND NOT mt.aggregation = ANY(%(aggs)s::text[])
    UNION ALL
    SELECT 'amount', al.id, al.customer_id
    FROM {UsageAlert._meta.db_table} al
    WHERE al.customer_id = ANY(%(cs)s::text[]) AND al.active AND al.kind = 'invoice_amount'
      AND al.period_start <= %(now)s AND %(now)s < al.period_end
)
SELECT * FROM (
    SELECT 'triggered' AS what, ins.alert_id, ins.customer_id, ins.period_start, ins.period_end, ins.level,
           ins.threshold, ins.value, a.m, a.rec, a.t
    FROM ins JOIN a ON a.id = ins.alert_id
    UNION ALL
    SELECT o.what, o.id, o.c, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL FROM others o
) rows ORDER BY rows.what DESC, rows.alert_id, rows.level
"""  # noqa: S608 - table names are ours, every value is a bound parameter


# --- The job ----------------------------------------------------------------------------------------


def usage_alerts_job(*, now: datetime, batch_size: int = 1000, clock: str | None = None) -> dict[str, int]:
    """Move ended periods on, then evaluate every active alert (registered as `evaluate_usage_alerts`).
    `clock`: see `customers.clocks.clock_scope` (None: customers on no test clock)."""
    report = {"periods_moved": 0, "alerts": 0, "triggered": 0}
    scoped = clock_scope(UsageAlert.objects.filter(active=True), clock)
    ended = list(scoped.filter(period_end__lte=now).values_list("id", "customer_id"))
    if ended:
        periods = current_periods({c for _, c in ended}, now)
        for alert_id, customer_id in ended:
            start, end = periods[customer_id]
            report["periods_moved"] += UsageAlert.objects.filter(pk=alert_id, period_end__lte=now).update(
                period_start=start, period_end=end, updated_at=now
            )
    last = ""
    while True:
        alerts = list(
            scoped.select_related("meter")
            .filter(pk__gt=last, period_start__lte=now, period_end__gt=now)
            .order_by("pk")[:batch_size]
        )
        if not alerts:
            break
        last = alerts[-1].pk
        report["alerts"] += len(alerts)
        usage = [alert for alert in alerts if alert.kind == UsageAlert.Kind.USAGE]
        values = _usage_values(usage) + _amount_values([a for a in alerts if a.kind != UsageAlert.Kind.USAGE], now)
        report["triggered"] += _insert_triggers(values, now)
    return report


def usage_alerts_next_due(*, clock: str, after: datetime) -> datetime | None:
    """The test clock's next alert moment after `after`: the soonest end of an active alert's period of its
    customers (the job moves the period on there, and evaluates the new one)."""
    scoped = clock_scope(UsageAlert.objects.filter(active=True, period_end__gt=after), clock)
    return scoped.aggregate(at=Min("period_end"))["at"]


def _amount_values(alerts: list[UsageAlert], now: datetime) -> list[tuple[UsageAlert, Decimal]]:
    if not alerts:
        return []
    amounts: dict[str, tuple[int, str, datetime, datetime]] = {}
    for reader in _amount_readers:
        for customer_id, found in reader(sorted({a.customer_id for a in alerts}), now).items():
            amounts.setdefault(customer_id, found)
    values = []
    for alert in alerts:
        found = amounts.get(alert.customer_id)
        values.append((alert, Decimal(found[0]) if found else Decimal(0)))
    return values


# --- Reads ------------------------------------------------------------------------------------------


def alert_current_value(alert: UsageAlert, now: datetime) -> Decimal:
    if alert.kind == UsageAlert.Kind.USAGE:
        return _usage_values([alert])[0][1]
    return _amount_values([alert], now)[0][1]


def threshold_check(*, meter: Meter, customer: Customer, threshold: Decimal, now: datetime) -> dict[str, Any]:
    """The Go engine's CheckThreshold: the customer's usage of the meter in its current period (billing
    period, or UTC calendar month without one) and whether it has reached `threshold`."""
    from metering.selectors import usage_aggregate

    start, end = current_periods([customer.id], now)[customer.id]
    value = usage_aggregate(meter=meter, customer=customer, start=start, end=end).value
    return {"exceeded": value >= threshold, "current_value": value, "period_start": start, "period_end": end}
