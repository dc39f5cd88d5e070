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
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.db import connections

from metering.models import Meter, MeterEvent, UsageDirtyHour, UsageHourly
from metering.usage import (
    DAY,
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
    floor_window,
    passes,
    raw_events,
)
from metering.weighted import ZERO, Part, integrate, prorate

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

SeriesKey = tuple[str, str | None]  # customer id, group value


def read_weighted(read: UsageRead, db: str) -> dict[BucketKey, Acc]:
    postgres = connections[db].vendor == "postgresql"
    opening = _openings(read, db, postgres)
    raw_only = read.grouped
    parts = _parts_postgres(read, db, raw_only) if postgres else _parts_python(read, raw_only)

    window = read.window

    def bucket(at: datetime) -> datetime | None:
        return floor_window(at, window)

    def boundaries(lo: datetime, hi: datetime) -> list[datetime]:
        if window is None:
            return []
        step = DAY if window == DAY else HOUR
        cut = floor_window(lo, window) + step
        cuts = []
        while cut < hi:
            cuts.append(cut)
            cut += step
        return cuts

    result: dict[BucketKey, Acc] = {}
    for key in sorted(set(parts) | set(opening), key=lambda k: (k[0], k[1] or "")):
        series = integrate(
            parts.get(key, []),
            opening=opening.get(key),
            start=read.start,
            end=read.end,
            bucket=bucket,
            boundaries=boundaries,
        )
        for at, (integral, events) in series.items():
            if not integral and not events:
                continue
            acc = Acc(count=events, weighted=prorate(integral, read.start, read.end))
            result[(key[0], at, key[1])] = acc
    return result


def _openings(read: UsageRead, db: str, postgres: bool) -> dict[SeriesKey, Decimal]:
    """The last value of each series before `start`: the `latest` aggregation over [EPOCH, start)."""
    if read.start <= EPOCH:
        return {}
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


def _raw_part(timestamp: datetime, pk: int, value: Decimal) -> Part:
    return Part(first=timestamp, order=pk, hi=timestamp, held=ZERO, last=value, events=1)


def _parts_postgres(read: UsageRead, db: str, raw_only: bool) -> dict[SeriesKey, list[Part]]:
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
    whole = None if raw_only else _whole_hours(read)
    if whole is None:
        edges = [(read.start, read.end)]
    else:
        edges = _edges(read, whole)
    params["los"], params["his"] = [lo for lo, _ in edges], [hi for _, hi in edges]
    rolled = dirty_cte = dirty_ranges = ""
    if whole:
        params["hs"], params["he"] = whole
        dirty_cte = f"""dirty AS MATERIALIZED (
            SELECT customer_id, hour FROM {UsageDirtyHour._meta.db_table}
            WHERE meter_id = %(m)s AND customer_id = ANY(%(cs)s::text[]) AND hour >= %(hs)s AND hour < %(he)s
        ),"""  # noqa: S608
        dirty_ranges = "UNION ALL SELECT customer_id, hour, hour + interval '1 hour' FROM dirty"
        rolled = f"""SELECT u.customer_id, NULL::text, u.first_timestamp, 0::bigint, u.hour + interval '1 hour',
                   u.held_integral, u.latest_value, u.event_count
            FROM {UsageHourly._meta.db_table} u
            WHERE u.meter_id = %(m)s AND u.customer_id = ANY(%(cs)s::text[])
              AND u.hour >= %(hs)s AND u.hour < %(he)s
              AND NOT EXISTS (SELECT 1 FROM dirty d WHERE d.customer_id = u.customer_id AND d.hour = u.hour)
            UNION ALL"""  # noqa: S608
    sql = f"""
        WITH {dirty_cte}
        ranges (c, lo, hi) AS (
            SELECT c.c, t.lo, t.hi FROM unnest(%(cs)s::text[]) AS c(c)
            CROSS JOIN unnest(%(los)s::timestamptz[], %(his)s::timestamptz[]) AS t(lo, hi)
            {dirty_ranges}
        )
        {rolled}
        SELECT r.c, x.* FROM ranges r CROSS JOIN LATERAL (
            SELECT {group}, e.timestamp, e.id, e.timestamp, 0::numeric, e.value, 1::bigint
            FROM {events} e
            WHERE e.customer_id = r.c AND e.meter_id = %(m)s AND e.timestamp >= r.lo AND e.timestamp < r.hi
              AND e.timestamp >= %(start)s AND e.timestamp < %(end)s
              AND e.canceled_at IS NULL{where}
        ) x
        ORDER BY 1, 2, 3, 4
    """  # noqa: S608 - table names are ours, every value is a bound parameter
    parts: dict[SeriesKey, list[Part]] = defaultdict(list)
    with connections[db].cursor() as cursor:
        cursor.execute(sql, params)
        for c, grp, first, order, hi, held, last, count in cursor.fetchall():
            parts[(c, grp)].append(Part(first=first, order=order, hi=hi, held=held, last=last, events=int(count)))
    return parts


def _parts_python(read: UsageRead, raw_only: bool) -> dict[SeriesKey, list[Part]]:
    whole = None if raw_only else _whole_hours(read)
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
                        Part(first=first, order=0, hi=hour + HOUR, held=Decimal(held), last=last, events=count)
                    )
            ranges += [(hour, hour + HOUR) for hour in sorted(dirty)]
        for value, timestamp, pk, dimensions in raw_events(read.meter, customer_id, ranges):
            if not passes(read.conditions, dimensions):
                continue
            group = dimension_text(dimensions.get(read.group_by)) if read.group_by else None
            parts[(customer_id, group)].append(_raw_part(timestamp, pk, value))
    for series in parts.values():
        series.sort(key=lambda part: (part.first, part.order))
    return parts
