"""The hourly roll-up job: recompute dirty hours from raw events.

`UsageHourly(meter, customer, hour)` (and `UsageHourlyGroup`, the same per distinct set of dimensions)
holds exactly the aggregates of the non-canceled events of that
meter and customer in [hour, hour + 1h) that match the meter's filters; an hour without such events has
no row. Every change to an hour's events marks it dirty (`UsageDirtyHour`) in the same transaction
(`metering.ingest.mark_hours_dirty`), and while the dirty row exists usage queries read that hour raw.

Each batch is one transaction: lock up to `batch_size` dirty rows `FOR UPDATE SKIP LOCKED` (in meter,
hour, customer order), recompute those hours with one grouped query per meter and hour, upsert or delete their
roll-up rows, and delete exactly the dirty rows it locked. Ingestion takes the dirty row's lock with
`ON CONFLICT DO UPDATE`, so a concurrent ingest either waits for the batch to commit (and then re-creates
the dirty row, because its events were not visible to the recomputation) or already holds the row, which
the batch then skips. Jobs can therefore run concurrently and be re-run; late events simply dirty their
hour again and the next run picks them up.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections import defaultdict
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import connection, transaction

from metering.class_stats import rollup_class_stats
from metering.locks import claim_dirty_hours
from metering.models import (
    Meter,
    MeterEvent,
    UsageDailyGroup,
    UsageDirtyHour,
    UsageHourly,
    UsageHourlyGroup,
    UsageUniqueSpan,
)
from metering.usage import DAY, HOUR, Acc, conditions_for, conditions_sql, dimension_text, passes, raw_events, utc
from metering.weighted import held_integral

logger = logging.getLogger(__name__)

BATCH_SIZE = 500
MAX_BATCHES = 200  # one run handles at most 100,000 hours; the rest waits for the next run

HourKey = tuple[str, datetime]  # (customer id, hour)


def usage_rollup_job(*, now: datetime, batch_size: int = BATCH_SIZE, max_batches: int = MAX_BATCHES) -> dict[str, Any]:
    """Roll up every dirty hour (registered as the `rollup_usage` job, every 5 minutes)."""
    report: dict[str, Any] = {"hours": 0, "rows_written": 0, "rows_deleted": 0, "batches": 0, "more": False}
    for _ in range(max_batches):
        hours, written, deleted = _rollup_batch(now=now, batch_size=batch_size)
        if hours:
            report["batches"] += 1
        report["hours"] += hours
        report["rows_written"] += written
        report["rows_deleted"] += deleted
        if hours < batch_size:
            break
    else:
        report["more"] = UsageDirtyHour.objects.exists()
    return report


def _rollup_batch(*, now: datetime, batch_size: int) -> tuple[int, int, int]:
    with transaction.atomic():
        locked = claim_dirty_hours(("id", "meter_id", "customer_id", "hour", "touched_at"), limit=batch_size)
        if not locked:
            return 0, 0, 0
        # rolled_at is never earlier than the change it reflects (callers may pass any `now`, e.g. in tests
        # or backfills): billing reads it to find hours that changed after it invoiced them.
        by_meter: dict[str, dict[HourKey, datetime]] = defaultdict(dict)
        for _, meter_id, customer_id, hour, touched_at in locked:
            by_meter[meter_id][(customer_id, hour)] = max(now, touched_at)
        meters = Meter.objects.in_bulk(list(by_meter))
        written = deleted = 0
        for meter_id, keys in by_meter.items():
            meter = meters.get(meter_id)
            if meter is None:  # deleted meanwhile (its dirty rows go with it by cascade)
                continue
            if connection.vendor == "postgresql":
                w, d = _recompute_postgres(meter, keys)
            else:
                w, d = _recompute_python(meter, keys)
            written += w
            deleted += d
            rollup_class_stats(meter, keys)
        UsageDirtyHour.objects.filter(id__in=[row[0] for row in locked]).delete()
    return len(locked), written, deleted


def _recompute_postgres(meter: Meter, keys: dict[HourKey, datetime]) -> tuple[int, int]:
    """One statement aggregates and upserts the hours that have events; a second deletes the roll-ups of
    the hours that no longer have any."""
    events, hourly = MeterEvent._meta.db_table, UsageHourly._meta.db_table
    params: dict[str, Any] = {
        "m": meter.id,
        "cs": [key[0] for key in keys],
        "hs": [key[1] for key in keys],
        "ts": list(keys.values()),
    }
    hours = [key[1] for key in keys]
    params["lo"], params["hi"] = min(hours), max(hours) + HOUR
    # Every event of the batch's customers in one hour `hr.h`: one bitmap scan per hour visits each heap
    # page of that hour once, however many customers' events share it (ingestion interleaves customers,
    # so one customer's hour is spread over as many pages as it has events; reading it customer by
    # customer made the job's cost per event grow with the table).
    hour_events = f"""
        FROM {events} e
        WHERE e.meter_id = %(m)s AND e.customer_id = ANY(ARRAY(SELECT k.c FROM keys k WHERE k.h = hr.h))
          AND e.timestamp >= hr.h AND e.timestamp < hr.h + interval '1 hour'
          AND e.timestamp >= %(lo)s AND e.timestamp < %(hi)s  -- constant bounds: the planner prunes partitions
          AND e.canceled_at IS NULL{conditions_sql(conditions_for(meter), params)}
    """  # noqa: S608
    weighted = meter.aggregation == Meter.Aggregation.WEIGHTED_SUM
    # weighted_sum: the earliest event of each key's hour and the integral of what is held from it to the
    # hour's end (value x microseconds until the next event of the hour, or the hour's end), exact NUMERIC.
    held_cte = (
        f"""held AS MATERIALIZED (
            SELECT x.* FROM hrs hr CROSS JOIN LATERAL (
                SELECT w.c, hr.h AS h, min(w.ts) AS ft, sum(w.value * w.us) AS held FROM (
                    SELECT e.customer_id AS c, e.timestamp AS ts, e.value,
                           round(extract(epoch FROM coalesce(
                               lead(e.timestamp) OVER (PARTITION BY e.customer_id ORDER BY e.timestamp, e.id),
                               hr.h + interval '1 hour') - e.timestamp) * 1000000) AS us
                    {hour_events}
                ) w GROUP BY w.c
            ) x
        ),"""  # noqa: S608
        if weighted
        else ""
    )
    held_columns = "w.ft, w.held" if weighted else "NULL::timestamptz, NULL::numeric"
    held_join = "JOIN held w ON w.c = k.c AND w.h = k.h" if weighted else ""
    upsert = f"""
        WITH keys AS (
            SELECT * FROM unnest(%(cs)s::text[], %(hs)s::timestamptz[], %(ts)s::timestamptz[]) AS k(c, h, t)
        ),
        hrs AS (SELECT DISTINCT h FROM keys),
        -- MATERIALIZED: computed once per hour, never once per (hour, hour) of a join.
        agg AS MATERIALIZED (
            SELECT x.* FROM hrs hr CROSS JOIN LATERAL (
                SELECT e.customer_id AS c, hr.h AS h, count(*) AS n, sum(e.value) AS s, max(e.value) AS mx
                {hour_events} GROUP BY e.customer_id
            ) x
        ),
        {held_cte}
        latest_events AS (
            -- The latest event of each key: one backward probe of the usage index per key, 1 row each.
            SELECT k.c, k.h, l.value, l.timestamp, l.id FROM keys k CROSS JOIN LATERAL (
                SELECT e.value, e.timestamp, e.id FROM {events} e
                WHERE e.customer_id = k.c AND e.meter_id = %(m)s
                  AND e.timestamp >= k.h AND e.timestamp < k.h + interval '1 hour'
                  AND e.timestamp >= %(lo)s AND e.timestamp < %(hi)s
                  AND e.canceled_at IS NULL{conditions_sql(conditions_for(meter), params)}
                ORDER BY e.timestamp DESC, e.id DESC LIMIT 1
            ) l
        )
        INSERT INTO {hourly} AS u (meter_id, customer_id, hour, event_count, value_sum, value_max,
                                   latest_value, latest_timestamp, latest_event_id, first_timestamp,
                                   held_integral, rolled_at)
        SELECT %(m)s, k.c, k.h, a.n, a.s, a.mx, l.value, l.timestamp, l.id, {held_columns}, k.t
        FROM keys k JOIN agg a ON a.c = k.c AND a.h = k.h JOIN latest_events l ON l.c = k.c AND l.h = k.h
        {held_join}
        ON CONFLICT (meter_id, customer_id, hour) DO UPDATE SET
            event_count = EXCLUDED.event_count, value_sum = EXCLUDED.value_sum, value_max = EXCLUDED.value_max,
            latest_value = EXCLUDED.latest_value, latest_timestamp = EXCLUDED.latest_timestamp,
            latest_event_id = EXCLUDED.latest_event_id, first_timestamp = EXCLUDED.first_timestamp,
            held_integral = EXCLUDED.held_integral, rolled_at = EXCLUDED.rolled_at
        RETURNING customer_id, hour
    """  # noqa: S608 - table names are ours, every value is a bound parameter
    with connection.cursor() as cursor:
        cursor.execute(upsert, params)
        present = set(cursor.fetchall())
        _regroup_postgres(cursor, meter, hour_events, params)
        _redo_days_postgres(cursor, meter, keys)  # takes the days' advisory locks, held to commit
        if meter.aggregation == Meter.Aggregation.UNIQUE_COUNT:
            _redo_spans_postgres(cursor, meter, keys)
        empty = [key for key in keys if key not in present]
        if not empty:
            return len(present), 0
        cursor.execute(
            f"""
            DELETE FROM {hourly} u USING unnest(%s::text[], %s::timestamptz[]) AS k(c, h)
            WHERE u.meter_id = %s AND u.customer_id = k.c AND u.hour = k.h
            """,  # noqa: S608
            [[key[0] for key in empty], [key[1] for key in empty], meter.id],
        )
        return len(present), cursor.rowcount


def _regroup_postgres(cursor: Any, meter: Meter, hour_events: str, params: dict[str, Any]) -> None:
    """Rewrite the hours' per-dimension-set rows: delete them, then one grouped scan per hour (the same
    scan as the totals) inserts one row per customer and distinct `dimensions`."""
    groups = UsageHourlyGroup._meta.db_table
    cursor.execute(
        f"""
        DELETE FROM {groups} g USING unnest(%(cs)s::text[], %(hs)s::timestamptz[]) AS k(c, h)
        WHERE g.customer_id = k.c AND g.meter_id = %(m)s AND g.hour = k.h
        """,  # noqa: S608
        params,
    )
    if meter.aggregation in (Meter.Aggregation.LATEST, Meter.Aggregation.WEIGHTED_SUM):
        order = "ORDER BY e.timestamp DESC, e.id DESC"
        latest = f"(array_agg(e.value {order}))[1], max(e.timestamp), (array_agg(e.id {order}))[1]"
    else:
        latest = "NULL::numeric, NULL::timestamptz, NULL::bigint"
    cursor.execute(
        f"""
        WITH keys AS (
            SELECT * FROM unnest(%(cs)s::text[], %(hs)s::timestamptz[], %(ts)s::timestamptz[]) AS k(c, h, t)
        ),
        hrs AS (SELECT DISTINCT h FROM keys)
        INSERT INTO {groups} (meter_id, customer_id, hour, dimensions_hash, dimensions, event_count, value_sum,
                              value_max, latest_value, latest_timestamp, latest_event_id, rolled_at)
        SELECT %(m)s, k.c, k.h, md5(x.dims::text)::uuid, x.dims, x.n, x.s, x.mx, x.lv, x.lt, x.li, k.t
        FROM hrs hr CROSS JOIN LATERAL (
            SELECT e.customer_id, e.dimensions AS dims, count(*) AS n, sum(e.value) AS s, max(e.value) AS mx,
                   {latest} {hour_events} GROUP BY e.customer_id, e.dimensions
        ) x(c, dims, n, s, mx, lv, lt, li)
        JOIN keys k ON k.c = x.c AND k.h = hr.h
        """,  # noqa: S608 - table names are ours, every value is a bound parameter
        params,
    )


def _days(keys: Any) -> list[tuple[str, datetime]]:
    return sorted({(customer_id, hour.replace(hour=0)) for customer_id, hour in keys})


def _day_locks(cursor: Any, meter: Meter, days: list[tuple[str, datetime]]) -> None:
    """Serialize recomputations of the same (meter, customer, day) by concurrent roll-up batches, in one
    order. After the wait, READ COMMITTED's next statement sees the other batch's committed hours."""
    cursor.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended(%s || '|' || k.c || '|' || k.d::text, 0)) "
        "FROM unnest(%s::text[], %s::timestamptz[]) WITH ORDINALITY AS k(c, d, n) ORDER BY k.n",
        [meter.id, [d[0] for d in days], [d[1] for d in days]],
    )


def _redo_days_postgres(cursor: Any, meter: Meter, keys: Any) -> None:
    """Recompute the daily group rows of every day these hours fall in, from the day's hourly group rows."""
    days = _days(keys)
    _day_locks(cursor, meter, days)
    daily, groups = UsageDailyGroup._meta.db_table, UsageHourlyGroup._meta.db_table
    params = {"m": meter.id, "cs": [d[0] for d in days], "ds": [d[1] for d in days]}
    cursor.execute(
        f"""
        DELETE FROM {daily} g USING unnest(%(cs)s::text[], %(ds)s::timestamptz[]) AS k(c, d)
        WHERE g.customer_id = k.c AND g.meter_id = %(m)s AND g.day = k.d
        """,  # noqa: S608
        params,
    )
    order = "ORDER BY g.latest_timestamp DESC, g.latest_event_id DESC"
    cursor.execute(
        f"""
        INSERT INTO {daily} (meter_id, customer_id, day, dimensions_hash, dimensions, event_count, value_sum,
                             value_max, latest_value, latest_timestamp, latest_event_id, rolled_at)
        SELECT %(m)s, k.c, k.d, g.dimensions_hash, g.dimensions, sum(g.event_count), sum(g.value_sum),
               max(g.value_max), (array_agg(g.latest_value {order}))[1], max(g.latest_timestamp),
               (array_agg(g.latest_event_id {order}))[1], max(g.rolled_at)
        FROM unnest(%(cs)s::text[], %(ds)s::timestamptz[]) AS k(c, d)
        JOIN {groups} g ON g.customer_id = k.c AND g.meter_id = %(m)s
                       AND g.hour >= k.d AND g.hour < k.d + interval '1 day'
        GROUP BY k.c, k.d, g.dimensions_hash, g.dimensions
        """,  # noqa: S608
        params,
    )


