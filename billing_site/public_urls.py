"""The absolute URLs we hand out to end customers (hosted invoice pages, portal sessions).

The origin is PUBLIC_BASE_URL (required without DEBUG). Under DEBUG without it, the origin of the request
being served (set by `PublicOriginMiddleware`), else http://127.0.0.1:8000 (`make run`'s default).
"""

from __future__ import annotations

from contextvars import ContextVar

from django.conf import settings

DEVELOPMENT_ORIGIN = "http://127.0.0.1:8000"
request_origin: ContextVar[str | None] = ContextVar("request_origin", default=None)


def public_base_url() -> str:
    return settings.PUBLIC_BASE_URL or request_origin.get() or DEVELOPMENT_ORIGIN


def public_url(path: str) -> str:
    """`path` (starting with "/") on the public origin."""
    return f"{public_base_url()}{path}"
