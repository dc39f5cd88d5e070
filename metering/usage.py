"""Usage reads (the engine behind `metering.selectors`) and cancellation.

A read combines two sources, as the roll-up design says:

- `UsageHourly` rows for the WHOLE hours inside [start, end) that have no `UsageDirtyHour` row, and
- raw events for the partial hours at either edge and for the dirty whole hours.

Every read of one query sees one snapshot, so a roll-up committing in the middle can neither count an
hour twice (from its new roll-up and from raw events) nor drop it. On PostgreSQL the whole read is one
SQL statement (a statement always sees one snapshot, whatever the caller's isolation level), run in a
REPEATABLE READ transaction when we own the transaction; on SQLite a transaction is serializable.

unique_count, `group_by` and extra `filters` read `UsageHourlyGroup` (one row per hour and distinct set
of dimensions) for the whole clean hours instead of `UsageHourly`, with the same raw edges and dirty hours.

SQLite stores decimals as REAL, so there every aggregate is computed in Python from the rows (exact to
the 15 significant digits SQLite keeps); PostgreSQL aggregates exact NUMERIC in SQL.
"""

from __future__ import annotations

import hmac
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.models import Q

from billing_site.replicas import read_alias
from customers.entitlements_cache import entitlements_invalidate
from customers.models import Customer
from metering.ids import event_day, event_public_id, parse_event_id
from metering.ingest import events_by_keys, mark_hours_dirty
from metering.locks import lock_event_values
from metering.models import (
    Meter,
    MeterEvent,
    UsageDailyGroup,
    UsageDirtyHour,
    UsageHourly,
    UsageHourlyGroup,
    UsageUniqueSpan,
)
from webhooks.services import event_emit

ZERO = Decimal(0)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
WINDOWS: dict[str, timedelta | None] = {"hour": HOUR, "day": DAY, "none": None}
MAX_CANCEL = 10_000

Conditions = tuple[tuple[str, frozenset[str]], ...]


# --- Dimensions and filters -----------------------------------------------------------------------


def dimension_text(value: Any) -> str | None:
    """The text a dimension value compares as: what PostgreSQL's `dimensions ->> key` gives.

    Strings as they are, integers in decimal, booleans as "true"/"false" (as meter filters store them).
    """
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


def conditions_for(meter: Meter, extra: Mapping[str, Iterable[Any]] | None = None) -> Conditions:
    """The meter's own filters AND the extra ones: for each dimension, the set of values that pass."""
    merged: dict[str, frozenset[str]] = {}
    for source in (meter.filters or {}, extra or {}):
        for key, allowed in source.items():
            values = frozenset(text for text in map(dimension_text, allowed) if text is not None)
            merged[key] = merged[key] & values if key in merged else values
    return tuple(sorted(merged.items()))


def passes(conditions: Conditions, dimensions: Mapping[str, Any]) -> bool:
    return all(dimension_text(dimensions.get(key)) in allowed for key, allowed in conditions)


def conditions_sql(conditions: Conditions, params: dict[str, Any], alias: str = "e") -> str:
    """`AND (e.dimensions ->> key) = ANY(values)` for each condition; values are bound parameters."""
    sql = []
    for index, (key, allowed) in enumerate(conditions):
        params[f"fk{index}"] = key
        params[f"fv{index}"] = sorted(allowed)
        sql.append(f" AND ({alias}.dimensions ->> %(fk{index})s) = ANY(%(fv{index})s::text[])")
    return "".join(sql)


# --- Time -----------------------------------------------------------------------------------------


def utc(value: datetime, name: str = "datetime") -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")
    return value.astimezone(UTC)


def floor_hour(value: datetime) -> datetime:
    return value.replace(minute=0, second=0, microsecond=0)


def ceil_hour(value: datetime) -> datetime:
    floor = floor_hour(value)
    return floor if floor == value else floor + HOUR


def floor_window(value: datetime, window: timedelta | None) -> datetime | None:
    if window is None:
        return None
    if window == DAY:
        return value.replace(hour=0, minute=0, second=0, microsecond=0)
    return floor_hour(value)


# --- Accumulating ---------------------------------------------------------------------------------


