from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone
from rest_framework.test import APIClient

from billing_site.api import ApiView
from billing_site.models import ApiKey
from billing_site.services import api_key_create, api_key_revoke

pytestmark = pytest.mark.django_db


def _client(raw: str | None) -> APIClient:
    client = APIClient()
    if raw is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def test_missing_key_is_401_with_envelope():
    response = APIClient().get("/api/v1/customers")
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication"
    assert response.json()["error"]["code"] == "missing_api_key"
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_unknown_key_is_401():
    response = _client("bk_" + "x" * 40).get("/api/v1/customers")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


def test_non_bearer_scheme_is_401():
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Basic dXNlcjpwYXNz")
    response = client.get("/api/v1/customers")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_authorization_header"


def test_wrong_scope_is_403_and_names_the_scope(make_client):
    client = make_client("customers:read")
    assert client.get("/api/v1/customers").status_code == 200
    response = client.post("/api/v1/customers", {"external_id": "t1"}, format="json")
    assert response.status_code == 403
    assert response.json()["error"] == {
        "type": "permission",
        "code": "missing_scope",
        "message": "This API key lacks the scope 'customers:write'.",
        "param": None,
        "scope": "customers:write",
    }


def test_write_scope_does_not_grant_read(make_client):
    client = make_client("customers:write")
    assert client.get("/api/v1/customers").status_code == 403


def test_revoked_key_is_401():
    key, raw = api_key_create(name="k", scopes=["admin"])
    api_key_revoke(api_key=key, now=timezone.now())
    response = _client(raw).get("/api/v1/customers")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "api_key_revoked"


def test_expired_key_is_401():
    _, raw = api_key_create(name="k", scopes=["admin"], expires_at=timezone.now() - timedelta(seconds=1))
    response = _client(raw).get("/api/v1/customers")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "api_key_expired"


def test_key_not_yet_expired_works_and_records_last_use():
    key, raw = api_key_create(name="k", scopes=["customers:read"], expires_at=timezone.now() + timedelta(days=1))
    assert key.last_used_at is None
    assert _client(raw).get("/api/v1/customers").status_code == 200
    key.refresh_from_db()
    assert key.last_used_at is not None


def test_only_hash_and_prefix_are_stored():
    key, raw = api_key_create(name="k", scopes=["admin"])
    stored = ApiKey.objects.get(pk=key.pk)
    assert raw.startswith(stored.prefix)
    assert len(stored.prefix) < 16
    assert raw not in str(stored.__dict__.values())


def test_unknown_scope_is_refused():
    from billing_site.errors import InvalidRequest

    with pytest.raises(InvalidRequest) as excinfo:
        api_key_create(name="k", scopes=["customers:read", "everything"])
    assert excinfo.value.param == "scopes"


def _walk(patterns, prefix=""):
    for entry in patterns:
        if isinstance(entry, URLResolver):
            yield from _walk(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern), entry.callback


def test_every_api_view_declares_a_scope_for_each_method():
    checked = 0
    for route, callback in _walk(get_resolver().url_patterns):
        view_class = getattr(callback, "view_class", None)
        if not route.startswith("api/v1/"):
            continue
        assert view_class is not None and issubclass(view_class, ApiView), route
        view = view_class()
        for method in ("get", "post", "put", "patch", "delete"):
            if hasattr(view, method):
                from billing_site.auth import required_scope

                assert required_scope(view, method.upper()), f"{route} {method} declares no scope"
                checked += 1
    assert checked >= 10


def test_create_api_key_command_prints_the_key_once(capsys):
    from django.core.management import call_command

    call_command("create_api_key", "--name", "ci", "--scopes", "usage:write,usage:read")
    raw = capsys.readouterr().out.strip()
    assert raw.startswith("bk_")
    key = ApiKey.objects.get(name="ci")
    assert key.scopes == ["usage:read", "usage:write"]
    assert _client(raw).get("/api/v1/customers").status_code == 403  # usage scopes do not read customers


def test_ids_made_one_after_another_sort_in_that_order():
    from billing_site.ids import looks_like_id, new_id

    ids = [new_id("bev") for _ in range(5000)]  # many share a millisecond
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert all(looks_like_id(i, "bev") for i in ids)
