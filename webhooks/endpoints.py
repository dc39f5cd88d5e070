"""Every write to webhook endpoints. Each runs in one transaction and emits its outbox event inside it.

URL checks resolve DNS, so they run before the transaction opens (slow I/O never holds a transaction).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction

from billing_site.errors import Conflict, InvalidRequest, NotFound
from billing_site.fields import metadata_clean, metadata_merge
from webhooks import urlsafety
from webhooks.locks import lock_live_endpoint
from webhooks.models import WebhookEndpoint
from webhooks.services import event_emit, object_event_emit
from webhooks.signing import secret_generate

OBJECT_TYPE = "webhook_endpoint"


def endpoint_snapshot(endpoint: WebhookEndpoint) -> dict[str, Any]:
    """The endpoint as events carry it: never the secret."""
    return {
        "id": endpoint.id,
        "url": endpoint.url,
        "description": endpoint.description,
        "enabled_events": endpoint.enabled_events,
        "status": endpoint.status,
        "disabled_reason": endpoint.disabled_reason or None,
        "metadata": endpoint.metadata,
    }


def url_check(url: str) -> None:
    """A 400 naming `url` for anything we would refuse to send to."""
    try:
        urlsafety.url_check(url)
    except urlsafety.UnsafeUrl as exc:
        raise InvalidRequest(exc.message, param="url", code=exc.code) from None


def endpoint_secrets(endpoint: WebhookEndpoint, *, now: datetime) -> list[str]:
    """The secrets that sign a delivery sent at `now`: the current one, and the previous one during the
    overlap after a rotation."""
    live = [endpoint.secret]
    if endpoint.previous_secret and endpoint.previous_secret_expires_at and endpoint.previous_secret_expires_at > now:
        live.append(endpoint.previous_secret)
    return live


def endpoint_create(
    *,
    url: str,
    enabled_events: list[str],
    now: datetime,
    description: str = "",
    metadata: dict[str, str | None] | None = None,
) -> WebhookEndpoint:
    """The new endpoint; its `secret` is on the returned object and is shown to the caller once."""
    url_check(url)
    endpoint = WebhookEndpoint(
        url=url,
        enabled_events=enabled_events,
        description=description,
        metadata=metadata_clean(metadata or {}),
        secret=secret_generate(),
    )
    with transaction.atomic():
        endpoint.save(force_insert=True)
        object_event_emit(type="webhook_endpoint.created", obj=endpoint, data=endpoint_snapshot(endpoint), now=now)
    return endpoint


def _lock(endpoint_id: str) -> WebhookEndpoint:
    endpoint = lock_live_endpoint(endpoint_id)
    if endpoint is None:
        raise NotFound(f"No such webhook endpoint: {endpoint_id}", param="id")
    return endpoint


def endpoint_update(*, endpoint: WebhookEndpoint, changes: dict[str, Any], now: datetime) -> WebhookEndpoint:
    """Apply a PATCH. `metadata` merges; `status: enabled` re-enables an endpoint that was disabled (by hand
    or for failing) and forgets its failures, so it gets the full grace period again."""
    if "url" in changes:
        url_check(changes["url"])
    with transaction.atomic():
        locked = _lock(endpoint.id)
        before = endpoint_snapshot(locked)
        for field in ("url", "description", "enabled_events"):
            if field in changes:
                setattr(locked, field, changes[field])
        if "metadata" in changes:
            locked.metadata = metadata_merge(locked.metadata, changes["metadata"])
        if "status" in changes and changes["status"] != locked.status:
            locked.status = changes["status"]
            if locked.status == WebhookEndpoint.Status.ENABLED:
                locked.disabled_reason = ""
                locked.failing_since = None
            else:
                locked.disabled_reason = "disabled by request"
        after = endpoint_snapshot(locked)
        previous = {key: value for key, value in before.items() if after[key] != value}
        if previous:
            locked.save()
            object_event_emit(
                type="webhook_endpoint.updated", obj=locked, data=endpoint_snapshot(locked), now=now, previous=previous
            )
    return locked


def endpoint_delete(*, endpoint: WebhookEndpoint, now: datetime) -> WebhookEndpoint:
    """Soft delete: nothing more is sent to it; its deliveries and attempts stay as history."""
    with transaction.atomic():
        locked = _lock(endpoint.id)
        locked.deleted_at = now
        locked.save(update_fields=["deleted_at", "updated_at"])
        object_event_emit(type="webhook_endpoint.deleted", obj=locked, data=endpoint_snapshot(locked), now=now)
    return locked


def endpoint_secret_rotate(*, endpoint: WebhookEndpoint, now: datetime) -> WebhookEndpoint:
    """A new secret; the current one keeps signing beside it for `WEBHOOKS_SECRET_OVERLAP` (24 h). Rotating
    again within the overlap drops the oldest: at most two secrets sign at once."""
    with transaction.atomic():
        locked = _lock(endpoint.id)
        locked.previous_secret = locked.secret
        locked.previous_secret_expires_at = now + settings.WEBHOOKS_SECRET_OVERLAP
        locked.secret = secret_generate()
        locked.save(update_fields=["secret", "previous_secret", "previous_secret_expires_at", "updated_at"])
        event_emit(
            type="webhook_endpoint.secret_rotated",
            object_type=OBJECT_TYPE,
            object_id=locked.id,
            data={
                **endpoint_snapshot(locked),
                "previous_secret_expires_at": locked.previous_secret_expires_at.isoformat(),
            },
            now=now,
        )
    return locked


def endpoint_require_enabled(endpoint: WebhookEndpoint) -> None:
    if endpoint.status != WebhookEndpoint.Status.ENABLED:
        raise Conflict(
            f"Webhook endpoint {endpoint.id} is disabled; enable it first (PATCH status=enabled).",
            code="endpoint_disabled",
        )
