"""Property: whatever mix of ingestion (including late events), cancellation and partial or complete
roll-up runs happened, usage_aggregate over any [start, end) equals the brute-force aggregation of the
raw rows, for every aggregation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from customers.tests.factories import CustomerFactory
from metering.models import UsageDirtyHour
from metering.rollups import usage_rollup_job
from metering.selectors import UsageValue, usage_aggregate, usage_series
from metering.tests.usage_support import NOW, brute_force, ingest, make_meter
from metering.usage import usage_cancel

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 10, tzinfo=UTC)
HOURS = 4
HOUR_US = 3600 * 10**6
SPAN_US = HOURS * HOUR_US

# Offsets from T0 in microseconds, biased towards hour boundaries and repeated instants (ties).
boundary = st.sampled_from([h * HOUR_US + d for h in range(HOURS + 1) for d in (-1, 0, 1)])
TIES = [HOUR_US // 2, HOUR_US + 7, 2 * HOUR_US + 123_456, SPAN_US - 1]
offsets = st.one_of(
    st.integers(0, SPAN_US - 1),
    st.integers(0, HOURS - 1).map(lambda h: h * HOUR_US),
    boundary.filter(lambda o: 0 <= o < SPAN_US),
    st.sampled_from(TIES),
    st.sampled_from(TIES),
)
values = st.integers(0, 10**13 - 1).map(lambda n: Decimal(n).scaleb(-12))  # up to 12 decimals, below 10
dimensions = st.fixed_dictionaries(
    {},
    optional={"region": st.sampled_from(["eu", "us", "apac"]), "user": st.sampled_from(["a", "b", "c", 1, "1"])},
)
event = st.tuples(offsets, values, dimensions)
step = st.one_of(
    st.tuples(st.just("ingest"), st.lists(event, min_size=1, max_size=10)),
    st.tuples(st.just("rollup"), st.integers(1, 4), st.booleans()),
    st.tuples(st.just("cancel"), st.lists(st.integers(0, 10**6), min_size=1, max_size=3)),
)
edge = st.one_of(st.integers(-HOUR_US, SPAN_US + HOUR_US), boundary, boundary)
EVERYTHING = (-HOUR_US, SPAN_US + HOUR_US)
period = st.tuples(edge, edge).map(sorted)


def _at(offset_us: int) -> datetime:
    return T0 + timedelta(microseconds=offset_us)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(steps=st.lists(step, min_size=1, max_size=7), periods=st.lists(period, min_size=2, max_size=4))
def test_rollups_plus_raw_equal_brute_force(steps, periods):
    with transaction.atomic():  # each example starts from an empty database
        customer = CustomerFactory()
        meters = [
            make_meter("count"),
            make_meter("sum"),
            make_meter("max"),
            make_meter("latest"),
            make_meter("unique_count", unique_key="user"),
            make_meter("sum", filters={"region": ["eu", "us"]}),
            make_meter("weighted_sum"),
            make_meter("weighted_sum", filters={"region": ["eu", "us"]}),
        ]
        ids: list[str] = []
        for action in steps:
            if action[0] == "ingest":
                for meter in meters:
                    ids += ingest(customer, meter, [(_at(o), v, d) for o, v, d in action[1]])
            elif action[0] == "rollup":
                # A partial run (one small batch) leaves dirty hours behind; a full one clears them all.
                usage_rollup_job(now=NOW, batch_size=action[1], max_batches=100 if action[2] else 1)
                if action[2]:
                    assert not UsageDirtyHour.objects.exists()
            elif ids:
                usage_cancel(event_ids=[ids[i % len(ids)] for i in action[1]], reason="test", now=NOW)
            _check(customer, meters, periods[:1])  # between steps, dirty and clean hours are mixed
        _check(customer, meters, [EVERYTHING, *periods])
        usage_rollup_job(now=NOW)  # and once more with every hour rolled up
        assert not UsageDirtyHour.objects.exists()
        _check(customer, meters, [EVERYTHING, *periods])
        transaction.set_rollback(True)


def _check(customer, meters, periods):
    for lo, hi in periods:
        start, end = _at(lo), _at(hi)
        for meter in meters:
            value, count = brute_force(meter, customer, start, end)
            got = usage_aggregate(meter=meter, customer=customer, start=start, end=end)
            assert got == UsageValue(value, count), (meter.aggregation, start, end)
            # Extra dimension filters and group_by read the per-dimension-set roll-ups: the same exactness.
            for extra in ({"region": ["eu"]}, {"region": ["us", "apac"], "user": ["a", "1"]}):
                value, count = brute_force(meter, customer, start, end, filters=extra)
                got = usage_aggregate(meter=meter, customer=customer, start=start, end=end, filters=extra)
                assert got == UsageValue(value, count), (meter.aggregation, extra, start, end)
            if lo < hi:
                buckets = usage_series(meter=meter, customer=customer, start=start, end=end, group_by="region")
                seen = set()
                for bucket in buckets:
                    region = bucket.group["region"]
                    seen.add(region)
                    wanted = brute_force_group(meter, customer, start, end, region)
                    assert (bucket.value, bucket.event_count) == wanted, (meter.aggregation, region, start, end)
                for region in {"eu", "us", "apac", None} - seen:
                    assert brute_force_group(meter, customer, start, end, region)[1] == 0, (meter.aggregation, region)


def brute_force_group(meter, customer, start, end, region):
    """Brute force for the events whose region is `region` (None: events without a region)."""
    if region is not None:
        return brute_force(meter, customer, start, end, filters={"region": [region]})
    return brute_force(meter, customer, start, end, where=lambda dims: "region" not in dims)
