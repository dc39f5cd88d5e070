"""One reader of client timestamps for the whole API: RFC 3339 with an offset, converted to UTC.

An offset can carry a valid local time out of the range of `datetime` once converted to UTC
(`9999-12-31T23:59:59.999999-23:59` is year 10000 in UTC): that is the client's fault and a 400 naming
the field, never an OverflowError. Filters (billing_site.filters.utc_datetime_filter), event bodies
(metering.ingest) and usage ranges (metering.serializers) all convert through `to_utc`.
"""

from __future__ import annotations

from datetime import UTC, datetime


class TimestampOutOfRange(ValueError):
    pass


def to_utc(value: datetime) -> datetime:
    """An aware datetime in UTC, or TimestampOutOfRange when UTC cannot represent it."""
    try:
        return value.astimezone(UTC)
    except (OverflowError, OSError, ValueError):
        raise TimestampOutOfRange("the timestamp is out of range once converted to UTC") from None


def parse_utc(raw: str) -> datetime:
    """RFC 3339 (ISO 8601 with an offset) to UTC. Raises ValueError (TimestampOutOfRange included) when
    the text is not one, has no offset, or falls outside what UTC can represent."""
    parsed = datetime.fromisoformat(raw)
    if parsed.tzinfo is None:
        raise ValueError("the timestamp needs a UTC offset (e.g. a trailing Z)")
    return to_utc(parsed)
