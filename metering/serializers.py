from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from billing_site.api import InputSerializer
from billing_site.datetimes import TimestampOutOfRange, to_utc
from billing_site.errors import InvalidRequest
from billing_site.fields import MetadataField
from billing_site.money import decimal_to_str
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


# --- Usage queries and cancellation ---------------------------------------------------------------

MAX_USAGE_RANGE = timedelta(days=366)
MAX_CANCEL = 10_000
_EPOCH_MS = re.compile(r"-?\d{1,16}")
_SPACED_OFFSET = re.compile(r" (\d\d:\d\d)$")


def parse_usage_time(raw: str, param: str) -> datetime:
    """RFC 3339 with an offset, or epoch milliseconds. A '+' sent unencoded in a query string arrives
    as a space; that one case is read as the '+' it was."""
    value = raw.strip()
    if _EPOCH_MS.fullmatch(value):
        seconds, millis = divmod(int(value), 1000)
        try:
            return datetime.fromtimestamp(seconds, tz=UTC) + timedelta(milliseconds=millis)
        except (OverflowError, OSError, ValueError):
            raise serializers.ValidationError(f"{param} is out of range.", code="parameter_invalid") from None
    value = _SPACED_OFFSET.sub(r"+\1", value)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise serializers.ValidationError(
            f"{param} must be RFC 3339 (e.g. 2026-01-31T00:00:00Z) or epoch milliseconds.", code="parameter_invalid"
        ) from None
    if parsed.tzinfo is None:
        raise serializers.ValidationError(f"{param} needs a UTC offset (e.g. a trailing Z).", code="parameter_invalid")
    try:
        return to_utc(parsed)
    except TimestampOutOfRange:
        raise serializers.ValidationError(
            f"{param} is out of range once converted to UTC.", code="parameter_invalid"
        ) from None


def encode_usage_cursor(start: datetime, group: dict[str, str | None]) -> str:
    """Opaque to clients: the start and group of the last bucket of a page."""
    payload = orjson.dumps([start.isoformat(), next(iter(group.values()), None)])
    return base64.urlsafe_b64encode(payload).decode().rstrip("=")


def decode_usage_cursor(cursor: str, group_by: str | None) -> tuple[datetime, dict[str, str | None]]:
    try:
        payload = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        start = to_utc(datetime.fromisoformat(payload[0]))
        group = payload[1]
        if start.tzinfo is None or not (group is None or isinstance(group, str)) or len(payload) != 2:
            raise ValueError(cursor)
    except (ValueError, TypeError, IndexError, KeyError, binascii.Error, orjson.JSONDecodeError):
        raise serializers.ValidationError("The cursor is not valid.", code="invalid_cursor") from None
    return start.astimezone(UTC), {group_by: group} if group_by else {}


MAX_USAGE_FILTERS = 20
_FILTER_PARAM = re.compile(r"filters\[([^\[\]]{1,100})\]")


def usage_filters_from_query(params: Any) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """Split `?filters[region]=eu&filters[region]=us` (one dimension per bracket, repeated for several
    allowed values) from the other query parameters. A malformed one (`filters`, `filters[]`,
    `filters[a][b]`, an empty value) is a 400 naming it."""
    filters: dict[str, list[str]] = {}
    rest: dict[str, Any] = {}
    for name in params:
        if not name.startswith("filters"):
            rest[name] = params.get(name)
            continue
        match = _FILTER_PARAM.fullmatch(name)
        if match is None:
            raise InvalidRequest(
                f"Unknown filter parameter {name!r}: name one dimension, as filters[region]=eu.",
                param=name,
                code="unknown_filter",
            )
        values = params.getlist(name)
        if any(not value or len(value) > 500 for value in values):
            raise InvalidRequest(
                f"{name} needs a dimension value of 1-500 characters.", param=name, code="parameter_invalid"
            )
        filters[match.group(1)] = values
    if len(filters) > MAX_USAGE_FILTERS:
        raise InvalidRequest(
            f"At most {MAX_USAGE_FILTERS} dimension filters.", param="filters", code="parameter_invalid"
        )
    return filters, rest


