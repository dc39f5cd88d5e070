"""What usage alerts (metering) need from subscriptions, registered from `SubscriptionsConfig.ready()`:
a customer's current billing period, and the amount of its current period's upcoming invoice."""

from __future__ import annotations

from datetime import datetime

from billing_site.errors import Conflict
from subscriptions.models import Subscription

LIVE = (Subscription.Status.TRIALING, Subscription.Status.ACTIVE, Subscription.Status.PAST_DUE)


def _live(customer_ids: list[str], now: datetime):
    return Subscription.objects.filter(
        customer_id__in=customer_ids,
        status__in=LIVE,
        current_period_start__lte=now,
        current_period_end__gt=now,
    ).order_by("customer_id", "current_period_start", "id")


def current_periods(customer_ids: list[str], now: datetime) -> dict[str, tuple[datetime, datetime]]:
    """The current period of each customer's earliest-started live subscription."""
    found: dict[str, tuple[datetime, datetime]] = {}
    for customer_id, start, end in _live(customer_ids, now).values_list(
        "customer_id", "current_period_start", "current_period_end"
    ):
        found.setdefault(customer_id, (start, end))
    return found


def upcoming_amounts(customer_ids: list[str], now: datetime) -> dict[str, tuple[int, str, datetime, datetime]]:
    """The total of the upcoming invoices of each customer's live subscriptions whose current period is the
    customer's alert period (the earliest one) and whose currency is the first one's: the same code as
    renewal (`subscription_upcoming_invoice`)."""
    from subscriptions.services.preview import subscription_upcoming_invoice

    found: dict[str, tuple[int, str, datetime, datetime]] = {}
    for sub in _live(customer_ids, now):
        try:
            draft = subscription_upcoming_invoice(subscription=sub, now=now)
        except Conflict:  # ends without another invoice
            continue
        seen = found.get(sub.customer_id)
        if seen is None:
            found[sub.customer_id] = (draft.total, draft.currency, sub.current_period_start, sub.current_period_end)
        elif seen[1] == draft.currency and seen[2] == sub.current_period_start:
            found[sub.customer_id] = (seen[0] + draft.total, *seen[1:])
    return found


def register() -> None:
    from metering.alerts import register_amount_reader, register_period_resolver

    register_period_resolver(current_periods)
    register_amount_reader(upcoming_amounts)
