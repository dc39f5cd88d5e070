"""API-key authentication and scopes (JWT bearer tokens are in `tokens.py`; both give a principal).

A principal is an `ApiKey` or a `tokens.TokenPrincipal`; each offers `has_scope(scope)`,
`principal_key` (names it for rate limits) and `tenant_external_id` (the tenant a token is bound to;
None for API keys and operator tokens, see `tenancy.py`).

Every API view names the scope it needs: `scope_resource = "customers"` asks `customers:read` for safe
methods and `customers:write` for the others; `required_scopes = {"POST": "usage:write"}` overrides per
method. A view that names nothing is refused (fail closed), and a test walks the URL conf to prove every
view names one.

API keys are looked up once per process and `API_KEY_CACHE_SECONDS`, not once per request: the lookup
(by key hash) is kept in this process with the key revocation generation it was read under, a value
in the shared cache (Redis) that every change of a key (revocation, an edit or deletion in the admin)
replaces. Each request reads the generation in the same round trip as its rate-limit counter, and a
lookup read under another generation is read again from the database: a revoked key is refused by
every process on its next request. When the cache cannot be reached the generation is unknown and the
key is read from the database on every request (the rate limiter fails open, authentication does not).
Expiry is checked against the request's time on every request, cached or not.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.utils import timezone
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from billing_site import throttling
from billing_site.errors import AuthenticationFailed, PermissionDeniedError
from billing_site.models import ApiKey
from billing_site.tokens import TokenPrincipal, looks_like_jwt

logger = logging.getLogger(__name__)

KEY_PREFIX = "bk_"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def hash_key(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


GENERATION_KEY = "auth:api-key-generation"
# key hash -> (the key as read, when it was read (monotonic), the generation it was read under)
_local_keys: dict[str, tuple[ApiKey, float, Any]] = {}


def api_keys_changed() -> None:
    """Every process's cached lookups are stale: called when a key is revoked, edited or deleted."""
    _local_keys.clear()
    try:
        throttling.shared_set(GENERATION_KEY, secrets.token_hex(8))
    except Exception:
        # Unreachable cache: processes that cannot read the generation read keys from the database.
        logger.exception("Could not publish the API key revocation generation")


def api_key_changed_on_commit() -> None:
    """Publish a new generation now (processes drop their lookups) and again once the change commits (a
    lookup read by another process between the two saw the old row under the first generation)."""
    api_keys_changed()
    transaction.on_commit(api_keys_changed)


@receiver(post_save, sender=ApiKey, dispatch_uid="api_key_saved")
def _api_key_saved(sender: type, instance: ApiKey, created: bool, **kwargs: Any) -> None:
    if not created:  # an edit (scopes, expiry) in the admin; a new key is in no cache yet
        api_key_changed_on_commit()


@receiver(post_delete, sender=ApiKey, dispatch_uid="api_key_deleted")
def _api_key_deleted(sender: type, instance: ApiKey, **kwargs: Any) -> None:
    api_key_changed_on_commit()


def _cached_key(key_hash: str) -> tuple[ApiKey, Any] | None:
    entry = _local_keys.get(key_hash)
    if entry is None:
        return None
    key, read_at, generation = entry
    if time.monotonic() - read_at >= settings.API_KEY_CACHE_SECONDS:
        del _local_keys[key_hash]
        return None
    return key, generation


def _key_lookup(*, key_hash: str, request: Request | None) -> ApiKey | None:
    """The key with this hash, from this process's cache when the generation it was read under is still
    the current one (read together with the request's rate-limit count), else from the database."""
    cached = _cached_key(key_hash) if settings.API_KEY_CACHE_SECONDS > 0 else None
    if cached is not None:
        key, generation = cached
        limit, period = settings.API_RATE_LIMIT
        now = time.time()
        count, current, reachable = throttling.window_count_and_read(
            key.principal_key, period, now, read=GENERATION_KEY
        )
        if request is not None and limit:
            request.counted_window = (key.principal_key, period, count, now)
        if reachable and current == generation:
            return key
        _local_keys.pop(key_hash, None)
        generation = current if reachable else None
    else:
        try:
            # Read before the row: a change committed after this read publishes a newer generation.
            generation = throttling.shared_get(GENERATION_KEY) if settings.API_KEY_CACHE_SECONDS > 0 else None
            reachable = settings.API_KEY_CACHE_SECONDS > 0
        except Exception as exc:
            throttling._log_cache_down(exc)
            generation, reachable = None, False
    key = ApiKey.objects.filter(key_hash=key_hash).first()
    if key is not None and reachable:
        _local_keys[key_hash] = (key, time.monotonic(), generation)
    return key


def api_key_authenticate(*, raw_key: str, now: datetime, request: Request | None = None) -> ApiKey:
    if not raw_key.startswith(KEY_PREFIX):
        raise AuthenticationFailed("Invalid API key.")
    key = _key_lookup(key_hash=hash_key(raw_key), request=request)
    if key is None:
        raise AuthenticationFailed("Invalid API key.")
    if key.revoked_at is not None:
        raise AuthenticationFailed("This API key has been revoked.", code="api_key_revoked")
    if key.expires_at is not None and key.expires_at <= now:
        raise AuthenticationFailed("This API key has expired.", code="api_key_expired")
    # last_used_at is written at most once a minute per key (and process), so reads do not turn into a
    # write each.
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
        key = api_key_authenticate(raw_key=raw.strip(), now=timezone.now(), request=request)
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
