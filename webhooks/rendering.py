"""How an event's object is rendered in webhook payloads and in `GET /events`: by the same Output
serializer the REST API uses for it.

This app sits below every app that owns an object, so it cannot import their serializers. Each app
registers a renderer for its object types from its `AppConfig.ready()`:

    renderer_register("invoice", queryset_renderer(lambda: Invoice.objects.prefetch_related("lines"),
                                                   lambda invoice: InvoiceOutput(invoice_data(invoice)).data))

A renderer takes a list of object ids and returns `{id: rendered object}` for those that still exist, in
one query, so a page of 100 events costs one query per object type, not one per event. An object type
with no renderer, or an object that no longer exists, falls back to the data stored with the event.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from django.db.models import Model, QuerySet

if TYPE_CHECKING:
    from webhooks.models import BillingEvent

logger = logging.getLogger("billing.webhooks")

Renderer = Callable[[list[str]], dict[str, dict[str, Any]]]

_RENDERERS: dict[str, Renderer | None] = {}


def renderer_register(object_type: str, renderer: Renderer | None) -> None:
    """Register (or replace: a second `ready()` in some test runners calls this again) the renderer of an
    object type. `None` declares an object type whose events carry their stored data as the object (an
    endpoint may subscribe to an object type only once it is declared, so a typo is refused)."""
    _RENDERERS[object_type] = renderer


def registered_object_types() -> frozenset[str]:
    return frozenset(_RENDERERS)


def queryset_renderer(queryset: Callable[[], QuerySet], render: Callable[[Any], dict[str, Any]]) -> Renderer:
    """A renderer from a queryset factory (with the select/prefetch its serializer needs) and a function
    rendering one row (usually `lambda row: SomeOutput(row).data`)."""

    def renderer(ids: list[str]) -> dict[str, dict[str, Any]]:
        rows: Iterable[Model] = queryset().filter(pk__in=ids)
        return {str(row.pk): dict(render(row)) for row in rows}

    return renderer


def event_objects_render(events: list[BillingEvent]) -> dict[str, dict[str, Any]]:
    """`{event id: data.object}` for these events: rendered by the registered renderer, one call per object
    type, else the data stored with the event."""
    by_type: dict[str, set[str]] = defaultdict(set)
    for event in events:
        if _RENDERERS.get(event.object_type) is not None:
            by_type[event.object_type].add(event.object_id)
    rendered: dict[tuple[str, str], dict[str, Any]] = {}
    for object_type, ids in by_type.items():
        renderer = _RENDERERS[object_type]
        assert renderer is not None
        for object_id, body in renderer(sorted(ids)).items():
            rendered[(object_type, object_id)] = body
    out: dict[str, dict[str, Any]] = {}
    for event in events:
        out[event.id] = rendered.get((event.object_type, event.object_id), event.data)
    return out


def envelope(event: BillingEvent, obj: dict[str, Any]) -> dict[str, Any]:
    """The event as a consumer sees it, in a webhook body and in `GET /events`."""
    return {
        "id": event.id,
        "object": "event",
        "type": event.type,
        "created": event.created_at,
        "customer": event.customer_id or None,
        "data": {"object": obj, "previous_attributes": event.previous_attributes},
    }
