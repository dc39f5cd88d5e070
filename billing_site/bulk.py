"""Bulk writes Django's ORM makes slowly.

`bulk_update_rows(model, rows, fields)` is `QuerySet.bulk_update` for a batch: on PostgreSQL one
`UPDATE ... FROM unnest(...)` whose parameters are one array per column, instead of Django's
`CASE WHEN pk = ... THEN ...` per row and field (thousands of expressions to build and compile for a
renewal batch of 500). Other databases, and fields of types it does not know, take `bulk_update`.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.db import connections, models, router

# Column types whose values pass as a plain array parameter (no JSON, no arrays of arrays).
_PLAIN = (
    "AutoField",
    "BigAutoField",
    "BigIntegerField",
    "BooleanField",
    "CharField",
    "DateField",
    "DateTimeField",
    "DecimalField",
    "ForeignKey",
    "IntegerField",
    "OneToOneField",
    "PositiveBigIntegerField",
    "PositiveIntegerField",
    "PositiveSmallIntegerField",
    "SmallIntegerField",
    "TextField",
)


def bulk_update_rows(model: type[models.Model], rows: Sequence[models.Model], fields: Sequence[str]) -> int:
    """Write `fields` of `rows` (saved instances of `model`) as they are in memory; returns the rows
    matched. Like `bulk_update`, no `pre_save` (auto_now) runs: set the values before."""
    if not rows:
        return 0
    alias = router.db_for_write(model)
    connection = connections[alias]
    targets = [model._meta.get_field(name) for name in fields]
    pk = model._meta.pk
    if connection.vendor != "postgresql" or any(
        f.get_internal_type() not in _PLAIN or f.many_to_many or f.primary_key for f in targets
    ):
        return model._default_manager.using(alias).bulk_update(rows, list(fields))
    columns = [pk, *targets]
    arrays = [[f.get_db_prep_save(getattr(row, f.attname), connection) for row in rows] for f in columns]
    qn = connection.ops.quote_name
    names = [f"c{i}" for i in range(len(columns))]
    unnest = ", ".join(f"%s::{f.db_type(connection)}[]" for f in columns)
    assignments = ", ".join(f"{qn(f.column)} = v.{name}" for f, name in zip(targets, names[1:], strict=True))
    table = qn(model._meta.db_table)
    sql = (
        f"UPDATE {table} SET {assignments} FROM unnest({unnest}) AS v({', '.join(names)}) "  # noqa: S608
        f"WHERE {table}.{qn(pk.column)} = v.c0"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, arrays)
        return cursor.rowcount
