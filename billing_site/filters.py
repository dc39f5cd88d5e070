"""FilterSet pieces shared by every app's `filters.py`."""

from __future__ import annotations

from typing import Any

import django_filters

# "true"/"false" only: django-filter's BooleanFilter silently ignores a value it cannot read ("yes", "-1"),
# which would turn `?active=yes` into "all rows" instead of a 400.
_BOOLEAN_CHOICES = [("true", "true"), ("false", "false")]


def boolean_filter(field_name: str, **kwargs: Any) -> django_filters.TypedChoiceFilter:
    return django_filters.TypedChoiceFilter(
        field_name=field_name, choices=_BOOLEAN_CHOICES, coerce=lambda value: value == "true", **kwargs
    )
