from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db.models import QuerySet

from billing_site.errors import InvalidRequest, NotFound
from billing_site.selectors import apply_filters
from catalog.filters import CouponFilter, PriceFilter, ProductFilter
from catalog.models import Coupon, Price, Product
from catalog.percentage import EventStats, FreeAllowance, PercentageAmount, PercentageUsage
from catalog.pricing import MAX_MINOR, PricingError, Quote, quote, quote_events, quote_percentage
from metering.class_stats import Classifier, HourStats, period_class_stats
from metering.models import Meter
from metering.selectors import usage_event_values
from metering.usage import HOUR, consistent_snapshot


def product_get(*, product_id: str) -> Product:
    product = Product.objects.filter(pk=product_id).first()
    if product is None:
        raise NotFound(f"No such product: {product_id}", param="id")
    return product


def product_list(*, filters: Mapping[str, Any] | None = None) -> QuerySet[Product]:
    return apply_filters(ProductFilter, filters or {}, Product.objects.all())


def price_get(*, price_id: str) -> Price:
    price = Price.objects.filter(pk=price_id).first()
    if price is None:
        raise NotFound(f"No such price: {price_id}", param="id")
    return price


def price_list(*, filters: Mapping[str, Any] | None = None) -> QuerySet[Price]:
    return apply_filters(PriceFilter, filters or {}, Price.objects.all())


def price_quote(*, price: Price, quantity: Decimal | None = None, events: list[Decimal] | None = None) -> Quote:
    """What `quantity` units of `price` cost (or a period of `events`, each event's value in order), with the
    breakdown: tiers, or the parts of the package and percentage models. Archived prices still quote:
    subscriptions that already use them are billed with them."""
    try:
        result = quote(price.engine_amount, quantity) if events is None else quote_events(price.engine_amount, events)
    except PricingError as exc:
        raise InvalidRequest(exc.message, code=exc.code, param=exc.param) from None
    # The engine computes any amount exactly; what leaves the service must fit a BIGINT column (and a
    # JSON integer every client can read), so a larger total is the caller's quantity being out of range.
    if result.amount > MAX_MINOR:
        raise InvalidRequest(
            f"At this quantity the amount exceeds the largest amount we can bill ({MAX_MINOR} minor units).",
            code="quantity_out_of_range",
            param="quantity",
        )
    return result


def coupon_get(*, coupon_id: str) -> Coupon:
    coupon = Coupon.objects.filter(pk=coupon_id).first()
    if coupon is None:
        raise NotFound(f"No such coupon: {coupon_id}", param="id")
    return coupon


def coupon_list(*, filters: Mapping[str, Any] | None = None) -> QuerySet[Coupon]:
    return apply_filters(CouponFilter, filters or {}, Coupon.objects.all())


# --- Percentage prices from roll-ups --------------------------------------------------------------


def percentage_classifier_rows() -> Iterable[tuple[str, Decimal, Decimal, Decimal | None, Decimal | None]]:
    """(meter id, rate, fixed fee, per_event_min, per_event_max) of every metered percentage price with
    per-event bounds: the classifiers whose hourly statistics the roll-up keeps (registered with metering in
    `catalog.apps`). Archived prices too, since the subscriptions already on them are still billed."""
    for price in Price.objects.filter(model=Price.AmountModel.PERCENTAGE, meter__isnull=False).only(
        "meter_id", "amount"
    ):
        amount = price.engine_amount
        if isinstance(amount, PercentageAmount) and amount.has_bounds:
            yield price.meter_id, amount.rate, amount.fixed_fee, amount.per_event_min, amount.per_event_max


def classifier_of(amount: PercentageAmount) -> Classifier:
    return Classifier.of(amount.rate, amount.fixed_fee, amount.per_event_min, amount.per_event_max)


def _block(hour: HourStats) -> EventStats:
    return EventStats(
        count=hour.count,
        total=hour.total,
        below_count=hour.below_count,
        above_count=hour.above_count,
        middle_total=hour.middle_total,
    )


def percentage_usage(
    *, amount: PercentageAmount, meter: Meter, customer_id: str, start: datetime, end: datetime
) -> PercentageUsage:
    """The period's EventStats and free allowance for one percentage price, from the hourly roll-ups.

    The period's events are read per hour (`metering.class_stats.period_class_stats`: clean whole hours from
    their rows, the rest raw). The allowance takes whole hours while every event in them is free; the one
    hour where it ends is read event by event (and that hour's stats are taken from the same read, so the
    allowance is always a prefix of the period's events). No event past that hour is read."""
    classifier = classifier_of(amount)
    allowance = FreeAllowance.start(amount)
    period = EventStats()
    with consistent_snapshot():
        for hour in period_class_stats(
            meter=meter, customer_id=customer_id, start=start, end=end, classifier=classifier
        ):
            block = _block(hour)
            if not allowance.done:
                if allowance.fits(block):
                    allowance = allowance.take_block(block)
                else:
                    values = usage_event_values(
                        meter=meter,
                        customer_id=customer_id,
                        start=max(start, hour.hour),
                        end=min(end, hour.hour + HOUR),
                    )
                    block = EventStats.of(amount, values)
                    allowance = allowance.take_all(values)
            period = period + block
    return PercentageUsage(period=period, allowance=allowance)


def percentage_usage_quote(
    *, amount: PercentageAmount, meter: Meter, customer_id: str, start: datetime, end: datetime
) -> Quote:
    """What the customer's events of `meter` in [start, end) cost on a percentage price that charges per
    event, priced from the roll-ups (`percentage_usage`); equal to `quote_events` on the raw events."""
    return quote_percentage(
        amount, percentage_usage(amount=amount, meter=meter, customer_id=customer_id, start=start, end=end)
    )
