"""Hourly event statistics per classifier: what a percentage price with per-event bounds is priced from.

A percentage price's per-event charge clamp(rate * value / 100 + fixed_fee, min, max) is piecewise affine
in the value (`catalog.percentage`), so a set of events is priced exactly from how many fall below the low
breakpoint, how many above the high one, and the count and value sum of the rest. A `Classifier` is those
two breakpoints, as the division-free predicates of `catalog.percentage.event_class`:

    below:  value * rate < 100 * (per_event_min - fixed_fee)
    above:  not below and value * rate > 100 * (per_event_max - fixed_fee)

Metering knows nothing of prices (imports point down): catalog registers a source of the classifiers in
use (`register_classifier_source`), and the roll-up job (`metering.rollups`) keeps one
`UsageHourlyClassStats` row per (customer, meter, hour, classifier) for the hours it recomputes, in the
same transaction as `UsageHourly`. `period_class_stats` reads a period per hour: clean whole hours from
those rows, raw events for the partial hours at either edge, dirty hours and hours whose classifier has no
row (a classifier registered after the hour was rolled up): always what the raw events give.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Context, Decimal, Inexact, InvalidOperation, localcontext
from typing import Any, Final

from django.db import DEFAULT_DB_ALIAS, connections

from metering.class_stats_models import UsageHourlyClassStats
from metering.models import Meter, MeterEvent, UsageDirtyHour, UsageHourly
from metering.usage import (
    HOUR,
    ceil_hour,
    conditions_for,
    conditions_sql,
    consistent_snapshot,
    floor_hour,
    passes,
    raw_events,
    utc,
)

__all__ = [
    "Classifier",
    "HourStats",
    "classifiers_for",
    "period_class_stats",
    "register_classifier_source",
    "rollup_class_stats",
]

_EXACT: Final = Context(prec=200, traps=[Inexact, InvalidOperation])
_ZERO: Final = Decimal(0)
_HUNDRED: Final = Decimal(100)

# (meter id, rate, fixed_fee, per_event_min, per_event_max) of each percentage price in use.
ClassifierRow = tuple[str, Decimal, Decimal, Decimal | None, Decimal | None]
_sources: list[Callable[[], Iterable[ClassifierRow]]] = []


def register_classifier_source(source: Callable[[], Iterable[ClassifierRow]]) -> None:
    """Register a function returning the (meter id, rate, fixed fee, min, max) of the prices whose hourly
    statistics the roll-up keeps (catalog registers its percentage prices with bounds). Idempotent."""
    if source not in _sources:
        _sources.append(source)


def _text(value: Decimal | None) -> str:
    if value is None:
        return "-"
    with localcontext(_EXACT):
        return format(value.normalize(), "f")


@dataclass(frozen=True, slots=True)
class Classifier:
    """The two breakpoints: `low` = 100 * (per_event_min - fixed_fee), `high` = 100 * (per_event_max -
    fixed_fee), None when that bound is unset. A classifier without either is "plain": every event is
    middle, and `UsageHourly` alone serves it."""

    rate: Decimal
    low: Decimal | None = None
    high: Decimal | None = None

    @classmethod
    def of(
        cls, rate: Decimal, fixed_fee: Decimal, per_event_min: Decimal | None, per_event_max: Decimal | None
    ) -> Classifier:
        with localcontext(_EXACT):
            low = None if per_event_min is None else _HUNDRED * (Decimal(per_event_min) - Decimal(fixed_fee))
            high = None if per_event_max is None else _HUNDRED * (Decimal(per_event_max) - Decimal(fixed_fee))
            rate = Decimal(rate)
        if low is None and high is None:
            rate = _ZERO  # the rate does not matter to a plain classifier: one key for all of them
        return cls(rate=rate, low=low, high=high)

    @property
    def plain(self) -> bool:
        return self.low is None and self.high is None

    @property
    def key(self) -> str:
        text = f"{_text(self.rate)}|{_text(self.low)}|{_text(self.high)}"
        return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()

    def classify(self, value: Decimal) -> str:
        with localcontext(_EXACT):
            scaled = value * self.rate
            if self.low is not None and scaled < self.low:
                return "below"
            if self.high is not None and scaled > self.high:
                return "above"
        return "middle"


@dataclass(frozen=True, slots=True)
class HourStats:
    """One hour's (or part of an hour's) events under one classifier. Additive."""

    hour: datetime
    count: int = 0
    total: Decimal = _ZERO
    below_count: int = 0
    above_count: int = 0
    middle_total: Decimal = _ZERO

    def __add__(self, other: HourStats) -> HourStats:
        with localcontext(_EXACT):
            return HourStats(
                hour=self.hour,
                count=self.count + other.count,
                total=self.total + other.total,
                below_count=self.below_count + other.below_count,
                above_count=self.above_count + other.above_count,
                middle_total=self.middle_total + other.middle_total,
            )

    @classmethod
    def one(cls, hour: datetime, classifier: Classifier, value: Decimal) -> HourStats:
        kind = classifier.classify(value)
        return cls(
            hour=hour,
            count=1,
            total=value,
            below_count=int(kind == "below"),
            above_count=int(kind == "above"),
            middle_total=value if kind == "middle" else _ZERO,
        )


def classifiers_for(meter_id: str) -> list[Classifier]:
    """The registered classifiers of one meter with at least one breakpoint, one per key."""
    found: dict[str, Classifier] = {}
    for source in _sources:
        for row_meter, rate, fixed_fee, low, high in source():
            if row_meter != meter_id:
                continue
            classifier = Classifier.of(rate, fixed_fee, low, high)
            if not classifier.plain:
                found.setdefault(classifier.key, classifier)
    return [found[key] for key in sorted(found)]


# --- Roll-up --------------------------------------------------------------------------------------

HourKey = tuple[str, datetime]  # (customer id, hour)


def rollup_class_stats(meter: Meter, keys: dict[HourKey, datetime]) -> None:
    """Rewrite the classifier rows of the hours the roll-up batch recomputes (called by `metering.rollups`
    in the batch's transaction, with the same `rolled_at` per hour as `UsageHourly`): delete every row of
    those hours, then one row per hour with events and registered classifier."""
    if not keys:
        return
    classifiers = classifiers_for(meter.id)
    if connections[DEFAULT_DB_ALIAS].vendor == "postgresql":
        _rollup_postgres(meter, keys, classifiers)
    else:
        _rollup_python(meter, keys, classifiers)


def _classify_sql(value: str, rate: str, low: str, high: str) -> tuple[str, str]:
    below = f"coalesce({value} * {rate} < {low}, false)"
    above = f"(NOT {below} AND coalesce({value} * {rate} > {high}, false))"
    return below, above


def _rollup_postgres(meter: Meter, keys: dict[HourKey, datetime], classifiers: list[Classifier]) -> None:
    events, table = MeterEvent._meta.db_table, UsageHourlyClassStats._meta.db_table
    params: dict[str, Any] = {
        "m": meter.id,
        "cs": [key[0] for key in keys],
        "hs": [key[1] for key in keys],
        "ts": list(keys.values()),
    }
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        cursor.execute(
            f"""
            DELETE FROM {table} s USING unnest(%(cs)s::text[], %(hs)s::timestamptz[]) AS k(c, h)
            WHERE s.customer_id = k.c AND s.meter_id = %(m)s AND s.hour = k.h
            """,  # noqa: S608
            params,
        )
        if not classifiers:
            return
        hours = [key[1] for key in keys]
        params.update(
            lo=min(hours),
            hi=max(hours) + HOUR,
            qk=[c.key for c in classifiers],
            qr=[c.rate for c in classifiers],
            ql=[c.low for c in classifiers],
            qh=[c.high for c in classifiers],
        )
        below, above = _classify_sql("e.value", "q.r", "q.lo", "q.hi")
        # One scan of each hour's events (the batch's customers together, as the totals' roll-up does),
        # every event classed by every classifier of the meter.
        cursor.execute(
            f"""
            WITH keys AS (
                SELECT * FROM unnest(%(cs)s::text[], %(hs)s::timestamptz[], %(ts)s::timestamptz[]) AS k(c, h, t)
            ),
            hrs AS (SELECT DISTINCT h FROM keys),
            cls AS MATERIALIZED (
                SELECT * FROM unnest(%(qk)s::text[], %(qr)s::numeric[], %(ql)s::numeric[], %(qh)s::numeric[])
                    AS q(k, r, lo, hi)
            )
            INSERT INTO {table} (meter_id, customer_id, hour, classifier_key, event_count, value_sum, below_count,
                                 above_count, middle_count, middle_sum, rolled_at)
            SELECT %(m)s, x.c, hr.h, x.k, x.n, x.s, x.b, x.a, x.n - x.b - x.a, x.ms, k.t
            FROM hrs hr CROSS JOIN LATERAL (
                SELECT y.c, y.k, count(*) AS n, sum(y.value) AS s, count(*) FILTER (WHERE y.below) AS b,
                       count(*) FILTER (WHERE y.above) AS a,
                       coalesce(sum(y.value) FILTER (WHERE NOT y.below AND NOT y.above), 0) AS ms
                FROM (
                    SELECT e.customer_id AS c, e.value, q.k, {below} AS below, {above} AS above
                    FROM {events} e CROSS JOIN cls q
                    WHERE e.meter_id = %(m)s AND e.customer_id = ANY(ARRAY(SELECT k.c FROM keys k WHERE k.h = hr.h))
                      AND e.timestamp >= hr.h AND e.timestamp < hr.h + interval '1 hour'
                      AND e.timestamp >= %(lo)s AND e.timestamp < %(hi)s
                      AND e.canceled_at IS NULL{conditions_sql(conditions_for(meter), params)}
                ) y
                GROUP BY y.c, y.k
            ) x
            JOIN keys k ON k.c = x.c AND k.h = hr.h
            """,  # noqa: S608 - table names are ours, every value is a bound parameter
            params,
        )


def _rollup_python(meter: Meter, keys: dict[HourKey, datetime], classifiers: list[Classifier]) -> None:
    conditions = conditions_for(meter)
    for (customer_id, hour), rolled_at in keys.items():
        UsageHourlyClassStats.objects.filter(meter=meter, customer_id=customer_id, hour=hour).delete()
        if not classifiers:
            continue
        values = [
            value
            for value, _, _, dimensions in raw_events(meter, customer_id, [(hour, hour + HOUR)])
            if passes(conditions, dimensions or {})
        ]
        if not values:
            continue
        rows = []
        for classifier in classifiers:
            stats = HourStats(hour=hour)
            for value in values:
                stats = stats + HourStats.one(hour, classifier, value)
            rows.append(
                UsageHourlyClassStats(
                    meter=meter,
                    customer_id=customer_id,
                    hour=hour,
                    classifier_key=classifier.key,
                    event_count=stats.count,
                    value_sum=stats.total,
                    below_count=stats.below_count,
                    above_count=stats.above_count,
                    middle_count=stats.count - stats.below_count - stats.above_count,
                    middle_sum=stats.middle_total,
                    rolled_at=rolled_at,
                )
            )
        UsageHourlyClassStats.objects.bulk_create(rows)


# --- Read -----------------------------------------------------------------------------------------


def period_class_stats(
    *, meter: Meter, customer_id: str, start: datetime, end: datetime, classifier: Classifier
) -> list[HourStats]:
    """The customer's non-canceled, filter-matching events of `meter` in [start, end), per hour (hours
    without events are absent), classed by `classifier`, in hour order. Clean whole hours come from their
    `UsageHourlyClassStats` row (a plain classifier: from `UsageHourly`), the rest from raw events; on
    PostgreSQL one statement, so one snapshot. Always equal to classifying the raw events."""
    start, end = utc(start, "start"), utc(end, "end")
    if start > end:
        raise ValueError("start must not be after end")
    if start == end:
        return []
    first, last = ceil_hour(start), floor_hour(end)
    whole = (first, last) if first < last else None
    edges = [(start, end)] if whole is None else [(lo, hi) for lo, hi in ((start, first), (last, end)) if lo < hi]
    with consistent_snapshot(DEFAULT_DB_ALIAS):
        if connections[DEFAULT_DB_ALIAS].vendor == "postgresql":
            return _read_postgres(meter, customer_id, start, end, whole, edges, classifier)
        return _read_python(meter, customer_id, whole, edges, classifier)


def _read_postgres(
    meter: Meter,
    customer_id: str,
    start: datetime,
    end: datetime,
    whole: tuple[datetime, datetime] | None,
    edges: list[tuple[datetime, datetime]],
    classifier: Classifier,
) -> list[HourStats]:
    events, dirty, hourly = MeterEvent._meta.db_table, UsageDirtyHour._meta.db_table, UsageHourly._meta.db_table
    table = UsageHourlyClassStats._meta.db_table
    params: dict[str, Any] = {
        "m": meter.id,
        "c": customer_id,
        "start": start,
        "end": end,
        "hs": whole[0] if whole else None,
        "he": whole[1] if whole else None,
        "los": [lo for lo, _ in edges],
        "his": [hi for _, hi in edges],
        "k": classifier.key,
        "r": classifier.rate,
        "lo": classifier.low,
        "hi": classifier.high,
    }
    if classifier.plain:
        columns, join = "u.event_count, u.value_sum, 0::bigint, 0::bigint, u.value_sum", ""
    else:
        # The hour's row for the classifier: one index probe per hour (a LATERAL kept apart; as a join the
        # planner scanned all the customer's rows once per hour), counted only when the hour's last roll-up
        # wrote it (the same rolled_at and count as the totals); an hour without it is read raw.
        columns = "s.event_count, s.value_sum, s.below_count, s.above_count, s.middle_sum"
        join = f"""LEFT JOIN LATERAL (
                SELECT s.* FROM {table} s
                WHERE s.customer_id = %(c)s AND s.meter_id = %(m)s AND s.classifier_key = %(k)s AND s.hour = u.hour
                  AND s.rolled_at = u.rolled_at AND s.event_count = u.event_count
                OFFSET 0  -- not flattened into a join: the hour stays a parameter of the index probe
            ) s ON true"""  # noqa: S608
    below, above = _classify_sql("e.value", "%(r)s::numeric", "%(lo)s::numeric", "%(hi)s::numeric")
    sql = f"""
        WITH dirty AS MATERIALIZED (
            SELECT hour FROM {dirty}
            WHERE meter_id = %(m)s AND customer_id = %(c)s
              AND hour >= %(hs)s::timestamptz AND hour < %(he)s::timestamptz
        ),
        hourly (hour, n, s, b, a, ms) AS MATERIALIZED (
            SELECT u.hour, {columns} FROM {hourly} u {join}
            WHERE u.meter_id = %(m)s AND u.customer_id = %(c)s
              AND u.hour >= %(hs)s::timestamptz AND u.hour < %(he)s::timestamptz
              AND NOT EXISTS (
                  SELECT 1 FROM {dirty} d WHERE d.meter_id = %(m)s AND d.customer_id = %(c)s AND d.hour = u.hour
              )
        ),
        ranges (lo, hi) AS (
            SELECT * FROM unnest(%(los)s::timestamptz[], %(his)s::timestamptz[])
            UNION ALL SELECT hour, hour + interval '1 hour' FROM dirty
            UNION ALL SELECT hour, hour + interval '1 hour' FROM hourly WHERE n IS NULL
        )
        SELECT p.hour, sum(p.n), sum(p.s), sum(p.b), sum(p.a), sum(p.ms) FROM (
            SELECT * FROM hourly WHERE n IS NOT NULL
            UNION ALL
            SELECT x.* FROM ranges g CROSS JOIN LATERAL (
                SELECT date_trunc('hour', y.timestamp, 'UTC'), count(*), sum(y.value),
                       count(*) FILTER (WHERE y.below), count(*) FILTER (WHERE y.above),
                       coalesce(sum(y.value) FILTER (WHERE NOT y.below AND NOT y.above), 0)
                FROM (
                    SELECT e.timestamp, e.value, {below} AS below, {above} AS above FROM {events} e
                    WHERE e.customer_id = %(c)s AND e.meter_id = %(m)s AND e.timestamp >= g.lo AND e.timestamp < g.hi
                      AND e.timestamp >= %(start)s AND e.timestamp < %(end)s
                      AND e.canceled_at IS NULL{conditions_sql(conditions_for(meter), params)}
                ) y
                GROUP BY 1
            ) x
        ) p(hour, n, s, b, a, ms)
        GROUP BY p.hour ORDER BY p.hour
    """  # noqa: S608 - table names are ours, every value is a bound parameter
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        cursor.execute(sql, params)
        return [
            HourStats(hour=hour, count=int(n), total=s, below_count=int(b), above_count=int(a), middle_total=ms)
            for hour, n, s, b, a, ms in cursor.fetchall()
        ]


def _read_python(
    meter: Meter,
    customer_id: str,
    whole: tuple[datetime, datetime] | None,
    edges: list[tuple[datetime, datetime]],
    classifier: Classifier,
) -> list[HourStats]:
    """SQLite (development): the same read, classified in Python."""
    result: dict[datetime, HourStats] = {}
    ranges = list(edges)
    if whole:
        scope = {"meter_id": meter.id, "customer_id": customer_id, "hour__gte": whole[0], "hour__lt": whole[1]}
        dirty = set(UsageDirtyHour.objects.filter(**scope).values_list("hour", flat=True))
        hourly = {
            hour: (count, total, rolled_at)
            for hour, count, total, rolled_at in UsageHourly.objects.filter(**scope).values_list(
                "hour", "event_count", "value_sum", "rolled_at"
            )
            if hour not in dirty
        }
        if classifier.plain:
            for hour, (count, total, _) in hourly.items():
                result[hour] = HourStats(hour=hour, count=count, total=total, middle_total=total)
        else:
            rows = UsageHourlyClassStats.objects.filter(**scope, classifier_key=classifier.key).values_list(
                "hour", "event_count", "value_sum", "below_count", "above_count", "middle_sum", "rolled_at"
            )
            for hour, count, total, below, above, middle, rolled_at in rows:
                if hour in hourly and hourly[hour][0] == count and hourly[hour][2] == rolled_at:
                    result[hour] = HourStats(hour, count, total, below, above, middle)
        ranges += [(hour, hour + HOUR) for hour in sorted(dirty)]
        ranges += [(hour, hour + HOUR) for hour in sorted(hourly) if hour not in result]
    conditions = conditions_for(meter)
    for value, timestamp, _, dimensions in raw_events(meter, customer_id, ranges):
        if passes(conditions, dimensions or {}):
            hour = floor_hour(utc(timestamp))
            one = HourStats.one(hour, classifier, value)
            result[hour] = result[hour] + one if hour in result else one
    return [result[hour] for hour in sorted(result)]
