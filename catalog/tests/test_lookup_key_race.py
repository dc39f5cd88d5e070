"""The partial unique index, not the pre-check, is what keeps a lookup key on one active price."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from catalog.models import Price
from webhooks.models import BillingEvent

BODY = {
    "type": "standalone",
    "duration": {"amount": 1, "unit": "month"},
    "amount": {"model": "fixed", "currency": "usd", "unit": "1000"},
    "lookup_key": "raced",
}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("transfer", [False, True])
def test_concurrent_creates_leave_one_active_holder_and_no_500(make_client, transfer):
    raw = make_client("catalog:write").raw_key
    barrier = threading.Barrier(6)
    statuses: list[int] = []

    def create():
        from rest_framework.test import APIClient

        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
        barrier.wait()
        try:
            statuses.append(
                client.post("/api/v1/prices", {**BODY, "transfer_lookup_key": transfer}, format="json").status_code
            )
        finally:
            connection.close()

    threads = [threading.Thread(target=create) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert Price.objects.filter(lookup_key="raced", active=True).count() == 1
    assert set(statuses) <= {201, 409} and 201 in statuses
    assert BillingEvent.objects.filter(type="price.created").count() == statuses.count(201)