def _redo_days_python(meter: Meter, keys: Any) -> None:
    for customer_id, day in _days(keys):
        UsageDailyGroup.objects.filter(meter=meter, customer_id=customer_id, day=day).delete()
        merged: dict[uuid.UUID, tuple[dict[str, Any], Acc, datetime]] = {}
        rows = UsageHourlyGroup.objects.filter(
            meter=meter, customer_id=customer_id, hour__gte=day, hour__lt=day + DAY
        ).values_list(
            "dimensions_hash",
            "dimensions",
            "event_count",
            "value_sum",
            "value_max",
            "latest_timestamp",
            "latest_event_id",
            "latest_value",
            "rolled_at",
        )
        for digest, dimensions, count, total, maximum, lt, li, lv, rolled_at in rows:
            entry = merged.setdefault(digest, (dimensions, Acc(), rolled_at))
            entry[1].add(count, total, maximum, lt, li, lv)
            merged[digest] = (dimensions, entry[1], max(entry[2], rolled_at))
        UsageDailyGroup.objects.bulk_create(
            UsageDailyGroup(
                meter=meter,
                customer_id=customer_id,
                day=day,
                dimensions_hash=digest,
                dimensions=dimensions,
                event_count=acc.count,
                value_sum=acc.total,
                value_max=acc.maximum,
                latest_value=acc.latest_value if acc.latest_key else None,
                latest_timestamp=acc.latest_key[0] if acc.latest_key else None,
                latest_event_id=acc.latest_key[1] if acc.latest_key else None,
                rolled_at=rolled_at,
            )
            for digest, (dimensions, acc, rolled_at) in merged.items()
        )


