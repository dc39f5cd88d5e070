"""Rate limiting: per caller (an API key, or a JWT's subject), and per client address for requests without
a valid credential. A fixed-window counter in the cache (Redis in production).

A fixed window is one INCR per request, where DRF's sliding-window throttle keeps and rewrites the list
of every request's timestamp: at thousands of requests a minute that list is the cost. Bursts at a
window's edge can reach twice the rate for an instant, which is acceptable for protecting the service.

The limiter fails open: when the cache cannot be reached (Redis down), the request is let through and the
failure is logged (at most once a minute per process), so a cache outage does not make every call a 500.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from typing import Any

from django.conf import settings
from django.core.cache import cache
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

logger = logging.getLogger("billing.throttling")

_LOG_EVERY_SECONDS = 60.0
_last_logged = 0.0


def _log_cache_down(exc: Exception) -> None:
    global _last_logged
    now = time.monotonic()
    if now - _last_logged >= _LOG_EVERY_SECONDS:
        _last_logged = now
        logger.error("Rate limiter cache unreachable; requests are not rate limited: %s", exc)


def window_count(key: str, period: int, now: float) -> int | None:
    """This window's count for `key` after counting one more, or None when the cache is unreachable."""
    window = int(now // period)
    full_key = f"ratelimit:{key}:{window}"
    try:
        cache.add(full_key, 0, timeout=period + 1)
        try:
            return cache.incr(full_key)
        except ValueError:  # expired between add and incr: this request opens the window
            cache.add(full_key, 1, timeout=period + 1)
            return 1
    except Exception as exc:
        _log_cache_down(exc)
        return None


class _FixedWindowThrottle(BaseThrottle, ABC):
    """A fixed-window counter in the cache; subclasses say the limit and whose requests share a window."""

    def __init__(self) -> None:
        self.wait_seconds: float | None = None

    @abstractmethod
    def rate(self) -> tuple[int, int]:
        """(requests, seconds) of one window."""

    @abstractmethod
    def key(self, request: Request) -> str | None:
        """The cache key of the caller's window; None: not limited."""

    def allow_request(self, request: Request, view: Any) -> bool:
        limit, period = self.rate()
        key = self.key(request)
        if not limit or key is None:
            return True
        now = time.time()
        count = window_count(key, period, now)
        if count is None or count <= limit:
            return True
        self.wait_seconds = (int(now // period) + 1) * period - now
        return False

    def wait(self) -> float | None:
        return self.wait_seconds


class ApiKeyRateThrottle(_FixedWindowThrottle):
    """API_RATE_LIMIT per authenticated principal."""

    def rate(self) -> tuple[int, int]:
        return settings.API_RATE_LIMIT

    def key(self, request: Request) -> str | None:
        return getattr(request.auth, "principal_key", None)


class AnonymousRateThrottle(_FixedWindowThrottle):
    """API_ANON_RATE_LIMIT per client address, for requests with no valid credential (ApiView runs it
    before the 401, so guessing keys is limited too)."""

    def rate(self) -> tuple[int, int]:
        return settings.API_ANON_RATE_LIMIT

    def key(self, request: Request) -> str | None:
        return f"anon:{self.get_ident(request)}"
