"""Receiving one control-plane event: store it, apply it once, answer it.

Each received event is stored, whatever it is. Each is applied once: by the envelope's `id` when present
(a unique constraint on `dedup_key`), and by effect otherwise (onboarding a tenant that exists changes
nothing). The effect, the stored row and the answer commit together, so a crash never leaves an applied
event unrecorded or unanswered. A rejected event is stored (without `dedup_key`, so a redelivery is tried
again) with a billingFailure answer naming the reason; a duplicate or an ignored detail-type gets no answer.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from rest_framework import serializers

from billing_site.errors import ApiError
from customers.control_plane.answers import answer_queue
from customers.control_plane.envelope import EnvelopeUnreadable, body_parse, envelope_validate, tenant_of
from customers.control_plane.registry import ControlPlaneRequest, handler_for
from customers.models import ControlPlaneEvent

logger = logging.getLogger("billing.control_plane")

Status = ControlPlaneEvent.Status


def _store(body: Any, **fields: Any) -> ControlPlaneEvent:
    return ControlPlaneEvent.objects.create(
        payload=body if isinstance(body, (dict, list)) else {"raw": str(body)[:10_000]},
        tenant_id=tenant_of(body),
        **fields,
    )


def _error_of(exc: Exception) -> tuple[str, str, str | None]:
    if isinstance(exc, ApiError):
        return exc.message, exc.code, exc.param
    assert isinstance(exc, serializers.ValidationError)
    return str(exc.detail), "parameter_invalid", None


def control_plane_event_receive(*, body: bytes, now: datetime) -> ControlPlaneEvent:
    """Store, apply and answer one delivery. Raises an ApiError (after storing the event as rejected) when
    the body or the envelope is malformed or the event cannot be applied."""
    try:
        parsed = body_parse(body)
    except EnvelopeUnreadable as exc:
        _store({"raw": exc.raw}, status=Status.REJECTED, result=exc.message[:500], received_at=now)
        raise
    try:
        envelope = envelope_validate(parsed)
    except ApiError as exc:
        # Not an event we can read as ours: stored for the operator, not answered.
        _store(parsed, status=Status.REJECTED, result=exc.message[:500], received_at=now)
        raise
    common = {
        "envelope_id": envelope.envelope_id,
        "detail_type": envelope.detail_type,
        "source": envelope.source,
        "received_at": now,
    }
    handler = handler_for(envelope.name)
    if handler is None:
        return _store(parsed, status=Status.IGNORED, result=f"unknown detail-type {envelope.detail_type!r}", **common)

    request = ControlPlaneRequest(
        name=envelope.name,
        detail_type=envelope.detail_type,
        envelope_id=envelope.envelope_id,
        source=envelope.source,
        detail=envelope.detail,
        now=now,
    )
    try:
        with transaction.atomic():
            event = _store(parsed, dedup_key=envelope.envelope_id or None, status=Status.APPLIED, **common)
            outcome = handler(request)
            event.status = outcome.status
            event.result = outcome.result[:500]
            event.customer = outcome.customer
            event.details = outcome.details
            event.save(update_fields=["status", "result", "customer", "details"])
            answer_queue(
                event=event,
                request_name=envelope.name,
                now=now,
                failure=outcome.failure,
                failure_code=outcome.failure_code,
            )
        return event
    except IntegrityError:
        if not envelope.envelope_id or not ControlPlaneEvent.objects.filter(dedup_key=envelope.envelope_id).exists():
            raise
        # A redelivery of an event already applied (and answered): record it, change nothing.
        return _store(parsed, status=Status.DUPLICATE, result="already received with this id", **common)
    except (ApiError, serializers.ValidationError) as exc:
        message, code, param = _error_of(exc)
        with transaction.atomic():
            event = _store(
                parsed,
                status=Status.REJECTED,
                result=message[:500],
                details={"error": {"code": code, "message": message, "param": param}},
                **common,
            )
            answer_queue(event=event, request_name=envelope.name, now=now, failure=message, failure_code=code)
        logger.warning("control-plane event %s rejected: %s", envelope.detail_type, message)
        raise