@dataclass(slots=True)
class Acc:
    """Count, sum, max and latest of a set of events, built from parts (roll-up rows, raw events or SQL
    groups). `latest` is ordered by (timestamp, event id): the id is the ingestion order."""

    count: int = 0
    total: Decimal = ZERO
    maximum: Decimal | None = None
    latest_key: tuple[datetime, int] | None = None
    latest_value: Decimal = ZERO
    distinct: int = 0
    uniques: set[str] = field(default_factory=set)
    weighted: Decimal = ZERO  # weighted_sum: the bucket's share of the read period's prorated integral

    def add(
        self,
        count: int,
        total: Decimal | None,
        maximum: Decimal | None,
        latest_timestamp: datetime | None = None,
        latest_id: int | None = None,
        latest_value: Decimal | None = None,
    ) -> None:
        self.count += int(count or 0)
        self.total += total or ZERO
        if maximum is not None and (self.maximum is None or maximum > self.maximum):
            self.maximum = maximum
        if latest_timestamp is not None and latest_id is not None:
            key = (latest_timestamp, int(latest_id))
            if self.latest_key is None or key > self.latest_key:
                self.latest_key, self.latest_value = key, latest_value if latest_value is not None else ZERO

    def value(self, aggregation: str) -> Decimal:
        if aggregation == Meter.Aggregation.COUNT:
            return Decimal(self.count)
        if aggregation == Meter.Aggregation.SUM:
            return self.total
        if aggregation == Meter.Aggregation.MAX:
            return self.maximum if self.maximum is not None else ZERO
        if aggregation == Meter.Aggregation.LATEST:
            return self.latest_value if self.latest_key is not None else ZERO
        if aggregation == Meter.Aggregation.UNIQUE_COUNT:
            return Decimal(self.distinct + len(self.uniques))
        if aggregation == Meter.Aggregation.WEIGHTED_SUM:
            return self.weighted
        raise ValueError(f"Unknown aggregation {aggregation!r}")


BucketKey = tuple[str, datetime | None, str | None]  # customer id, window start (None: no window), group


@dataclass(frozen=True)
class UsageRead:
    """What one read asks for. `window` None means one bucket for the whole period."""

    meter: Meter
    customer_ids: tuple[str, ...]
    start: datetime
    end: datetime
    window: timedelta | None = None
    group_by: str | None = None
    conditions: Conditions = ()
    rollups: bool = True
    # Whole clean hours come from the per-dimension-set roll-ups (group_by, extra filters, unique_count)
    # instead of the per-hour totals.
    grouped: bool = False
    # unique_count without group_by or extra filters: whole clean hours come from `UsageUniqueSpan` rows
    # (days, 6-hour blocks, hours) instead.
    spans: bool = False

    @property
    def unique_key(self) -> str | None:
        return self.meter.unique_key if self.meter.aggregation == Meter.Aggregation.UNIQUE_COUNT else None


def usage_read(
    *,
    meter: Meter,
    customer_ids: Iterable[str],
    start: datetime,
    end: datetime,
    window: timedelta | None = None,
    group_by: str | None = None,
    filters: Mapping[str, Iterable[Any]] | None = None,
) -> dict[BucketKey, Acc]:
    """Aggregates per (customer, window start, group value) of the non-canceled, matching events of each
    customer in [start, end), all customers in one statement (and one snapshot).

    Buckets without events are absent."""
    start, end = utc(start, "start"), utc(end, "end")
    if start > end:
        raise ValueError("start must not be after end")
    customers = tuple(sorted(set(customer_ids)))
    if start == end or not customers:
        return {}
    read = UsageRead(
        meter=meter,
        customer_ids=customers,
        start=start,
        end=end,
        window=window,
        group_by=group_by,
        conditions=conditions_for(meter, filters),
        grouped=meter.aggregation == Meter.Aggregation.UNIQUE_COUNT or group_by is not None or bool(filters),
        spans=meter.aggregation == Meter.Aggregation.UNIQUE_COUNT and group_by is None and not filters,
    )
    # The primary, unless the caller allowed a replica (an API list or usage read; never billing).
    db = read_alias()
    with consistent_snapshot(db):
        if meter.aggregation == Meter.Aggregation.WEIGHTED_SUM:
            from metering.weighted_read import read_weighted  # it builds on this module

            return read_weighted(read, db)
        if connections[db].vendor == "postgresql":
            return _read_postgres(read, db)
        return _read_python(read)


