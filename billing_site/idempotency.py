"""Idempotency-Key storage: the first response to a POST is stored and replayed to its retries.

Keys belong to the caller: an API key, or a JWT's subject (`TokenPrincipal.token_subject`).
The unique constraint on (owner, key) is the guard: of two requests racing with one key, exactly one
inserts the in-progress row and does the work; the other gets 409 `idempotency_key_in_use`. The row is
committed before the work starts (we never run inside ATOMIC_REQUESTS), so concurrent requests see it.

A 5xx frees the key for a retry only when the request's work provably rolled back (`WriteTracker`: no
write of the request committed). A failure after a commit (an on-commit hook, rendering the response,
anything after the service's transaction) keeps the answer: the 5xx is stored and replayed like any
other, so a retry with the same key never does the work a second time (a second credit note, refund or
charge). As at Stripe, which stores a 500 for its key too; the client reads the objects to learn what
happened.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, IntegrityError, connections, transaction

from billing_site.errors import Conflict, InvalidRequest
from billing_site.models import ApiKey, IdempotencyRecord
from billing_site.renderers import loads

MAX_KEY_LENGTH = 255


@dataclass(frozen=True)
class StoredResponse:
    status: int
    body: bytes
    content_type: str


class IdempotentReplay(Exception):
    def __init__(self, stored: StoredResponse) -> None:
        super().__init__("replay")
        self.stored = stored


def request_fingerprint(*, method: str, path: str, body: bytes) -> str:
    """Hash of what the request asks for. JSON bodies are canonicalised, so key order and white space
    do not make a faithful retry look like a different request."""
    try:
        canonical = json.dumps(loads(body), sort_keys=True, separators=(",", ":"), default=str).encode()
    except (ValueError, UnicodeDecodeError):
        canonical = body
    digest = hashlib.sha256()
    for part in (method.encode(), b"\0", path.encode(), b"\0", canonical):
        digest.update(part)
    return digest.hexdigest()


def validate_key(key: str) -> str:
    if not (1 <= len(key) <= MAX_KEY_LENGTH) or not key.isprintable():
        raise InvalidRequest(
            f"Idempotency-Key must be 1-{MAX_KEY_LENGTH} printable characters.",
            param="Idempotency-Key",
            code="idempotency_key_invalid",
        )
    return key


def _owner(principal: Any) -> dict[str, Any]:
    if isinstance(principal, ApiKey):
        return {"api_key": principal}
    return {"api_key": None, "token_subject": principal.token_subject}


def idempotency_begin(
    *, principal: Any, key: str, method: str, path: str, body: bytes, now: datetime
) -> IdempotencyRecord:
    """Take the key for this request, or raise: IdempotentReplay (a stored response exists) or Conflict.
    `principal` is the caller: an ApiKey or a tokens.TokenPrincipal."""
    validate_key(key)
    fingerprint = request_fingerprint(method=method, path=path, body=body)
    owner = _owner(principal)
    for _ in range(3):
        try:
            with transaction.atomic():
                return IdempotencyRecord.objects.create(
                    **owner,
                    key=key,
                    fingerprint=fingerprint,
                    method=method,
                    path=path[:2000],
                    locked_at=now,
                    created_at=now,
                )
        except IntegrityError:
            pass
        existing = IdempotencyRecord.objects.filter(**owner, key=key).first()
        if existing is None:
            continue  # released (a 5xx) or purged between our insert and our read: try again
        if existing.created_at < now - settings.IDEMPOTENCY_KEY_TTL:
            # Expired but not purged yet: the key is free again.
            IdempotencyRecord.objects.filter(pk=existing.pk, created_at=existing.created_at).delete()
            continue
        if existing.fingerprint != fingerprint:
            raise Conflict(
                "This Idempotency-Key was already used with a different request. Use a new key for a new request.",
                code="idempotency_key_reused",
                param="Idempotency-Key",
            )
        if existing.status == IdempotencyRecord.Status.COMPLETED:
            raise IdempotentReplay(
                StoredResponse(
                    status=existing.response_status or 200,
                    body=bytes(existing.response_body or b""),
                    content_type=existing.response_content_type or "application/json",
                )
            )
        if existing.locked_at < now - settings.IDEMPOTENCY_LOCK_TIMEOUT:
            # The request that held the key died without answering; take the key over (compare-and-set,
            # so only one of several retries wins).
            taken = IdempotencyRecord.objects.filter(
                pk=existing.pk, status=IdempotencyRecord.Status.IN_PROGRESS, locked_at=existing.locked_at
            ).update(locked_at=now)
            if taken:
                existing.locked_at = now
                return existing
        raise Conflict(
            "A request with this Idempotency-Key is still being processed. Retry after it completes.",
            code="idempotency_key_in_use",
            param="Idempotency-Key",
        )
    raise Conflict(
        "This Idempotency-Key is contended; retry shortly.", code="idempotency_key_in_use", param="Idempotency-Key"
    )


def idempotency_complete(
    *, record: IdempotencyRecord, status: int, body: bytes, content_type: str, now: datetime
) -> None:
    IdempotencyRecord.objects.filter(pk=record.pk, status=IdempotencyRecord.Status.IN_PROGRESS).update(
        status=IdempotencyRecord.Status.COMPLETED,
        response_status=status,
        response_body=body,
        response_content_type=content_type[:100],
        completed_at=now,
    )


def idempotency_release(*, record: IdempotencyRecord) -> None:
    """Forget a key whose request failed with a 5xx: its work was rolled back, so a retry may run it."""
    IdempotencyRecord.objects.filter(pk=record.pk, status=IdempotencyRecord.Status.IN_PROGRESS).delete()


def idempotency_purge(*, now: datetime) -> int:
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=now - settings.IDEMPOTENCY_KEY_TTL).delete()
    return deleted


# Statements that never write. Anything else (INSERT, UPDATE, DELETE, a CTE, COPY, a function call...)
# counts as a write: the tracker errs towards "may have committed", which keeps the key.
_READ_ONLY = frozenset({"SELECT", "SAVEPOINT", "RELEASE", "ROLLBACK", "SET", "SHOW", "EXPLAIN", "BEGIN", "COMMIT"})


class WriteTracker:
    """Whether any write of one request may have committed, on the default database.

    Installed as an execute wrapper for the request's handler. A write outside a transaction of ours
    (autocommit) committed as it ran. A write inside one registers an on-commit marker (once per
    savepoint stack): Django runs it if that transaction commits and drops it if the transaction (or
    the savepoint the write was in) rolls back. So after the handler, the work provably rolled back only
    when no marker ran and none is still pending; a pending marker (a transaction the test suite holds
    open) counts as committed."""

    def __init__(self, alias: str = DEFAULT_DB_ALIAS) -> None:
        self.alias = alias
        self.committed = False
        self._stacks: set[tuple[int, tuple[str, ...]]] = set()

    def _mark(self) -> None:
        self.committed = True

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: dict[str, Any]) -> Any:
        result = execute(sql, params, many, context)
        head = sql.lstrip().split(None, 1)[0].upper() if sql and sql.strip() else "SELECT"
        if head.strip("(") not in _READ_ONLY:
            self._note_write(context["connection"])
        return result

    def _note_write(self, connection: Any) -> None:
        if self.committed:
            return
        ours = [block for block in connection.atomic_blocks if not getattr(block, "_from_testcase", False)]
        if not connection.in_atomic_block or not ours:
            self.committed = True  # autocommit (or only the test suite's blocks): it counts at once
            return
        stack = (id(ours[0]), tuple(connection.savepoint_ids))
        if stack not in self._stacks:
            self._stacks.add(stack)
            transaction.on_commit(self._mark, using=self.alias)

    def rolled_back(self) -> bool:
        """True only when nothing this request wrote can have committed."""
        if self.committed:
            return False
        pending = connections[self.alias].run_on_commit
        return not any(callback == self._mark for _, callback, _ in pending)

    def start(self) -> None:
        connections[self.alias].execute_wrappers.append(self)

    def stop(self) -> None:
        wrappers = connections[self.alias].execute_wrappers
        if self in wrappers:
            wrappers.remove(self)
