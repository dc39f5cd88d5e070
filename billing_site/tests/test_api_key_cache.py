"""The per-process API-key lookup cache (billing_site/auth.py): fewer queries, and never a stale answer
after a key is revoked, edited or deleted, in this process or in another one.

"Another process" is simulated by keeping a copy of this process's cached lookups from before the
change and putting it back afterwards: that is what a second gunicorn worker still holds."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

import billing_site.throttling as throttling
from billing_site import auth
from billing_site.models import ApiKey
from billing_site.services import api_key_create, api_key_revoke

pytestmark = pytest.mark.django_db

UNREACHABLE_CACHE = {
    "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://127.0.0.1:1/0"}
}


def _client(*scopes: str, **create) -> tuple[ApiKey, APIClient]:
    key, raw = api_key_create(name="cache", scopes=list(scopes) or ["admin"], **create)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return key, client


def _key_queries(captured: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in captured.captured_queries if "billing_site_apikey" in q["sql"]]


def test_a_cached_key_costs_no_query():
    _, client = _client()
    assert client.get("/api/v1/customers").status_code == 200  # read, and last_used_at written
    with CaptureQueriesContext(connection) as captured:
        assert client.get("/api/v1/customers").status_code == 200
    assert _key_queries(captured) == []


def test_a_revoked_key_is_refused_at_once_in_this_process():
    key, client = _client()
    assert client.get("/api/v1/customers").status_code == 200
    api_key_revoke(api_key=key, now=timezone.now())
    response = client.get("/api/v1/customers")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "api_key_revoked"


def test_a_key_revoked_by_another_process_is_refused_at_once():
    key, client = _client()
    assert client.get("/api/v1/customers").status_code == 200
    other_worker = dict(auth._local_keys)  # this worker's cache, as it was before the revocation
    assert other_worker
    api_key_revoke(api_key=key, now=timezone.now())  # done by "another process"
    auth._local_keys.update(other_worker)  # the stale lookup is still there...
    response = client.get("/api/v1/customers")
    assert response.status_code == 401  # ...but it was read under an older generation
    assert response.json()["error"]["code"] == "api_key_revoked"
    assert client.get("/api/v1/customers").status_code == 401


def test_a_cleared_local_cache_reads_the_key_again():
    key, client = _client()
    assert client.get("/api/v1/customers").status_code == 200
    ApiKey.objects.filter(pk=key.pk).update(revoked_at=timezone.now())  # behind the services' back
    auth._local_keys.clear()  # a new worker: nothing cached
    assert client.get("/api/v1/customers").json()["error"]["code"] == "api_key_revoked"


def test_a_cached_key_expires_on_time(monkeypatch):
    _, client = _client(expires_at=timezone.now() + timedelta(hours=1))
    assert client.get("/api/v1/customers").status_code == 200
    later = timezone.now() + timedelta(hours=2)
    monkeypatch.setattr(auth.timezone, "now", lambda: later)
    response = client.get("/api/v1/customers")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "api_key_expired"


def test_scopes_and_expiry_edited_in_the_admin_apply_to_the_next_request():
    key, client = _client("customers:read")
    assert client.get("/api/v1/customers").status_code == 200
    other_worker = dict(auth._local_keys)
    key.scopes = ["billing:read"]
    key.save()
    auth._local_keys.update(other_worker)
    response = client.get("/api/v1/customers")
    assert response.status_code == 403
    assert response.json()["error"]["scope"] == "customers:read"
    assert client.get("/api/v1/invoices").status_code == 200
    key.refresh_from_db()
    key.expires_at = timezone.now() - timedelta(seconds=1)
    key.save()
    assert client.get("/api/v1/invoices").json()["error"]["code"] == "api_key_expired"


def test_a_deleted_key_is_refused_at_once():
    key, client = _client()
    assert client.get("/api/v1/customers").status_code == 200
    other_worker = dict(auth._local_keys)
    key.delete()
    auth._local_keys.update(other_worker)
    assert client.get("/api/v1/customers").status_code == 401


def test_the_cache_ends_after_its_ttl(settings, monkeypatch):
    settings.API_KEY_CACHE_SECONDS = 30
    key, client = _client()
    assert client.get("/api/v1/customers").status_code == 200
    ApiKey.objects.filter(pk=key.pk).update(scopes=["billing:read"])  # no generation published
    assert client.get("/api/v1/customers").status_code == 200  # cached, within the TTL
    start = auth.time.monotonic()
    monkeypatch.setattr(auth.time, "monotonic", lambda: start + 31)
    assert client.get("/api/v1/customers").status_code == 403


def test_with_the_cache_off_every_request_reads_the_key(settings):
    settings.API_KEY_CACHE_SECONDS = 0
    auth._local_keys.clear()
    _, client = _client()
    assert client.get("/api/v1/customers").status_code == 200
    with CaptureQueriesContext(connection) as captured:
        assert client.get("/api/v1/customers").status_code == 200
    assert len(_key_queries(captured)) == 1
    assert auth._local_keys == {}


def test_with_the_cache_down_keys_are_read_from_the_database_and_revocation_holds(settings, caplog):
    key, client = _client()
    assert client.get("/api/v1/customers").status_code == 200
    throttling._last_logged = 0.0
    settings.CACHES = UNREACHABLE_CACHE
    with CaptureQueriesContext(connection) as captured:
        assert client.get("/api/v1/customers").status_code == 200  # fails open for the rate limit only
    assert len(_key_queries(captured)) == 1  # the cached lookup is not trusted without a generation
    api_key_revoke(api_key=key, now=timezone.now())
    assert client.get("/api/v1/customers").json()["error"]["code"] == "api_key_revoked"
    assert [r for r in caplog.records if "cache unreachable" in r.getMessage()]


def test_an_authenticated_request_is_one_cache_round_trip_and_counted_once(settings, monkeypatch):
    settings.API_RATE_LIMIT = (3, 3600)
    _, client = _client()
    assert client.get("/api/v1/customers").status_code == 200  # 1 of 3: the key is read and cached
    calls = []
    for name in ("window_count", "window_count_and_read", "shared_get", "shared_set"):
        real = getattr(throttling, name)
        monkeypatch.setattr(
            throttling, name, lambda *a, _real=real, _name=name, **k: calls.append(_name) or _real(*a, **k)
        )
    assert client.get("/api/v1/customers").status_code == 200  # 2 of 3
    assert calls == ["window_count_and_read"]  # the count and the generation, together
    assert client.get("/api/v1/customers").status_code == 200  # 3 of 3: each request counted once
    response = client.get("/api/v1/customers")
    assert response.status_code == 429
    assert "Retry-After" in response


def test_a_window_counts_one_per_call_and_expires():
    key = f"test-{timezone.now().timestamp()}"
    now = 1_000_000.0
    assert [throttling.window_count(key, 60, now) for _ in range(3)] == [1, 2, 3]
    assert throttling.window_count(key, 60, now + 60) == 1  # the next window starts at 1
    client = throttling.redis_client()
    if client is not None:  # on Redis: the window key has the window's lifetime, set by the first INCR
        backend_key = throttling.caches["default"].make_and_validate_key(throttling.window_key(key, 60, now))
        assert 0 < client.ttl(backend_key) <= 61
