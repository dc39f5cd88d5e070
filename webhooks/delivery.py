"""Outbound delivery: fan-out from the outbox, the send loop, retries, auto-disable, redelivery, resend.

Fan-out is a task that reads the outbox in id order, not work done in the event's own transaction:
- the transactions that write events (renewal batches, ingestion, payments) stay as they are: no extra
  query for endpoints, no extra rows, no rendering inside them, whatever the number of endpoints;
- events written in bulk (the renewal writer inserts them with `bulk_create`) are fanned out like any
  other, because the to-do list is the outbox itself (`dispatched_at IS NULL`, a partial index);
- claiming a batch with SKIP LOCKED and marking it in the transaction that writes its deliveries makes the
  fan-out exactly-once per event however many workers run it, and an event whose transaction commits
  late (an id smaller than events already fanned out) is still picked up: there is no cursor to skip it.
`event_emit` asks for a fan-out right after its transaction commits; the `deliver_webhooks` job sweeps
every few seconds for anything a crash left behind (an event not fanned out, a delivery not sent).

A delivery is claimed by compare-and-set of its `claim_token` with a lease, sent outside any transaction,
and its outcome recorded in a short transaction that also writes the attempt row.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q

from billing_site.errors import Conflict, InvalidRequest
from billing_site.renderers import dumps
from webhooks.endpoints import endpoint_require_enabled, endpoint_secrets, endpoint_snapshot
from webhooks.locks import claim_events, claim_ids, lock_deliveries, lock_delivery, lock_endpoint
from webhooks.models import BillingEvent, EventPayload, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from webhooks.rendering import envelope, event_objects_render
from webhooks.sender import SendResult, webhook_post
from webhooks.services import event_emit
from webhooks.signing import signature_headers

logger = logging.getLogger("billing.webhooks")

TEST_EVENT = "webhook_endpoint.test"
DISPATCH_BATCH = 500
DISPATCH_MAX_BATCHES = 20
SWEEP_LIMIT = 1000
# A delivery the sweep queued is not queued again for this long, so a backed-up queue does not grow by
# the same deliveries every run; a worker lost with it is covered when the lease runs out.
ENQUEUE_LEASE = timedelta(minutes=10)


def _send_lease() -> timedelta:
    # Longer than any send can take (connect + read timeout, the body-read deadline, some slack).
    return timedelta(seconds=4 * settings.WEBHOOKS_TIMEOUT_SECONDS + 60)


def event_type_matches(patterns: Iterable[str], event_type: str) -> bool:
    for pattern in patterns:
        if pattern == "*" or pattern == event_type:
            return True
        if pattern.endswith(".*") and event_type.startswith(pattern[:-1]):
            return True
    return False


def _patterns_q(patterns: list[str]) -> Q | None:
    """The SQL form of `event_type_matches`, or None for "everything"."""
    if "*" in patterns:
        return None
    q = Q(pk__in=[])
    for pattern in patterns:
        q |= Q(type__startswith=pattern[:-1]) if pattern.endswith(".*") else Q(type=pattern)
    return q


def retry_delay(*, failures: int, delivery_id: str) -> timedelta:
    """The wait after the `failures`-th failed attempt in a row: the configured step, moved by up to
    WEBHOOKS_RETRY_JITTER_PERCENT either way. The jitter is drawn from a hash of the delivery and the
    attempt, so it spreads deliveries apart and is still reproducible from the rows (integers only)."""
    base = settings.WEBHOOKS_RETRY_SCHEDULE[failures - 1]
    percent = settings.WEBHOOKS_RETRY_JITTER_PERCENT
    if not percent:
        return base
    draw = int.from_bytes(hashlib.sha256(f"{delivery_id}:{failures}".encode()).digest()[:8], "big")
    base_us = base // timedelta(microseconds=1)
    offset_us = base_us * percent * (2 * draw - 2**64) // (100 * 2**64)
    return timedelta(microseconds=base_us + offset_us)


# --- Payloads -------------------------------------------------------------------------------------


def payloads_ensure(events: list[BillingEvent], *, now: datetime) -> None:
    """Render and store the body of every event that has none yet (inside the caller's transaction)."""
    have = set(EventPayload.objects.filter(event_id__in=[e.pk for e in events]).values_list("event_id", flat=True))
    missing = [e for e in events if e.pk not in have]
    if not missing:
        return
    objects = event_objects_render(missing)
    EventPayload.objects.bulk_create(
        [EventPayload(event=e, body=dumps(envelope(e, objects[e.pk])).decode(), created_at=now) for e in missing],
        ignore_conflicts=True,
    )


def _enqueue(delivery_ids: list[str]) -> None:
    from webhooks.tasks import deliver

    for delivery_id in delivery_ids:
        deliver.delay(delivery_id)


def _enqueue_on_commit(delivery_ids: list[str]) -> None:
    if delivery_ids:
        # robust: the rows are committed; if the broker is down the sweep sends them instead.
        transaction.on_commit(lambda: _enqueue(delivery_ids), robust=True)


# --- Fan-out --------------------------------------------------------------------------------------


def events_dispatch(*, now: datetime) -> dict[str, int]:
    """Turn events not yet fanned out into deliveries for every enabled endpoint that wants them, oldest
    first, in batches; each batch is claimed with SKIP LOCKED and marked in the transaction that writes its
    deliveries, so concurrent runs split the work and no event is fanned out twice."""
    events_done = deliveries_made = 0
    for _ in range(DISPATCH_MAX_BATCHES):
        with transaction.atomic():
            batch = claim_events(BillingEvent.objects.filter(dispatched_at__isnull=True), limit=DISPATCH_BATCH)
            if not batch:
                break
            endpoints = list(WebhookEndpoint.objects.filter(status="enabled", deleted_at__isnull=True))
            pairs = [
                (event, endpoint)
                for event in batch
                if event.type != TEST_EVENT
                for endpoint in endpoints
                if event_type_matches(endpoint.enabled_events, event.type)
            ]
            if pairs:
                payloads_ensure(list({event.pk: event for event, _ in pairs}.values()), now=now)
                deliveries = [
                    WebhookDelivery(event=event, endpoint=endpoint, next_attempt_at=now, created_at=now)
                    for event, endpoint in pairs
                ]
                WebhookDelivery.objects.bulk_create(deliveries, ignore_conflicts=True)
                _enqueue_on_commit([d.pk for d in deliveries])
            BillingEvent.objects.filter(pk__in=[e.pk for e in batch]).update(dispatched_at=now)
            events_done += len(batch)
            deliveries_made += len(pairs)
        if len(batch) < DISPATCH_BATCH:
            break
    return {"events": events_done, "deliveries": deliveries_made}


def deliveries_due_enqueue(*, now: datetime) -> int:
    """Queue a send for every due delivery of an enabled endpoint that nobody holds: retries whose time
    has come, and anything a crash left behind (never sent, or claimed by a worker that died)."""
    with transaction.atomic():
        ids = claim_ids(
            WebhookDelivery.objects.filter(
                status=WebhookDelivery.Status.PENDING,
                next_attempt_at__lte=now,
                endpoint__status=WebhookEndpoint.Status.ENABLED,
                endpoint__deleted_at__isnull=True,
            ).filter(Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lte=now)),
            limit=SWEEP_LIMIT,
            order_by=("next_attempt_at",),
        )
        if ids:
            WebhookDelivery.objects.filter(pk__in=ids).update(lease_expires_at=now + ENQUEUE_LEASE, claim_token="")
            _enqueue_on_commit(ids)
    return len(ids)


