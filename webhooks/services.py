from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import transaction

from webhooks.models import BillingEvent


class OutboxMisuse(RuntimeError):
    pass


def event_emit(
    *,
    type: str,
    object_type: str,
    object_id: str,
    data: dict[str, Any],
    now: datetime,
    customer_id: str = "",
    previous_attributes: dict[str, Any] | None = None,
) -> BillingEvent:
    """Record that something happened. Must run inside the caller's transaction, so the event commits
    with the change it describes or not at all."""
    connection = transaction.get_connection()
    if not connection.in_atomic_block:
        raise OutboxMisuse(f"event_emit({type}) must be called inside the transaction of the change")
    # One fan-out request per transaction, however many events it writes; a rollback drops it with them.
    if not any(callback is _dispatch_soon for _, callback, _ in connection.run_on_commit):
        transaction.on_commit(_dispatch_soon, robust=True)
    return BillingEvent.objects.create(
        type=type,
        object_type=object_type,
        object_id=object_id,
        customer_id=customer_id,
        data=data,
        previous_attributes=previous_attributes,
        created_at=now,
    )


def object_event_emit(
    *,
    type: str,
    obj: Any,
    data: dict[str, Any],
    now: datetime,
    previous: dict[str, Any] | None = None,
    customer_id: str | None = None,
) -> BillingEvent:
    """`event_emit` for an event about one object, the way every service emits them: the object type is
    the event type's prefix (`invoice.paid` is about an `invoice`), the object id is `obj.id`, and the
    customer is `obj.customer_id` (or the object itself, for a customer)."""
    object_type = type.rsplit(".", 1)[0]
    if customer_id is None:
        customer_id = obj.id if object_type == "customer" else (getattr(obj, "customer_id", None) or "")
    return event_emit(
        type=type,
        object_type=object_type,
        object_id=obj.id,
        customer_id=customer_id,
        data=data,
        previous_attributes=previous,
        now=now,
    )


def _dispatch_soon() -> None:
    """Ask a worker to fan the just-committed events out to webhook endpoints. If the broker is down the
    events wait in the outbox for the `deliver_webhooks` sweep: nothing is lost, only delayed."""
    from webhooks.tasks import dispatch_events

    dispatch_events.delay()