def _span_keys(keys: Any, hours: int) -> list[tuple[str, datetime]]:
    """The distinct (customer, span start) of the spans of `hours` hours that hold these hours."""
    return sorted({(customer_id, hour.replace(hour=hour.hour - hour.hour % hours)) for customer_id, hour in keys})


def _redo_spans_postgres(cursor: Any, meter: Meter, keys: Any) -> None:
    """Rewrite the unique-value spans holding these hours, one statement per level: the hours' from their
    (just rewritten) `UsageHourlyGroup` rows, then their 6-hour blocks' from the hour spans, then their
    days' from the block spans. Each statement upserts the spans that have values and deletes the ones
    that no longer have any. The caller holds the days' advisory locks, so concurrent batches rewriting
    hours of the same day run these one after the other, each seeing the other's committed spans."""
    spans, groups = UsageUniqueSpan._meta.db_table, UsageHourlyGroup._meta.db_table
    text = 'COLLATE "C"'  # code-point order, as Python sorts
    hour_new = f"""
        SELECT t.c, t.s, sum(g.event_count) AS n,
               jsonb_agg(DISTINCT (g.dimensions ->> %(uk)s) {text} ORDER BY (g.dimensions ->> %(uk)s) {text}) AS v
        FROM targets t JOIN {groups} g ON g.customer_id = t.c AND g.meter_id = %(m)s AND g.hour = t.s
        WHERE (g.dimensions ->> %(uk)s) IS NOT NULL
        GROUP BY t.c, t.s
    """  # noqa: S608

    def from_below(below: int) -> str:
        return f"""
        SELECT t.c, t.s, n.n, v.v FROM targets t
        CROSS JOIN LATERAL (
            SELECT sum(x.event_count) AS n FROM {spans} x
            WHERE x.customer_id = t.c AND x.meter_id = %(m)s AND x.span_hours = {below}
              AND x.span_start >= t.s AND x.span_start < t.s + %(len)s * interval '1 hour'
        ) n
        CROSS JOIN LATERAL (
            SELECT jsonb_agg(DISTINCT u.u {text} ORDER BY u.u {text}) AS v FROM {spans} x
            CROSS JOIN LATERAL jsonb_array_elements_text(x.unique_values) AS u(u)
            WHERE x.customer_id = t.c AND x.meter_id = %(m)s AND x.span_hours = {below}
              AND x.span_start >= t.s AND x.span_start < t.s + %(len)s * interval '1 hour'
        ) v
        WHERE n.n IS NOT NULL
        """  # noqa: S608

    for hours, new in ((1, hour_new), (6, from_below(1)), (24, from_below(6))):
        targets = _span_keys(keys, hours)
        params = {
            "m": meter.id,
            "uk": meter.unique_key,
            "len": hours,
            "cs": [t[0] for t in targets],
            "ss": [t[1] for t in targets],
        }
        cursor.execute(
            f"""
            WITH targets (c, s) AS (SELECT * FROM unnest(%(cs)s::text[], %(ss)s::timestamptz[])),
            new AS MATERIALIZED ({new}),
            upserted AS (
                INSERT INTO {spans} AS u (meter_id, customer_id, span_start, span_hours, event_count, unique_values)
                SELECT %(m)s, new.c, new.s, %(len)s, new.n, new.v FROM new
                ON CONFLICT (customer_id, meter_id, span_start, span_hours) DO UPDATE SET
                    event_count = EXCLUDED.event_count, unique_values = EXCLUDED.unique_values
                WHERE u.event_count <> EXCLUDED.event_count OR u.unique_values <> EXCLUDED.unique_values
            )
            DELETE FROM {spans} d USING targets t
            WHERE d.customer_id = t.c AND d.meter_id = %(m)s AND d.span_start = t.s AND d.span_hours = %(len)s
              AND NOT EXISTS (SELECT 1 FROM new WHERE new.c = t.c AND new.s = t.s)
            """,  # noqa: S608 - table names are ours, every value is a bound parameter
            params,
        )


