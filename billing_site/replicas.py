"""Read replicas: an optional `DATABASE_REPLICA_URL` (alias `replica`) that serves reads which may lag.

Nothing goes to the replica unless the code asks for it with `replica_reads()`. The API asks for it
around list endpoints (`billing_site.api.paginate`), usage reads (`GET /usage/{meter_id}`) and exports;
everything that decides money (renewal, invoicing, collection, balances, credit grants, dunning, every
write and every read inside a transaction) stays on the primary, because it never enters that block.
A replica read sees the primary as of a moment ago: a client that lists right after a write may miss the
write for the replication delay, never anything that billing relies on.

Without `DATABASE_REPLICA_URL` the router sends everything to the primary.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections

REPLICA = "replica"
_replica_ok: ContextVar[bool] = ContextVar("replica_ok", default=False)


def replica_configured() -> bool:
    return REPLICA in connections.settings


@contextmanager
def replica_reads() -> Iterator[None]:
    """Reads in this block may go to the replica (when one is configured and no transaction is open on
    the primary: a transaction must read its own writes)."""
    token = _replica_ok.set(True)
    try:
        yield
    finally:
        _replica_ok.reset(token)


def read_alias() -> str:
    """The database a read here goes to."""
    if _replica_ok.get() and replica_configured() and not connections[DEFAULT_DB_ALIAS].in_atomic_block:
        return REPLICA
    return DEFAULT_DB_ALIAS


class ReplicaRouter:
    def db_for_read(self, model: Any, **hints: Any) -> str:
        return read_alias()

    def db_for_write(self, model: Any, **hints: Any) -> str:
        return DEFAULT_DB_ALIAS

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool:
        return True  # the replica holds the same rows as the primary

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool:
        # A physical replica gets its schema from the primary; migrating it directly is only for tests.
        return True
