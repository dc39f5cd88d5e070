"""The fake Stripe that other tests lean on, through the real SDK: Stripe's answers from its fixtures,
idempotent replays, the identifier window, typed-parameter checks, and the faults it can be told to
show. Also the configured client of `billing_site.stripe_sdk`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import stripe

from billing_site import stripe_sdk
from billing_site.testing.fake_stripe import FIXTURES, FakeStripe
from billing_site.testing.stripe_params import check_params, decode_form

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
HOUR = int(datetime(2026, 3, 2, 10, 0, tzinfo=UTC).timestamp())


@pytest.fixture
def fake():
    with FakeStripe(hang_seconds=0.5, now=NOW) as server:
        server.add_meter("api_requests", meter_id="mtr_api")
        yield server


def client(fake: FakeStripe) -> stripe.StripeClient:
    return stripe_sdk.client_build(api_key="sk_test_fake123", base=fake.url, max_network_retries=0, timeout=0.2)


def event(client_: stripe.StripeClient, identifier: str, value: str = "5", key: str | None = None):
    return client_.v1.billing.meter_events.create(
        {
            "event_name": "api_requests",
            "identifier": identifier,
            "timestamp": HOUR,
            "payload": {"stripe_customer_id": "cus_1", "value": value},
        },
        {"idempotency_key": key or identifier},
    )


def test_answers_have_the_shape_of_stripes_fixtures(fake):
    created = event(client(fake), "id-1")
    expected = set(FIXTURES["billing.meter_event"])
    assert set(created.to_dict()) == expected
    assert created.identifier == "id-1" and created.payload["value"] == "5"
    meters = client(fake).v1.billing.meters.list({"status": "active"})
    assert set(meters.data[0].to_dict()) == set(FIXTURES["billing.meter"])


def test_an_idempotent_retry_is_replayed_and_a_changed_one_refused(fake):
    c = client(fake)
    first = event(c, "id-1")
    again = event(c, "id-1")
    assert again.last_response.headers["Idempotent-Replayed"] == "true" and again.to_dict() == first.to_dict()
    with pytest.raises(stripe.IdempotencyError):
        event(c, "id-1", value="6")
    assert len(fake.counted_events()) == 1


def test_identifiers_are_unique_for_24_hours_then_count_again(fake):
    c = client(fake)
    event(c, "id-1", key="k1")
    event(c, "id-1", key="k2")
    assert len(fake.counted_events()) == 1
    fake.now = NOW + timedelta(hours=24, seconds=1)
    event(c, "id-1", key="k3")
    assert len(fake.counted_events()) == 2


def test_summaries_cancel_and_windows(fake):
    c = client(fake)
    event(c, "id-1", "2.5")
    event(c, "id-2", "4")
    listed = c.v1.billing.meters.event_summaries.list(
        "mtr_api", {"customer": "cus_1", "start_time": HOUR, "end_time": HOUR + 3600}
    )
    assert [Decimal(str(s.aggregated_value)) for s in listed.data] == [Decimal("6.5")]
    c.v1.billing.meter_event_adjustments.create(
        {"event_name": "api_requests", "type": "cancel", "cancel": {"identifier": "id-2"}}
    )
    start = datetime.fromtimestamp(HOUR, UTC)
    assert fake.summary_value("mtr_api", "cus_1", start, start + timedelta(hours=1)) == Decimal("2.5")
    fake.now = NOW + timedelta(hours=25)
    with pytest.raises(stripe.InvalidRequestError, match="within 24 hours"):
        c.v1.billing.meter_event_adjustments.create(
            {"event_name": "api_requests", "type": "cancel", "cancel": {"identifier": "id-1"}}
        )
    with pytest.raises(stripe.InvalidRequestError, match="aligned"):
        c.v1.billing.meters.event_summaries.list(
            "mtr_api",
            {"customer": "cus_1", "start_time": HOUR + 60, "end_time": HOUR + 3600, "value_grouping_window": "hour"},
        )


def test_parameters_the_sdk_types_forbid_are_refused_and_recorded(fake):
    with pytest.raises(stripe.InvalidRequestError):
        client(fake).v1.billing.meter_events.create({"event_name": "api_requests", "playload": {"v": "1"}})  # type: ignore[typeddict-unknown-key]
    assert any("playload: not a parameter of MeterEventCreateParams" in v for v in fake.violations)
    assert any("payload: required" in v for v in fake.violations)
    fake.violations.clear()


def test_faults(fake):
    c = client(fake)
    fake.fail_next("POST /v1/billing/meter_events", "429", "500", "timeout", "crash_after")
    with pytest.raises(stripe.RateLimitError):
        event(c, "a")
    with pytest.raises(stripe.APIError):
        event(c, "a")
    with pytest.raises(stripe.APIConnectionError):
        event(c, "a")
    assert fake.counted_events() == []
    with pytest.raises(stripe.APIConnectionError):
        event(c, "a")
    assert [e.identifier for e in fake.counted_events()] == ["a"]  # acted on, the answer dropped
    with pytest.raises(ValueError, match="unknown faults"):
        fake.fail_next("POST /v1/billing/meter_events", "explode")


def test_a_wrong_key_is_a_401(fake):
    bad = stripe_sdk.client_build(api_key="not-a-key", base=fake.url, max_network_retries=0)
    with pytest.raises(stripe.AuthenticationError):
        bad.v1.billing.meters.list()


def test_form_decoding_and_checks_without_a_server():
    assert decode_form("a[b][0]=x&a[b][1]=y&c=1") == {"a": {"b": ["x", "y"]}, "c": "1"}
    from stripe.params.billing._meter_event_create_params import MeterEventCreateParams

    assert check_params(MeterEventCreateParams, {"event_name": "e", "payload": {"v": "1"}, "timestamp": "x"}) == [
        "timestamp: expected an integer, got 'x'"
    ]


def test_the_configured_client_follows_the_settings(settings):
    settings.STRIPE_API_KEY = None
    with pytest.raises(stripe_sdk.StripeNotConfigured):
        stripe_sdk.stripe_client()
    settings.STRIPE_API_KEY = "sk_test_one"
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"
    first = stripe_sdk.stripe_client()
    assert stripe_sdk.stripe_client() is first
    assert first._requestor._options.base_addresses["api"] == "http://127.0.0.1:9"
    settings.STRIPE_API_BASE = None
    second = stripe_sdk.stripe_client()
    assert second is not first and second._requestor._options.base_addresses["api"] == stripe.DEFAULT_API_BASE
    assert stripe_sdk.redact("key sk_live_abcDEF123 here") == "key [redacted] here"
