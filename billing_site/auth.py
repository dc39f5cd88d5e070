"""API-key authentication and scopes (JWT bearer tokens are in `tokens.py`; both give a principal).

A principal is an `ApiKey` or a `tokens.TokenPrincipal`; each offers `has_scope(scope)`,
`principal_key` (names it for rate limits) and `tenant_external_id` (the tenant a token is bound to;
None for API keys and operator tokens, see `tenancy.py`).

Every API view names the scope it needs: `scope_resource = "customers"` asks `customers:read` for safe
methods and `customers:write` for the others; `required_scopes = {"POST": "usage:write"}` overrides per
method. A view that names nothing is refused (fail closed), and a test walks the URL conf to prove every
view names one.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from billing_site.errors import AuthenticationFailed, PermissionDeniedError
from billing_site.models import ApiKey
from billing_site.tokens import TokenPrincipal, looks_like_jwt

logger = logging.getLogger(__name__)

KEY_PREFIX = "bk_"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def hash_key(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


def api_key_authenticate(*, raw_key: str, now: datetime) -> ApiKey:
    if not raw_key.startswith(KEY_PREFIX):
        raise AuthenticationFailed("Invalid API key.")
    key = ApiKey.objects.filter(key_hash=hash_key(raw_key)).first()
    if key is None:
        raise AuthenticationFailed("Invalid API key.")
    if key.revoked_at is not None:
        raise AuthenticationFailed("This API key has been revoked.", code="api_key_revoked")
    if key.expires_at is not None and key.expires_at <= now:
        raise AuthenticationFailed("This API key has expired.", code="api_key_expired")
    # last_used_at is written at most once a minute per key, so reads do not turn into a write each.
    stale_before = now - settings.API_KEY_LAST_USED_RESOLUTION
    if key.last_used_at is None or key.last_used_at < stale_before:
        with transaction.atomic():
            ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now
    return key


class ApiKeyAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[Any, ApiKey] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        scheme, _, raw = header.partition(" ")
        if scheme.lower() != "bearer" or not raw.strip():
            raise AuthenticationFailed(
                "Use the header 'Authorization: Bearer <api key>'.", code="invalid_authorization_header"
            )
        if looks_like_jwt(raw.strip()):
            return None  # a JWT: JwtAuthentication's to judge
        key = api_key_authenticate(raw_key=raw.strip(), now=timezone.now())
        return None, key

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


def required_scope(view: Any, method: str) -> str | None:
    by_method = getattr(view, "required_scopes", None) or {}
    if method in by_method:
        return by_method[method]
    resource = getattr(view, "scope_resource", None)
    if resource is None:
        return None
    return f"{resource}:read" if method in SAFE_METHODS else f"{resource}:write"


class HasScope(BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        principal = request.auth
        if not isinstance(principal, (ApiKey, TokenPrincipal)):
            raise AuthenticationFailed(
                "No API key was sent. Use the header 'Authorization: Bearer <api key or token>'.",
                code="missing_api_key",
            )
        scope = required_scope(view, request.method or "GET")
        if scope is None:
            logger.error("View %s declares no scope; refusing the request", type(view).__name__)
            raise PermissionDeniedError("This endpoint is not available to API keys.", code="no_scope_declared")
        if not principal.has_scope(scope):
            holder = "API key" if isinstance(principal, ApiKey) else "token"
            raise PermissionDeniedError(f"This {holder} lacks the scope '{scope}'.", extra={"scope": scope})
        return True