@contextmanager
def consistent_snapshot(db: str = DEFAULT_DB_ALIAS) -> Iterator[None]:
    """One transaction for every read of one query. When we open it on PostgreSQL it is REPEATABLE READ
    (the SET must be its first statement); nested in a caller's transaction, the caller's isolation holds,
    which is why the PostgreSQL read is also a single statement."""
    conn = connections[db]
    outermost = not conn.in_atomic_block
    with transaction.atomic(using=db):
        if outermost and conn.vendor == "postgresql":
            with conn.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        yield


def _whole_hours(read: UsageRead) -> tuple[datetime, datetime] | None:
    first, last = ceil_hour(read.start), floor_hour(read.end)
    return (first, last) if read.rollups and first < last else None


def _whole_days(read: UsageRead, whole: tuple[datetime, datetime] | None) -> tuple[datetime, datetime] | None:
    """The whole UTC days inside the whole hours, when the read's buckets are days or the whole period
    (hour buckets cannot be served by day rows)."""
    if whole is None or not read.grouped or read.window not in (None, DAY):
        return None
    first = whole[0].replace(hour=0)
    if first < whole[0]:
        first += DAY
    last = whole[1].replace(hour=0)
    return (first, last) if first < last else None


SPAN_LEVELS = (24, 6, 1)  # UsageUniqueSpan.span_hours, largest first; each divides the one before


def span_levels(read: UsageRead) -> tuple[int, ...]:
    """Hour buckets can only be served by hour spans; day buckets and the whole period by any (no span
    crosses a UTC day)."""
    return (1,) if read.window == HOUR else SPAN_LEVELS


