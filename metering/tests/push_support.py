"""Helpers for the usage push tests: provider customers, mapped meters, events, and lane runs driven at
chosen times against the fake Stripe (whose clock follows the run's `now`)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from billing_site.testing.fake_stripe import FakeStripe
from customers.models import Customer
from customers.services import customer_create, customer_update
from metering.models import Meter
from metering.push.mappings import meter_mapping_create
from metering.push.models import UsagePush, UsagePushLane
from metering.push.provider import StripeUsageProvider
from metering.push.services import LaneResult, usage_push_lane_run
from metering.push.sweep import usage_push_lanes_ensure
from metering.services import meter_create
from metering.tests.usage_support import ingest

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
_codes = itertools.count()


def at(hours: float = 0, minutes: float = 0) -> datetime:
    return T0 + timedelta(hours=hours, minutes=minutes)


class Sleeps(list):
    """Stands in for time.sleep: records the delays instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def provider(sleeps: Sleeps | None = None) -> StripeUsageProvider:
    return StripeUsageProvider(sleep=sleeps if sleeps is not None else Sleeps())


def mapped_meter(fake: FakeStripe, aggregation: str = "sum", *, event_name: str | None = None) -> tuple[Meter, dict]:
    code = f"push-{aggregation.replace('_', '-')}-{next(_codes)}"
    meter = meter_create(code=code, name=code, aggregation=aggregation, now=T0 - timedelta(days=1))
    stripe_meter = fake.add_meter(event_name or f"{code}-event")
    meter_mapping_create(meter=meter, event_name=stripe_meter["event_name"], now=T0 - timedelta(days=1))
    return meter, stripe_meter


def provider_customer(*, since: datetime = T0, **fields: Any) -> Customer:
    n = next(_codes)
    return customer_create(
        external_id=f"push-tenant-{n}",
        name=f"Tenant {n}",
        email=f"t{n}@example.com",
        billing_mode="provider",
        now=since,
        **fields,
    )


def native_customer() -> Customer:
    n = next(_codes)
    return customer_create(external_id=f"native-{n}", name=f"Native {n}", now=T0 - timedelta(days=1))


def switch(customer: Customer, mode: str, when: datetime) -> Customer:
    return customer_update(customer=customer, changes={"billing_mode": mode}, now=when)


def events(
    customer: Customer, meter: Meter, rows: list[tuple[datetime, Any]], *, now: datetime, keys: list[str] | None = None
) -> list[str]:
    return ingest(customer, meter, rows, now=now, keys=keys)


def lane_of(customer: Customer, meter: Meter, now: datetime) -> UsagePushLane:
    usage_push_lanes_ensure(now=now)
    return UsagePushLane.objects.get(customer=customer, meter=meter)


def run(
    fake: FakeStripe, customer: Customer, meter: Meter, now: datetime, *, sleeps: Sleeps | None = None
) -> LaneResult:
    fake.now = now
    lane = lane_of(customer, meter, now)
    return usage_push_lane_run(lane_id=lane.pk, now=now, provider=provider(sleeps))


def pushes(customer: Customer, meter: Meter) -> list[UsagePush]:
    return list(UsagePush.objects.filter(customer=customer, meter=meter).order_by("created_at", "id"))


def provider_total(fake: FakeStripe, stripe_meter: dict, customer: Customer, start: datetime, end: datetime) -> Decimal:
    customer.refresh_from_db()
    return fake.summary_value(stripe_meter["id"], customer.provider_customer_id, start, end)
