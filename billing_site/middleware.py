from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from billing_site.errors import error_response
from billing_site.logging import request_id_var

logger = logging.getLogger("billing.request")

# An incoming X-Request-Id is kept only when it is short and plain, so it cannot inject into log lines.
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{8,64}$")


class RequestIdMiddleware:
    """Gives every request an id, puts it on every log line of the request and in the response header."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get("X-Request-Id", "")
        request_id = incoming if _SAFE_REQUEST_ID.match(incoming) else f"req_{uuid.uuid4().hex}"
        request.request_id = request_id  # type: ignore[attr-defined]
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        try:
            response = self.get_response(request)
            response["X-Request-Id"] = request_id
            logger.info(
                "%s %s %s",
                request.method,
                request.path,
                response.status_code,
                extra={
                    "method": request.method,
                    "path": request.path,
                    "status": response.status_code,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                },
            )
            return response
        finally:
            request_id_var.reset(token)


class BodySizeLimitMiddleware:
    """413 for bodies over MAX_REQUEST_BODY_BYTES, decided from Content-Length before anything is read."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        raw = request.META.get("CONTENT_LENGTH") or "0"
        try:
            length = int(raw)
        except ValueError:
            return error_response(
                400, type="invalid_request", code="bad_content_length", message="Content-Length is not a number."
            )
        limit = settings.MAX_REQUEST_BODY_BYTES
        if length > limit:
            return error_response(
                413,
                type="invalid_request",
                code="body_too_large",
                message=f"The request body is {length} bytes; the limit is {limit} bytes.",
            )
        return self.get_response(request)


class PublicOriginMiddleware:
    """Under DEBUG without PUBLIC_BASE_URL, the URLs we hand out (hosted invoices, portal sessions) use the
    origin of the request being served (`billing_site.public_urls`). With the setting, it does nothing."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if settings.PUBLIC_BASE_URL or not settings.DEBUG:
            return self.get_response(request)
        from billing_site.public_urls import request_origin

        token = request_origin.set(f"{request.scheme}://{request.get_host()}")
        try:
            return self.get_response(request)
        finally:
            request_origin.reset(token)
