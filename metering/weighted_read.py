"""The weighted_sum read behind `metering.usage.usage_read` (the math is in `metering.weighted`).

Per customer (and group value, with `group_by`) the series' parts over [start, end) are read in time
order and integrated in Python:

- without `group_by` or extra filters: the hourly roll-ups (`UsageHourly.first_timestamp`,
  `held_integral`, `latest_value`) for the clean whole hours, and raw events for the partial hours at the
  edges and the dirty hours, as every other aggregation reads; a period of a month is ~744 rows;
- with `group_by` or extra filters: the period's raw events (the per-dimension-set roll-ups hold one
  series per set of dimensions, not per group value).

The opening value of each series (its last value before `start`) is the `latest` aggregation over
everything before `start`, read by the same engine (roll-ups for whole clean hours), in the same
snapshot. A late or canceled event dirties its own hour only: the carried value after it is read from
the rows, never stored, so nothing after it needs recomputing.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import connections

from metering.models import Meter, MeterEvent, UsageDirtyHour, UsageHourly
from metering.usage import (
    HOUR,
    Acc,
    BucketKey,
    UsageRead,
    _edges,
    _read_postgres,
    _read_python,
    _whole_hours,
    conditions_sql,
    dimension_text,
    floor_hour,
    passes,
    raw_events,
)
from metering.weighted import ZERO, Part, integrate, micros, prorate

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

SeriesKey = tuple[str, str | None]  # customer id, group value


def _us(value: datetime) -> int:
    return micros(value - EPOCH)


def read_weighted(read: UsageRead, db: str) -> dict[BucketKey, Acc]:
    postgres = connections[db].vendor == "postgresql"
    opening = _openings(read, db, postgres)
    parts = _parts_postgres(read, db) if postgres else _parts_python(read)
    step = None if read.window is None else micros(read.window)
    start, end = _us(read.start), _us(read.end)
    result: dict[BucketKey, Acc] = {}
    for key in sorted(set(parts) | set(opening), key=lambda k: (k[0], k[1] or "")):
        series = integrate(parts.get(key, []), opening=opening.get(key), start=start, end=end, step=step)
        for at, (integral, events) in series.items():
            if not integral and not events:
                continue
            bucket = None if at is None else EPOCH + timedelta(microseconds=at)
            result[(key[0], bucket, key[1])] = Acc(count=events, weighted=prorate(integral, end - start))
    return result


def _openings(read: UsageRead, db: str, postgres: bool) -> dict[SeriesKey, Decimal]:
    """The last value of each series before `start`: the `latest` aggregation over [EPOCH, start)."""
    if read.start <= EPOCH:
        return {}
    if postgres and not read.grouped:
        return _openings_probe(read, db)
    latest_meter = copy.copy(read.meter)
    latest_meter.aggregation = Meter.Aggregation.LATEST
    before = UsageRead(
        meter=latest_meter,
        customer_ids=read.customer_ids,
        start=EPOCH,
        end=read.start,
        group_by=read.group_by,
        conditions=read.conditions,
        grouped=read.grouped,
    )
    accs = _read_postgres(before, db) if postgres else _read_python(before)
    return {(c, g): acc.latest_value for (c, _, g), acc in accs.items() if acc.latest_key is not None}


def _openings_probe(read: UsageRead, db: str) -> dict[SeriesKey, Decimal]:
    """The opening values without `group_by` or extra filters, in two index probes per customer whatever
    the history's length: the latest clean hour row before the start's hour (backwards on the roll-up's
    unique index), then the latest raw event after that row's hour and before `start` (the dirty hours
    and the partial hour; backwards on the usage index, stopping at the first match). An event found
    raw is later than anything in the row, so it wins when there is one."""
    params: dict[str, Any] = {
        "m": read.meter.id,
        "cs": list(read.customer_ids),
        "start": read.start,
        "sh": floor_hour(read.start),
    }
    where = conditions_sql(read.conditions, params)
    sql = f"""
        SELECT c.c, coalesce(x.value, r.latest_value)
        FROM unnest(%(cs)s::text[]) AS c(c)
        LEFT JOIN LATERAL (
            SELECT u.hour, u.latest_value FROM {UsageHourly._meta.db_table} u
            WHERE u.meter_id = %(m)s AND u.customer_id = c.c AND u.hour < %(sh)s
              AND NOT EXISTS (SELECT 1 FROM {UsageDirtyHour._meta.db_table} d
                              WHERE d.meter_id = u.meter_id AND d.customer_id = u.customer_id AND d.hour = u.hour)
            ORDER BY u.hour DESC LIMIT 1
        ) r ON true
        LEFT JOIN LATERAL (
            SELECT e.value FROM {MeterEvent._meta.db_table} e
            WHERE e.customer_id = c.c AND e.meter_id = %(m)s AND e.timestamp < %(start)s
              AND e.timestamp >= coalesce(r.hour + interval '1 hour', '-infinity'::timestamptz)
              AND e.canceled_at IS NULL{where}
            ORDER BY e.timestamp DESC, e.id DESC LIMIT 1
        ) x ON true
        WHERE x.value IS NOT NULL OR r.latest_value IS NOT NULL
    """  # noqa: S608 - table names are ours, every value is a bound parameter
    with connections[db].cursor() as cursor:
        cursor.execute(sql, params)
        return {(c, None): value for c, value in cursor.fetchall()}


def _parts_postgres(read: UsageRead, db: str) -> dict[SeriesKey, list[Part]]:
    """The series' parts in time order: clean hour rows, and raw ranges (the edges and dirty hours; with
    `group_by` or extra filters, every hour of the period) each read as one part per series with the
    roll-up's own arithmetic (lead() over the range's events). Instants come back as epoch microseconds."""
    events = MeterEvent._meta.db_table
    params: dict[str, Any] = {
        "m": read.meter.id,
        "cs": list(read.customer_ids),
        "start": read.start,
        "end": read.end,
        "g": read.group_by,
    }
    where = conditions_sql(read.conditions, params)
    group = "e.dimensions ->> %(g)s" if read.group_by else "NULL::text"
    whole = None if read.grouped else _whole_hours(read)
    rolled = dirty_cte = ""
    if read.grouped:
        # One range per hour of the period (clipped to it), so that no part crosses a window.
        ranges = """SELECT c.c, greatest(h, %(start)s::timestamptz), least(h + interval '1 hour', %(end)s::timestamptz)
            FROM unnest(%(cs)s::text[]) AS c(c)
            CROSS JOIN generate_series(date_trunc('hour', %(start)s::timestamptz, 'UTC'),
                                       %(end)s::timestamptz - interval '1 microsecond', interval '1 hour') AS h"""
    else:
        edges = [(read.start, read.end)] if whole is None else _edges(read, whole)
        params["los"], params["his"] = [lo for lo, _ in edges], [hi for _, hi in edges]
        ranges = """SELECT c.c, t.lo, t.hi FROM unnest(%(cs)s::text[]) AS c(c)
            CROSS JOIN unnest(%(los)s::timestamptz[], %(his)s::timestamptz[]) AS t(lo, hi)"""
    if whole:
        params["hs"], params["he"] = whole
        dirty_cte = f"""dirty AS MATERIALIZED (
            SELECT customer_id, hour FROM {UsageDirtyHour._meta.db_table}
            WHERE meter_id = %(m)s AND customer_id = ANY(%(cs)s::text[]) AND hour >= %(hs)s AND hour < %(he)s
        ),"""  # noqa: S608
        ranges += " UNION ALL SELECT customer_id, hour, hour + interval '1 hour' FROM dirty"
        rolled = f"""SELECT u.customer_id, NULL::text, {_US.format("u.first_timestamp")},
                   {_US.format("u.hour + interval '1 hour'")}, u.held_integral, u.latest_value, u.event_count
            FROM {UsageHourly._meta.db_table} u
            WHERE u.meter_id = %(m)s AND u.customer_id = ANY(%(cs)s::text[])
              AND u.hour >= %(hs)s AND u.hour < %(he)s
              AND NOT EXISTS (SELECT 1 FROM dirty d WHERE d.customer_id = u.customer_id AND d.hour = u.hour)
            UNION ALL"""  # noqa: S608
    order = "ORDER BY w.ts DESC, w.id DESC"
    sql = f"""
        WITH {dirty_cte}
        ranges (c, lo, hi) AS ({ranges})
        {rolled}
        SELECT r.c, x.* FROM ranges r CROSS JOIN LATERAL (
            SELECT w.grp, {_US.format("min(w.ts)")}, {_US.format("r.hi")}, sum(w.value * w.us),
                   (array_agg(w.value {order}))[1], count(*)
            FROM (
                SELECT {group} AS grp, e.timestamp AS ts, e.id, e.value,
                       round(extract(epoch FROM coalesce(
                           lead(e.timestamp) OVER (PARTITION BY {group} ORDER BY e.timestamp, e.id), r.hi)
                           - e.timestamp) * 1000000) AS us
                FROM {events} e
                WHERE e.customer_id = r.c AND e.meter_id = %(m)s AND e.timestamp >= r.lo AND e.timestamp < r.hi
                  AND e.timestamp >= %(start)s AND e.timestamp < %(end)s
                  AND e.canceled_at IS NULL{where}
            ) w
            GROUP BY w.grp
        ) x
        ORDER BY 1, 2, 3
    """  # noqa: S608 - table names are ours, every value is a bound parameter
    parts: dict[SeriesKey, list[Part]] = defaultdict(list)
    with connections[db].cursor() as cursor:
        cursor.execute(sql, params)
        for c, grp, first, hi, held, last, count in cursor.fetchall():
            parts[(c, grp)].append(Part(first=first, order=0, hi=hi, held=held, last=last, events=int(count)))
    return parts


_US = "(extract(epoch FROM {}) * 1000000)::bigint"


def _parts_python(read: UsageRead) -> dict[SeriesKey, list[Part]]:
    """SQLite: hour rows as parts, raw events one part each (of no length)."""
    whole = None if read.grouped else _whole_hours(read)
    parts: dict[SeriesKey, list[Part]] = defaultdict(list)
    for customer_id in read.customer_ids:
        ranges = [(read.start, read.end)] if whole is None else _edges(read, whole)
        if whole:
            scope: dict[str, Any] = {"meter_id": read.meter.id, "customer_id": customer_id}
            scope.update(hour__gte=whole[0], hour__lt=whole[1])
            dirty = set(UsageDirtyHour.objects.filter(**scope).values_list("hour", flat=True))
            rows = UsageHourly.objects.filter(**scope).values_list(
                "hour", "first_timestamp", "held_integral", "latest_value", "event_count"
            )
            for hour, first, held, last, count in rows:
                if hour not in dirty:
                    parts[(customer_id, None)].append(
                        Part(
                            first=_us(first), order=0, hi=_us(hour + HOUR), held=Decimal(held), last=last, events=count
                        )
                    )
            ranges += [(hour, hour + HOUR) for hour in sorted(dirty)]
        for value, timestamp, pk, dimensions in raw_events(read.meter, customer_id, ranges):
            if not passes(read.conditions, dimensions):
                continue
            group = dimension_text(dimensions.get(read.group_by)) if read.group_by else None
            at = _us(timestamp)
            parts[(customer_id, group)].append(Part(first=at, order=pk, hi=at, held=ZERO, last=value, events=1))
    for series in parts.values():
        series.sort(key=lambda part: (part.first, part.order))
    return parts