class UsageQueryInput(InputSerializer):
    """The query string of GET /usage/{meter_id}."""

    customer = serializers.CharField(required=False, max_length=255, help_text="cus_… (or give external_id)")
    external_id = serializers.CharField(required=False, max_length=255)
    start = serializers.CharField(help_text="RFC 3339 or epoch milliseconds; included")
    end = serializers.CharField(help_text="RFC 3339 or epoch milliseconds; excluded")
    window = serializers.ChoiceField(choices=["hour", "day", "none"], required=False, default="none")
    group_by = serializers.CharField(required=False, max_length=100, help_text="one dimension name")
    limit = serializers.IntegerField(required=False, min_value=1, max_value=100, default=20)
    cursor = serializers.CharField(required=False, max_length=2000)

    def validate_start(self, value: str) -> datetime:
        return parse_usage_time(value, "start")

    def validate_end(self, value: str) -> datetime:
        return parse_usage_time(value, "end")

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        if ("customer" in data) == ("external_id" in data):
            code = "parameter_invalid" if "customer" in data else "required"
            message = "Give customer (an id) or external_id, exactly one."
            raise serializers.ValidationError({"customer": [message]}, code)
        if data["start"] >= data["end"]:
            raise serializers.ValidationError({"end": ["end must be after start."]})
        if data["end"] - data["start"] > MAX_USAGE_RANGE:
            raise serializers.ValidationError({"end": [f"The period can span at most {MAX_USAGE_RANGE.days} days."]})
        if "cursor" in data:
            try:
                data["cursor"] = decode_usage_cursor(data["cursor"], data.get("group_by"))
            except serializers.ValidationError as exc:
                raise serializers.ValidationError({"cursor": exc.detail}) from None
        return data


class UsageBucketOutput(serializers.Serializer):
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    value = serializers.SerializerMethodField(help_text="a decimal string")
    event_count = serializers.IntegerField()
    group = serializers.DictField(child=serializers.CharField(allow_null=True))

    def get_value(self, obj: Any) -> str:
        return decimal_to_str(obj.value)


class UsageOutput(serializers.Serializer):
    meter = serializers.CharField()
    customer = serializers.CharField()
    aggregation = serializers.CharField()
    data = UsageBucketOutput(many=True)
    has_more = serializers.BooleanField()
    next_cursor = serializers.CharField(allow_null=True)


class UsageCancelInput(InputSerializer):
    """`{"event_ids": [...], "reason"}` or `{"customer" | "external_id", "idempotency_keys": [...], "reason"}`."""

    event_ids = serializers.ListField(
        child=serializers.CharField(max_length=100), allow_empty=False, max_length=MAX_CANCEL, required=False
    )
    customer = serializers.CharField(required=False, max_length=255)
    external_id = serializers.CharField(required=False, max_length=255)
    idempotency_keys = serializers.ListField(
        child=serializers.CharField(max_length=255, trim_whitespace=False),
        allow_empty=False,
        max_length=MAX_CANCEL,
        required=False,
    )
    reason = serializers.CharField(max_length=500)

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        by_ids, by_keys = "event_ids" in data, "idempotency_keys" in data
        if by_ids == by_keys:
            raise serializers.ValidationError(
                {"event_ids": ["Give event_ids, or customer and idempotency_keys (exactly one of the two)."]},
                "required" if not by_ids else "parameter_invalid",
            )
        has_customer = "customer" in data or "external_id" in data
        if by_ids and has_customer:
            name = "customer" if "customer" in data else "external_id"
            raise serializers.ValidationError({name: ["Event ids name their customer; leave customer out."]})
        if by_keys and ("customer" in data) == ("external_id" in data):
            raise serializers.ValidationError(
                {"customer": ["idempotency_keys need customer (an id) or external_id, exactly one."]},
                "required" if not has_customer else "parameter_invalid",
            )
        return data


class UsageCancelResultOutput(serializers.Serializer):
    id = serializers.CharField(required=False, help_text="when canceling by event_ids")
    idempotency_key = serializers.CharField(required=False, help_text="when canceling by idempotency_keys")
    status = serializers.ChoiceField(choices=["canceled", "already_canceled", "not_found"])


class UsageCancelOutput(serializers.Serializer):
    canceled = serializers.IntegerField()
    already_canceled = serializers.IntegerField()
    not_found = serializers.IntegerField()
    results = UsageCancelResultOutput(many=True)


# --- Usage alerts ---------------------------------------------------------------------------------


