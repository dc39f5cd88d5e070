"""Reading a control-plane delivery: the raw body, the EventBridge envelope, and the fields of `detail`.

The body is parsed here with orjson rather than by DRF, as usage ingestion does: whatever arrives must
end as a stored row or a 4xx, never a 500. orjson refuses what the database could not store (lone
surrogates, nesting past 1024 levels, numbers beyond a double) and we refuse `\\u0000` (PostgreSQL
text cannot hold it) and nesting deeper than `MAX_DEPTH` (no EventBridge event is that deep, and
deeper documents are what make JSON encoders and PostgreSQL's stack give up). Fractional numbers
arrive as floats, exactly as on `POST /events`, so usage values go through ingestion's own checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from billing_site.errors import InvalidRequest

PREFIX = "sbt_aws_"
MAX_DEPTH = 32
MAX_STORED_RAW = 10_000


class EnvelopeUnreadable(InvalidRequest):
    """The body is not a JSON document we can store; `raw` is what is stored instead."""

    def __init__(self, message: str, *, raw: str) -> None:
        super().__init__(message, code="malformed_body")
        self.raw = raw


def _raw_text(raw: bytes) -> str:
    return raw[:MAX_STORED_RAW].decode("utf-8", "replace").replace("\x00", "")


def _depth_exceeds(value: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def body_parse(raw: bytes) -> Any:
    if b"\\u0000" in raw:
        raise EnvelopeUnreadable("NUL characters (\\u0000) are not allowed.", raw=_raw_text(raw))
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise EnvelopeUnreadable(f"The body is not valid JSON ({exc}).", raw=_raw_text(raw)) from None
    if _depth_exceeds(body, MAX_DEPTH):
        raise EnvelopeUnreadable(f"The event is nested deeper than {MAX_DEPTH} levels.", raw=_raw_text(raw))
    return body


@dataclass(frozen=True)
class Envelope:
    detail_type: str
    envelope_id: str
    source: str
    detail: Any

    @property
    def name(self) -> str:
        return self.detail_type.removeprefix(PREFIX)


def _bad(message: str, param: str | None) -> InvalidRequest:
    return InvalidRequest(message, param=param, code="malformed_envelope")


def envelope_validate(body: Any) -> Envelope:
    if not isinstance(body, dict):
        raise _bad("The event must be a JSON object (an EventBridge envelope).", None)
    detail_type = body.get("detail-type", body.get("detailType"))
    if not isinstance(detail_type, str) or not detail_type.strip() or len(detail_type) > 100:
        raise _bad("The envelope needs a 'detail-type' string (at most 100 characters).", "detail-type")
    detail = body.get("detail")
    # ingestUsage may carry a list of usage events; every other event carries one object.
    is_usage = detail_type.strip().removeprefix(PREFIX) == "ingestUsage"
    if not isinstance(detail, dict) and not (is_usage and isinstance(detail, list)):
        raise _bad("The envelope needs a 'detail' object.", "detail")
    envelope_id = body.get("id")
    if envelope_id is not None and (not isinstance(envelope_id, str) or not 1 <= len(envelope_id) <= 255):
        raise _bad("The envelope 'id' must be a string of 1-255 characters.", "id")
    source = body.get("source")
    if source is not None and (not isinstance(source, str) or len(source) > 255):
        raise _bad("The envelope 'source' must be a string of at most 255 characters.", "source")
    return Envelope(detail_type.strip(), envelope_id or "", source or "", detail)


def tenant_of(body: Any) -> str:
    """The tenant id a stored event is filed under (also for rejected ones, as far as it can be read)."""
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, list):
        detail = detail[0] if detail else None
    if not isinstance(detail, dict):
        return ""
    for name in ("tenantId", "tenantID", "tenant_id", "TenantID"):
        value = detail.get(name)
        if isinstance(value, str) and value:
            return value[:255]
    return ""


def detail_string(
    detail: dict[str, Any], *names: str, param: str | None = None, required: bool = False, max_length: int = 255
) -> str:
    """The first of `names` present in `detail`, as a string. Any other type (a number, a boolean) is a
    400 naming the field as sent: a tenant id of 1.5 is a bug of the sender, not a tenant."""
    for name in names:
        value = detail.get(name)
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            raise InvalidRequest(f"detail.{name} must be a string.", param=f"detail.{name}", code="parameter_invalid")
        if len(value) > max_length or not value.isprintable():
            raise InvalidRequest(
                f"detail.{name} must be at most {max_length} printable characters.",
                param=f"detail.{name}",
                code="parameter_invalid",
            )
        return value
    if required:
        raise InvalidRequest(
            f"The event needs detail.{names[0]}.", param=param or f"detail.{names[0]}", code="parameter_missing"
        )
    return ""
