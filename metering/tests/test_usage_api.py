"""GET /api/v1/usage/{meter_id}: windows, group_by, pagination, validation and scopes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from customers.tests.factories import CustomerFactory
from metering.rollups import usage_rollup_job
from metering.selectors import usage_aggregate
from metering.tests.usage_support import NOW, ingest, make_meter

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 9, 22, 0, tzinfo=UTC)


def iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


@pytest.fixture
def usage():
    customer = CustomerFactory(external_id="tenant-usage")
    meter = make_meter("sum")
    ingest(
        customer,
        meter,
        [
            (T0 + timedelta(minutes=10), "1.5", {"region": "eu"}),
            (T0 + timedelta(minutes=50), "2", {"region": "us"}),
            (T0 + timedelta(hours=1, minutes=5), "0.000000000001", {"region": "eu"}),
            (T0 + timedelta(hours=2, minutes=30), "10", {}),  # next UTC day (00:30)
            (T0 + timedelta(hours=5), "100", {"region": "eu"}),
        ],
    )
    usage_rollup_job(now=NOW)
    return customer, meter


def get(client, meter, **params):
    return client.get(f"/api/v1/usage/{meter.id}", params)


def test_window_none_is_one_bucket(api, usage):
    customer, meter = usage
    response = get(api, meter, customer=customer.id, start=iso(T0), end=iso(T0 + timedelta(days=1)))
    assert response.status_code == 200, response.json()
    assert response.json() == {
        "meter": meter.id,
        "customer": customer.id,
        "aggregation": "sum",
        "data": [
            {
                "start": "2026-03-09T22:00:00Z",
                "end": "2026-03-10T22:00:00Z",
                "value": "113.500000000001",
                "event_count": 5,
                "group": {},
            }
        ],
        "has_more": False,
        "next_cursor": None,
    }


def test_window_none_without_usage_still_answers_zero(api, usage):
    _, meter = usage
    start = T0 - timedelta(days=3)
    body = get(api, meter, external_id="tenant-usage", start=iso(start), end=iso(T0)).json()
    assert body["data"] == [{"start": iso(start), "end": iso(T0), "value": "0", "event_count": 0, "group": {}}]


def test_hour_windows_are_aligned_and_clipped(api, usage):
    customer, meter = usage
    start, end = T0 + timedelta(minutes=30), T0 + timedelta(hours=5, minutes=1)
    body = get(api, meter, customer=customer.id, start=iso(start), end=iso(end), window="hour").json()
    assert [(b["start"], b["end"], b["value"], b["event_count"]) for b in body["data"]] == [
        ("2026-03-09T22:30:00Z", "2026-03-09T23:00:00Z", "2", 1),  # clipped to start; empty hours left out
        ("2026-03-09T23:00:00Z", "2026-03-10T00:00:00Z", "0.000000000001", 1),
        ("2026-03-10T00:00:00Z", "2026-03-10T01:00:00Z", "10", 1),
        ("2026-03-10T03:00:00Z", "2026-03-10T03:01:00Z", "100", 1),  # clipped to end
    ]
    for bucket in body["data"]:  # each bucket agrees with the selector billing uses
        value = usage_aggregate(
            meter=meter,
            customer=customer,
            start=datetime.fromisoformat(bucket["start"]),
            end=datetime.fromisoformat(bucket["end"]),
        ).value
        assert Decimal(bucket["value"]) == value


def test_day_windows_and_epoch_milliseconds(api, usage):
    customer, meter = usage
    start_ms = int(T0.timestamp() * 1000)
    end_ms = int((T0 + timedelta(days=1)).timestamp() * 1000)
    body = get(api, meter, customer=customer.id, start=str(start_ms), end=str(end_ms), window="day").json()
    assert [(b["start"], b["end"], b["value"]) for b in body["data"]] == [
        ("2026-03-09T22:00:00Z", "2026-03-10T00:00:00Z", "3.500000000001"),
        ("2026-03-10T00:00:00Z", "2026-03-10T22:00:00Z", "110"),
    ]


def test_group_by_a_dimension(api, usage):
    customer, meter = usage
    body = get(
        api, meter, customer=customer.id, start=iso(T0), end=iso(T0 + timedelta(days=1)), group_by="region"
    ).json()
    assert [(b["group"], b["value"], b["event_count"]) for b in body["data"]] == [
        ({"region": None}, "10", 1),  # events without the dimension group under null, first
        ({"region": "eu"}, "101.500000000001", 3),
        ({"region": "us"}, "2", 1),
    ]
    body = get(
        api,
        meter,
        customer=customer.id,
        start=iso(T0),
        end=iso(T0 + timedelta(days=1)),
        group_by="region",
        window="day",
    ).json()
    assert [(b["start"], b["group"], b["value"]) for b in body["data"]] == [
        ("2026-03-09T22:00:00Z", {"region": "eu"}, "1.500000000001"),
        ("2026-03-09T22:00:00Z", {"region": "us"}, "2"),
        ("2026-03-10T00:00:00Z", {"region": None}, "10"),
        ("2026-03-10T00:00:00Z", {"region": "eu"}, "100"),
    ]


@pytest.mark.parametrize("group_by", [None, "user"])
def test_pages_walk_every_bucket_once(api, group_by):
    customer, meter = CustomerFactory(), make_meter("count")
    events = [(T0 + timedelta(minutes=37 * i), "1", {"user": f"u{i % 3}"}) for i in range(40)]
    ingest(customer, meter, events)
    usage_rollup_job(now=NOW, batch_size=5, max_batches=2)  # some hours rolled up, some still dirty
    params = {"customer": customer.id, "start": iso(T0), "end": iso(T0 + timedelta(days=2)), "window": "hour"}
    if group_by:
        params["group_by"] = group_by
    everything = api.get(f"/api/v1/usage/{meter.id}", {**params, "limit": 100}).json()
    assert not everything["has_more"]
    assert sum(b["event_count"] for b in everything["data"]) == 40
    seen, cursor, pages = [], None, 0
    while True:
        query = {**params, "limit": 7, **({"cursor": cursor} if cursor else {})}
        body = api.get(f"/api/v1/usage/{meter.id}", query).json()
        seen += body["data"]
        pages += 1
        if not body["has_more"]:
            assert body["next_cursor"] is None
            break
        assert len(body["data"]) == 7
        cursor = body["next_cursor"]
    assert pages > 2
    assert seen == everything["data"]


def test_unique_count_and_latest_meters(api):
    customer = CustomerFactory()
    unique, latest = make_meter("unique_count", unique_key="user"), make_meter("latest")
    at = T0 + timedelta(minutes=1)
    for meter in (unique, latest):
        ingest(customer, meter, [(at, "3", {"user": "a"}), (at, "5", {"user": "b"}), (at, "7", {"user": "a"})])
    params = {"customer": customer.id, "start": iso(T0), "end": iso(T0 + timedelta(hours=1))}
    assert get(api, unique, **params).json()["data"][0]["value"] == "2"
    assert get(api, latest, **params).json()["data"][0]["value"] == "7"


@pytest.mark.parametrize(
    ("params", "param", "code"),
    [
        ({"start": None}, "start", "parameter_missing"),
        ({"end": None}, "end", "parameter_missing"),
        ({"start": "yesterday"}, "start", "parameter_invalid"),
        ({"start": "2026-03-09T00:00:00"}, "start", "parameter_invalid"),  # no offset
        ({"end": "2026-03-09T00:00:00Z"}, "end", "parameter_invalid"),  # before start
        ({"end": "2026-03-09T22:00:00Z"}, "end", "parameter_invalid"),  # equal to start
        ({"end": "2027-03-12T00:00:00Z"}, "end", "parameter_invalid"),  # more than 366 days
        ({"window": "week"}, "window", "parameter_invalid"),
        ({"limit": "0"}, "limit", "parameter_invalid"),
        ({"limit": "101"}, "limit", "parameter_invalid"),
        ({"limit": "many"}, "limit", "parameter_invalid"),
        ({"cursor": "not-a-cursor"}, "cursor", "invalid_cursor"),
        ({"customer": None}, "customer", "parameter_missing"),
        ({"external_id": "tenant-usage"}, "customer", "parameter_invalid"),  # both
        ({"customer": "cus_nobody"}, "customer", "resource_missing"),
        ({"customer": None, "external_id": "nobody"}, "external_id", "resource_missing"),
        ({"group_by": "x" * 101}, "group_by", "parameter_invalid"),
        ({"colour": "blue"}, "colour", "unknown_field"),
    ],
)
def test_bad_parameters_are_400_naming_the_parameter(api, usage, params, param, code):
    customer, meter = usage
    query = {"customer": customer.id, "start": "2026-03-09T22:00:00Z", "end": "2026-03-10T00:00:00Z", **params}
    response = get(api, meter, **{k: v for k, v in query.items() if v is not None})
    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert (error["param"], error["code"]) == (param, code), error


def test_unencoded_plus_offsets_are_understood(api, usage):
    customer, meter = usage
    # A client that forgets to encode '+' sends a space.
    url = f"/api/v1/usage/{meter.id}?customer={customer.id}&start=2026-03-09T23:00:00+01:00&end=2026-03-10T00:00:00Z"
    body = api.get(url).json()
    assert body["data"][0]["start"] == "2026-03-09T22:00:00Z"
    assert body["data"][0]["value"] == "3.500000000001"


def test_unknown_meter_is_404(api, usage):
    customer, _ = usage
    response = api.get("/api/v1/usage/mtr_nope", {"customer": customer.id, "start": iso(T0), "end": iso(NOW)})
    assert response.status_code == 404


def test_scopes(make_client, usage):
    customer, meter = usage
    params = {"customer": customer.id, "start": iso(T0), "end": iso(T0 + timedelta(hours=1))}
    assert get(make_client("usage:write"), meter, **params).status_code == 403
    assert get(make_client("usage:read"), meter, **params).status_code == 200


def test_dimension_filters_narrow_the_usage(api, usage):
    customer, meter = usage
    day = {"customer": customer.id, "start": iso(T0), "end": iso(T0 + timedelta(days=1))}
    eu = api.get(f"/api/v1/usage/{meter.id}", {**day, "filters[region]": "eu"}).json()["data"]
    assert [(b["value"], b["event_count"]) for b in eu] == [("101.500000000001", 3)]
    both = api.get(f"/api/v1/usage/{meter.id}", {**day, "filters[region]": ["eu", "us"]}).json()["data"]
    assert [(b["value"], b["event_count"]) for b in both] == [("103.500000000001", 4)]
    nobody = api.get(f"/api/v1/usage/{meter.id}", {**day, "filters[region]": "eu", "filters[tier]": "pro"})
    assert [(b["value"], b["event_count"]) for b in nobody.json()["data"]] == [("0", 0)]
    hourly = api.get(
        f"/api/v1/usage/{meter.id}", {**day, "filters[region]": "eu", "window": "hour", "group_by": "region"}
    ).json()["data"]
    assert [(b["start"], b["value"], b["group"]) for b in hourly] == [
        ("2026-03-09T22:00:00Z", "1.5", {"region": "eu"}),
        ("2026-03-09T23:00:00Z", "0.000000000001", {"region": "eu"}),
        ("2026-03-10T03:00:00Z", "100", {"region": "eu"}),
    ]
    # The same answers as the service computes from raw events, roll-ups or not.
    assert usage_aggregate(
        meter=meter, customer=customer, start=T0, end=T0 + timedelta(days=1), filters={"region": ["eu"]}
    ).value == Decimal("101.500000000001")


@pytest.mark.parametrize(
    ("query", "param", "code"),
    [
        ("filters=eu", "filters", "unknown_filter"),
        ("filters[]=eu", "filters[]", "unknown_filter"),
        ("filters[region][x]=eu", "filters[region][x]", "unknown_filter"),
        ("filtersregion=eu", "filtersregion", "unknown_filter"),
        ("filters[region]=", "filters[region]", "parameter_invalid"),
        ("&".join(f"filters[d{i}]=x" for i in range(21)), "filters", "parameter_invalid"),
    ],
)
def test_bad_dimension_filters_are_400_naming_the_parameter(api, usage, query, param, code):
    customer, meter = usage
    day = f"customer={customer.id}&start={iso(T0)}&end={iso(T0 + timedelta(days=1))}"
    response = api.get(f"/api/v1/usage/{meter.id}?{day}&{query}")
    assert response.status_code == 400, response.json()
    assert (response.json()["error"]["param"], response.json()["error"]["code"]) == (param, code)
