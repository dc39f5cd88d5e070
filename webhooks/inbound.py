"""Inbound provider webhooks: verify, store once, answer at once, process later through a table of handlers.

The handler contract (for the apps that register handlers from their `AppConfig.ready()`):

    provider_handler_register(provider="stripe", event_type="payment_intent.succeeded", handler=fn)

    def fn(*, event: ProviderEvent, now: datetime) -> str | None: ...

- `event.payload` is the provider's event as it sent it (for Stripe: `{"id": "evt_...", "type", "created",
  "data": {"object": {...}, "previous_attributes"?}, ...}`); `event.object_id` is `data.object.id`.
- A handler is called outside any transaction, so it may call the provider (to read the object's latest
  state) and then write in its own transactions through services, which emit our own outbound events.
- It must be idempotent: an event is processed at least once. A crash after the handler's commit and
  before the event is marked processed runs it again; so do an admin "reprocess", a resync and a retry.
  Reconcile to a state (compare-and-set on status, unique constraints on what it creates) rather than
  applying a delta.
- Events arrive in any order, and two events about one object may be processed at the same time by two
  workers. Lock the rows you change; where order matters, `provider_event_superseded(event)` tells whether
  a later event about the same object was already processed, and reading the object from the provider
  gives its current state whatever the order.
- Return a short result for the admin ("settled pi_..."), or None. Raise to have the event retried with
  backoff (PROCESS_RETRY_SCHEDULE); after the last retry it is `failed`, shown in admin with its error,
  and can be reprocessed by hand.
A type with no handler is stored and marked `ignored`.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import stripe
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q

from webhooks.locks import claim_ids
from webhooks.models import ProviderEvent
from webhooks.stripe_sdk import stripe_client, stripe_event_verify

logger = logging.getLogger("billing.webhooks.inbound")

Handler = Callable[..., str | None]

PROVIDERS = ("stripe",)
# Delay before retry n of a handler that raised; after the last, the event is `failed`.
PROCESS_RETRY_SCHEDULE = [timedelta(minutes=m) for m in (1, 5, 30, 120, 360, 720, 1440)]
PROCESS_LEASE = timedelta(minutes=15)
ENQUEUE_LEASE = timedelta(minutes=10)
SWEEP_LIMIT = 500

_HANDLERS: dict[tuple[str, str], Handler] = {}


class SignatureInvalid(Exception):
    pass


class ProviderNotConfigured(Exception):
    pass


class MalformedEvent(Exception):
    pass


def provider_handler_register(*, provider: str, event_type: str, handler: Handler) -> None:
    """Register the handler of one event type (registering again replaces it: `ready()` may run twice)."""
    if provider not in PROVIDERS:
        raise ValueError(f"Unknown provider {provider!r}; known: {', '.join(PROVIDERS)}")
    _HANDLERS[(provider, event_type)] = handler


def provider_handler_get(*, provider: str, event_type: str) -> Handler | None:
    return _HANDLERS.get((provider, event_type))


def provider_handled_types(*, provider: str) -> list[str]:
    return sorted(t for p, t in _HANDLERS if p == provider)


def provider_event_superseded(event: ProviderEvent) -> bool:
    """Whether a later event (by the provider's creation time) about the same object was processed."""
    if not event.object_id or event.provider_created_at is None:
        return False
    return ProviderEvent.objects.filter(
        provider=event.provider,
        object_id=event.object_id,
        provider_created_at__gt=event.provider_created_at,
        status=ProviderEvent.Status.PROCESSED,
    ).exists()


# --- Receiving ------------------------------------------------------------------------------------


def _verify(provider: str, payload: bytes, headers: dict[str, str]) -> dict[str, Any]:
    if provider == "stripe":
        secret = settings.STRIPE_WEBHOOK_SECRET
        if not secret:
            raise ProviderNotConfigured("STRIPE_WEBHOOK_SECRET is not set")
        try:
            stripe_event_verify(payload=payload, signature_header=headers.get("stripe-signature"), secret=secret)
        except stripe.SignatureVerificationError as exc:
            raise SignatureInvalid(str(exc).split(". ")[0]) from None
        except ValueError:
            raise MalformedEvent("The body is not a JSON event.") from None
        event = json.loads(payload)
        if not isinstance(event, dict):
            raise MalformedEvent("The body is not a JSON object.")
        return event
    raise ProviderNotConfigured(f"Unknown provider {provider!r}")


def provider_event_receive(
    *, provider: str, payload: bytes, headers: dict[str, str], now: datetime
) -> tuple[ProviderEvent, bool]:
    """Verify a webhook body before anything else, then store it once. Returns (row, created)."""
    event = _verify(provider, payload, {k.lower(): v for k, v in headers.items()})
    return provider_event_store(provider=provider, event=event, source=ProviderEvent.Source.WEBHOOK, now=now)


def _fields(event: dict[str, Any]) -> dict[str, Any]:
    event_id, event_type = event.get("id"), event.get("type")
    if not isinstance(event_id, str) or not event_id or len(event_id) > 255:
        raise MalformedEvent("The event has no id.")
    if not isinstance(event_type, str) or not event_type or len(event_type) > 100:
        raise MalformedEvent("The event has no type.")
    data = event.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    object_id = obj.get("id") if isinstance(obj, dict) else None
    created = event.get("created")
    return {
        "provider_event_id": event_id,
        "type": event_type,
        "object_id": object_id[:255] if isinstance(object_id, str) else "",
        "livemode": event.get("livemode") is True,
        "api_version": str(event.get("api_version") or "")[:40],
        "provider_created_at": datetime.fromtimestamp(created, tz=UTC) if isinstance(created, int) else None,
    }


def provider_event_store(
    *, provider: str, event: dict[str, Any], source: str, now: datetime, enqueue: bool = True
) -> tuple[ProviderEvent, bool]:
    """Store a verified event unless we have it already (the unique constraint decides, even when two
    deliveries of it race). A new event is queued for processing once its row has committed."""
    fields = _fields(event)
    try:
        with transaction.atomic():
            row = ProviderEvent.objects.create(
                provider=provider, payload=event, source=source, received_at=now, next_attempt_at=now, **fields
            )
            if enqueue:
                transaction.on_commit(lambda: _enqueue([row.pk]), robust=True)
    except IntegrityError:
        existing = ProviderEvent.objects.filter(
            provider=provider, provider_event_id=fields["provider_event_id"]
        ).first()
        if existing is None:
            raise
        return existing, False
    return row, True


def _enqueue(ids: list[int]) -> None:
    from webhooks.tasks import process_provider_event

    for pk in ids:
        process_provider_event.delay(pk)


# --- Processing -----------------------------------------------------------------------------------


def _claim(pk: int, now: datetime) -> str | None:
    token = secrets.token_hex(16)
    claimed = (
        ProviderEvent.objects.filter(pk=pk)
        .filter(
            Q(status=ProviderEvent.Status.PENDING, next_attempt_at__lte=now, claim_token="")
            | Q(status__in=[ProviderEvent.Status.PENDING, ProviderEvent.Status.PROCESSING], lease_expires_at__lte=now)
        )
        .update(
            status=ProviderEvent.Status.PROCESSING,
            claim_token=token,
            lease_expires_at=now + PROCESS_LEASE,
            attempts=F("attempts") + 1,
        )
    )
    return token if claimed == 1 else None


def _finish(pk: int, token: str, **fields: Any) -> None:
    ProviderEvent.objects.filter(pk=pk, claim_token=token).update(claim_token="", lease_expires_at=None, **fields)


def provider_event_process(*, provider_event_id: int, now: datetime) -> str:
    """Run the handler of one stored event if it is due and nobody else is running it. Returns the new
    status, or `skipped`."""
    token = _claim(provider_event_id, now)
    if token is None:
        return "skipped"
    event = ProviderEvent.objects.get(pk=provider_event_id)
    handler = provider_handler_get(provider=event.provider, event_type=event.type)
    if handler is None:
        _finish(
            event.pk,
            token,
            status=ProviderEvent.Status.IGNORED,
            result=f"no handler for {event.type}",
            error="",
            next_attempt_at=None,
            processed_at=now,
        )
        return ProviderEvent.Status.IGNORED
    try:
        result = handler(event=event, now=now)
    except Exception as exc:
        # Recorded, logged with its trace, and retried: a handler's failure must not lose the event.
        logger.exception("provider event %s (%s) failed", event.provider_event_id, event.type)
        error = f"{type(exc).__name__}: {exc}"[:2000]
        if event.attempts <= len(PROCESS_RETRY_SCHEDULE):
            _finish(
                event.pk,
                token,
                status=ProviderEvent.Status.PENDING,
                error=error,
                next_attempt_at=now + PROCESS_RETRY_SCHEDULE[event.attempts - 1],
            )
            return ProviderEvent.Status.PENDING
        _finish(event.pk, token, status=ProviderEvent.Status.FAILED, error=error, next_attempt_at=None)
        return ProviderEvent.Status.FAILED
    _finish(
        event.pk,
        token,
        status=ProviderEvent.Status.PROCESSED,
        result=(result or "")[:500],
        error="",
        next_attempt_at=None,
        processed_at=now,
    )
    return ProviderEvent.Status.PROCESSED


def provider_event_reprocess(*, provider_event: ProviderEvent, now: datetime) -> bool:
    """Queue an event to be processed again, whatever its status (handlers are idempotent). False when
    it is being processed right now."""
    with transaction.atomic():
        updated = (
            ProviderEvent.objects.filter(pk=provider_event.pk)
            .exclude(status=ProviderEvent.Status.PROCESSING, lease_expires_at__gt=now)
            .update(
                status=ProviderEvent.Status.PENDING,
                next_attempt_at=now,
                claim_token="",
                lease_expires_at=None,
                attempts=0,
                error="",
            )
        )
        if updated:
            transaction.on_commit(lambda: _enqueue([provider_event.pk]), robust=True)
    return bool(updated)


def provider_events_process_job(*, now: datetime) -> dict[str, int]:
    """The sweep: queue events whose retry is due, and take back those a dead worker held."""
    with transaction.atomic():
        ids = claim_ids(
            ProviderEvent.objects.filter(
                Q(status=ProviderEvent.Status.PENDING, next_attempt_at__lte=now)
                & (Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lte=now))
                | Q(status=ProviderEvent.Status.PROCESSING, lease_expires_at__lte=now)
            ),
            limit=SWEEP_LIMIT,
            order_by=("next_attempt_at",),
        )
        if ids:
            # Pending rows: an enqueue lease, so a backed-up queue is not fed the same events every run.
            ProviderEvent.objects.filter(pk__in=ids, status=ProviderEvent.Status.PENDING).update(
                lease_expires_at=now + ENQUEUE_LEASE, claim_token=""
            )
            transaction.on_commit(lambda: _enqueue(ids), robust=True)
    return {"queued": len(ids)}


