"""Serializer fields shared by every app's API."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from billing_site.countries import is_country
from billing_site.money import decimal_to_str, is_currency

METADATA_MAX_KEYS = 50
METADATA_MAX_KEY_LENGTH = 40
METADATA_MAX_VALUE_LENGTH = 500


@extend_schema_field({"type": "object", "additionalProperties": {"type": "string"}})
class MetadataField(serializers.Field):
    """A flat object of string keys to string values (numbers and booleans are stored as strings).

    On update a key set to null or "" is removed; see `metadata_merge`.
    """

    messages = {
        "not_object": "Must be a JSON object of string keys to string values.",
        "too_many": f"At most {METADATA_MAX_KEYS} keys.",
        "key": f"Keys must be 1-{METADATA_MAX_KEY_LENGTH} characters.",
        "value": f"Values must be strings of at most {METADATA_MAX_VALUE_LENGTH} characters (or null to remove).",
    }

    def fail(self, key: str, **kwargs: Any) -> None:  # type: ignore[override]
        if key not in self.messages:  # DRF's own keys: "required", "null"
            super().fail(key, **kwargs)
        raise serializers.ValidationError(self.messages[key], code="invalid")

    def to_internal_value(self, data: Any) -> dict[str, str | None]:
        if not isinstance(data, dict):
            self.fail("not_object")
        if len(data) > METADATA_MAX_KEYS:
            self.fail("too_many")
        cleaned: dict[str, str | None] = {}
        for key, value in data.items():
            if not isinstance(key, str) or not 1 <= len(key) <= METADATA_MAX_KEY_LENGTH:
                self.fail("key")
            if value is None:
                cleaned[key] = None
            elif isinstance(value, bool):
                cleaned[key] = "true" if value else "false"
            elif isinstance(value, (str, int)) or (hasattr(value, "as_tuple")):
                text = str(value)
                if len(text) > METADATA_MAX_VALUE_LENGTH:
                    self.fail("value")
                cleaned[key] = text
            else:
                self.fail("value")
        return cleaned

    def to_representation(self, value: Any) -> dict[str, str]:
        return dict(value or {})


def metadata_merge(current: dict[str, str], changes: dict[str, str | None]) -> dict[str, str]:
    merged = dict(current)
    for key, value in changes.items():
        if value is None or value == "":
            merged.pop(key, None)
        else:
            merged[key] = value
    if len(merged) > METADATA_MAX_KEYS:
        raise serializers.ValidationError({"metadata": [f"At most {METADATA_MAX_KEYS} keys."]})
    return merged


def metadata_clean(values: dict[str, str | None]) -> dict[str, str]:
    return {key: value for key, value in values.items() if value not in (None, "")}


class CurrencyField(serializers.CharField):
    """An ISO 4217 code, any case on input, lower case on output."""

    default_error_messages = {"unknown_currency": "'{value}' is not an ISO 4217 currency code."}

    def to_internal_value(self, data: Any) -> str:
        value = super().to_internal_value(data).strip().lower()
        if value and not is_currency(value):
            self.fail("unknown_currency", value=value)
        return value


class CountryField(serializers.CharField):
    default_error_messages = {"unknown_country": "'{value}' is not an ISO 3166-1 alpha-2 country code."}

    def to_internal_value(self, data: Any) -> str:
        value = super().to_internal_value(data).strip().upper()
        if value and not is_country(value):
            self.fail("unknown_country", value=value)
        return value


class NullableCharField(serializers.CharField):
    """Outputs "" as null, so clients see "not set" rather than an empty string (declared nullable)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("allow_null", True)
        super().__init__(**kwargs)

    def to_representation(self, value: Any) -> str | None:
        return value or None


@extend_schema_field({"type": "string", "format": "decimal", "nullable": True})
class DecimalString(serializers.Field):
    """A decimal rendered as a plain string ("0.04", "1500"), never a float or exponent form."""

    def to_representation(self, value: Any) -> str | None:
        return None if value is None else decimal_to_str(value)


class _NullMeansBlank:
    """Input side of NullableCharField: what GET answers as null may be sent back as null, and means
    "not set" (stored as ""), exactly like an empty string."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("allow_null", True)
        kwargs.setdefault("allow_blank", True)
        super().__init__(**kwargs)  # type: ignore[call-arg]

    def validate_empty_values(self, data: Any) -> tuple[bool, Any]:
        if data is None:
            return True, ""
        return super().validate_empty_values(data)  # type: ignore[misc]


class OptionalCharField(_NullMeansBlank, serializers.CharField):
    pass


class OptionalEmailField(_NullMeansBlank, serializers.EmailField):
    pass


class OptionalCurrencyField(_NullMeansBlank, CurrencyField):
    pass


class OptionalCountryField(_NullMeansBlank, CountryField):
    pass
