"""Row locks, always taken in one order.

Two transactions that lock the same rows in different orders can deadlock: a refund that locked the
payment intent and then waited for the invoice, against a credit note that locked the invoice and then
waited for the payment intent, was the deadlock behind a burst of 500s. So every service takes its row
locks through the named helpers in each app's `locks.py` (`customers.locks.lock_customer`,
`invoicing.locks.lock_invoice`, ...), which all come through `lock_rows` here, and `lock_rows` knows the
one order:

    catalog -> customer -> (its users) -> balance -> credit grant -> subscription -> invoice -> payment intent
    -> refund / credit note

Within one kind, rows are locked in primary-key order. A transaction that asks for a kind lower in the
order than one it already holds is a bug: with `LOCK_ORDER_STRICT` (on in the test suite) it raises
`LockOrderViolation`, so the test that takes the wrong order fails instead of deadlocking one day in
production; otherwise it is logged as an error. Asking again for a row the transaction already holds is
fine (it cannot wait).

The core imports no app, so the helpers pass their querysets in; the ranks are the only thing kept here.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from enum import IntEnum
from typing import Any, TypeVar

from django.conf import settings
from django.db import connections, models, router, transaction

logger = logging.getLogger(__name__)

M = TypeVar("M", bound=models.Model)


class LockRank(IntEnum):
    # Catalog rows (products, prices, coupons) and configuration (meters, tax rates): never locked after
    # anything a customer owns.
    CATALOG = 5
    CUSTOMER = 10
    CUSTOMER_USER = 15
    # A customer's payment methods and setup intents: after the customer, before anything collection locks.
    PAYMENT_METHOD = 17
    BALANCE = 20
    CREDIT_GRANT = 30
    SUBSCRIPTION = 40
    INVOICE = 50
    PAYMENT_INTENT = 60
    REFUND = 70
    CREDIT_NOTE = 70
    # A payment's dispute (payments.Dispute): locked after its payment intent, like a refund.
    DISPUTE = 70
    # Rows no other lock is ever taken after (an endpoint, a usage push slot, a sequence-like row).
    LEAF = 100


class LockOrderViolation(RuntimeError):
    pass


class _Held:
    """What the current transaction of one connection holds: the highest rank and the rows."""

    def __init__(self, atomic: object) -> None:
        self.atomic = atomic
        self.rank = 0
        self.rows: set[tuple[str, Any]] = set()


_HELD_ATTR = "_billing_locks_held"


def _held(alias: str) -> _Held:
    connection = connections[alias]
    if not connection.in_atomic_block:
        raise RuntimeError("Row locks must be taken inside a transaction (transaction.atomic()).")
    # The test suite wraps each test in atomic blocks of its own (`_from_testcase`): the transaction a
    # service runs is the outermost block that is not one of those.
    blocks = [block for block in connection.atomic_blocks if not getattr(block, "_from_testcase", False)]
    outermost = blocks[0] if blocks else connection.atomic_blocks[-1]
    held = getattr(connection, _HELD_ATTR, None)
    # A new outermost atomic block is a new transaction: what the last one held was released at its end.
    if held is None or held.atomic is not outermost:
        held = _Held(outermost)
        setattr(connection, _HELD_ATTR, held)
    return held


def _check(held: _Held, rank: LockRank, label: str, pks: Iterable[Any]) -> None:
    new = [pk for pk in pks if (label, pk) not in held.rows]
    if new and rank < held.rank:
        message = (
            f"Lock order violation: locking {label} (rank {rank.name}) after rank {LockRank(held.rank).name}; "
            "the order is catalog -> customer -> user -> balance -> credit grant -> subscription -> invoice -> "
            "payment intent -> refund / credit note."
        )
        if getattr(settings, "LOCK_ORDER_STRICT", False):
            raise LockOrderViolation(message)
        logger.error(message)


def lock_rows(
    queryset: models.QuerySet[M],
    rank: LockRank,
    *,
    skip_locked: bool = False,
    limit: int | None = None,
    order_by: tuple[str, ...] = ("pk",),
) -> list[M]:
    """Lock the rows of `queryset` (its own table only, not joined ones) in `order_by` order (primary key
    by default) and return them. `skip_locked` with `limit` claims work from a queue in one statement
    (renewal, deliveries): rows another transaction holds are passed over, not waited for."""
    model = queryset.model
    alias = router.db_for_write(model)
    held = _held(alias)
    label = model._meta.label
    if not skip_locked and rank < held.rank:
        # Check before waiting: the point is to refuse the order that could deadlock, not to notice later.
        pks = list(queryset.order_by().values_list("pk", flat=True))
        _check(held, rank, label, pks)
    locking = queryset.select_for_update(of=("self",), skip_locked=skip_locked).order_by(*order_by)
    rows = list(locking[:limit] if limit is not None else locking)
    if skip_locked and rank < held.rank:
        _check(held, rank, label, [row.pk for row in rows])
    held.rank = max(held.rank, rank)
    held.rows.update((label, row.pk) for row in rows)
    return rows


def lock_values(
    queryset: models.QuerySet[M],
    rank: LockRank,
    fields: tuple[str, ...],
    *,
    skip_locked: bool = False,
    limit: int | None = None,
    order_by: tuple[str, ...] = ("pk",),
) -> list[tuple[Any, ...]]:
    """`lock_rows` for hot paths that read a few columns rather than whole rows (usage events, dirty
    hours): the same order check, the rows' `fields` as tuples. `fields[0]` must be the primary key."""
    model = queryset.model
    alias = router.db_for_write(model)
    held = _held(alias)
    label = model._meta.label
    if not skip_locked and rank < held.rank:
        pks = list(queryset.order_by().values_list("pk", flat=True))
        _check(held, rank, label, pks)
    locking = queryset.select_for_update(of=("self",), skip_locked=skip_locked).order_by(*order_by).values_list(*fields)
    rows = list(locking[:limit] if limit is not None else locking)
    if skip_locked and rank < held.rank:
        _check(held, rank, label, [row[0] for row in rows])
    held.rank = max(held.rank, rank)
    held.rows.update((label, row[0]) for row in rows)
    return rows


def lock_one(queryset: models.QuerySet[M], rank: LockRank) -> M:
    """Lock the one row of `queryset`; `DoesNotExist` when there is none."""
    row = lock_first(queryset, rank)
    if row is None:
        raise queryset.model.DoesNotExist(f"No {queryset.model._meta.label} matches the lock.")
    return row


def lock_first(queryset: models.QuerySet[M], rank: LockRank) -> M | None:
    """Lock the first row of `queryset` (by primary key), or None when there is none."""
    rows = lock_rows(queryset, rank, limit=1)
    return rows[0] if rows else None


def in_transaction(using: str = "default") -> bool:
    return transaction.get_connection(using).in_atomic_block
