"""Read helpers shared by every app's selectors."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import django_filters
from django.db.models import QuerySet
from rest_framework.exceptions import ValidationError

# Query parameters every list endpoint takes besides its filters.
PAGINATION_PARAMS = frozenset({"limit", "cursor"})


def apply_filters(
    filterset_class: type[django_filters.FilterSet], params: Mapping[str, Any], queryset: QuerySet
) -> QuerySet:
    """Filter through a FilterSet; a bad value or an unknown parameter is a 400 naming it."""
    unknown = [key for key in params if key not in filterset_class.base_filters and key not in PAGINATION_PARAMS]
    if unknown:
        raise ValidationError({key: ["Unknown query parameter."] for key in unknown})
    filterset = filterset_class(params, queryset=queryset)
    if not filterset.is_valid():
        raise ValidationError(filterset.errors)
    return filterset.qs
