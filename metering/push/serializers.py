from __future__ import annotations

from typing import Any

from rest_framework import serializers

from billing_site.api import InputSerializer
from billing_site.fields import NullableCharField
from billing_site.money import decimal_to_str
from metering.push.mappings import PROVIDERS
from metering.push.models import MeterMapping, UsagePush


class MeterMappingCreateInput(InputSerializer):
    meter = serializers.CharField(max_length=40, help_text="mtr_…")
    event_name = serializers.CharField(max_length=100, help_text="the provider meter's event_name")
    customer = serializers.CharField(
        max_length=40, required=False, allow_null=True, help_text="cus_…: an override for one customer"
    )
    provider = serializers.ChoiceField(choices=PROVIDERS, required=False)


class MeterMappingUpdateInput(InputSerializer):
    event_name = serializers.CharField(max_length=100)


class MeterMappingOutput(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.SerializerMethodField()
    meter = serializers.CharField(source="meter_id")
    customer = serializers.CharField(source="customer_id", allow_null=True)
    provider = serializers.CharField()
    event_name = serializers.CharField()
    provider_meter_id = NullableCharField()
    resolve_error = NullableCharField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    def get_object(self, obj: MeterMapping) -> str:
        return "meter_mapping"


class UsagePushErrorOutput(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()


class UsagePushOutput(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.SerializerMethodField()
    customer = serializers.CharField(source="customer_id")
    meter = serializers.CharField(source="meter_id")
    kind = serializers.CharField()
    status = serializers.CharField()
    slice_start = serializers.DateTimeField()
    slice_end = serializers.DateTimeField()
    value = serializers.SerializerMethodField(help_text="decimal string; negative for a cancel")
    identifier = serializers.CharField()
    event_name = NullableCharField()
    cancels = serializers.CharField(source="cancels_id", allow_null=True)
    attempts = serializers.IntegerField()
    settled_by = NullableCharField()
    error = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()
    sent_at = serializers.DateTimeField(allow_null=True)

    def get_object(self, obj: UsagePush) -> str:
        return "usage_push"

    def get_value(self, obj: UsagePush) -> str:
        return decimal_to_str(obj.value)

    def get_error(self, obj: UsagePush) -> dict[str, Any] | None:
        if not obj.error_code:
            return None
        return {"code": obj.error_code, "message": obj.error_message}