def deliver_webhooks_job(*, now: datetime) -> dict[str, int]:
    """The periodic sweep: fan out what is left, then queue every due delivery."""
    fanned = events_dispatch(now=now)
    return {**fanned, "queued": deliveries_due_enqueue(now=now)}


# --- One attempt ----------------------------------------------------------------------------------


def _claim(delivery_id: str, now: datetime) -> str | None:
    """Take the delivery for one send: compare-and-set on the row's own columns, so of two workers that
    race, exactly one wins. The lease lets the sweep take it back from a worker that died."""
    token = secrets.token_hex(16)
    claimed = (
        WebhookDelivery.objects.filter(pk=delivery_id, status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=now)
        .filter(Q(claim_token="") | Q(lease_expires_at__lte=now))
        .update(claim_token=token, lease_expires_at=now + _send_lease())
    )
    return token if claimed == 1 else None


def _release(delivery_id: str, token: str) -> None:
    WebhookDelivery.objects.filter(pk=delivery_id, claim_token=token).update(claim_token="", lease_expires_at=None)


def delivery_attempt(*, delivery_id: str, now: datetime) -> str:
    """Send a delivery once if it is due and free, and record the attempt. Returns what happened:
    `skipped` (not due, taken, finished, or its endpoint is off), `succeeded`, `retrying` or `failed`."""
    token = _claim(delivery_id, now)
    if token is None:
        return "skipped"
    delivery = WebhookDelivery.objects.select_related("endpoint", "event").get(pk=delivery_id)
    endpoint = delivery.endpoint
    if endpoint.status != WebhookEndpoint.Status.ENABLED or endpoint.deleted_at is not None:
        _release(delivery_id, token)
        return "skipped"
    payload = EventPayload.objects.filter(event_id=delivery.event_id).first()
    if payload is None:  # fanned out before payloads existed, or created by hand: render it now
        with transaction.atomic():
            payloads_ensure([delivery.event], now=now)
        payload = EventPayload.objects.get(event_id=delivery.event_id)

    headers = signature_headers(
        msg_id=delivery.event_id, timestamp=now, body=payload.body, secrets_=endpoint_secrets(endpoint, now=now)
    )
    result = webhook_post(
        url=endpoint.url, body=payload.body.encode(), headers=headers, timeout=settings.WEBHOOKS_TIMEOUT_SECONDS
    )
    outcome = _record(delivery_id=delivery_id, endpoint_id=endpoint.id, token=token, result=result, now=now)
    logger.info(
        "webhook delivery %s: %s",
        delivery_id,
        outcome,
        extra={
            "delivery": delivery_id,
            "endpoint": endpoint.id,
            "event": delivery.event_id,
            "status_code": result.status_code,
            "duration_ms": result.duration_ms,
            "error": result.error,
        },
    )
    return outcome


