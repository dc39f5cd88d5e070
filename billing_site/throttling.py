"""Per-caller rate limiting (an API key, or a JWT's subject): a fixed-window counter in the cache (Redis in production).

A fixed window is one INCR per request, where DRF's sliding-window throttle keeps and rewrites the list
of every request's timestamp: at thousands of requests a minute that list is the cost. Bursts at a
window's edge can reach twice the rate for an instant, which is acceptable for protecting the service.
"""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.core.cache import cache
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle


class ApiKeyRateThrottle(BaseThrottle):
    def __init__(self) -> None:
        self.wait_seconds: float | None = None

    def allow_request(self, request: Request, view: Any) -> bool:
        limit, period = settings.API_RATE_LIMIT
        principal_key = getattr(request.auth, "principal_key", None)
        if not limit or principal_key is None:
            return True
        now = time.time()
        window = int(now // period)
        key = f"ratelimit:{principal_key}:{window}"
        cache.add(key, 0, timeout=period + 1)
        try:
            count = cache.incr(key)
        except ValueError:  # expired between add and incr: this request opens the window
            cache.add(key, 1, timeout=period + 1)
            count = 1
        if count <= limit:
            return True
        self.wait_seconds = (window + 1) * period - now
        return False

    def wait(self) -> float | None:
        return self.wait_seconds