def _redo_spans_python(meter: Meter, keys: Any) -> None:
    """SQLite: the same three levels, each span from the rows one level down."""
    for hours in (1, 6, 24):
        for customer_id, start in _span_keys(keys, hours):
            if hours == 1:
                rows: Any = UsageHourlyGroup.objects.filter(meter=meter, customer_id=customer_id, hour=start)
                parts = [
                    (count, [text])
                    for count, dimensions in rows.values_list("event_count", "dimensions")
                    if (text := dimension_text(dimensions.get(meter.unique_key))) is not None
                ]
            else:
                rows = UsageUniqueSpan.objects.filter(
                    meter=meter,
                    customer_id=customer_id,
                    span_hours=6 if hours == 24 else 1,
                    span_start__gte=start,
                    span_start__lt=start + hours * HOUR,
                )
                parts = list(rows.values_list("event_count", "unique_values"))
            scope = UsageUniqueSpan.objects.filter(
                meter=meter, customer_id=customer_id, span_start=start, span_hours=hours
            )
            if not parts:
                scope.delete()
                continue
            UsageUniqueSpan.objects.update_or_create(
                meter=meter,
                customer_id=customer_id,
                span_start=start,
                span_hours=hours,
                defaults={
                    "event_count": sum(count for count, _ in parts),
                    "unique_values": sorted({text for _, texts in parts for text in texts}),
                },
            )


