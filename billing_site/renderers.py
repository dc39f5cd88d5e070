"""JSON in and out without floats.

DRF's stock encoder turns Decimal into float, and the stock parser reads `0.1` as a float: both are wrong
for money. The parser reads JSON numbers with a fraction as Decimal (exactly as written) and refuses
NaN/Infinity; the renderer writes Decimal as a string.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import orjson
from rest_framework import parsers, renderers
from rest_framework.exceptions import ParseError


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


def dumps(data: Any) -> bytes:
    return orjson.dumps(data, default=_default, option=orjson.OPT_UTC_Z | orjson.OPT_NON_STR_KEYS)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a valid JSON number")


# How deeply a request body may nest objects and lists. No body of this API needs more than a handful of
# levels; the limit keeps a body like `[[[[...]]]]` 10,000 levels deep from exhausting the parser's (and
# later the serializers' and the renderer's) recursion: it is a 400, never a RecursionError.
MAX_JSON_DEPTH = 32


class JsonTooDeep(ValueError):
    pass


def _check_depth(value: Any, limit: int) -> None:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            raise JsonTooDeep(f"nested more than {limit} levels deep")
        stack.extend((child, depth + 1) for child in children)


def loads(raw: bytes | str, *, max_depth: int | None = None) -> Any:
    """JSON with exact decimals. Nesting deeper than `max_depth` raises JsonTooDeep (a ValueError), so
    does a body so deep that the parser itself runs out of recursion. Request bodies are read with
    MAX_JSON_DEPTH; what we stored ourselves is read without a limit."""
    try:
        value = json.loads(raw, parse_float=Decimal, parse_constant=_reject_constant)
    except RecursionError:
        raise JsonTooDeep(f"nested more than {max_depth or MAX_JSON_DEPTH} levels deep") from None
    if max_depth is not None:
        _check_depth(value, max_depth)
    return value


class JSONRenderer(renderers.BaseRenderer):
    media_type = "application/json"
    format = "json"
    charset = None

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        if data is None:
            return b""
        return dumps(data)


class JSONParser(parsers.BaseParser):
    media_type = "application/json"
    renderer_class = JSONRenderer

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        raw = stream.read() if stream is not None else b""
        if not raw:
            return {}
        if b"\\u0000" in raw:
            # PostgreSQL text cannot hold NUL; refusing it here keeps it from becoming a 500 later.
            raise ParseError("NUL characters (\\u0000) are not allowed")
        try:
            return loads(raw, max_depth=MAX_JSON_DEPTH)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ParseError(f"malformed JSON ({exc})") from None
