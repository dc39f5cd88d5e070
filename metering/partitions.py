"""Partitions of the usage-events table (PostgreSQL; SQLite keeps one plain table).

`metering_meterevent` is range-partitioned by event `timestamp`, one partition per calendar month in UTC
by default (`METERING_PARTITION_INTERVAL=day` for very large installs). Partitions are plain tables named
`metering_meterevent_p<first day, YYYYMMDD>`.

- `event_partitions_ensure_job` (the `ensure_event_partitions` job, hourly) makes every partition from
  the start of the backfill window to `METERING_PARTITIONS_AHEAD` intervals past now. pg_partman is not
  used: it is not packaged with every PostgreSQL, and what it would do here is these few statements.
- Ingestion calls `partitions_ensure_for` when PostgreSQL reports a row with no partition (the job has
  not run yet, a fresh database), and retries the batch: events are never refused for want of one.
- `partitions_detach` (command `detach_event_partitions`) detaches partitions wholly older than the
  backfill window, to archive (pg_dump the table) or drop. Their hours stay in the roll-ups.

Creating partitions takes an advisory lock, so concurrent ensures (two web workers, the job) never race
on the same CREATE; `CREATE TABLE ... PARTITION OF` briefly locks the parent table, which is why the
job makes them long before they are needed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction

TABLE = "metering_meterevent"
_LOCK = 7_310_001  # pg_advisory_xact_lock key: "metering partitions"
_BOUND = re.compile(r"FROM \('([^']+)'\) TO \('([^']+)'\)")


@dataclass(frozen=True, order=True)
class Partition:
    start: datetime
    end: datetime
    name: str


def is_partitioned() -> bool:
    return connection.vendor == "postgresql"


def interval_start(value: datetime, interval: str | None = None) -> datetime:
    interval = interval or settings.METERING_PARTITION_INTERVAL
    value = value.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return value.replace(day=1) if interval == "month" else value


def interval_next(value: datetime, interval: str | None = None) -> datetime:
    interval = interval or settings.METERING_PARTITION_INTERVAL
    if interval == "month":
        return value.replace(year=value.year + value.month // 12, month=value.month % 12 + 1)
    return value + timedelta(days=1)


def partitions_list() -> list[Partition]:
    """The partitions attached now, oldest first."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT c.relname, pg_get_expr(c.relpartbound, c.oid)
            FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
            WHERE i.inhparent = %s::regclass
            """,
            [TABLE],
        )
        found = []
        for name, bound in cursor.fetchall():
            match = _BOUND.search(bound or "")
            if match is None:  # a DEFAULT partition, if an operator added one
                continue
            low, high = (datetime.fromisoformat(part).astimezone(UTC) for part in match.groups())
            found.append(Partition(start=low, end=high, name=name))
    return sorted(found)


def _missing(lo: datetime, hi: datetime, existing: list[Partition]) -> list[tuple[datetime, datetime]]:
    """Interval-aligned pieces of [lo, hi) that no existing partition covers (clipped around ones made
    with another interval)."""
    pieces = []
    start = interval_start(lo)
    while start < hi:
        end = interval_next(start)
        gaps = [(start, end)]
        for part in existing:
            next_gaps = []
            for g_lo, g_hi in gaps:
                if part.end <= g_lo or part.start >= g_hi:
                    next_gaps.append((g_lo, g_hi))
                    continue
                if g_lo < part.start:
                    next_gaps.append((g_lo, part.start))
                if part.end < g_hi:
                    next_gaps.append((part.end, g_hi))
            gaps = next_gaps
        pieces.extend(gaps)
        start = end
    return pieces


def _create(lo: datetime, hi: datetime) -> str:
    name = f"{TABLE}_p{lo:%Y%m%d}"
    if lo.hour or lo.minute:  # a clipped piece that does not start at midnight
        name += f"{lo:%H%M}"
    with connection.cursor() as cursor:
        # DDL takes no bound parameters; both bounds are datetimes we made.
        cursor.execute(
            f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF {TABLE} "
            f"FOR VALUES FROM ('{lo.isoformat()}') TO ('{hi.isoformat()}')"
        )
    return name


def partitions_ensure_range(lo: datetime, hi: datetime) -> list[str]:
    """Make the partitions that cover [lo, hi); returns the names created."""
    if not is_partitioned() or lo >= hi:
        return []
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK])
        return [_create(p_lo, p_hi) for p_lo, p_hi in _missing(lo, hi, partitions_list())]


def partitions_ensure_for(timestamps: list[datetime]) -> list[str]:
    """Make the partitions these timestamps fall in (ingestion's fallback)."""
    if not timestamps:
        return []
    return partitions_ensure_range(interval_start(min(timestamps)), interval_next(interval_start(max(timestamps))))


def partitions_ensure(*, now: datetime, ahead: int | None = None) -> list[str]:
    """Partitions from the start of the backfill window to `ahead` intervals past now."""
    ahead = settings.METERING_PARTITIONS_AHEAD if ahead is None else ahead
    end = interval_next(interval_start(now))
    for _ in range(ahead):
        end = interval_next(end)
    return partitions_ensure_range(interval_start(now - settings.METERING_BACKFILL_WINDOW), end)


def event_partitions_ensure_job(*, now: datetime) -> dict[str, Any]:
    """The `ensure_event_partitions` job."""
    if not is_partitioned():
        return {"created": [], "partitioned": False}
    return {"created": partitions_ensure(now=now)}


def detachable_before(now: datetime) -> datetime:
    """Partitions that end at or before this may be detached: no accepted event can land in them any
    more, and every period they hold is past re-rating for late usage."""
    return now - settings.METERING_BACKFILL_WINDOW - timedelta(days=1)


def partitions_detach(*, before: datetime, now: datetime, drop: bool = False) -> list[str]:
    """Detach (and with `drop`, drop) every partition that ends at or before `before`.

    Refuses a `before` later than `detachable_before(now)`: events there still count for billing."""
    if not is_partitioned():
        return []
    limit = detachable_before(now)
    if before > limit:
        raise ValueError(
            f"Only partitions ending by {limit:%Y-%m-%d %H:%M} UTC can be detached (the backfill window "
            f"of {settings.METERING_BACKFILL_WINDOW.days} days plus a day); {before:%Y-%m-%d} is later."
        )
    done = []
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK])
        for part in partitions_list():
            if part.end > before:
                continue
            cursor.execute(f"ALTER TABLE {TABLE} DETACH PARTITION {part.name}")
            if drop:
                cursor.execute(f"DROP TABLE {part.name}")
            done.append(part.name)
    return done
