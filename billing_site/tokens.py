"""JWT bearer tokens from an OpenID Connect / OAuth 2 identity provider, beside API keys.

Which is which: an API key is `bk_` and 40 letters and digits, never a dot; a JWT (compact JWS) is
three base64url parts joined by dots. A bearer credential with a dot is read as a JWT, anything else as
an API key, so each gets the errors of its own kind.

A token is accepted when, in this order: its header names an allowed asymmetric algorithm and a `kid`;
its `iss` is JWT_ISSUER (checked before any key is fetched, so foreign tokens cannot make us fetch);
the issuer's JWKS has that kid for that algorithm; the signature verifies; `exp`, `nbf` and `iat` hold
against the caller's `now` with JWT_LEEWAY_SECONDS; its `aud` (or, without `aud`, its `client_id`, which
is where Cognito access tokens carry the client) is one of JWT_AUDIENCES. Each refusal is a 401 whose
code names it; keys that cannot be fetched are a 503 for tokens only. Keys come only from the configured
JWKS: header parameters that point elsewhere (`jku`, `x5u`, `jwk`) are never followed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, ClassVar

import jwt
from django.conf import settings
from django.utils import timezone
from jwt import exceptions as jwt_errors
from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request

from billing_site.errors import AuthenticationFailed, ServiceUnavailable
from billing_site.jwks import KeySourceConfig, KeysUnavailable, KeyUnknown, key_source_for
from billing_site.scopes import scopes_map

logger = logging.getLogger(__name__)

MAX_TOKEN_LENGTH = 16 * 1024
# Which keys can verify which algorithm: an RSA key never verifies ES256, a P-256 key never ES384.
_KEY_FOR_ALGORITHM = {
    "RS256": ("RSA", None),
    "RS384": ("RSA", None),
    "RS512": ("RSA", None),
    "PS256": ("RSA", None),
    "PS384": ("RSA", None),
    "PS512": ("RSA", None),
    "ES256": ("EC", "P-256"),
    "ES384": ("EC", "P-384"),
    "ES512": ("EC", "P-521"),
}


def looks_like_jwt(credential: str) -> bool:
    return "." in credential


@dataclass(frozen=True)
class TokenPrincipal:
    """The caller a verified token names. Offers what an ApiKey offers to permission checks, throttling
    and idempotency: `has_scope`, `principal_key`, `tenant_external_id`."""

    kind: ClassVar[str] = "token"
    issuer: str
    subject: str
    scopes: frozenset[str]
    tenant_external_id: str | None
    claims: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def has_scope(self, scope: str) -> bool:
        return "admin" in self.scopes or scope in self.scopes

    @property
    def token_subject(self) -> str:
        """A stable name for whoever the token speaks for: every token of the same issuer, subject and
        tenant shares it (so a retry with a refreshed token replays its Idempotency-Key)."""
        digest = hashlib.sha256("\0".join((self.issuer, self.subject, self.tenant_external_id or "")).encode())
        return "jwt_" + digest.hexdigest()[:40]

    @property
    def principal_key(self) -> str:
        return self.token_subject


@dataclass(frozen=True)
class TokenConfig:
    issuer: str
    audiences: frozenset[str]
    algorithms: tuple[str, ...]
    leeway: timedelta
    tenant_claim: str
    scope_map: Mapping[str, tuple[str, ...]]
    keys: KeySourceConfig


def token_config() -> TokenConfig | None:
    """The configuration from settings, or None when tokens are off (no JWT_ISSUER)."""
    if not settings.JWT_ISSUER:
        return None
    return TokenConfig(
        issuer=settings.JWT_ISSUER,
        audiences=frozenset(settings.JWT_AUDIENCES),
        algorithms=tuple(settings.JWT_ALGORITHMS),
        leeway=timedelta(seconds=settings.JWT_LEEWAY_SECONDS),
        tenant_claim=settings.JWT_TENANT_CLAIM,
        scope_map=settings.JWT_SCOPE_MAP,
        keys=KeySourceConfig(
            issuer=settings.JWT_ISSUER,
            jwks_url=settings.JWT_JWKS_URL,
            discovery_url=settings.OIDC_DISCOVERY_URL,
            cache_ttl=timedelta(seconds=settings.JWT_JWKS_CACHE_SECONDS),
            min_refresh_interval=timedelta(seconds=settings.JWT_JWKS_MIN_REFRESH_SECONDS),
            timeout=float(settings.JWT_JWKS_TIMEOUT_SECONDS),
            debug=settings.DEBUG,
        ),
    )


def _refuse(code: str, message: str, *, claim: str | None = None) -> AuthenticationFailed:
    return AuthenticationFailed(message, code=code, extra={"claim": claim} if claim else None)


@lru_cache(maxsize=64)
def _verification_key(jwk_json: str, algorithm: str) -> jwt.PyJWK:
    return jwt.PyJWK(json.loads(jwk_json), algorithm=algorithm)


def _key_for(jwk: dict[str, Any], algorithm: str) -> jwt.PyJWK:
    kty, crv = _KEY_FOR_ALGORITHM[algorithm]
    declared = jwk.get("alg")
    if (declared and declared != algorithm) or jwk.get("kty") != kty or (crv and jwk.get("crv") != crv):
        raise _refuse(
            "token_algorithm_not_allowed", f"The token's algorithm {algorithm} is not the algorithm of its key."
        )
    return _verification_key(json.dumps(jwk, sort_keys=True), algorithm)


def _numeric_date(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _refuse("token_claim_invalid", f"The token's '{name}' claim must be a number of seconds.", claim=name)
    return float(value)


def _string_list(claims: Mapping[str, Any], name: str) -> list[str] | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise _refuse(
        "token_claim_invalid", f"The token's '{name}' claim must be a string or a list of strings.", claim=name
    )


def _token_scopes(claims: Mapping[str, Any]) -> list[str]:
    """`scope` is a space-separated string (RFC 8693, RFC 9068); `scp` a list (or a string) elsewhere."""
    names: list[str] = []
    for claim in ("scope", "scp"):
        values = _string_list(claims, claim)
        for value in values or ():
            names.extend(value.split())
    return names


def token_authenticate(*, raw_token: str, now: datetime, config: TokenConfig | None = None) -> TokenPrincipal:
    config = config or token_config()
    if config is None:
        raise _refuse(
            "token_not_accepted",
            "This service does not accept JWT bearer tokens (no issuer is configured); use an API key.",
        )
    if len(raw_token) > MAX_TOKEN_LENGTH:
        raise _refuse("token_malformed", "The token is too long.")

    try:
        header = jwt.get_unverified_header(raw_token)
        unverified = jwt.decode(raw_token, options={"verify_signature": False})
    except jwt_errors.PyJWTError as exc:
        raise _refuse("token_malformed", f"The token is not a well-formed JWT: {exc}.") from None
    algorithm = header.get("alg")
    if algorithm not in config.algorithms:
        raise _refuse(
            "token_algorithm_not_allowed",
            f"The token's algorithm {algorithm!r} is not allowed; allowed: {', '.join(config.algorithms)}.",
        )
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise _refuse("token_malformed", "The token's header names no key ('kid').")
    if unverified.get("iss") is None:
        raise _refuse("token_claim_missing", "The token has no 'iss' claim.", claim="iss")
    if unverified.get("iss") != config.issuer:
        raise _refuse("token_issuer_invalid", "The token was not issued by the configured issuer.", claim="iss")

    try:
        jwk = key_source_for(config.keys).key_get(kid=kid, now=now)
    except KeyUnknown:
        raise _refuse("token_key_unknown", f"The issuer has no signing key '{kid}'.") from None
    except KeysUnavailable as exc:
        logger.warning("JWT signing keys unavailable: %s", exc)
        raise ServiceUnavailable(
            "The identity provider's signing keys cannot be fetched right now; retry later. API keys are not affected.",
            code="token_keys_unavailable",
            retry_after=int(config.keys.min_refresh_interval.total_seconds()),
        ) from None

    try:
        claims = jwt.decode(
            raw_token,
            key=_key_for(jwk, algorithm),
            algorithms=[algorithm],
            issuer=config.issuer,
            # Times and audience are checked below: against the caller's `now`, and with the
            # client_id fallback that PyJWT does not have.
            options={
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
                "verify_aud": False,
                "require": ["exp", "iss"],
                # RSA keys under 2048 bits are refused rather than merely warned about.
                "enforce_minimum_key_length": True,
            },
        )
    except jwt_errors.InvalidSignatureError:
        raise _refuse("token_signature_invalid", "The token's signature does not verify.") from None
    except jwt_errors.InvalidAlgorithmError as exc:
        raise _refuse("token_algorithm_not_allowed", f"The token's algorithm is not allowed: {exc}.") from None
    except jwt_errors.InvalidIssuerError:
        raise _refuse(
            "token_issuer_invalid", "The token was not issued by the configured issuer.", claim="iss"
        ) from None
    except jwt_errors.MissingRequiredClaimError as exc:
        raise _refuse("token_claim_missing", f"The token has no '{exc.claim}' claim.", claim=exc.claim) from None
    except jwt_errors.InvalidSubjectError:
        raise _refuse("token_claim_invalid", "The token's 'sub' claim must be a string.", claim="sub") from None
    except jwt_errors.InvalidJTIError:
        raise _refuse("token_claim_invalid", "The token's 'jti' claim must be a string.", claim="jti") from None
    except jwt_errors.DecodeError as exc:
        raise _refuse("token_malformed", f"The token is not a well-formed JWT: {exc}.") from None
    except jwt_errors.InvalidKeyError as exc:
        raise _refuse("token_signature_invalid", f"The token's key cannot verify it: {exc}.") from None
    except jwt_errors.PyJWTError as exc:
        raise _refuse("token_invalid", f"The token is not valid: {exc}.") from None

    moment = now.timestamp()
    leeway = config.leeway.total_seconds()
    expires = _numeric_date(claims, "exp")
    assert expires is not None  # required above
    if moment >= expires + leeway:
        raise _refuse("token_expired", "The token has expired.", claim="exp")
    not_before = _numeric_date(claims, "nbf")
    if not_before is not None and moment + leeway < not_before:
        raise _refuse("token_not_yet_valid", "The token is not valid yet ('nbf' is in the future).", claim="nbf")
    issued_at = _numeric_date(claims, "iat")
    if issued_at is not None and moment + leeway < issued_at:
        raise _refuse("token_issued_in_future", "The token's 'iat' is in the future.", claim="iat")

    audiences = _string_list(claims, "aud")
    if audiences is None:
        audiences = _string_list(claims, "client_id")
    if not audiences or not config.audiences.intersection(audiences):
        raise _refuse("token_audience_invalid", "The token is not meant for this service (audience).", claim="aud")

    subject = claims.get("sub") or claims.get("client_id")
    if not isinstance(subject, str) or not subject:
        raise _refuse("token_claim_missing", "The token names no subject ('sub' or 'client_id').", claim="sub")

    tenant = claims.get(config.tenant_claim)
    if tenant is not None and (not isinstance(tenant, str) or not tenant.strip() or len(tenant) > 255):
        raise _refuse(
            "token_claim_invalid",
            f"The token's '{config.tenant_claim}' claim must be a tenant id (a non-empty string).",
            claim=config.tenant_claim,
        )

    return TokenPrincipal(
        issuer=config.issuer,
        subject=subject,
        scopes=scopes_map(_token_scopes(claims), config.scope_map),
        tenant_external_id=tenant,
        claims=claims,
    )


class JwtAuthentication(BaseAuthentication):
    """Authenticates `Authorization: Bearer <JWT>`; API keys are left to ApiKeyAuthentication."""

    def authenticate(self, request: Request) -> tuple[Any, TokenPrincipal] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        scheme, _, raw = header.partition(" ")
        raw = raw.strip()
        if scheme.lower() != "bearer" or not looks_like_jwt(raw):
            return None
        return None, token_authenticate(raw_token=raw, now=timezone.now())

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'
