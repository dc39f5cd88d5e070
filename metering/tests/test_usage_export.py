"""CSV export of usage events (issue 16): exact content, streamed, filtered, bad input."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from django.db.models.query import QuerySet

from customers.tests.factories import CustomerFactory
from metering.ingest import usage_ingest
from metering.tests.factories import MeterFactory
from metering.usage import usage_cancel

pytestmark = pytest.mark.django_db

T = datetime(2026, 3, 1, 12, tzinfo=UTC)
URL = "/api/v1/exports/usage.csv"


def _csv(response) -> list[dict[str, str]]:
    assert response.status_code == 200, response.json()
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    return list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))


@pytest.fixture
def usage():
    meter = MeterFactory(code="api-calls")
    other = MeterFactory(code="storage")
    a = CustomerFactory(external_id="a")
    b = CustomerFactory(external_id="b")
    events = [
        {
            "customer": a.id,
            "meter": "api-calls",
            "value": "2.5",
            "timestamp": T.isoformat(),
            "idempotency_key": "k1",
            "dimensions": {"region": "eu", "model": "x"},
        },
        {"customer": b.id, "meter": "api-calls", "value": "1", "timestamp": (T + timedelta(hours=1)).isoformat()},
        {"customer": a.id, "meter": "storage", "value": "9", "timestamp": T.isoformat()},
        {"customer": a.id, "meter": "api-calls", "value": "4", "timestamp": (T + timedelta(days=2)).isoformat()},
    ]
    result = usage_ingest(events=events, now=T + timedelta(days=3))
    assert result.created == 4
    ids = [r["id"] for r in result.results]
    return {"meter": meter, "other": other, "a": a, "b": b, "ids": ids}


def test_usage_export_is_exact(api, usage):
    rows = _csv(
        api.get(URL, {"meter": usage["meter"].id, "start": "2026-03-01T00:00:00Z", "end": "2026-03-02T00:00:00Z"})
    )
    assert [{k: v for k, v in r.items() if k != "ingested_at"} for r in rows] == [
        {
            "id": usage["ids"][0],
            "customer": usage["a"].id,
            "customer_external_id": "a",
            "meter": usage["meter"].id,
            "meter_code": "api-calls",
            "timestamp": "2026-03-01T12:00:00Z",
            "value": "2.5",
            "idempotency_key": "k1",
            "dimensions": '{"model":"x","region":"eu"}',
            "canceled_at": "",
        },
        {
            "id": usage["ids"][1],
            "customer": usage["b"].id,
            "customer_external_id": "b",
            "meter": usage["meter"].id,
            "meter_code": "api-calls",
            "timestamp": "2026-03-01T13:00:00Z",
            "value": "1",
            "idempotency_key": "",
            "dimensions": "{}",
            "canceled_at": "",
        },
    ]
    assert all(r["ingested_at"] == "2026-03-04T12:00:00Z" for r in rows)


def test_filters_and_canceled_events(api, usage):
    window = {"start": "2026-03-01T00:00:00Z", "end": "2026-04-01T00:00:00Z"}
    by_code = _csv(api.get(URL, {"meter": "api-calls", **window}))
    assert [r["id"] for r in by_code] == [usage["ids"][0], usage["ids"][1], usage["ids"][3]]
    only_a = _csv(api.get(URL, {"meter": "api-calls", "customer": usage["a"].id, **window}))
    assert [r["id"] for r in only_a] == [usage["ids"][0], usage["ids"][3]]
    # Half-open: an event at exactly `end` is not in the range.
    at_end = _csv(api.get(URL, {"meter": "api-calls", "start": "2026-03-01T00:00:00Z", "end": "2026-03-01T13:00:00Z"}))
    assert [r["id"] for r in at_end] == [usage["ids"][0]]
    usage_cancel(reason="test", now=T + timedelta(days=4), event_ids=[usage["ids"][1]])
    assert usage["ids"][1] not in [r["id"] for r in _csv(api.get(URL, {"meter": "api-calls", **window}))]
    with_canceled = _csv(api.get(URL, {"meter": "api-calls", "include_canceled": "true", **window}))
    canceled = next(r for r in with_canceled if r["id"] == usage["ids"][1])
    assert canceled["canceled_at"] == "2026-03-05T12:00:00Z"


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"start": "2026-03-01T00:00:00Z", "end": "2026-03-02T00:00:00Z"}, "meter"),
        ({"meter": "api-calls", "end": "2026-03-02T00:00:00Z"}, "start"),
        ({"meter": "api-calls", "start": "yesterday", "end": "2026-03-02T00:00:00Z"}, "start"),
        ({"meter": "api-calls", "start": "2026-03-02T00:00:00Z", "end": "2026-03-01T00:00:00Z"}, "end"),
        ({"meter": "nope", "start": "2026-03-01T00:00:00Z", "end": "2026-03-02T00:00:00Z"}, "meter"),
        ({"meter": "api-calls", "start": "2026-03-01T00:00:00Z", "end": "2026-03-02T00:00:00Z", "x": "1"}, "x"),
        (
            {"meter": "api-calls", "start": "2026-03-01T00:00:00Z", "end": "2026-03-02T00:00:00Z", "customer": "cus_x"},
            "customer",
        ),
    ],
)
def test_bad_input(api, usage, params, param):
    response = api.get(URL, params, HTTP_ACCEPT="text/csv")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


def test_streamed_through_one_cursor(api, usage, monkeypatch, make_client):
    chunks = []
    real_iterator = QuerySet.iterator

    def spy(self, chunk_size=None):
        chunks.append(chunk_size)
        return real_iterator(self, chunk_size=chunk_size)

    monkeypatch.setattr(QuerySet, "iterator", spy)
    response = api.get(URL, {"meter": "api-calls", "start": "2026-03-01T00:00:00Z", "end": "2026-04-01T00:00:00Z"})
    assert response.streaming and chunks == []  # nothing read until the body is sent
    assert len(_csv(response)) == 3 and chunks == [2000]
    assert make_client("billing:read").get(URL, {"meter": "api-calls"}).status_code == 403
