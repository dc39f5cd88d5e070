"""Strict reading of the JWT bearer-token settings (see README, "JWT bearer tokens").

Imported by settings.py before apps load, so it imports nothing from Django but the env helpers.
"""

from __future__ import annotations

import json
import os
from urllib.parse import urlsplit

from billing_site.env import EnvError
from billing_site.scopes import ScopeMapError, scope_map_build

# Only asymmetric algorithms: the keys come from a public JWKS, and an HMAC "key" taken from it would
# be public (the HS256-signed-with-the-public-key attack). `none` is never an algorithm here.
ASYMMETRIC_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


def jwt_algorithms(name: str, values: list[str]) -> tuple[str, ...]:
    if not values:
        raise EnvError(f"{name} must name at least one algorithm, e.g. RS256,ES256")
    refused = [v for v in values if v not in ASYMMETRIC_ALGORITHMS]
    if refused:
        raise EnvError(
            f"{name}: {', '.join(refused)} not allowed; use asymmetric algorithms only "
            f"({', '.join(ASYMMETRIC_ALGORITHMS)}): HMAC and none are refused"
        )
    return tuple(dict.fromkeys(values))


def key_url_allowed(url: str, *, debug: bool) -> bool:
    """Keys must come over https: over plain http anyone on the path could hand us their own keys.
    http is accepted for loopback addresses (a local identity provider) and in DEBUG."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http") or not parts.hostname:
        return False
    return scheme == "https" or debug or parts.hostname in _LOOPBACK_HOSTS


def key_url(name: str, url: str, *, debug: bool) -> str:
    if not key_url_allowed(url, debug=debug):
        raise EnvError(f"{name} must be an https:// URL (http only for 127.0.0.1/localhost or with DEBUG), got {url!r}")
    return url


def jwt_scope_map(name: str) -> dict[str, tuple[str, ...]]:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return scope_map_build({})
    try:
        overrides = json.loads(raw)
    except ValueError:
        raise EnvError(f'{name} must be a JSON object, e.g. {{"tenant/tenant_read": ["customers:read"]}}') from None
    if not isinstance(overrides, dict):
        raise EnvError(f'{name} must be a JSON object, e.g. {{"tenant/tenant_read": ["customers:read"]}}')
    try:
        return scope_map_build(overrides)
    except ScopeMapError as exc:
        raise EnvError(f"{name}: {exc}") from None


def jwt_settings_check(
    *, issuer: str | None, audiences: list[str], jwks_url: str | None, discovery_url: str | None, debug: bool
) -> None:
    """Tokens are either off (no JWT_ISSUER and none of its companions) or fully configured."""
    if not issuer:
        stray = [n for n, v in (("JWT_JWKS_URL", jwks_url), ("OIDC_DISCOVERY_URL", discovery_url)) if v]
        if audiences:
            stray.append("JWT_AUDIENCES")
        if stray:
            raise EnvError(f"{', '.join(stray)} set but JWT_ISSUER is not: set JWT_ISSUER to accept JWT bearer tokens")
        return
    if not audiences:
        # Without an audience check any token of the same identity provider, issued for any other
        # application, would be accepted here.
        raise EnvError("JWT_AUDIENCES must be set when JWT_ISSUER is (comma-separated client ids or audiences)")
    if bool(jwks_url) == bool(discovery_url):
        raise EnvError("Set exactly one of JWT_JWKS_URL and OIDC_DISCOVERY_URL when JWT_ISSUER is set")
    if jwks_url:
        key_url("JWT_JWKS_URL", jwks_url, debug=debug)
    if discovery_url:
        key_url("OIDC_DISCOVERY_URL", discovery_url, debug=debug)
