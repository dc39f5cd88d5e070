"""Builders for billing tests: a customer, a licensed and a metered price, usage through real ingestion."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from catalog.models import Price
from catalog.services import price_create
from customers.tests.factories import CustomerFactory
from metering.ingest import usage_ingest
from metering.tests.factories import MeterFactory
from subscriptions.services.lifecycle import ItemSpec, subscription_create

T0 = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)


def fixed_price(
    unit: str = "1000",
    *,
    currency: str = "usd",
    interval: str = "month",
    every: int = 1,
    flat: int = 0,
    now: datetime = T0,
) -> Price:
    return price_create(
        type="standalone",
        duration_amount=every,
        duration_unit=interval,
        amount={"model": "fixed", "currency": currency, "unit": unit, "flat": flat},
        now=now,
    )


def metered_price(
    meter_code: str | None = None,
    *,
    currency: str = "usd",
    interval: str = "month",
    tiers: list | None = None,
    unit: str = "0.5",
    now: datetime = T0,
) -> Price:
    meter = MeterFactory(code=meter_code) if meter_code else MeterFactory()
    amount = (
        {"model": "tiered", "currency": currency, "mode": "graduated", "tiers": tiers}
        if tiers
        else {"model": "fixed", "currency": currency, "unit": unit, "flat": 0}
    )
    return price_create(
        type="standalone", duration_amount=1, duration_unit=interval, amount=amount, meter_id=meter.id, now=now
    )


def use(customer, price: Price, value: str | int, at: datetime, *, now: datetime | None = None, key: str | None = None):
    body = {"customer": customer.id, "meter": price.meter.code, "value": str(value), "timestamp": at.isoformat()}
    if key is not None:
        body["idempotency_key"] = key
    result = usage_ingest(events=[body], now=now or at)
    assert result.created == 1, result.results
    return result.results[0]["id"]


def subscribe(customer=None, *prices: Price, quantity: Decimal | None = None, now: datetime = T0, **kwargs):
    customer = customer or CustomerFactory()
    specs = [ItemSpec(price=p, quantity=(quantity if p.meter_id is None else None)) for p in prices]
    return subscription_create(customer=customer, items=specs, now=now, **kwargs)


def at(month: int, day: int, hour: int = 12, year: int = 2026, minute: int = 0, second: int = 0) -> datetime:
    """An aware UTC instant; the default hour is T0's, so `at(2, 28)` is a period boundary of a T0 anchor."""
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def invoices_of(subscription) -> list:
    """The subscription's invoices in the order they were numbered (drafts last, by period)."""
    from invoicing.models import Invoice

    return sorted(
        Invoice.objects.filter(subscription=subscription).prefetch_related("lines"),
        key=lambda i: (i.number is None, i.number or "", i.period_start or T0),
    )


def kinds(invoice) -> list[tuple[str, int]]:
    return [(line.kind, line.amount) for line in invoice.lines.all()]


def event_types(object_id: str) -> list[str]:
    from webhooks.models import BillingEvent

    return list(
        BillingEvent.objects.filter(object_id=object_id).order_by("created_at", "id").values_list("type", flat=True)
    )
