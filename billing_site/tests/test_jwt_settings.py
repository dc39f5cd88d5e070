"""The JWT settings are read strictly: a half or unsafe configuration stops the process at start."""

from __future__ import annotations

import pytest

from billing_site.env import EnvError
from billing_site.jwt_settings import jwt_algorithms, jwt_scope_map, jwt_settings_check, key_url
from billing_site.scopes import DEFAULT_SCOPE_MAP, SCOPES, scope_map_build, scopes_map
from billing_site.tests.test_settings_env import _import_settings

GOOD = {
    "issuer": "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_abc",
    "audiences": ["client-1"],
    "jwks_url": "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_abc/.well-known/jwks.json",
    "discovery_url": None,
    "debug": False,
}


def test_a_complete_configuration_passes():
    jwt_settings_check(**GOOD)
    jwt_settings_check(
        **{**GOOD, "jwks_url": None, "discovery_url": GOOD["issuer"] + "/.well-known/openid-configuration"}
    )
    jwt_settings_check(issuer=None, audiences=[], jwks_url=None, discovery_url=None, debug=False)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"audiences": []}, "JWT_AUDIENCES must be set"),
        ({"jwks_url": None}, "exactly one of JWT_JWKS_URL and OIDC_DISCOVERY_URL"),
        ({"discovery_url": "https://idp.example/.well-known/openid-configuration"}, "exactly one of"),
        ({"jwks_url": "http://idp.example/jwks.json"}, "JWT_JWKS_URL must be an https:// URL"),
        ({"jwks_url": "file:///etc/passwd"}, "JWT_JWKS_URL must be an https:// URL"),
        ({"issuer": None}, "set but JWT_ISSUER is not"),
    ],
)
def test_bad_configurations_name_the_variable(changes, message):
    with pytest.raises(EnvError, match=message):
        jwt_settings_check(**{**GOOD, **changes})


def test_plain_http_keys_only_on_loopback_or_in_debug():
    assert key_url("JWT_JWKS_URL", "http://127.0.0.1:8080/jwks", debug=False)
    assert key_url("JWT_JWKS_URL", "http://keycloak:8080/jwks", debug=True)
    with pytest.raises(EnvError):
        key_url("JWT_JWKS_URL", "http://keycloak:8080/jwks", debug=False)


@pytest.mark.parametrize("value", [["HS256"], ["RS256", "none"], ["HS512"], []])
def test_hmac_and_none_are_refused_as_algorithms(value):
    with pytest.raises(EnvError, match="JWT_ALGORITHMS"):
        jwt_algorithms("JWT_ALGORITHMS", value)


def test_algorithms_keep_their_order_without_repeats():
    assert jwt_algorithms("JWT_ALGORITHMS", ["ES256", "RS256", "ES256"]) == ("ES256", "RS256")


def test_scope_map_defaults_cover_the_control_plane_auth_interface():
    for name in (
        "fetchTenantScope",
        "fetchAllTenantsScope",
        "createTenantScope",
        "updateTenantScope",
        "deleteTenantScope",
        "activateTenantScope",
        "deactivateTenantScope",
        "fetchUserScope",
        "fetchAllUsersScope",
        "createUserScope",
        "updateUserScope",
        "deleteUserScope",
        "disableUserScope",
        "enableUserScope",
        "tenant/tenant_read",
        "user/user_write",
    ):
        assert DEFAULT_SCOPE_MAP[name], name
    assert all(set(v) <= set(SCOPES) for v in DEFAULT_SCOPE_MAP.values())
    assert scopes_map(["readUserScope", "createUserScope"], DEFAULT_SCOPE_MAP) == {"customers:read", "customers:write"}
    assert scopes_map(["openid", "usage:write"], DEFAULT_SCOPE_MAP) == {"usage:write"}


def test_scope_map_overrides(monkeypatch):
    monkeypatch.setenv("JWT_SCOPE_MAP", '{"billing/read": ["billing:read", "usage:read"], "createUserScope": []}')
    table = jwt_scope_map("JWT_SCOPE_MAP")
    assert table["billing/read"] == ("billing:read", "usage:read")
    assert table["createUserScope"] == ()
    assert table["fetchUserScope"] == ("customers:read",)
    assert scope_map_build({"x": "admin"})["x"] == ("admin",)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("not json", "must be a JSON object"),
        ('["admin"]', "must be a JSON object"),
        ('{"x": ["everything"]}', "unknown scope"),
        ('{"x": 3}', "must be a scope or a list of scopes"),
        ('{"two words": "admin"}', "without spaces"),
    ],
)
def test_bad_scope_map_names_the_variable(monkeypatch, raw, message):
    monkeypatch.setenv("JWT_SCOPE_MAP", raw)
    with pytest.raises(EnvError, match=f"JWT_SCOPE_MAP.*{message}|{message}"):
        jwt_scope_map("JWT_SCOPE_MAP")


def test_settings_refuse_an_issuer_without_audiences_at_start():
    result = _import_settings(DEBUG="true", JWT_ISSUER="https://idp.example", JWT_JWKS_URL="https://idp.example/jwks")
    assert result.returncode != 0
    assert "JWT_AUDIENCES must be set" in result.stderr


def test_settings_refuse_hs256_at_start():
    result = _import_settings(DEBUG="true", JWT_ALGORITHMS="RS256,HS256")
    assert result.returncode != 0
    assert "HS256 not allowed" in result.stderr


def test_settings_accept_a_full_configuration():
    result = _import_settings(
        DEBUG="true",
        JWT_ISSUER="https://idp.example",
        JWT_AUDIENCES="a,b",
        OIDC_DISCOVERY_URL="https://idp.example/.well-known/openid-configuration",
        JWT_SCOPE_MAP='{"api/read": ["customers:read"]}',
    )
    assert result.returncode == 0, result.stderr
