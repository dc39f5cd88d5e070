"""The base of every API view: scopes, Idempotency-Key handling, and cursor pagination."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from django.db.models import QuerySet
from django.http import HttpResponse
from django.utils import timezone
from rest_framework import serializers
from rest_framework.exceptions import APIException, MethodNotAllowed, Throttled
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from billing_site.errors import ApiError, InvalidRequest, NotFound, PermissionDeniedError
from billing_site.idempotency import (
    IdempotentReplay,
    WriteTracker,
    idempotency_begin,
    idempotency_complete,
    idempotency_release,
)
from billing_site.replicas import replica_reads
from billing_site.tenancy import OPERATORS_ONLY, TENANT_SCOPED, TenantScope, tenant_scope_of
from billing_site.throttling import AnonymousRateThrottle

DEFAULT_LIMIT = 20
MAX_LIMIT = 100


_UNRESOLVED = object()
_bodyless: dict[type, bool] = {}


def _declares_no_body(view_class: type) -> bool:
    """Whether the view's POST is documented with `extend_schema(request=None)`: the schema and the
    check that refuses a body are one declaration, so they cannot disagree."""
    if view_class not in _bodyless:
        schema = getattr(getattr(view_class, "post", None), "kwargs", {}).get("schema")
        method = getattr(schema, "get_request_serializer", None)
        closure = getattr(method, "__closure__", None) or ()
        names = getattr(getattr(method, "__code__", None), "co_freevars", ())
        declared = {name: cell.cell_contents for name, cell in zip(names, closure, strict=False)}
        _bodyless[view_class] = "request" in declared and declared["request"] is None
    return _bodyless[view_class]


class ApiView(APIView):
    """Subclasses set `scope_resource` (or `required_scopes`) and implement handlers that call services.

    `tenant_access` says, per method, how a tenant-scoped principal is treated (`billing_site.tenancy`):
    `{"GET": TENANT_SCOPED}` means the handler passes `self.tenant_scope` to its selectors; a method
    not named refuses such principals, so a new endpoint is closed to tenants until it is scoped.
    """

    scope_resource: str | None = None
    required_scopes: dict[str, str] | None = None
    tenant_access: dict[str, str] = {}

    def perform_authentication(self, request: Request) -> None:
        """Requests without a valid credential are rate limited per client address before they are
        answered 401 (so guessing keys is slowed down as well)."""
        try:
            super().perform_authentication(request)
        except (APIException, ApiError):
            self._throttle_anonymous(request)
            raise
        if request.auth is None:
            self._throttle_anonymous(request)

    def check_permissions(self, request: Request) -> None:
        """A method the route does not have is 405 for any authenticated caller, before scopes: a
        read-only key (or a tenant's token) sending PUT learns the method is wrong, not that it lacks a
        scope. Without a credential the 401 still comes first."""
        if request.auth is not None and not self._supports(request.method or "GET"):
            raise MethodNotAllowed(request.method)
        super().check_permissions(request)

    def _supports(self, method: str) -> bool:
        name = method.lower()
        if name == "options":
            return self.metadata_class is not None
        return name in self.http_method_names and hasattr(self, name)

    def _throttle_anonymous(self, request: Request) -> None:
        throttle = AnonymousRateThrottle()
        if not throttle.allow_request(request, self):
            raise Throttled(wait=throttle.wait())

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)  # authentication and scope checks come first
        self._path_ids_check(kwargs)
        self._tenant_scope: Any = _UNRESOLVED
        self._idempotency_record = None
        self._write_tracker: WriteTracker | None = None
        self._tenant_access_check(request)
        key = request.headers.get("Idempotency-Key")
        if request.method == "POST" and key is not None:
            self._idempotency_record = idempotency_begin(
                principal=request.auth,
                key=key,
                method=request.method,
                path=request.get_full_path(),
                body=request._request.body,  # read here; DRF then parses from the cached copy
                now=timezone.now(),
            )
            # From here on, whether the handler's work committed decides what a 5xx does to the key.
            self._write_tracker = WriteTracker()
            self._write_tracker.start()
        self._bodyless_check(request)

    def dispatch(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().dispatch(request, *args, **kwargs)
        finally:
            tracker = getattr(self, "_write_tracker", None)
            if tracker is not None:
                tracker.stop()

    @staticmethod
    def _path_ids_check(kwargs: dict[str, Any]) -> None:
        """An id in the path with a NUL or another control character names nothing: 404 here, once for
        every detail route, before it reaches a query (PostgreSQL refuses NUL in text with a DataError)."""
        for value in kwargs.values():
            if isinstance(value, str) and not value.isprintable():
                raise NotFound("No such object: the id contains a control character.", param="id")

    def _bodyless_check(self, request: Request) -> None:
        """A POST whose schema declares no body (`extend_schema(request=None)`: /pay, /void, /cancel...)
        refuses one, as every body refuses unknown fields: `{"amount": 1}` on /pay must not be ignored."""
        if request.method != "POST":
            return
        if not _declares_no_body(type(self)):
            return
        if not request._request.body:  # read (and cached) here, so the handler can still read it
            return
        data = request.data
        if isinstance(data, dict) and not data:
            return
        if isinstance(data, dict):
            raise InvalidRequest(
                f"Unknown field '{sorted(data)[0]}': this operation takes no request body.",
                param=str(sorted(data)[0]),
                code="unknown_field",
            )
        raise InvalidRequest("This operation takes no request body.", code="malformed_body")

    @property
    def tenant_scope(self) -> TenantScope | None:
        """The tenant the caller is bound to (None for operators), resolved once per request."""
        if getattr(self, "_tenant_scope", _UNRESOLVED) is _UNRESOLVED:
            self._tenant_scope = tenant_scope_of(self.request.auth)
        return self._tenant_scope

    def _tenant_access_check(self, request: Request) -> None:
        if getattr(request.auth, "tenant_external_id", None) is None:
            return
        method = "GET" if request.method == "HEAD" else (request.method or "GET")
        if method == "OPTIONS":
            return
        access = self.tenant_access.get(method)
        if access == TENANT_SCOPED:
            return
        if access == OPERATORS_ONLY:
            raise PermissionDeniedError(
                "This operation is the operator's: a token bound to a tenant cannot perform it.", code="operator_only"
            )
        raise PermissionDeniedError(
            "This endpoint is not yet available to tokens bound to a tenant; use an operator credential.",
            code="tenant_scope_unsupported",
        )

    def handle_exception(self, exc: Exception) -> Any:
        if isinstance(exc, IdempotentReplay):
            stored = exc.stored
            response = HttpResponse(stored.body, status=stored.status, content_type=stored.content_type)
            response["Idempotent-Replayed"] = "true"
            return response
        return super().handle_exception(exc)

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().finalize_response(request, response, *args, **kwargs)
        record = getattr(self, "_idempotency_record", None)
        tracker = getattr(self, "_write_tracker", None)
        if tracker is not None:
            tracker.stop()
        if record is not None:
            self._idempotency_record = None
            if response.status_code >= 500 and (tracker is None or tracker.rolled_back()):
                # The work rolled back (or never started): a retry may run it.
                idempotency_release(record=record)
            else:
                # Done, or failed after something committed: keep the answer (a 5xx too) for every retry.
                if hasattr(response, "render") and not getattr(response, "is_rendered", True):
                    response.render()
                idempotency_complete(
                    record=record,
                    status=response.status_code,
                    body=bytes(response.content),
                    content_type=response.get("Content-Type", "application/json"),
                    now=timezone.now(),
                )
        return response


# --- Cursor pagination ----------------------------------------------------------------------------


def _encode_cursor(pk: str) -> str:
    return base64.urlsafe_b64encode(pk.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> str:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = base64.urlsafe_b64decode(padded.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidRequest("The cursor is not valid.", param="cursor", code="invalid_cursor") from None
    if not value or not value.isprintable():
        raise InvalidRequest("The cursor is not valid.", param="cursor", code="invalid_cursor")
    return value


def parse_limit(request: Request) -> int:
    raw = request.query_params.get("limit")
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    try:
        limit = int(raw)
    except ValueError:
        raise InvalidRequest("limit must be an integer from 1 to 100.", param="limit") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequest("limit must be an integer from 1 to 100.", param="limit")
    return limit


def paginate(request: Request, queryset: QuerySet, serializer_class: type[serializers.BaseSerializer]) -> Response:
    """Newest first by public id (ids are time-ordered). The cursor is the last id of the page, so a page
    never shifts when rows are added in front of it, and each page is one index range scan."""
    limit = parse_limit(request)
    cursor = request.query_params.get("cursor")
    queryset = queryset.order_by("-pk")
    if cursor:
        queryset = queryset.filter(pk__lt=_decode_cursor(cursor))
    with replica_reads():  # a list may lag the primary by the replication delay (billing_site/replicas.py)
        rows = list(queryset[: limit + 1])
        has_more = len(rows) > limit
        rows = rows[:limit]
        data = serializer_class(rows, many=True).data
    return Response(
        {
            "data": data,
            "has_more": has_more,
            "next_cursor": _encode_cursor(rows[-1].pk) if has_more else None,
        }
    )


_paginated_cache: dict[type, type] = {}


def paginated_schema(serializer_class: type[serializers.BaseSerializer]) -> type[serializers.Serializer]:
    """An OpenAPI-only serializer describing `{data: [...], has_more, next_cursor}` for a list endpoint."""
    if serializer_class not in _paginated_cache:
        name = serializer_class.__name__.replace("Serializer", "").replace("Output", "")
        _paginated_cache[serializer_class] = type(
            f"{name}List",
            (serializers.Serializer,),
            {
                "data": serializer_class(many=True),
                "has_more": serializers.BooleanField(),
                "next_cursor": serializers.CharField(allow_null=True),
            },
        )
    return _paginated_cache[serializer_class]


def validate_input(serializer_class: type[serializers.Serializer], data: Any, **kwargs: Any) -> dict[str, Any]:
    """Validate a request body with an Input serializer. A body that is not a JSON object is a 400."""
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="malformed_body")
    serializer = serializer_class(data=data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


class InputSerializer(serializers.Serializer):
    # Base for request bodies: an unknown field is a 400 naming it (a typo must not be silently ignored).
    # A comment, not a docstring: the OpenAPI schema would give it to every request body as its description.

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = [key for key in data if key not in self.fields]
            if unknown:
                raise serializers.ValidationError(
                    {key: [serializers.ErrorDetail("Unknown field.", code="unknown_field")] for key in unknown}
                )
        return super().to_internal_value(data)
