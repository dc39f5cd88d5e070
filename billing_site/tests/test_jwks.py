"""The key source and token validation on an explicit clock: the refresh bound, the cache lifetime,
and the leeway at its exact edges."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from billing_site.errors import AuthenticationFailed, ServiceUnavailable
from billing_site.jwks import JwksKeySource, KeySourceConfig, KeysUnavailable, KeyUnknown
from billing_site.tests.oidc import IdentityProvider
from billing_site.tokens import token_authenticate, token_config

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def provider():
    idp = IdentityProvider().start()
    idp.add_key("rsa")
    yield idp
    idp.stop()


def _source(provider, *, ttl=900, interval=60, discovery=False) -> JwksKeySource:
    return JwksKeySource(
        KeySourceConfig(
            issuer=provider.issuer,
            jwks_url=None if discovery else provider.jwks_url,
            discovery_url=provider.discovery_url if discovery else None,
            cache_ttl=timedelta(seconds=ttl),
            min_refresh_interval=timedelta(seconds=interval),
            timeout=2.0,
        )
    )


def test_unknown_kids_fetch_at_most_once_per_interval(provider):
    source = _source(provider, interval=60)
    assert source.key_get(kid="kid-1", now=T0)["kid"] == "kid-1"
    assert provider.jwks_fetches() == 1
    for second in range(0, 60, 5):
        with pytest.raises(KeyUnknown):
            source.key_get(kid=f"nope-{second}", now=T0 + timedelta(seconds=second))
    assert provider.jwks_fetches() == 1
    with pytest.raises(KeyUnknown):
        source.key_get(kid="nope", now=T0 + timedelta(seconds=60))
    assert provider.jwks_fetches() == 2
    with pytest.raises(KeyUnknown):
        source.key_get(kid="nope", now=T0 + timedelta(seconds=61))
    assert provider.jwks_fetches() == 2


def test_a_rotated_key_is_found_after_the_interval(provider):
    source = _source(provider, interval=60)
    source.key_get(kid="kid-1", now=T0)
    new_kid = provider.rotate()
    with pytest.raises(KeyUnknown):
        source.key_get(kid=new_kid, now=T0 + timedelta(seconds=10))
    assert source.key_get(kid=new_kid, now=T0 + timedelta(seconds=70))["kid"] == new_kid
    # The old key was withdrawn: a refresh forgets it (at the next allowed refresh).
    with pytest.raises(KeyUnknown):
        source.key_get(kid="kid-1", now=T0 + timedelta(seconds=71))


def test_keys_are_fetched_again_when_the_cache_expires(provider):
    source = _source(provider, ttl=300)
    source.key_get(kid="kid-1", now=T0)
    source.key_get(kid="kid-1", now=T0 + timedelta(seconds=299))
    assert provider.jwks_fetches() == 1
    source.key_get(kid="kid-1", now=T0 + timedelta(seconds=300))
    assert provider.jwks_fetches() == 2


def test_expired_cache_and_endpoint_down_is_unavailable_and_not_hammered(provider):
    source = _source(provider, ttl=300, interval=60)
    source.key_get(kid="kid-1", now=T0)
    provider.mode = "error"
    with pytest.raises(KeysUnavailable):
        source.key_get(kid="kid-1", now=T0 + timedelta(seconds=300))
    assert provider.jwks_fetches() == 2
    for second in (301, 330, 359):
        with pytest.raises(KeysUnavailable):
            source.key_get(kid="kid-1", now=T0 + timedelta(seconds=second))
    assert provider.jwks_fetches() == 2
    provider.mode = "up"
    assert source.key_get(kid="kid-1", now=T0 + timedelta(seconds=360))["kid"] == "kid-1"
    assert provider.jwks_fetches() == 3


def test_symmetric_and_encryption_keys_in_the_jwks_are_ignored(provider, monkeypatch):
    jwks = provider.jwks()
    jwks["keys"].append({"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"})
    jwks["keys"].append({**provider.public_jwk("kid-1"), "kid": "enc", "use": "enc"})
    jwks["keys"].append({"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"})
    monkeypatch.setattr(provider, "jwks", lambda: jwks)
    source = _source(provider)
    assert source.key_get(kid="kid-1", now=T0)["kid"] == "kid-1"
    for kid in ("hmac", "enc", "broken"):
        with pytest.raises(KeyUnknown):
            source.key_get(kid=kid, now=T0)


def test_discovery_is_followed_to_the_jwks(provider):
    source = _source(provider, discovery=True)
    assert source.key_get(kid="kid-1", now=T0)["kid"] == "kid-1"
    assert provider.requests["/pool/.well-known/openid-configuration"] == 1


def test_discovery_of_another_issuer_is_unavailable(provider):
    provider.discovery_issuer = "https://elsewhere.example/pool"
    with pytest.raises(KeysUnavailable, match="issuer"):
        _source(provider, discovery=True).key_get(kid="kid-1", now=T0)
    assert provider.jwks_fetches() == 0


# --- token validation on an explicit clock ---------------------------------------------------------


@pytest.fixture
def configured(oidc, settings):
    settings.JWT_LEEWAY_SECONDS = 30
    return oidc


def _authenticate(provider, now: datetime, **claims):
    return token_authenticate(raw_token=provider.token(**claims), now=now, config=token_config())


def test_exp_leeway_at_its_exact_edge(configured):
    exp = int(T0.timestamp())
    base = {"iat": exp - 600, "exp": exp}
    assert _authenticate(configured, T0 + timedelta(seconds=29, microseconds=999_999), **base).subject == "user-1"
    with pytest.raises(AuthenticationFailed) as refused:
        _authenticate(configured, T0 + timedelta(seconds=30), **base)
    assert refused.value.code == "token_expired"


def test_nbf_and_iat_leeway_at_their_exact_edges(configured):
    moment = int(T0.timestamp())
    later = {"exp": moment + 3600}
    assert _authenticate(configured, T0, nbf=moment + 30, iat=moment, **later)
    with pytest.raises(AuthenticationFailed) as refused:
        _authenticate(configured, T0, nbf=moment + 31, iat=moment, **later)
    assert refused.value.code == "token_not_yet_valid"
    assert _authenticate(configured, T0, iat=moment + 30, **later)
    with pytest.raises(AuthenticationFailed) as refused:
        _authenticate(configured, T0, iat=moment + 31, **later)
    assert refused.value.code == "token_issued_in_future"


def test_principal_carries_scopes_subject_and_tenant(configured):
    moment = int(T0.timestamp())
    principal = _authenticate(
        configured,
        T0,
        iat=moment,
        exp=moment + 60,
        sub="u-7",
        scope="openid user/user_write usage:read",
        **{"custom:tenantId": "tenant-7"},
    )
    assert principal.scopes == frozenset({"customers:write", "usage:read"})
    assert principal.tenant_external_id == "tenant-7"
    assert principal.has_scope("usage:read") and not principal.has_scope("usage:write")
    other_tenant = _authenticate(configured, T0, iat=moment, exp=moment + 60, sub="u-7", **{"custom:tenantId": "t-8"})
    assert principal.token_subject != other_tenant.token_subject
    assert principal.token_subject.startswith("jwt_") and len(principal.token_subject) <= 100


def test_keys_unavailable_is_a_503_error(oidc):
    oidc.stop()
    with pytest.raises(ServiceUnavailable) as unavailable:
        token_authenticate(raw_token=oidc.token(), now=datetime.now(UTC), config=token_config())
    assert unavailable.value.status_code == 503
    assert unavailable.value.code == "token_keys_unavailable"
