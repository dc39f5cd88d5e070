"""The one way a subscription's status changes, and the one shape its events carry.

Every `subscription.*` event carries `subscription_snapshot()`: the subscription exactly as
`GET /subscriptions/{id}` shows it. Every change of status goes through `subscription_status_change()`,
whoever asks for it (the lifecycle, renewal, collection and dunning in payments, the control plane): it
refuses a transition the state machine does not allow, changes the row compare-and-set (or through the
batch writer that holds the renewal's row locks), and emits the event. Ending a subscription
(-> canceled) is `subscriptions.services.lifecycle.subscription_end`, which bills what is still owed and
then comes here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from billing_site.errors import Conflict
from customers.entitlements_cache import entitlements_invalidate
from subscriptions.models import Subscription, SubscriptionItem
from subscriptions.serializers import subscription_data
from subscriptions.services.builder import SubscriptionInvoiceWriter
from webhooks.services import object_event_emit

Status = Subscription.Status
LIVE = (Status.TRIALING, Status.ACTIVE, Status.PAST_DUE, Status.UNPAID)

# The state machine. Canceled is final; everything live can end.
TRANSITIONS: dict[str, frozenset[str]] = {
    Status.TRIALING: frozenset({Status.ACTIVE, Status.CANCELED}),
    Status.ACTIVE: frozenset({Status.PAST_DUE, Status.UNPAID, Status.CANCELED}),
    Status.PAST_DUE: frozenset({Status.ACTIVE, Status.UNPAID, Status.CANCELED}),
    Status.UNPAID: frozenset({Status.ACTIVE, Status.CANCELED}),
    Status.CANCELED: frozenset(),
}


def subscription_snapshot(sub: Subscription, items: list[SubscriptionItem] | None = None) -> dict[str, Any]:
    """The subscription as the API shows it (`GET /subscriptions/{id}`). `items` (all of them, removed ones
    included) saves the query when the caller has them already (renewal reads a batch's items at once)."""
    return subscription_data(sub, items)


def subscription_event_emit(
    sub: Subscription,
    type_: str,
    *,
    now: datetime,
    previous: dict[str, Any] | None = None,
    writer: SubscriptionInvoiceWriter | None = None,
    items: list[SubscriptionItem] | None = None,
) -> None:
    data = subscription_snapshot(sub, items)
    # Every change of a subscription passes here: what its customer is entitled to may have changed
    # (a batch writer invalidates all of its customers at once, in its flush).
    if writer is not None:
        writer.entitlements_changed(sub.customer_id)
        writer.emit(type_, "subscription", sub.id, sub.customer_id, data, previous)
    else:
        entitlements_invalidate([sub.customer_id])
        object_event_emit(type=type_, obj=sub, data=data, now=now, previous=previous)


def transition_check(sub: Subscription, to: str) -> None:
    if to not in TRANSITIONS[sub.status]:
        raise Conflict(
            f"Subscription {sub.id} is {sub.status}; it cannot become {to}.", code="subscription_status_conflict"
        )


def subscription_status_change(
    *,
    subscription: Subscription,
    to: str,
    now: datetime,
    event: str | None = None,
    fields: dict[str, Any] | None = None,
    previous: dict[str, Any] | None = None,
    writer: SubscriptionInvoiceWriter | None = None,
    items: list[SubscriptionItem] | None = None,
) -> Subscription:
    """Move `subscription` to status `to` (with `fields` changed beside it) and emit `event` (default
    `subscription.updated`, or `subscription.canceled` when it ends) with the full snapshot.

    Without `writer` the change is one compare-and-set UPDATE in the caller's transaction: if another
    transaction changed the status first, nothing is written and the answer is a 409. With `writer` (a
    batch that holds the row locks) the change and the event go out in the writer's flush."""
    sub = subscription
    transition_check(sub, to)
    old = sub.status
    changes = {**(fields or {}), "status": to}
    event = event or ("subscription.canceled" if to == Status.CANCELED else "subscription.updated")
    previous = {"status": old, **(previous or {})}
    if writer is not None:
        writer._update(sub, changes)
    else:
        updated = Subscription.objects.filter(pk=sub.pk, status=old).update(**changes, updated_at=now)
        if updated != 1:
            raise Conflict(f"Subscription {sub.id} changed concurrently; retry.", code="subscription_status_conflict")
        for name, value in changes.items():
            setattr(sub, name, value)
        sub.updated_at = now
    subscription_event_emit(sub, event, now=now, previous=previous, writer=writer, items=items)
    return sub
