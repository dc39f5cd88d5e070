from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from billing_site.api import InputSerializer
from billing_site.fields import MetadataField
from metering.models import Meter

MAX_FILTER_KEYS = 20
MAX_FILTER_VALUES = 100


@extend_schema_field({"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}})
class MeterFiltersField(serializers.Field):
    """`{"region": ["eu", "us"]}`: a dimension name to the list of values that count."""

    def to_internal_value(self, data: Any) -> dict[str, list[str]]:
        if not isinstance(data, dict):
            raise serializers.ValidationError("Must be an object of dimension name to a list of allowed values.")
        if len(data) > MAX_FILTER_KEYS:
            raise serializers.ValidationError(f"At most {MAX_FILTER_KEYS} dimensions.")
        cleaned: dict[str, list[str]] = {}
        for key, values in data.items():
            if not isinstance(key, str) or not 1 <= len(key) <= 100:
                raise serializers.ValidationError("Dimension names are 1-100 characters.")
            if not isinstance(values, list) or not values or len(values) > MAX_FILTER_VALUES:
                raise serializers.ValidationError(f"'{key}' needs a list of 1-{MAX_FILTER_VALUES} allowed values.")
            if any(isinstance(v, (dict, list)) or v is None for v in values):
                raise serializers.ValidationError(f"'{key}': allowed values are strings, numbers or booleans.")
            cleaned[key] = sorted({str(v).lower() if isinstance(v, bool) else str(v) for v in values})
        return cleaned

    def to_representation(self, value: Any) -> dict[str, list[str]]:
        return dict(value or {})


class MeterCreateInput(InputSerializer):
    code = serializers.SlugField(max_length=100)
    name = serializers.CharField(max_length=255)
    aggregation = serializers.ChoiceField(choices=Meter.Aggregation.choices)
    unique_key = serializers.CharField(max_length=100, required=False, allow_blank=True, allow_null=True)
    filters = MeterFiltersField(required=False)
    description = serializers.CharField(required=False, allow_blank=True)
    active = serializers.BooleanField(required=False)
    metadata = MetadataField(required=False)

    def validate_unique_key(self, value: str | None) -> str:
        return value or ""


class MeterUpdateInput(MeterCreateInput):
    """PUT takes every field of create (missing optional fields reset); PATCH takes any subset."""


class MeterOutput(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.SerializerMethodField()
    code = serializers.CharField()
    name = serializers.CharField()
    description = serializers.CharField()
    aggregation = serializers.CharField()
    unique_key = serializers.SerializerMethodField()
    filters = MeterFiltersField()
    active = serializers.BooleanField()
    metadata = MetadataField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    def get_object(self, obj: Meter) -> str:
        return "meter"

    def get_unique_key(self, obj: Meter) -> str | None:
        return obj.unique_key or None


# --- Schema-only serializers for ingestion (the fast path validates by hand, in metering/ingest.py) ---


class EventInput(serializers.Serializer):
    customer = serializers.CharField(required=False, help_text="cus_… (or give external_id)")
    external_id = serializers.CharField(required=False, help_text="the customer's external_id")
    meter = serializers.CharField(help_text="the meter's code")
    value = serializers.DecimalField(max_digits=38, decimal_places=12, required=False, help_text="default 1")
    timestamp = serializers.CharField(required=False, help_text="RFC 3339 or epoch milliseconds; default now")
    idempotency_key = serializers.CharField(required=False, max_length=255)
    dimensions = serializers.DictField(required=False)


class EventBatchInput(serializers.Serializer):
    events = EventInput(many=True, help_text="up to 10,000 events; or send one event object on its own")


class BillingEventInput(serializers.Serializer):
    TenantID = serializers.CharField()
    ProductCode = serializers.CharField()
    Quantity = serializers.DecimalField(max_digits=38, decimal_places=12)
    Timestamp = serializers.IntegerField(help_text="epoch milliseconds")
    IdempotencyKey = serializers.CharField(required=False)


class EventErrorOutput(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    param = serializers.CharField(allow_null=True)


class EventResultOutput(serializers.Serializer):
    index = serializers.IntegerField()
    status = serializers.ChoiceField(choices=["created", "duplicate", "rejected"])
    id = serializers.CharField(allow_null=True)
    error = EventErrorOutput(allow_null=True)


class IngestOutput(serializers.Serializer):
    created = serializers.IntegerField()
    duplicates = serializers.IntegerField()
    rejected = serializers.IntegerField()
    results = EventResultOutput(many=True)
