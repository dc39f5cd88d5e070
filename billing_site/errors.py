"""One error hierarchy and one renderer for every error the service returns.

Every 4xx and 5xx has the same body: `{"error": {"type", "code", "message", "param"}}` (validation errors
add `errors`, the full list; 500s add `request_id`). Services raise the `ApiError` subclasses below;
the DRF exception handler and the Django error views both render through `error_response`.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions as drf_exceptions
from rest_framework.response import Response

from billing_site.logging import request_id_var
from billing_site.money import UnknownCurrency, normalize_currency

logger = logging.getLogger("billing.errors")


class ApiError(Exception):
    status_code = 400
    type = "invalid_request"
    code = "invalid_request"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.param = param
        self.extra = extra or {}


class InvalidRequest(ApiError):
    """Bad input. `param` names the field."""


class NotFound(ApiError):
    status_code = 404
    type = "not_found"
    code = "resource_missing"


class Conflict(ApiError):
    """A duplicate of something unique, an illegal state transition, an idempotency conflict."""

    status_code = 409
    type = "conflict"
    code = "conflict"


class AuthenticationFailed(ApiError):
    status_code = 401
    type = "authentication"
    code = "invalid_api_key"


class PermissionDeniedError(ApiError):
    status_code = 403
    type = "permission"
    code = "missing_scope"


class ServiceUnavailable(ApiError):
    """A dependency we cannot do without for this request is down; the client should retry later."""

    status_code = 503
    type = "api_error"
    code = "service_unavailable"

    def __init__(self, message: str, *, retry_after: int | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class PayloadTooLarge(ApiError):
    status_code = 413
    type = "invalid_request"
    code = "body_too_large"


def envelope(*, type: str, code: str, message: str, param: str | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"type": type, "code": code, "message": message, "param": param}
    body.update(extra)
    return {"error": body}


def error_response(status: int, **kwargs: Any) -> JsonResponse:
    return JsonResponse(envelope(**kwargs), status=status)


# --- DRF validation errors -----------------------------------------------------------------------


def flatten_validation_detail(detail: Any, prefix: str = "") -> list[dict[str, str | None]]:
    """Turn DRF's nested error detail into `[{"param": "address.country", "code", "message"}]`.

    Lists of child errors use `[i]` (`tiers[1].up_to`), dicts use dots, and `non_field_errors` maps to the
    parent path (or None at the top).
    """
    out: list[dict[str, str | None]] = []
    if isinstance(detail, dict):
        for key, value in detail.items():
            if key in ("non_field_errors", "__all__"):
                child = prefix
            elif isinstance(key, int):  # DRF keys a list's child errors by index
                child = f"{prefix}[{key}]"
            else:
                child = f"{prefix}.{key}" if prefix else str(key)
            out.extend(flatten_validation_detail(value, child))
    elif isinstance(detail, list):
        if detail and all(isinstance(item, (dict, list)) or item == {} for item in detail):
            for index, item in enumerate(detail):
                out.extend(flatten_validation_detail(item, f"{prefix}[{index}]"))
        else:
            for item in detail:
                out.extend(flatten_validation_detail(item, prefix))
    else:
        code = getattr(detail, "code", None) or "invalid"
        out.append({"param": prefix or None, "code": str(code), "message": str(detail)})
    return out


_MISSING_CODES = frozenset({"required", "null", "blank"})
# DRF's own generic codes say nothing a client can act on beyond "this value is wrong"; codes our fields
# and validators raise (unknown_currency, immutable, unknown_field, ...) are passed through as they are.
_GENERIC_CODES = frozenset(
    {
        "invalid",
        "invalid_choice",
        "max_length",
        "min_length",
        "max_value",
        "min_value",
        "max_digits",
        "max_decimal_places",
        "max_whole_digits",
        "not_a_list",
        "not_a_dict",
        "empty",
        "date",
        "datetime",
        "make_aware",
        "overflow",
        "max_string_length",
        "does_not_exist",
        "incorrect_type",
        "no_match",
        "unique",
        "format",
        "not_a_number",
    }
)


def _top_level_code(code: str) -> str:
    if code in _MISSING_CODES:
        return "parameter_missing"
    if code in _GENERIC_CODES:
        return "parameter_invalid"
    return code


def validation_error_body(detail: Any) -> dict[str, Any]:
    errors = flatten_validation_detail(detail)
    if not errors:
        errors = [{"param": None, "code": "invalid", "message": "Invalid request."}]
    first = errors[0]
    param = first["param"]
    message = f"{param}: {first['message']}" if param else str(first["message"])
    return envelope(
        type="invalid_request", code=_top_level_code(str(first["code"])), message=message, param=param, errors=errors
    )


# --- The DRF exception handler -------------------------------------------------------------------

_DRF_MAP: dict[type[Exception], tuple[str, str]] = {
    drf_exceptions.ParseError: ("invalid_request", "malformed_body"),
    drf_exceptions.UnsupportedMediaType: ("invalid_request", "unsupported_media_type"),
    drf_exceptions.NotAcceptable: ("invalid_request", "not_acceptable"),
    drf_exceptions.MethodNotAllowed: ("invalid_request", "method_not_allowed"),
    drf_exceptions.NotFound: ("not_found", "resource_missing"),
    drf_exceptions.NotAuthenticated: ("authentication", "missing_api_key"),
    drf_exceptions.AuthenticationFailed: ("authentication", "invalid_api_key"),
    drf_exceptions.PermissionDenied: ("permission", "missing_scope"),
    drf_exceptions.Throttled: ("rate_limited", "rate_limited"),
}


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    if isinstance(exc, ApiError):
        body = envelope(type=exc.type, code=exc.code, message=exc.message, param=exc.param, **exc.extra)
        headers = _auth_headers(exc.status_code)
        if isinstance(exc, ServiceUnavailable) and exc.retry_after is not None:
            headers["Retry-After"] = str(exc.retry_after)
        return Response(body, status=exc.status_code, headers=headers)
    if isinstance(exc, DjangoValidationError):
        exc = drf_exceptions.ValidationError(
            exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        )
    if isinstance(exc, Http404):
        exc = drf_exceptions.NotFound()
    if isinstance(exc, DjangoPermissionDenied):
        exc = drf_exceptions.PermissionDenied()
    if isinstance(exc, RequestDataTooBig):
        exc = PayloadTooLarge("The request body is larger than the configured limit.")
        return api_exception_handler(exc, context)
    if isinstance(exc, drf_exceptions.ValidationError):
        return Response(validation_error_body(exc.detail), status=400)
    if isinstance(exc, drf_exceptions.APIException):
        type_, code = next(
            (mapped for klass, mapped in _DRF_MAP.items() if isinstance(exc, klass)),
            ("invalid_request", str(exc.default_code)),
        )
        message = str(exc.detail) if not isinstance(exc.detail, (dict, list)) else str(exc.default_detail)
        if isinstance(exc, drf_exceptions.ParseError):
            message = f"The request body could not be parsed: {message}"
        headers = _auth_headers(exc.status_code)
        wait = getattr(exc, "wait", None)
        if isinstance(exc, drf_exceptions.Throttled) and wait is not None:
            headers["Retry-After"] = str(int(wait) + 1)
        return Response(envelope(type=type_, code=code, message=message), status=exc.status_code, headers=headers)

    # Anything else is a bug: log it with its stack trace, answer 500 with the request id, and never put
    # the trace in the body.
    request_id = request_id_var.get()
    logger.exception("Unhandled error in API view", extra={"view": type(context.get("view")).__name__})
    return Response(
        envelope(
            type="api_error",
            code="internal_error",
            message="An internal error occurred. Quote the request id when you report it.",
            request_id=request_id,
        ),
        status=500,
    )


def _auth_headers(status: int) -> dict[str, str]:
    return {"WWW-Authenticate": 'Bearer realm="api"'} if status == 401 else {}


# --- Django-level error views (routes no DRF view handles) ----------------------------------------


def handler400(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return error_response(400, type="invalid_request", code="bad_request", message="Bad request.")


def handler403(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return error_response(403, type="permission", code="forbidden", message="Forbidden.")


def handler404(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return error_response(
        404,
        type="not_found",
        code="route_not_found",
        message=f"No route for {request.method} {request.path}.",
    )


def handler500(request: HttpRequest) -> JsonResponse:
    return error_response(
        500,
        type="api_error",
        code="internal_error",
        message="An internal error occurred. Quote the request id when you report it.",
        request_id=request_id_var.get(),
    )


def currency_clean(code: str, param: str = "currency") -> str:
    """An ISO 4217 code from input, lower case; anything else is a 400 naming `param`."""
    try:
        return normalize_currency(code)
    except UnknownCurrency:
        raise InvalidRequest(
            f"'{code}' is not an ISO 4217 currency code.", param=param, code="unknown_currency"
        ) from None
