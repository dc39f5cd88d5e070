"""FilterSet pieces shared by every app's `filters.py`."""

from __future__ import annotations

from typing import Any

import django_filters
from django.core.exceptions import ValidationError

from billing_site.datetimes import TimestampOutOfRange, to_utc

# "true"/"false" only: django-filter's BooleanFilter silently ignores a value it cannot read ("yes", "-1"),
# which would turn `?active=yes` into "all rows" instead of a 400.
_BOOLEAN_CHOICES = [("true", "true"), ("false", "false")]


def boolean_filter(field_name: str, **kwargs: Any) -> django_filters.TypedChoiceFilter:
    return django_filters.TypedChoiceFilter(
        field_name=field_name, choices=_BOOLEAN_CHOICES, coerce=lambda value: value == "true", **kwargs
    )


class _UtcDateTimeField(django_filters.fields.IsoDateTimeField):
    """ISO 8601 with an offset, converted to UTC here: an offset that carries the value past year 9999 is a
    400 naming the parameter, not an OverflowError in the query."""

    def to_python(self, value: Any) -> Any:
        parsed = super().to_python(value)
        if parsed is None:
            return None
        try:
            return to_utc(parsed)
        except TimestampOutOfRange:
            raise ValidationError("The timestamp is out of range once converted to UTC.", code="invalid") from None


class UtcDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = _UtcDateTimeField
