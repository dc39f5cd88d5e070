"""Answers to the control plane: `sbt_aws_billingSuccess` / `sbt_aws_billingFailure` on its EventBridge bus.

An answer is written as a `ControlPlaneAnswer` row in the transaction that applies (or rejects) the event,
so it exists exactly when the event's outcome committed, once per event. After the commit a task sends it
with boto3's `put_events`, outside any transaction: the row is claimed by compare-and-set of its
`claim_token` with a lease (so of two workers exactly one sends), and the result is recorded in a short
transaction. A failed send (a network error, throttling, a missing bus, an entry EventBridge refused) is
retried after each delay of `RETRY_SCHEDULE`, then the answer is `failed` (admin can send it again); the
`send_control_plane_answers` job picks up whatever a crash or a broker outage left behind. Delivery is
at least once, since EventBridge takes no idempotency key: consumers de-duplicate on `detail.answerId`.

Why a small outbox of its own rather than the webhooks outbox: EventBridge is not a webhook endpoint (no
URL, no signature, no endpoint to disable), and an answer concerns one event and one bus, not the
subscribers of an event type.
"""

from __future__ import annotations

import logging
import secrets
from datetime import datetime, timedelta
from typing import Any

import boto3
import orjson
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.db import transaction
from django.db.models import Q

from billing_site.locks import LockRank, lock_one
from billing_site.tasks import enqueue, enqueue_each
from customers.control_plane.envelope import PREFIX
from customers.models import ControlPlaneAnswer, ControlPlaneEvent

logger = logging.getLogger("billing.control_plane")

SUCCESS = f"{PREFIX}billingSuccess"
FAILURE = f"{PREFIX}billingFailure"
RETRY_SCHEDULE = (
    timedelta(seconds=10),
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=6),
    timedelta(hours=12),
    timedelta(hours=24),
)
# Longer than one put_events can take with the client's timeouts and its own two tries.
SEND_LEASE = timedelta(minutes=2)
SWEEP_LIMIT = 1000
# An answer names at most this many rejected usage events (the event row keeps them all): an EventBridge
# entry is at most 256 KiB.
MAX_REJECTIONS_IN_ANSWER = 20


def answer_queue(
    *,
    event: ControlPlaneEvent,
    request_name: str,
    now: datetime,
    failure: str = "",
    failure_code: str = "",
) -> ControlPlaneAnswer | None:
    """Write the answer to `event` in the caller's transaction and send it after the commit; nothing
    when no bus is configured."""
    if not settings.SBT_EVENT_BUS_NAME:
        return None
    details = dict(event.details)
    usage = details.get("usage")
    if isinstance(usage, dict):  # the counts and the first rejections; the event row keeps every id
        details["usage"] = {
            **{key: value for key, value in usage.items() if key != "events"},
            "rejections": usage.get("rejections", [])[:MAX_REJECTIONS_IN_ANSWER],
        }
    answer = ControlPlaneAnswer(event=event, source=settings.SBT_EVENT_SOURCE, created_at=now, next_attempt_at=now)
    detail: dict[str, Any] = {
        "answerId": answer.id,
        "tenantId": event.tenant_id or None,
        "requestType": request_name,
        "requestDetailType": event.detail_type,
        "requestId": event.envelope_id or None,
        "status": event.status,
        "customerId": event.customer_id,
        "details": details,
    }
    if failure:
        detail["reason"] = failure[:1000]
        detail["code"] = failure_code or None
    answer.detail_type = FAILURE if failure else SUCCESS
    answer.detail = detail
    answer.save(force_insert=True)

    from customers.tasks import control_plane_answer_send

    enqueue(control_plane_answer_send, answer.id, now.isoformat())
    return answer


# --- Sending --------------------------------------------------------------------------------------

_clients: dict[str | None, Any] = {}


def _region() -> str | None:
    if settings.SBT_EVENT_BUS_REGION:
        return settings.SBT_EVENT_BUS_REGION
    bus = settings.SBT_EVENT_BUS_NAME or ""
    if bus.startswith("arn:"):  # arn:aws:events:<region>:<account>:event-bus/<name>
        parts = bus.split(":")
        return parts[3] if len(parts) > 3 and parts[3] else None
    return None


def events_client() -> Any:
    """One boto3 EventBridge client per region and process (clients are thread-safe and keep their
    connection pool). Short timeouts: a send holds a lease, never a transaction."""
    region = _region()
    client = _clients.get(region)
    if client is None:
        config = Config(connect_timeout=5, read_timeout=10, retries={"max_attempts": 2, "mode": "standard"})
        client = boto3.client("events", region_name=region, config=config)
        _clients[region] = client
    return client