# --- Resync ---------------------------------------------------------------------------------------


def provider_events_resync(
    *,
    provider: str,
    since: datetime,
    now: datetime,
    types: list[str] | None = None,
    progress: Callable[[list[dict[str, Any]]], Iterable[dict[str, Any]]] | None = None,
) -> dict[str, int]:
    """Read the provider's events created at or after `since` (Stripe keeps 30 days), store the ones we
    missed, and process, oldest first, every one that is not processed yet, through the same handlers."""
    if provider != "stripe":
        raise ProviderNotConfigured(f"Unknown provider {provider!r}")
    params: dict[str, Any] = {"created": {"gte": int(since.timestamp())}, "limit": 100}
    if types:
        params["types"] = types
    listed = [e.to_dict(for_json=True) for e in stripe_client().v1.events.list(params).auto_paging_iter()]
    listed.sort(key=lambda e: (e.get("created") or 0, e.get("id") or ""))
    counts = {"listed": len(listed), "stored": 0, "processed": 0, "ignored": 0, "failed": 0, "already_done": 0}
    for event in progress(listed) if progress is not None else listed:
        row, created = provider_event_store(
            provider=provider, event=event, source=ProviderEvent.Source.RESYNC, now=now, enqueue=False
        )
        counts["stored"] += created
        if row.status in (ProviderEvent.Status.PROCESSED, ProviderEvent.Status.IGNORED):
            counts["already_done"] += 1
            continue
        if not created:
            # A stored event still waiting (or failed): take it now, whatever its retry time.
            ProviderEvent.objects.filter(pk=row.pk).exclude(
                status=ProviderEvent.Status.PROCESSING, lease_expires_at__gt=now
            ).update(status=ProviderEvent.Status.PENDING, next_attempt_at=now, claim_token="", lease_expires_at=None)
        status = provider_event_process(provider_event_id=row.pk, now=now)
        if status == ProviderEvent.Status.PROCESSED:
            counts["processed"] += 1
        elif status == ProviderEvent.Status.IGNORED:
            counts["ignored"] += 1
        else:
            counts["failed"] += 1
    return counts
