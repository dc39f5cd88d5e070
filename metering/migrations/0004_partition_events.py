"""PostgreSQL only: the events table becomes range-partitioned by timestamp (SQLite keeps the plain table).

Hand-written SQL in its own migration, so it can be re-based onto regenerated migrations. The table is
rebuilt (same columns, same index and constraint names on the parent), existing rows are copied, and
partitions are made for the months that hold rows plus the current and next two months; from then on
the `ensure_event_partitions` job (and ingestion, for a month nobody made yet) creates them ahead.

Indexes on the parent, inherited by every partition:
- meter_event_usage_idx (customer_id, meter_id, timestamp): the one B-tree written per event;
- meter_event_canceled_idx: partial, canceled rows only;
- meter_event_id_brin, meter_event_time_brin: BRIN on id and timestamp. Ids grow with ingestion and
  timestamps nearly so, so a few hundred bytes per partition answer "this id" and "this hour" without
  a B-tree's write per event.
There is no primary key index: a unique index on a partitioned table must include the partition key.
"""

from datetime import UTC, datetime

from django.db import migrations

TABLE = "metering_meterevent"


def _month(value: datetime) -> datetime:
    return value.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _next_month(value: datetime) -> datetime:
    return value.replace(year=value.year + value.month // 12, month=value.month % 12 + 1)


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(f"SELECT min(timestamp), max(timestamp) FROM {TABLE}")
        low, high = cursor.fetchone()
        cursor.execute(f"SELECT coalesce(max(id), 0) FROM {TABLE}")
        last_id = cursor.fetchone()[0]
        cursor.execute(f"ALTER TABLE {TABLE} RENAME TO {TABLE}_unpartitioned")
        cursor.execute(f"CREATE SEQUENCE {TABLE}_seq AS bigint START WITH {last_id + 1}")
        cursor.execute(
            f"""
            CREATE TABLE {TABLE} (
                id bigint NOT NULL DEFAULT nextval('{TABLE}_seq'),
                token varchar(16) NOT NULL,
                customer_id varchar(40) NOT NULL,
                meter_id varchar(40) NOT NULL,
                value numeric(38, 12) NOT NULL,
                timestamp timestamptz NOT NULL,
                idempotency_key varchar(255) NULL,
                dimensions jsonb NOT NULL,
                ingested_at timestamptz NOT NULL,
                canceled_at timestamptz NULL,
                cancel_reason varchar(500) NOT NULL
            ) PARTITION BY RANGE (timestamp)
            """
        )
        cursor.execute(f"ALTER SEQUENCE {TABLE}_seq OWNED BY {TABLE}.id")
        now = datetime.now(tz=UTC)
        start = _month(min(low, now) if low else now)
        end = _next_month(_next_month(_next_month(_month(max(high, now) if high else now))))
        month = start
        while month < end:
            following = _next_month(month)
            cursor.execute(
                f"CREATE TABLE {TABLE}_p{month:%Y%m%d} PARTITION OF {TABLE} "
                f"FOR VALUES FROM ('{month.isoformat()}') TO ('{following.isoformat()}')"
            )
            month = following
        cursor.execute(
            f"INSERT INTO {TABLE} (id, token, customer_id, meter_id, value, timestamp, idempotency_key, dimensions, "
            "ingested_at, canceled_at, cancel_reason) SELECT id, token, customer_id, meter_id, value, timestamp, "
            f"idempotency_key, dimensions, ingested_at, canceled_at, cancel_reason FROM {TABLE}_unpartitioned"
        )
        cursor.execute(f"DROP TABLE {TABLE}_unpartitioned")
        cursor.execute(
            f"ALTER TABLE {TABLE} ADD CONSTRAINT meter_event_value_non_negative CHECK (value >= 0)"
        )
        cursor.execute(f"CREATE INDEX meter_event_usage_idx ON {TABLE} (customer_id, meter_id, timestamp)")
        cursor.execute(
            f"CREATE INDEX meter_event_canceled_idx ON {TABLE} (customer_id, meter_id, canceled_at) "
            "WHERE canceled_at IS NOT NULL"
        )
        cursor.execute(f"CREATE INDEX meter_event_id_brin ON {TABLE} USING brin (id)")
        cursor.execute(f"CREATE INDEX meter_event_time_brin ON {TABLE} USING brin (timestamp)")
        cursor.execute(f"ANALYZE {TABLE}")


class Migration(migrations.Migration):
    # DDL and the copy in one transaction: a failure leaves the plain table as it was.
    atomic = True

    dependencies = [
        ("metering", "0003_event_keys_and_fewer_indexes"),
    ]

    operations = [
        migrations.RunPython(forwards, migrations.RunPython.noop, elidable=False),
    ]