class AlertCreateInput(InputSerializer):
    customer = serializers.CharField(max_length=64)
    kind = serializers.ChoiceField(choices=["usage", "invoice_amount"], required=False, default="usage")
    meter = serializers.CharField(max_length=64, required=False, allow_null=True)
    threshold = serializers.DecimalField(max_digits=38, decimal_places=12, help_text="a decimal string")
    recurrence = serializers.ChoiceField(choices=["one_time", "recurring"], required=False, default="one_time")
    name = serializers.CharField(max_length=255, required=False, allow_blank=True)
    metadata = MetadataField(required=False)


class AlertUpdateInput(InputSerializer):
    threshold = serializers.DecimalField(max_digits=38, decimal_places=12, required=False)
    recurrence = serializers.ChoiceField(choices=["one_time", "recurring"], required=False)
    active = serializers.BooleanField(required=False)
    name = serializers.CharField(max_length=255, required=False, allow_blank=True)
    metadata = MetadataField(required=False)


class AlertTriggerOutput(serializers.Serializer):
    level = serializers.IntegerField()
    threshold = serializers.SerializerMethodField()
    value = serializers.SerializerMethodField()
    period_start = serializers.DateTimeField()
    period_end = serializers.DateTimeField()
    triggered_at = serializers.DateTimeField()

    def get_threshold(self, obj: Any) -> str:
        return decimal_to_str(obj.threshold)

    def get_value(self, obj: Any) -> str:
        return decimal_to_str(obj.value)


class AlertOutput(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.SerializerMethodField()
    customer = serializers.CharField(source="customer_id")
    kind = serializers.CharField()
    meter = serializers.CharField(source="meter_id", allow_null=True)
    threshold = serializers.SerializerMethodField(help_text="a decimal string (minor units for invoice_amount)")
    recurrence = serializers.CharField()
    active = serializers.BooleanField()
    name = serializers.CharField()
    metadata = MetadataField()
    period_start = serializers.DateTimeField()
    period_end = serializers.DateTimeField()
    triggers = serializers.SerializerMethodField(help_text="the crossings of the current period, lowest first")
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    def get_object(self, obj: Any) -> str:
        return "usage_alert"

    def get_threshold(self, obj: Any) -> str:
        return decimal_to_str(obj.threshold)

    @extend_schema_field(AlertTriggerOutput(many=True))
    def get_triggers(self, obj: Any) -> list[dict[str, Any]]:
        # `current_triggers` is prefetched by the selectors (one query for a whole page).
        rows = [t for t in obj.current_triggers if t.period_start == obj.period_start]
        return AlertTriggerOutput(sorted(rows, key=lambda t: t.level), many=True).data


class ThresholdCheckInput(InputSerializer):
    customer = serializers.CharField(required=False, max_length=255)
    external_id = serializers.CharField(required=False, max_length=255)
    threshold = serializers.DecimalField(max_digits=38, decimal_places=12)

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        if ("customer" in data) == ("external_id" in data):
            raise serializers.ValidationError({"customer": ["Give customer (an id) or external_id, exactly one."]})
        return data


class ThresholdCheckOutput(serializers.Serializer):
    exceeded = serializers.BooleanField(help_text="current_value >= threshold")
    current_value = serializers.SerializerMethodField(help_text="a decimal string")
    period_start = serializers.DateTimeField()
    period_end = serializers.DateTimeField()

    def get_current_value(self, obj: Any) -> str:
        return decimal_to_str(obj["current_value"])


class UsageExportInput(InputSerializer):
    """The query string of GET /exports/usage.csv: one meter's events over [start, end), any customers."""

    meter = serializers.CharField(max_length=255, help_text="mtr_… or the meter's code")
    start = serializers.CharField(help_text="RFC 3339 or epoch milliseconds; included")
    end = serializers.CharField(help_text="RFC 3339 or epoch milliseconds; excluded")
    customer = serializers.CharField(required=False, max_length=255, help_text="cus_…: only this customer")
    include_canceled = serializers.BooleanField(required=False, default=False)

    def validate_start(self, value: str) -> datetime:
        return parse_usage_time(value, "start")

    def validate_end(self, value: str) -> datetime:
        return parse_usage_time(value, "end")

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        if data["start"] >= data["end"]:
            raise serializers.ValidationError({"end": ["end must be after start."]})
        return data