def _record(*, delivery_id: str, endpoint_id: str, token: str, result: SendResult, now: datetime) -> str:
    with transaction.atomic():
        delivery = lock_delivery(delivery_id)
        number = delivery.attempt_count + 1
        WebhookAttempt.objects.create(
            delivery=delivery,
            number=number,
            started_at=now,
            duration_ms=result.duration_ms,
            status_code=result.status_code,
            error=result.error[:500],
            response_body=result.body,
            succeeded=result.succeeded,
            retryable=result.retryable,
        )
        delivery.attempt_count = number
        delivery.last_attempt_at = now
        delivery.last_status_code = result.status_code
        delivery.last_error = result.error[:500]
        outcome = "succeeded" if result.succeeded else "failed"
        if delivery.claim_token == token:
            # Still ours: move the state. (If our lease ran out and another worker took the row, the
            # attempt is recorded and the state is left to that worker.)
            delivery.claim_token = ""
            delivery.lease_expires_at = None
            if result.succeeded:
                delivery.status = WebhookDelivery.Status.SUCCEEDED
                delivery.succeeded_at = now
                delivery.next_attempt_at = None
                delivery.failures_in_row = 0
            else:
                delivery.failures_in_row += 1
                if result.retryable and delivery.failures_in_row <= len(settings.WEBHOOKS_RETRY_SCHEDULE):
                    delay = retry_delay(failures=delivery.failures_in_row, delivery_id=delivery_id)
                    delivery.next_attempt_at = now + delay
                    outcome = "retrying"
                else:
                    delivery.status = WebhookDelivery.Status.FAILED
                    delivery.next_attempt_at = None
        delivery.save()
        _endpoint_health(endpoint_id=endpoint_id, succeeded=result.succeeded, now=now)
    return outcome


def _endpoint_health(*, endpoint_id: str, succeeded: bool, now: datetime) -> None:
    """Track how long an endpoint has failed; disable it once it has had no success for
    WEBHOOKS_DISABLE_AFTER. Conditional updates, so concurrent attempts to one endpoint need no lock and
    the endpoint is disabled (and its event emitted) once."""
    endpoints = WebhookEndpoint.objects.filter(pk=endpoint_id)
    if succeeded:
        endpoints.update(failing_since=None, last_success_at=now)
        return
    endpoints.filter(failing_since__isnull=True).update(failing_since=now)
    disabled = endpoints.filter(
        status=WebhookEndpoint.Status.ENABLED, failing_since__lte=now - settings.WEBHOOKS_DISABLE_AFTER
    ).update(
        status=WebhookEndpoint.Status.DISABLED,
        disabled_reason=f"no successful delivery for {settings.WEBHOOKS_DISABLE_AFTER.days} days",
        updated_at=now,
    )
    if disabled:
        endpoint = WebhookEndpoint.objects.get(pk=endpoint_id)
        event_emit(
            type="webhook_endpoint.disabled",
            object_type="webhook_endpoint",
            object_id=endpoint.id,
            data=endpoint_snapshot(endpoint),
            previous_attributes={"status": WebhookEndpoint.Status.ENABLED, "disabled_reason": None},
            now=now,
        )
        logger.warning("webhook endpoint %s disabled after failing", endpoint.id, extra={"endpoint": endpoint.id})


