"""CSV exports, streamed: rows leave as they are read, so an export of any size takes constant memory.

Apps build the rows (a queryset's `.values_list(...).iterator(chunk_size=...)`, one database cursor, no
row limit) and hand them here. Each row is written with the csv module into a one-line buffer and sent:
nothing accumulates. Money columns are integers in minor units beside a `currency` column, with a
formatted column for people (`format_money`).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.http import StreamingHttpResponse

from billing_site.money import decimal_to_str, format_amount

CHUNK_SIZE = 2000


class _Line:
    """A file-like object whose write() returns what it was given (csv.writer writes one row per call)."""

    def write(self, value: str) -> str:
        return value


def cell(value: Any) -> Any:
    """How a value is written: UTC times in RFC 3339, decimals plain, None empty."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, Decimal):
        return decimal_to_str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def format_money(amount: int | None, currency: str) -> str:
    return "" if amount is None or not currency else format_amount(amount, currency)


def csv_rows(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Iterator[str]:
    writer = csv.writer(_Line(), lineterminator="\r\n")
    yield writer.writerow(header)
    for row in rows:
        yield writer.writerow([cell(value) for value in row])


def csv_response(filename: str, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> StreamingHttpResponse:
    response = StreamingHttpResponse(csv_rows(header, rows), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "no-store"
    return response


class CsvExportMixin:
    """For ApiViews that answer CSV: whatever `Accept` says (text/csv included), errors still render as
    the JSON envelope instead of a 406."""

    def perform_content_negotiation(self, request: Any, force: bool = False) -> Any:
        return super().perform_content_negotiation(request, force=True)  # type: ignore[misc]