def _claim(answer_id: str, now: datetime) -> str | None:
    token = secrets.token_hex(16)
    claimed = (
        ControlPlaneAnswer.objects.filter(
            pk=answer_id, status=ControlPlaneAnswer.Status.PENDING, next_attempt_at__lte=now
        )
        .filter(Q(claim_token="") | Q(lease_expires_at__lte=now))
        .update(claim_token=token, lease_expires_at=now + SEND_LEASE)
    )
    return token if claimed == 1 else None


def _put(answer: ControlPlaneAnswer) -> tuple[str, str]:
    """One put_events call. Returns (EventBridge's event id, "") or ("", the error)."""
    bus = settings.SBT_EVENT_BUS_NAME
    if not bus:
        return "", "SBT_EVENT_BUS_NAME is not set"
    entry = {
        "Source": answer.source,
        "DetailType": answer.detail_type,
        "Detail": orjson.dumps(answer.detail).decode(),
        "EventBusName": bus,
        "Time": answer.created_at,
        "Resources": [],
    }
    try:
        response = events_client().put_events(Entries=[entry])
    except ClientError as exc:
        error = exc.response.get("Error", {})
        return "", f"{error.get('Code', 'ClientError')}: {error.get('Message', '')}"
    except BotoCoreError as exc:  # no region, no credentials, a timeout, a connection error
        return "", f"{type(exc).__name__}: {exc}"
    entries = response.get("Entries") or [{}]
    result = entries[0]
    if response.get("FailedEntryCount") or result.get("ErrorCode") or not result.get("EventId"):
        return "", f"{result.get('ErrorCode', 'EntryFailed')}: {result.get('ErrorMessage', '')}"
    return result["EventId"], ""


def answer_send(*, answer_id: str, now: datetime) -> str:
    """Send one answer if it is due and free. Returns `skipped`, `sent`, `retrying` or `failed`."""
    token = _claim(answer_id, now)
    if token is None:
        return "skipped"
    answer = ControlPlaneAnswer.objects.get(pk=answer_id)
    bus_event_id, error = _put(answer)  # outside any transaction of ours
    with transaction.atomic():
        locked = lock_one(ControlPlaneAnswer.objects.filter(pk=answer_id), LockRank.LEAF)
        if locked.claim_token != token:
            # Our lease ran out and another worker took the row: it owns the state now.
            logger.warning("control-plane answer %s: lease lost during the send", answer_id)
            return "skipped"
        locked.claim_token = ""
        locked.lease_expires_at = None
        locked.attempt_count += 1
        if not error:
            outcome = "sent"
            locked.status = ControlPlaneAnswer.Status.SENT
            locked.sent_at = now
            locked.bus_event_id = bus_event_id
            locked.next_attempt_at = None
            locked.last_error = ""
        elif locked.attempt_count <= len(RETRY_SCHEDULE):
            outcome = "retrying"
            locked.next_attempt_at = now + RETRY_SCHEDULE[locked.attempt_count - 1]
            locked.last_error = error[:500]
        else:
            outcome = "failed"
            locked.status = ControlPlaneAnswer.Status.FAILED
            locked.next_attempt_at = None
            locked.last_error = error[:500]
        locked.save()
    logger.info(
        "control-plane answer %s: %s",
        answer_id,
        outcome,
        extra={"answer": answer_id, "event": answer.event_id, "detail_type": answer.detail_type, "error": error},
    )
    return outcome


def answer_resend(*, answer: ControlPlaneAnswer, now: datetime) -> ControlPlaneAnswer:
    """Admin's "send again": a failed (or sent) answer goes back to pending with a fresh schedule."""
    with transaction.atomic():
        locked = lock_one(ControlPlaneAnswer.objects.filter(pk=answer.pk), LockRank.LEAF)
        locked.status = ControlPlaneAnswer.Status.PENDING
        locked.next_attempt_at = now
        locked.attempt_count = 0
        locked.claim_token = ""
        locked.lease_expires_at = None
        locked.save()

        from customers.tasks import control_plane_answer_send

        enqueue(control_plane_answer_send, locked.id, now.isoformat())
    return locked


def answers_send_job(*, now: datetime) -> dict[str, int]:
    """The sweep: queue every pending answer that is due and not held by a live lease."""
    from customers.tasks import control_plane_answer_send

    due = list(
        ControlPlaneAnswer.objects.filter(status=ControlPlaneAnswer.Status.PENDING, next_attempt_at__lte=now)
        .filter(Q(claim_token="") | Q(lease_expires_at__lte=now))
        .order_by("next_attempt_at")
        .values_list("id", flat=True)[:SWEEP_LIMIT]
    )
    done = enqueue_each(control_plane_answer_send, [(answer_id, now.isoformat()) for answer_id in due])
    return {"due": len(due), **done}
