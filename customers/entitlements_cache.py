"""The entitlements cache: keys and invalidation (the answer itself is built in `subscriptions.entitlements`).

It lives here, under every app that changes what a customer is entitled to (metering: usage; catalog:
features and attachments; subscriptions: what a customer subscribes to), so each can invalidate it.

- A customer's answer is cached under `entitlements:<generation>:<customer id>:<version>` (Django's
  cache: Redis in production) for ENTITLEMENTS_CACHE_SECONDS at most. The generation and the customer's
  version are read together (one `get_many`), then the answer (one `get`).
- A change to one customer (its subscriptions, its usage) gives it a new version, once per transaction,
  after the commit (`entitlements_invalidate`).
- A change to the catalog (a feature, an attachment) gives a new generation, which makes every cached
  answer unreachable at once (`entitlements_catalog_changed`); the old keys expire by themselves.
Versions, not deletes: a reader that built its answer from rows read before a change stores it under
the version it started with, which nobody reads any more, so a stale answer is never served after the
change commits.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable

from django.core.cache import cache
from django.db import transaction

logger = logging.getLogger(__name__)
GENERATION_KEY = "entitlements:generation"


def _version_key(customer_id: str) -> str:
    return f"entitlements:version:{customer_id}"


def entitlements_state(customer_id: str) -> tuple[str, str]:
    """The current generation and the customer's version (one cache round trip)."""
    found = cache.get_many([GENERATION_KEY, _version_key(customer_id)])
    generation = found.get(GENERATION_KEY)
    if generation is None:
        generation = uuid.uuid4().hex[:12]
        if not cache.add(GENERATION_KEY, generation, timeout=None):
            generation = cache.get(GENERATION_KEY) or generation
    return generation, found.get(_version_key(customer_id), "0")


def entitlements_key(customer_id: str, state: tuple[str, str]) -> str:
    generation, version = state
    return f"entitlements:{generation}:{customer_id}:{version}"


def _new_versions(ids: set[str]) -> None:
    if ids:
        token = uuid.uuid4().hex[:12]
        try:
            cache.set_many({_version_key(customer_id): token for customer_id in ids}, timeout=None)
        except Exception:  # the cache is down: the change stands; answers expire by ENTITLEMENTS_CACHE_SECONDS
            logger.warning("entitlements cache unreachable; %d customer(s) not invalidated", len(ids), exc_info=True)


def _flush_on_commit() -> None:
    connection = transaction.get_connection()
    ids = getattr(connection, "_entitlements_pending", set())
    connection._entitlements_pending = set()
    _new_versions(ids)


def _outside_our_transactions(connection) -> bool:  # type: ignore[no-untyped-def]
    # The test suite's own atomic blocks never commit (as in billing_site.tasks.enqueue).
    return all(getattr(block, "_from_testcase", False) for block in connection.atomic_blocks)


def entitlements_invalidate(customer_ids: Iterable[str]) -> None:
    """Forget the cached answers of these customers once the current transaction commits (at once outside
    one). One cache call per commit, however many changes it makes (a renewal batch of 500)."""
    ids = {customer_id for customer_id in customer_ids if customer_id}
    if not ids:
        return
    connection = transaction.get_connection()
    if _outside_our_transactions(connection):
        _new_versions(ids)
        return
    pending = getattr(connection, "_entitlements_pending", None)
    if pending is None:
        pending = connection._entitlements_pending = set()
    pending.update(ids)
    # One callback per call, but the first to run after the commit flushes every pending id in one cache
    # call and the others find nothing left. (Ids a rolled-back transaction left are flushed with the next
    # commit: dropping an answer too many is harmless.)
    transaction.on_commit(_flush_on_commit, robust=True)


def _new_generation() -> None:
    try:
        cache.set(GENERATION_KEY, uuid.uuid4().hex[:12], timeout=None)
    except Exception:  # as in _new_versions
        logger.warning("entitlements cache unreachable; catalog generation not moved", exc_info=True)


def entitlements_catalog_changed() -> None:
    """A feature or an attachment changed: every cached answer is stale, after the commit."""
    if _outside_our_transactions(transaction.get_connection()):
        _new_generation()
    else:
        transaction.on_commit(_new_generation, robust=True)
