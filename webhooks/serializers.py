from __future__ import annotations

import re
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from billing_site.api import InputSerializer
from billing_site.fields import MetadataField
from webhooks.models import BillingEvent, WebhookDelivery, WebhookEndpoint
from webhooks.rendering import registered_object_types

_EVENT_TYPE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$")
_PREFIX = re.compile(r"^[a-z][a-z0-9_]*\.\*$")
MAX_EVENT_TYPES = 100


class EnabledEventsField(serializers.ListField):
    """`["*"]`, or event types (`invoice.paid`) and prefixes (`invoice.*`) of known object types: a typo
    would otherwise subscribe to nothing, silently."""

    child = serializers.CharField(max_length=100)

    def to_internal_value(self, data: Any) -> list[str]:
        values = super().to_internal_value(data)
        if not values:
            raise serializers.ValidationError('List at least one event type, or "*".', code="parameter_missing")
        if len(values) > MAX_EVENT_TYPES:
            raise serializers.ValidationError(f"At most {MAX_EVENT_TYPES} event types.")
        known = registered_object_types()
        cleaned: list[str] = []
        for value in values:
            if value != "*" and not (_EVENT_TYPE.match(value) or _PREFIX.match(value)):
                raise serializers.ValidationError(
                    f'{value!r} is not an event type (like invoice.paid), a prefix (like invoice.*), or "*".',
                    code="parameter_invalid",
                )
            noun = value.split(".", 1)[0]
            if value != "*" and noun not in known:
                raise serializers.ValidationError(
                    f"{value!r}: no events are about {noun!r}. Known: {', '.join(sorted(known))}.",
                    code="unknown_event_type",
                )
            if value not in cleaned:
                cleaned.append(value)
        if "*" in cleaned:
            return ["*"]
        return cleaned


class EndpointCreateInput(InputSerializer):
    url = serializers.CharField(max_length=2048)
    enabled_events = EnabledEventsField()
    description = serializers.CharField(max_length=500, required=False, allow_blank=True)
    metadata = MetadataField(required=False)


class EndpointUpdateInput(InputSerializer):
    url = serializers.CharField(max_length=2048, required=False)
    enabled_events = EnabledEventsField(required=False)
    description = serializers.CharField(max_length=500, required=False, allow_blank=True)
    metadata = MetadataField(required=False)
    status = serializers.ChoiceField(choices=WebhookEndpoint.Status.choices, required=False)


class EndpointOutput(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.SerializerMethodField()
    url = serializers.CharField()
    description = serializers.CharField()
    enabled_events = serializers.ListField(child=serializers.CharField())
    status = serializers.CharField()
    disabled_reason = serializers.CharField(allow_null=True)
    metadata = MetadataField()
    previous_secret_expires_at = serializers.SerializerMethodField()
    failing_since = serializers.DateTimeField(allow_null=True)
    last_success_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    def get_object(self, obj: WebhookEndpoint) -> str:
        return "webhook_endpoint"

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_previous_secret_expires_at(self, obj: WebhookEndpoint) -> str | None:
        expires = obj.previous_secret_expires_at
        return serializers.DateTimeField().to_representation(expires) if expires else None

    def to_representation(self, instance: WebhookEndpoint) -> dict[str, Any]:
        data = super().to_representation(instance)
        data["disabled_reason"] = instance.disabled_reason or None
        return data


class EndpointWithSecretOutput(EndpointOutput):
    """Only the create and rotate-secret responses carry the secret."""

    secret = serializers.CharField()


class ResendInput(InputSerializer):
    since = serializers.DateTimeField()


class ResendOutput(serializers.Serializer):
    events = serializers.IntegerField()
    created = serializers.IntegerField()
    requeued = serializers.IntegerField()
    in_progress = serializers.IntegerField()


class AttemptOutput(serializers.Serializer):
    number = serializers.IntegerField()
    started_at = serializers.DateTimeField()
    duration_ms = serializers.IntegerField()
    status_code = serializers.IntegerField(allow_null=True)
    error = serializers.CharField()
    response_body = serializers.CharField()
    succeeded = serializers.BooleanField()
    retryable = serializers.BooleanField()


class DeliveryOutput(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.SerializerMethodField()
    endpoint = serializers.CharField(source="endpoint_id")
    event = serializers.CharField(source="event_id")
    event_type = serializers.CharField(source="event.type")
    event_created = serializers.DateTimeField(source="event.created_at")
    status = serializers.CharField()
    attempt_count = serializers.IntegerField()
    next_attempt_at = serializers.DateTimeField(allow_null=True)
    last_attempt_at = serializers.DateTimeField(allow_null=True)
    last_status_code = serializers.IntegerField(allow_null=True)
    last_error = serializers.CharField()
    succeeded_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()

    def get_object(self, obj: WebhookDelivery) -> str:
        return "webhook_delivery"


class DeliveryDetailOutput(DeliveryOutput):
    attempts = serializers.SerializerMethodField()

    @extend_schema_field(AttemptOutput(many=True))
    def get_attempts(self, obj: WebhookDelivery) -> list[dict[str, Any]]:
        return AttemptOutput(obj.attempts.order_by("number"), many=True).data


class EventDataOutput(serializers.Serializer):
    object = serializers.DictField()
    previous_attributes = serializers.DictField(allow_null=True)


class EventListOutput(serializers.ListSerializer):
    def to_representation(self, data: Any) -> list[dict[str, Any]]:
        from webhooks.selectors import event_envelopes

        return event_envelopes(list(data))


class EventOutput(serializers.Serializer):
    """The event as webhooks deliver it: `data.object` rendered by the object's own API serializer."""

    id = serializers.CharField()
    object = serializers.CharField()
    type = serializers.CharField()
    created = serializers.DateTimeField()
    customer = serializers.CharField(allow_null=True)
    data = EventDataOutput()

    class Meta:
        list_serializer_class = EventListOutput

    def to_representation(self, instance: BillingEvent) -> dict[str, Any]:
        from webhooks.selectors import event_envelopes

        return event_envelopes([instance])[0]
