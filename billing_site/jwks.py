"""The identity provider's signing keys: fetched from its JWKS (directly, or found through OIDC discovery),
kept for a while, and fetched again early when a token names a key we do not have (key rotation).

The fetch itself is PyJWT's (`PyJWKClient.fetch_data`: http(s) only, no redirects, a timeout); what this
module adds is the policy PyJWT leaves to us, on a clock the caller passes in:
- keys are kept `cache_ttl`, then fetched again;
- an unknown `kid` fetches again at most once per `min_refresh_interval`, so a flood of tokens with
  made-up kids costs the identity provider one request per interval, not one per token;
- a failed fetch is not retried within `min_refresh_interval` either: while the endpoint is down, token
  requests fail fast (503) instead of each waiting for the timeout.
State is per process (each web worker keeps its own keys).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from jwt import PyJWK, PyJWKClient
from jwt.exceptions import PyJWTError

from billing_site.jwt_settings import key_url_allowed

logger = logging.getLogger(__name__)

_USER_AGENT = "billing-service-jwks/1"


class KeysUnavailable(Exception):
    """The keys could not be fetched (endpoint down, not a JWKS, discovery mismatch)."""


class KeyUnknown(Exception):
    """The keys were fetched, and none has this kid."""


@dataclass(frozen=True)
class KeySourceConfig:
    issuer: str
    jwks_url: str | None
    discovery_url: str | None
    cache_ttl: timedelta
    min_refresh_interval: timedelta
    timeout: float
    debug: bool = False


def _get_json(url: str, timeout: float) -> dict[str, Any]:
    # cache_jwk_set=False: this client only fetches; the caching policy is ours (see the module doc).
    client = PyJWKClient(url, cache_jwk_set=False, timeout=timeout, headers={"User-Agent": _USER_AGENT})
    try:
        data = client.fetch_data()
    except PyJWTError as exc:  # connection refused, timeout, HTTP error status, not a JSON object
        raise KeysUnavailable(f"{url}: {exc}") from exc
    except (ValueError, OSError) as exc:  # a body that is not JSON, a connection reset while reading
        raise KeysUnavailable(f"{url}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(data, dict):
        raise KeysUnavailable(f"{url} did not return a JSON object")
    return data


def _signing_keys(jwks: dict[str, Any], url: str) -> dict[str, dict[str, Any]]:
    """The usable signing keys of a JWKS by kid. Symmetric (`oct`) keys are dropped: we never verify HMAC."""
    keys = jwks.get("keys")
    if not isinstance(keys, list):
        raise KeysUnavailable(f"{url} is not a JWKS (no 'keys' list)")
    usable: dict[str, dict[str, Any]] = {}
    for entry in keys:
        if not isinstance(entry, dict):
            continue
        kid = entry.get("kid")
        if not isinstance(kid, str) or not kid:
            continue
        if entry.get("use") not in (None, "sig") or entry.get("kty") not in ("RSA", "EC"):
            continue
        try:
            PyJWK(entry)  # parse once now, so a broken key is skipped here and not failed on later
        except (PyJWTError, ValueError, TypeError) as exc:
            logger.warning("Skipping unusable key %s from %s: %s", kid, url, exc)
            continue
        usable[kid] = entry
    return usable


class JwksKeySource:
    def __init__(self, config: KeySourceConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._keys: dict[str, dict[str, Any]] = {}
        self._fetched_at: datetime | None = None
        self._attempted_at: datetime | None = None
        self._last_attempt_failed = False
        self.fetch_count = 0  # fetches attempted by this source (operators' logs; tests)

    def key_get(self, *, kid: str, now: datetime) -> dict[str, Any]:
        """The JWK with this kid, as a dict. Raises KeyUnknown or KeysUnavailable."""
        with self._lock:
            if self._fetched_at is None or now - self._fetched_at >= self.config.cache_ttl:
                if self._last_attempt_failed and not self._may_fetch(now):
                    raise KeysUnavailable("the last fetch of the keys failed; not retried yet")
                self._refresh(now)
            jwk = self._keys.get(kid)
            if jwk is None and self._may_fetch(now):
                # Maybe the provider rotated its keys since we fetched them.
                self._refresh(now)
                jwk = self._keys.get(kid)
            if jwk is None:
                raise KeyUnknown(kid)
            return jwk

    def _may_fetch(self, now: datetime) -> bool:
        return self._attempted_at is None or now - self._attempted_at >= self.config.min_refresh_interval

    def _refresh(self, now: datetime) -> None:
        self._attempted_at = now
        self._last_attempt_failed = True
        self.fetch_count += 1
        url = self._jwks_url()
        keys = _signing_keys(_get_json(url, self.config.timeout), url)
        self._keys = keys
        self._fetched_at = now
        self._last_attempt_failed = False
        logger.info("Fetched %d signing key(s) from %s", len(keys), url)

    def _jwks_url(self) -> str:
        if self.config.jwks_url:
            return self.config.jwks_url
        assert self.config.discovery_url is not None
        # Read on every refresh (at most once per interval), so a provider that moves its JWKS is followed.
        document = _get_json(self.config.discovery_url, self.config.timeout)
        issuer = document.get("issuer")
        if issuer != self.config.issuer:
            # OpenID Connect Discovery 1.0, section 4.3: the issuer must be the one we expect, or the
            # document (and its keys) belong to someone else.
            logger.error("OIDC discovery issuer %r is not JWT_ISSUER %r", issuer, self.config.issuer)
            raise KeysUnavailable(f"the discovery document names issuer {issuer!r}, not {self.config.issuer!r}")
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str) or not key_url_allowed(jwks_uri, debug=self.config.debug):
            logger.error("OIDC discovery jwks_uri %r is missing or not https", jwks_uri)
            raise KeysUnavailable(f"the discovery document's jwks_uri {jwks_uri!r} is missing or not https")
        return jwks_uri


_current: tuple[KeySourceConfig, JwksKeySource] | None = None
_current_lock = threading.Lock()


def key_source_for(config: KeySourceConfig) -> JwksKeySource:
    """The process's key source for this configuration (a new one when the settings change)."""
    global _current
    with _current_lock:
        if _current is None or _current[0] != config:
            _current = (config, JwksKeySource(config))
        return _current[1]
