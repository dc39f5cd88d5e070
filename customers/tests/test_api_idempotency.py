from __future__ import annotations

import threading
from datetime import timedelta

import orjson
import pytest
from django.db import connection
from django.utils import timezone

from billing_site.idempotency import idempotency_begin, request_fingerprint
from billing_site.models import ApiKey, IdempotencyRecord
from billing_site.services import idempotency_keys_purge_job
from customers.models import Customer

pytestmark = pytest.mark.django_db

BODY = {"external_id": "tenant-idem", "name": "Idem Co"}


def _post(client, body=BODY, key="key-1"):
    return client.post("/api/v1/customers", body, format="json", HTTP_IDEMPOTENCY_KEY=key)


def test_replay_returns_the_stored_response_byte_for_byte(api):
    first = _post(api)
    assert first.status_code == 201
    second = _post(api)
    assert second.status_code == 201
    assert second.content == first.content
    assert second["Idempotent-Replayed"] == "true"
    assert Customer.objects.filter(external_id="tenant-idem").count() == 1


def test_same_body_with_other_key_order_is_a_replay(api):
    first = _post(api, body={"external_id": "t-order", "name": "N"})
    second = api.post(
        "/api/v1/customers",
        data=b'{ "name":"N",  "external_id":"t-order" }',
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY="key-1",
    )
    assert second.status_code == 201
    assert second.content == first.content


def test_same_key_different_body_is_409_reused(api):
    assert _post(api).status_code == 201
    response = _post(api, body={**BODY, "name": "Other"})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "idempotency_key_reused"
    assert Customer.objects.get(external_id="tenant-idem").name == "Idem Co"


def test_same_key_on_another_path_is_409_reused(api):
    customer = _post(api).json()
    response = api.post(
        f"/api/v1/customers/{customer['id']}/users", {"email": "a@b.co"}, format="json", HTTP_IDEMPOTENCY_KEY="key-1"
    )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "idempotency_key_reused"


def test_key_still_in_flight_is_409_in_use(api):
    # Make the first request look like it is still running: take the key, then send a request with it.
    idempotency_begin(
        principal=ApiKey.objects.get(),
        key="key-1",
        method="POST",
        path="/api/v1/customers",
        body=orjson.dumps(BODY),
        now=timezone.now(),
    )
    response = _post(api)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "idempotency_key_in_use"
    assert not Customer.objects.filter(external_id="tenant-idem").exists()


def test_abandoned_key_is_taken_over_after_the_lock_timeout(api, settings):
    IdempotencyRecord.objects.create(
        api_key=ApiKey.objects.get(),
        key="key-1",
        fingerprint=request_fingerprint(method="POST", path="/api/v1/customers", body=orjson.dumps(BODY)),
        method="POST",
        path="/api/v1/customers",
        locked_at=timezone.now() - settings.IDEMPOTENCY_LOCK_TIMEOUT - timedelta(seconds=1),
        created_at=timezone.now() - timedelta(minutes=10),
    )
    assert _post(api).status_code == 201


def test_keys_are_scoped_to_the_api_key(make_client):
    one, two = make_client("admin", name="one"), make_client("admin", name="two")
    assert _post(one).status_code == 201
    # The same key from another API key is a new request: it runs (and meets the duplicate external_id).
    response = _post(two)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "customer_exists"


def test_error_responses_are_replayed_too(api):
    first = _post(api, body={"external_id": "t", "email": "bad"})
    assert first.status_code == 400
    second = _post(api, body={"external_id": "t", "email": "bad"})
    assert second.content == first.content
    assert second["Idempotent-Replayed"] == "true"


def test_a_5xx_releases_the_key_so_a_retry_runs(api, monkeypatch):
    from customers import services

    real = services.customer_create
    calls = {"n": 0}

    def flaky(**kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("database hiccup")
        return real(**kwargs)

    monkeypatch.setattr(services, "customer_create", flaky)
    assert _post(api).status_code == 500
    assert not IdempotencyRecord.objects.exists()
    assert _post(api).status_code == 201
    assert Customer.objects.filter(external_id="tenant-idem").count() == 1


def test_invalid_key_is_400_naming_the_header(api):
    response = _post(api, key="x" * 256)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "Idempotency-Key"


def test_get_requests_ignore_the_header(api):
    response = api.get("/api/v1/customers", HTTP_IDEMPOTENCY_KEY="k")
    assert response.status_code == 200
    assert not IdempotencyRecord.objects.exists()


def test_records_are_kept_24h_and_purged_after_the_ttl(api, settings):
    _post(api)
    now = timezone.now()
    assert idempotency_keys_purge_job(now=now + timedelta(hours=24)) == {"deleted": 0}
    assert idempotency_keys_purge_job(now=now + settings.IDEMPOTENCY_KEY_TTL + timedelta(seconds=1)) == {"deleted": 1}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_with_one_key_do_the_work_once(make_client):
    client = make_client("admin")
    raw = client.raw_key
    results: list[int] = []
    barrier = threading.Barrier(8)

    def worker():
        from rest_framework.test import APIClient

        c = APIClient()
        c.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
        barrier.wait()
        try:
            results.append(_post(c, key="race").status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert Customer.objects.filter(external_id="tenant-idem").count() == 1
    assert results.count(201) >= 1
    assert set(results) <= {201, 409}
    # Every request either did the work, replayed it, or was told the key is in use: never a second row.
    assert IdempotencyRecord.objects.filter(key="race").count() == 1