# --- Manual sends ---------------------------------------------------------------------------------


def _in_flight(delivery: WebhookDelivery, now: datetime) -> bool:
    return bool(delivery.claim_token) and delivery.lease_expires_at is not None and delivery.lease_expires_at > now


def delivery_redeliver(*, delivery: WebhookDelivery, now: datetime) -> WebhookDelivery:
    """Send one delivery again now, whatever its state; the retry schedule starts again."""
    with transaction.atomic():
        locked = lock_delivery(delivery.pk, with_endpoint=True)
        endpoint_require_enabled(locked.endpoint)
        if _in_flight(locked, now):
            raise Conflict(f"Delivery {locked.id} is being sent right now.", code="delivery_in_progress")
        locked.status = WebhookDelivery.Status.PENDING
        locked.next_attempt_at = now
        locked.failures_in_row = 0
        locked.claim_token = ""
        locked.lease_expires_at = None
        locked.save()
        _enqueue_on_commit([locked.pk])
    return locked


def endpoint_resend(*, endpoint: WebhookEndpoint, since: datetime, now: datetime) -> dict[str, Any]:
    """Queue every event created at or after `since` that the endpoint subscribes to, whether it was
    delivered, failed, or predates the endpoint. Existing deliveries are queued again (their attempts
    are kept); missing ones are created. All of it or nothing, in one transaction."""
    if since > now:
        raise InvalidRequest("since must not be in the future.", param="since")
    with transaction.atomic():
        locked = lock_endpoint(endpoint.pk)
        endpoint_require_enabled(locked)
        events = BillingEvent.objects.filter(created_at__gte=since).exclude(type=TEST_EVENT)
        match = _patterns_q(list(locked.enabled_events))
        if match is not None:
            events = events.filter(match)
        chosen = list(events.order_by("id")[: settings.WEBHOOKS_RESEND_MAX_EVENTS + 1])
        if len(chosen) > settings.WEBHOOKS_RESEND_MAX_EVENTS:
            raise InvalidRequest(
                f"More than {settings.WEBHOOKS_RESEND_MAX_EVENTS} events match; choose a later since.",
                param="since",
                code="too_many_events",
            )
        payloads_ensure(chosen, now=now)
        existing = {
            d.event_id: d for d in lock_deliveries(WebhookDelivery.objects.filter(endpoint=locked, event__in=chosen))
        }
        busy = [d.pk for d in existing.values() if _in_flight(d, now)]
        requeue = [d.pk for d in existing.values() if not _in_flight(d, now)]
        WebhookDelivery.objects.filter(pk__in=requeue).update(
            status=WebhookDelivery.Status.PENDING,
            next_attempt_at=now,
            failures_in_row=0,
            claim_token="",
            lease_expires_at=None,
        )
        new = [
            WebhookDelivery(event=event, endpoint=locked, next_attempt_at=now, created_at=now)
            for event in chosen
            if event.pk not in existing
        ]
        WebhookDelivery.objects.bulk_create(new)
        _enqueue_on_commit(requeue + [d.pk for d in new])
    return {"events": len(chosen), "created": len(new), "requeued": len(requeue), "in_progress": len(busy)}


def endpoint_test(*, endpoint: WebhookEndpoint, now: datetime) -> WebhookDelivery:
    """Send a `webhook_endpoint.test` event to this endpoint only (the fan-out never sends it elsewhere)."""
    with transaction.atomic():
        locked = lock_endpoint(endpoint.pk)
        endpoint_require_enabled(locked)
        event = event_emit(
            type=TEST_EVENT,
            object_type="webhook_endpoint",
            object_id=locked.id,
            data=endpoint_snapshot(locked),
            now=now,
        )
        BillingEvent.objects.filter(pk=event.pk).update(dispatched_at=now)
        payloads_ensure([event], now=now)
        delivery = WebhookDelivery.objects.create(event=event, endpoint=locked, next_attempt_at=now, created_at=now)
        _enqueue_on_commit([delivery.pk])
    return delivery