def dimensions_hash(dimensions: dict[str, Any]) -> uuid.UUID:
    """The group key on SQLite (PostgreSQL hashes jsonb's own canonical text instead)."""
    text = json.dumps(dimensions, sort_keys=True, separators=(",", ":"), default=str)
    return uuid.UUID(bytes=hashlib.md5(text.encode(), usedforsecurity=False).digest())


def _recompute_python(meter: Meter, keys: dict[HourKey, datetime]) -> tuple[int, int]:
    """SQLite (development): the same recomputation in Python, exact on the values SQLite returns."""
    conditions = conditions_for(meter)
    written = deleted = 0
    latest = meter.aggregation in (Meter.Aggregation.LATEST, Meter.Aggregation.WEIGHTED_SUM)
    weighted = meter.aggregation == Meter.Aggregation.WEIGHTED_SUM
    for (customer_id, hour), rolled_at in keys.items():
        acc = Acc()
        groups: dict[uuid.UUID, tuple[dict[str, Any], Acc]] = {}
        held: list[tuple[datetime, int, Decimal]] = []
        for value, timestamp, pk, dimensions in raw_events(meter, customer_id, [(hour, hour + HOUR)]):
            if passes(conditions, dimensions):
                held.append((utc(timestamp), pk, value))
                acc.add(1, value, value, timestamp, pk, value)
                group = groups.setdefault(dimensions_hash(dimensions), (dimensions, Acc()))[1]
                group.add(1, value, value, timestamp, pk, value)
        UsageHourlyGroup.objects.filter(meter=meter, customer_id=customer_id, hour=hour).delete()
        UsageHourlyGroup.objects.bulk_create(
            UsageHourlyGroup(
                meter=meter,
                customer_id=customer_id,
                hour=hour,
                dimensions_hash=digest,
                dimensions=dimensions,
                event_count=group.count,
                value_sum=group.total,
                value_max=group.maximum,
                latest_value=group.latest_value if latest else None,
                latest_timestamp=group.latest_key[0] if latest and group.latest_key else None,
                latest_event_id=group.latest_key[1] if latest and group.latest_key else None,
                rolled_at=rolled_at,
            )
            for digest, (dimensions, group) in groups.items()
        )
        scope = UsageHourly.objects.filter(meter=meter, customer_id=customer_id, hour=hour)
        if acc.count == 0 or acc.latest_key is None:
            deleted += scope.delete()[0]
            continue
        UsageHourly.objects.update_or_create(
            meter=meter,
            customer_id=customer_id,
            hour=hour,
            defaults={
                "event_count": acc.count,
                "value_sum": acc.total,
                "value_max": acc.maximum,
                "latest_value": acc.latest_value,
                "latest_timestamp": acc.latest_key[0],
                "latest_event_id": acc.latest_key[1],
                "first_timestamp": min(held)[0] if weighted else None,
                "held_integral": held_integral(held, hour + HOUR) if weighted else None,
                "rolled_at": rolled_at,
            },
        )
        written += 1
    _redo_days_python(meter, keys)
    if meter.aggregation == Meter.Aggregation.UNIQUE_COUNT:
        _redo_spans_python(meter, keys)
    return written, deleted