def span_cover(
    lo: datetime, hi: datetime, levels: tuple[int, ...] = SPAN_LEVELS, dirty: Iterable[datetime] = ()
) -> list[tuple[datetime, int]]:
    """The fewest aligned spans (start, hours) covering the whole hours [lo, hi), largest first where they
    fit; a span holding a dirty hour is split into the spans one level down, and a dirty hour itself is
    left out (it is read raw). Spans of `n` hours start at UTC hours divisible by `n`."""
    marks = sorted(dirty)

    def has_dirty(start: datetime, hours: int) -> bool:
        index = bisect_left(marks, start)
        return index < len(marks) and marks[index] < start + hours * HOUR

    def split(start: datetime, hours: int, below: tuple[int, ...]) -> Iterator[tuple[datetime, int]]:
        if not has_dirty(start, hours):
            yield start, hours
        elif below:
            for index in range(hours // below[0]):
                yield from split(start + index * below[0] * HOUR, below[0], below[1:])

    spans: list[tuple[datetime, int]] = []
    at = lo
    while at < hi:
        level = next(n for n in levels if at.hour % n == 0 and at + n * HOUR <= hi)
        spans.extend(split(at, level, tuple(n for n in levels if n < level)))
        at += level * HOUR
    return spans


def _edges(read: UsageRead, whole: tuple[datetime, datetime] | None) -> list[tuple[datetime, datetime]]:
    if whole is None:
        return [(read.start, read.end)]
    return [(lo, hi) for lo, hi in ((read.start, whole[0]), (whole[1], read.end)) if lo < hi]


def _bucket_sql(read: UsageRead, column: str) -> str:
    if read.window is None:
        return "NULL::timestamptz"
    unit = "day" if read.window == DAY else "hour"
    return f"date_trunc('{unit}', {column}, 'UTC')"


def _latest_sql(alias: str) -> str:
    """Timestamp, id and value of the latest row: greatest (timestamp, id)."""
    order = f"ORDER BY {alias}timestamp DESC, {alias}id DESC"
    return f"max({alias}timestamp), (array_agg({alias}id {order}))[1], (array_agg({alias}value {order}))[1]"


def _read_postgres(read: UsageRead, db: str = DEFAULT_DB_ALIAS) -> dict[BucketKey, Acc]:
    whole = _whole_hours(read)
    edges = _edges(read, whole)
    aggregation = read.meter.aggregation
    params: dict[str, Any] = {
        "m": read.meter.id,
        "cs": list(read.customer_ids),
        "los": [lo for lo, _ in edges],
        "his": [hi for _, hi in edges],
        "hs": whole[0] if whole else None,
        "he": whole[1] if whole else None,
        "g": read.group_by,
        "uk": read.unique_key,
        "start": read.start,
        "end": read.end,
    }
    events, dirty = MeterEvent._meta.db_table, UsageDirtyHour._meta.db_table
    where = conditions_sql(read.conditions, params)
    if read.unique_key:
        where += " AND (e.dimensions ->> %(uk)s) IS NOT NULL"
    group = "e.dimensions ->> %(g)s" if read.group_by else "NULL::text"
    # unique_count: every part carries the unique-key value it holds (a raw range groups by it as well),
    # and the final count(DISTINCT) runs over the union, so a value seen in two hours counts once.
    unique = "e.dimensions ->> %(uk)s" if read.unique_key else "NULL::text"
    dirty_cte = (
        f"""dirty AS MATERIALIZED (
            SELECT customer_id, hour FROM {dirty}
            WHERE meter_id = %(m)s AND customer_id = ANY(%(cs)s::text[]) AND hour >= %(hs)s AND hour < %(he)s
        ),"""  # noqa: S608
        if whole
        else ""
    )
    dirty_ranges = "UNION ALL SELECT customer_id, hour, hour + interval '1 hour' FROM dirty" if whole else ""
    if aggregation == Meter.Aggregation.LATEST:
        raw_latest, latest = _latest_sql("e."), _latest_sql("p.")
    else:
        raw_latest = latest = "NULL::timestamptz, NULL::bigint, NULL::numeric"
    if not whole:
        rolled = ""
    elif read.spans:
        rolled = _spans_sql(read, whole, params)
        dirty_cte += """
            span_top (s, n) AS (SELECT * FROM unnest(%(ss)s::timestamptz[], %(sn)s::int[])),
            used (c, s, n) AS MATERIALIZED ("""
        dirty_cte += _used_spans_sql()
        dirty_cte += "),"
    elif read.grouped:
        # Per-dimension-set rows: the read's filters and grouping apply to their `dimensions`. Whole days
        # without a dirty hour come from the daily rows, the other clean hours from the hourly ones.
        rolled_where = conditions_sql(read.conditions, params, alias="u")
        if read.unique_key:
            rolled_where += " AND (u.dimensions ->> %(uk)s) IS NOT NULL"
        columns = f"""{"u.dimensions ->> %(g)s" if read.group_by else "NULL::text"}, u.event_count, u.value_sum,
                   u.value_max, u.latest_timestamp, u.latest_event_id, u.latest_value,
                   {"u.dimensions ->> %(uk)s" if read.unique_key else "NULL::text"}"""
        days = _whole_days(read, whole)
        rolled = ""
        hour_ranges = "SELECT c.c, %(hs)s::timestamptz, %(he)s::timestamptz FROM unnest(%(cs)s::text[]) AS c(c)"
        if days:
            params["ds"], params["de"] = days
            dirty_cte += """
            dirty_days AS MATERIALIZED (
                SELECT DISTINCT customer_id, date_trunc('day', hour, 'UTC') AS day FROM dirty
                WHERE hour >= %(ds)s AND hour < %(de)s
            ),"""
            rolled = f"""SELECT u.customer_id, {_bucket_sql(read, "u.day")}, {columns}
            FROM {UsageDailyGroup._meta.db_table} u
            WHERE u.customer_id = ANY(%(cs)s::text[]) AND u.meter_id = %(m)s
              AND u.day >= %(ds)s AND u.day < %(de)s{rolled_where}
              AND NOT EXISTS (SELECT 1 FROM dirty_days d WHERE d.customer_id = u.customer_id AND d.day = u.day)
            UNION ALL
            """  # noqa: S608
            # Hour rows only where day rows do not serve: the partial days at both ends and dirty days,
            # each an index range scan (a filter over the whole month would read every hour row).
            hour_ranges = """SELECT c.c, t.lo, t.hi FROM unnest(%(cs)s::text[]) AS c(c)
                CROSS JOIN (VALUES (%(hs)s::timestamptz, %(ds)s::timestamptz),
                                   (%(de)s::timestamptz, %(he)s::timestamptz)) AS t(lo, hi)
                WHERE t.lo < t.hi
                UNION ALL SELECT customer_id, day, day + interval '1 day' FROM dirty_days"""
        dirty_cte += f"""
            hour_ranges (c, lo, hi) AS MATERIALIZED ({hour_ranges}),"""
        rolled += f"""SELECT u.customer_id, {_bucket_sql(read, "u.hour")}, {columns}
            FROM hour_ranges r JOIN {UsageHourlyGroup._meta.db_table} u
              ON u.customer_id = r.c AND u.meter_id = %(m)s AND u.hour >= r.lo AND u.hour < r.hi
            WHERE NOT EXISTS (SELECT 1 FROM dirty d WHERE d.customer_id = u.customer_id AND d.hour = u.hour)
              {rolled_where}
            UNION ALL"""  # noqa: S608
    else:
        rolled = f"""SELECT u.customer_id, {_bucket_sql(read, "u.hour")}, NULL::text, u.event_count, u.value_sum,
                   u.value_max, u.latest_timestamp, u.latest_event_id, u.latest_value, NULL::text
            FROM {UsageHourly._meta.db_table} u
            WHERE u.meter_id = %(m)s AND u.customer_id = ANY(%(cs)s::text[])
              AND u.hour >= %(hs)s AND u.hour < %(he)s
              AND NOT EXISTS (SELECT 1 FROM dirty d WHERE d.customer_id = u.customer_id AND d.hour = u.hour)
            UNION ALL"""  # noqa: S608
    sql = f"""
        WITH {dirty_cte}
        ranges (c, lo, hi) AS (
            SELECT c.c, t.lo, t.hi
            FROM unnest(%(cs)s::text[]) AS c(c)
            CROSS JOIN unnest(%(los)s::timestamptz[], %(his)s::timestamptz[]) AS t(lo, hi)
            {dirty_ranges}
        ),
        parts (c, bucket, grp, n, s, mx, timestamp, id, value, u) AS (
            {rolled}
            SELECT r.c, x.* FROM ranges r CROSS JOIN LATERAL (
                -- Aggregated per range: one index range scan each, never the customer's whole history.
                SELECT {_bucket_sql(read, "e.timestamp")}, {group}, count(*), sum(e.value), max(e.value),
                       {raw_latest}, {unique}
                FROM {events} e
                WHERE e.customer_id = r.c AND e.meter_id = %(m)s AND e.timestamp >= r.lo AND e.timestamp < r.hi
                  -- Constant bounds as well, so the planner prunes to the partitions of [start, end).
                  AND e.timestamp >= %(start)s AND e.timestamp < %(end)s
                  AND e.canceled_at IS NULL{where}
                GROUP BY 1, 2, 9
            ) x
        )
        SELECT p.c, p.bucket, p.grp, sum(p.n), sum(p.s), max(p.mx), {latest}, count(DISTINCT p.u)
        FROM parts p GROUP BY p.c, p.bucket, p.grp
    """  # noqa: S608 - table names are ours, every value is a bound parameter
    result: dict[BucketKey, Acc] = {}
    with connections[db].cursor() as cursor:
        cursor.execute(sql, params)
        for customer_id, bucket, grp, count, total, maximum, lt, li, lv, distinct_count in cursor.fetchall():
            acc = result[(customer_id, bucket, grp)] = Acc(distinct=int(distinct_count or 0))
            acc.add(count, total, maximum, lt, li, lv)
    return result


def _used_spans_sql() -> str:
    """The spans a read uses per customer: the top-level cover without a dirty hour, the clean 6-hour
    blocks of dirty days, and the clean hours of dirty blocks (what `span_cover` gives, in SQL, against
    the `dirty` rows of the same statement)."""
    return """
            SELECT cu.c, t.s, t.n FROM unnest(%(cs)s::text[]) AS cu(c) CROSS JOIN span_top t
            WHERE NOT EXISTS (SELECT 1 FROM dirty d WHERE d.customer_id = cu.c AND d.hour >= t.s
                                                    AND d.hour < t.s + t.n * interval '1 hour')
            UNION ALL
            SELECT DISTINCT d.customer_id, t.s + i * interval '6 hours', 6
            FROM dirty d JOIN span_top t ON t.n = 24 AND d.hour >= t.s AND d.hour < t.s + interval '1 day'
            CROSS JOIN generate_series(0, 3) AS i
            WHERE NOT EXISTS (SELECT 1 FROM dirty x WHERE x.customer_id = d.customer_id
                                AND x.hour >= t.s + i * interval '6 hours'
                                AND x.hour < t.s + (i + 1) * interval '6 hours')
            UNION ALL
            SELECT DISTINCT d.customer_id, b.b + i * interval '1 hour', 1
            FROM dirty d JOIN span_top t ON t.n > 1 AND d.hour >= t.s AND d.hour < t.s + t.n * interval '1 hour'
            CROSS JOIN LATERAL (SELECT date_bin('6 hours', d.hour, timestamptz '2000-01-01 00:00+00')) AS b(b)
            CROSS JOIN generate_series(0, 5) AS i
            WHERE NOT EXISTS (SELECT 1 FROM dirty x WHERE x.customer_id = d.customer_id
                                AND x.hour = b.b + i * interval '1 hour')
        """


def _spans_sql(read: UsageRead, whole: tuple[datetime, datetime], params: dict[str, Any]) -> str:
    """The parts of the used spans: one row per distinct value, the span's event count on its first."""
    top = span_cover(*whole, levels=span_levels(read))
    params["ss"], params["sn"] = [start for start, _ in top], [hours for _, hours in top]
    return f"""SELECT s.customer_id, {_bucket_sql(read, "s.span_start")}, NULL::text,
                   CASE WHEN v.o = 1 THEN s.event_count ELSE 0 END, NULL::numeric, NULL::numeric,
                   NULL::timestamptz, NULL::bigint, NULL::numeric, v.u
            FROM used k JOIN {UsageUniqueSpan._meta.db_table} s
              ON s.customer_id = k.c AND s.meter_id = %(m)s AND s.span_start = k.s AND s.span_hours = k.n
            CROSS JOIN LATERAL jsonb_array_elements_text(s.unique_values) WITH ORDINALITY AS v(u, o)
            UNION ALL"""  # noqa: S608


def _read_python(read: UsageRead) -> dict[BucketKey, Acc]:
    """The same read for SQLite, aggregated in Python (SQLite's SUM would add binary floats)."""
    whole = _whole_hours(read)
    result: dict[BucketKey, Acc] = {}

    def acc(key: BucketKey) -> Acc:
        found = result.get(key)
        if found is None:
            found = result[key] = Acc()
        return found

    for customer_id in read.customer_ids:
        ranges = _edges(read, whole)
        if whole:
            scope: dict[str, Any] = {"meter_id": read.meter.id, "customer_id": customer_id}
            scope.update(hour__gte=whole[0], hour__lt=whole[1])
            dirty = set(UsageDirtyHour.objects.filter(**scope).values_list("hour", flat=True))
            fields = ("hour", "event_count", "value_sum", "value_max", "latest_timestamp", "latest_event_id")
            if read.spans:
                wanted = set(span_cover(*whole, levels=span_levels(read), dirty=dirty))
                spans = UsageUniqueSpan.objects.filter(
                    meter_id=read.meter.id, customer_id=customer_id, span_start__gte=whole[0], span_start__lt=whole[1]
                ).values_list("span_start", "span_hours", "event_count", "unique_values")
                for start, hours, count, texts in spans:
                    if (start, hours) in wanted:
                        target = acc((customer_id, floor_window(start, read.window), None))
                        target.uniques.update(texts)
                        target.add(count, None, None)
            elif read.grouped:
                days = _whole_days(read, whole)
                dirty_days = {hour.replace(hour=0) for hour in dirty}
                rows = list(UsageHourlyGroup.objects.filter(**scope).values_list(*fields, "latest_value", "dimensions"))
                if days:
                    # Clean whole days from their daily rows, so their hours are skipped below.
                    daily = UsageDailyGroup.objects.filter(
                        meter_id=read.meter.id, customer_id=customer_id, day__gte=days[0], day__lt=days[1]
                    ).values_list("day", *fields[1:], "latest_value", "dimensions")
                    rows = [
                        row for row in rows if not days[0] <= row[0] < days[1] or row[0].replace(hour=0) in dirty_days
                    ]
                    rows += [row for row in daily if row[0] not in dirty_days]
                for hour, count, total, maximum, lt, li, lv, dimensions in rows:
                    if hour in dirty or not passes(read.conditions, dimensions):
                        continue
                    group = dimension_text(dimensions.get(read.group_by)) if read.group_by else None
                    target = acc((customer_id, floor_window(hour, read.window), group))
                    if read.unique_key:
                        text = dimension_text(dimensions.get(read.unique_key))
                        if text is None:
                            continue
                        target.uniques.add(text)
                    target.add(count, total, maximum, lt, li, lv)
            else:
                for hour, *part in UsageHourly.objects.filter(**scope).values_list(*fields, "latest_value"):
                    if hour not in dirty:
                        acc((customer_id, floor_window(hour, read.window), None)).add(*part)
            ranges += [(hour, hour + HOUR) for hour in sorted(dirty)]
        unique_key = read.unique_key
        for value, timestamp, pk, dimensions in raw_events(read.meter, customer_id, ranges):
            if not passes(read.conditions, dimensions):
                continue
            key = (customer_id, floor_window(timestamp, read.window))
            group = dimension_text(dimensions.get(read.group_by)) if read.group_by else None
            if unique_key:
                text = dimension_text(dimensions.get(unique_key))
                if text is None:
                    continue
                acc((*key, group)).uniques.add(text)
            acc((*key, group)).add(1, value, value, timestamp, pk, value)
    return result


def raw_events(
    meter: Meter, customer_id: str, ranges: Iterable[tuple[datetime, datetime]]
) -> Iterator[tuple[Decimal, datetime, int, dict[str, Any]]]:
    """(value, timestamp, id, dimensions) of the customer's non-canceled events of the meter in the ranges."""
    for lo, hi in ranges:
        yield from (
            MeterEvent.objects.filter(customer_id=customer_id, meter_id=meter.id, canceled_at__isnull=True)
            .filter(timestamp__gte=lo, timestamp__lt=hi)
            .values_list("value", "timestamp", "id", "dimensions")
            .iterator(chunk_size=2000)
        )


# --- Cancellation ---------------------------------------------------------------------------------


def _locked_by_ids(ids: list[tuple[int, str]], fields: tuple[str, ...]) -> dict[int, tuple]:
    """Lock and read events by (primary key, token). The token names the event's UTC day, so each day's
    ids are looked up in that day's range (one partition, its BRIN index on id); ids not found there
    (tokens made before tokens carried the day) are looked up once more across every partition."""
    by_day: dict[tuple[datetime, datetime], list[int]] = {}
    for pk, token in ids:
        day = event_day(token)
        if day is not None:
            by_day.setdefault(day, []).append(pk)
    scope = Q()
    for (lo, hi), pks in by_day.items():
        scope |= Q(pk__in=pks, timestamp__gte=lo, timestamp__lt=hi)
    rows: dict[int, tuple] = {}
    if by_day:
        rows = {row[0]: row for row in lock_event_values(MeterEvent.objects.filter(scope), fields)}
    rest = sorted({pk for pk, _ in ids} - rows.keys())
    if rest:
        rows.update({row[0]: row for row in lock_event_values(MeterEvent.objects.filter(pk__in=rest), fields)})
    return rows


@dataclass
class CancelResult:
    canceled: int = 0
    already_canceled: int = 0
    not_found: int = 0
    results: list[dict[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "canceled": self.canceled,
            "already_canceled": self.already_canceled,
            "not_found": self.not_found,
            "results": self.results,
        }


def usage_cancel(
    *,
    reason: str,
    now: datetime,
    event_ids: list[str] | None = None,
    customer: Customer | None = None,
    idempotency_keys: list[str] | None = None,
) -> CancelResult:
    """Cancel events by public id, or by customer + idempotency keys. Each distinct id/key gets one
    outcome: canceled | already_canceled | not_found (an id whose token does not match is not_found).

    One transaction: the events are locked in key order, the not-yet-canceled ones get canceled_at and
    the reason (compare-and-set on `canceled_at IS NULL`), their hours are marked dirty for the roll-up,
    and one `usage.canceled` outbox event is written when anything was canceled. Canceled events stay in
    the table and every aggregation skips them.

    Events that were already billed: invoicing finds the changed hours (`usage_changed_hours`) of periods
    it billed, re-rates them and bills the difference as a negative `late_usage` line on the next invoice
    (or, for an ended subscription, on a late-usage invoice); nothing else is recorded here.
    """
    if (event_ids is None) == (idempotency_keys is None):
        raise ValueError("Give event_ids, or customer and idempotency_keys")
    if idempotency_keys is not None and customer is None:
        raise ValueError("idempotency_keys need a customer")
    fields = ("id", "token", "customer_id", "meter_id", "timestamp", "canceled_at", "idempotency_key")
    with transaction.atomic():
        if event_ids is not None:
            label = "id"
            wanted = list(dict.fromkeys(event_ids))
            parsed = {public_id: parse_event_id(public_id) for public_id in wanted}
            by_pk = _locked_by_ids([found for found in parsed.values() if found is not None], fields)
            matched = {}
            for public_id, found in parsed.items():
                row = by_pk.get(found[0]) if found else None
                if row is not None and found is not None and hmac.compare_digest(row[1], found[1]):
                    matched[public_id] = row
        else:
            label = "idempotency_key"
            wanted = list(dict.fromkeys(idempotency_keys or []))
            assert customer is not None
            located = events_by_keys(customer.pk, wanted)
            rows = lock_event_values(
                MeterEvent.objects.filter(
                    customer=customer,
                    pk__in=[pk for pk, _ in located.values()],
                    timestamp__in={ts for _, ts in located.values()},
                ),
                fields,
            )
            matched = {row[6]: row for row in rows}

        result = CancelResult()
        to_cancel: list[tuple] = []
        for ref in wanted:
            row = matched.get(ref)
            if row is None:
                status = "not_found"
                result.not_found += 1
            elif row[5] is not None:
                status = "already_canceled"
                result.already_canceled += 1
            else:
                status = "canceled"
                result.canceled += 1
                to_cancel.append(row)
            result.results.append({label: ref, "status": status})
        if to_cancel:
            # The timestamps name the partitions, so the update touches only theirs.
            updated = MeterEvent.objects.filter(
                pk__in=[row[0] for row in to_cancel],
                timestamp__in={row[4] for row in to_cancel},
                canceled_at__isnull=True,
            ).update(canceled_at=now, cancel_reason=reason)
            if updated != len(to_cancel):  # the rows are locked: a mismatch is a bug, never a silent half-write
                raise RuntimeError(f"usage_cancel updated {updated} of {len(to_cancel)} locked events")
            mark_hours_dirty({(row[3], row[2], floor_hour(utc(row[4]))) for row in to_cancel}, now)
            customer_ids = sorted({row[2] for row in to_cancel})
            entitlements_invalidate(customer_ids)  # their metered usage changed
            event_emit(
                type="usage.canceled",
                object_type="usage_cancellation",
                object_id=event_public_id(to_cancel[0][0], to_cancel[0][1]),
                customer_id=customer_ids[0] if len(customer_ids) == 1 else "",
                data={
                    "canceled": result.canceled,
                    "already_canceled": result.already_canceled,
                    "not_found": result.not_found,
                    "customer_ids": customer_ids,
                    "meter_ids": sorted({row[3] for row in to_cancel}),
                    "earliest_timestamp": min(row[4] for row in to_cancel).isoformat(),
                    "latest_timestamp": max(row[4] for row in to_cancel).isoformat(),
                    "reason": reason,
                },
                now=now,
            )
    return result
