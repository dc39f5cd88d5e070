"""Rate limiting: per caller (an API key, or a JWT's subject), and per client address for requests without
a valid credential. A fixed-window counter in the cache (Redis in production).

A fixed window is one INCR per request, where DRF's sliding-window throttle keeps and rewrites the list
of every request's timestamp: at thousands of requests a minute that list is the cost. Bursts at a
window's edge can reach twice the rate for an instant, which is acceptable for protecting the service.

The limiter fails open: when the cache cannot be reached (Redis down), the request is let through and the
failure is logged (at most once a minute per process), so a cache outage does not make every call a 500.

On Redis a window costs one round trip: a pipelined `INCR` and `EXPIRE ... NX` (the first request of a
window sets its lifetime; a later one finds it set). The same pipeline can read one more key: API-key
authentication reads the key revocation generation there (`billing_site.auth`), so an authenticated
request costs one Redis round trip in all. Without Redis (the local-memory cache of tests and `make
run`) the counter is `add` then `incr`, as atomic as that cache is.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
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


def redis_client() -> Any | None:
    """The raw redis-py client of the default cache when it is Django's Redis cache, else None."""
    backend = caches["default"]
    if isinstance(backend, RedisCache):
        return backend._cache.get_client(write=True)
    return None


def shared_get(key: str) -> Any:
    """A value set by `shared_set`, read the way `window_count(..., read=key)` reads it (raw bytes on Redis)."""
    backend = caches["default"]
    client = redis_client()
    if client is None:
        return backend.get(key)
    return client.get(backend.make_and_validate_key(key))


def shared_set(key: str, value: str) -> None:
    backend = caches["default"]
    client = redis_client()
    if client is None:
        backend.set(key, value, timeout=None)
    else:
        client.set(backend.make_and_validate_key(key), value)


def window_key(key: str, period: int, now: float) -> str:
    return f"ratelimit:{key}:{int(now // period)}"


def window_count_and_read(
    key: str, period: int, now: float, *, read: str | None = None
) -> tuple[int | None, Any, bool]:
    """Count one more in `key`'s window and, if asked, read the cache key `read` (see `shared_get`), in
    one round trip on Redis: (count, value, reachable). When the cache is unreachable: (None, None, False)."""
    backend = caches["default"]
    full_key = window_key(key, period, now)
    try:
        client = redis_client()
        if client is None:
            return _local_count(backend, full_key, period), (backend.get(read) if read else None), True
        pipe = client.pipeline(transaction=False)
        redis_key = backend.make_and_validate_key(full_key)
        pipe.incr(redis_key)
        pipe.expire(redis_key, period + 1, nx=True)  # the window's first request sets its lifetime
        if read:
            pipe.get(backend.make_and_validate_key(read))
        count, _, *value = pipe.execute()
        return int(count), (value[0] if value else None), True
    except Exception as exc:
        _log_cache_down(exc)
        return None, None, False


def window_count(key: str, period: int, now: float) -> int | None:
    """This window's count for `key` after counting one more, or None when the cache is unreachable."""
    return window_count_and_read(key, period, now)[0]


def _local_count(backend: Any, full_key: str, period: int) -> int:
    backend.add(full_key, 0, timeout=period + 1)
    try:
        return backend.incr(full_key)
    except ValueError:  # expired between add and incr: this request opens the window
        backend.add(full_key, 1, timeout=period + 1)
        return 1


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
        counted = getattr(request, "counted_window", None)
        if counted is not None and counted[:2] == (key, period):
            # Counted already, in API-key authentication's round trip (`billing_site.auth`): once a request.
            _, _, count, now = counted
        else:
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
