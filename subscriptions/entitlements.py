"""What a customer may use now: the features its live subscriptions' prices carry (issue 16).

`customer_entitlements` answers from the cache when it can (`customers.entitlements_cache`: two cache
round trips, no database), else builds the answer and caches it. The cached
answer is dropped when something it depends on changes: a subscription of the customer (every change
passes `subscription_event_emit`), its usage (ingestion and cancellation), a feature or an attachment
(the generation moves on), the customer's deletion; ENTITLEMENTS_CACHE_SECONDS bounds the rest.

Rules of the answer:
- Subscriptions that entitle: trialing, active and past_due (a customer in dunning keeps its features;
  unpaid and canceled do not). Features that are archived (`active: false`) are not granted.
- Per price, the price's own attachment of a feature overrides its product's.
- Across several prices and subscriptions: boolean is granted once; static takes the value of the most
  recently started subscription; metered adds the limits up (one unlimited attachment makes it
  unlimited), and `usage` is the meter's aggregate for the customer from the earliest current period
  start of the subscriptions granting it up to now, `remaining` the limit minus usage (never below 0).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db.models import Q

from billing_site.errors import NotFound
from billing_site.money import decimal_to_str
from catalog.models import Feature, FeatureAttachment
from customers.clocks import customer_now
from customers.entitlements_cache import entitlements_key, entitlements_state
from customers.models import Customer
from metering.selectors import usage_aggregate_many
from subscriptions.models import Subscription

logger = logging.getLogger(__name__)
ENTITLING = (Subscription.Status.TRIALING, Subscription.Status.ACTIVE, Subscription.Status.PAST_DUE)


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


@dataclass
class _Grant:
    feature: Feature
    value: str | None = None
    value_started: datetime | None = None
    limit: Decimal | None = Decimal(0)
    unlimited: bool = False
    period_start: datetime | None = None
    period_end: datetime | None = None
    subscriptions: set[str] = field(default_factory=set)


def entitlements_build(*, customer_id: str, now: datetime) -> dict[str, Any]:
    """The answer, from the database (three queries, plus one usage read per metered feature)."""
    subs = list(
        Subscription.objects.filter(customer_id=customer_id, status__in=ENTITLING)
        .prefetch_related("items__price")
        .order_by("start_date", "id")
    )
    prices: dict[str, list[Subscription]] = {}
    products: dict[str, str] = {}
    for sub in subs:
        for item in sub.items.all():
            prices.setdefault(item.price_id, []).append(sub)
            if item.price.product_id:
                products[item.price_id] = item.price.product_id
    grants: dict[str, _Grant] = {}
    if prices:
        attachments = list(
            FeatureAttachment.objects.filter(
                Q(price_id__in=list(prices)) | Q(product_id__in=list(set(products.values()))), feature__active=True
            ).select_related("feature")
        )
        by_price: dict[tuple[str, str], FeatureAttachment] = {}
        by_product: dict[tuple[str, str], FeatureAttachment] = {}
        for attachment in attachments:
            if attachment.price_id:
                by_price[(attachment.price_id, attachment.feature_id)] = attachment
            else:
                by_product[(attachment.product_id, attachment.feature_id)] = attachment
        for price_id, price_subs in prices.items():
            product_id = products.get(price_id)
            feature_ids = {f for (p, f) in by_price if p == price_id} | {
                f for (p, f) in by_product if product_id and p == product_id
            }
            for feature_id in feature_ids:
                attachment = by_price.get((price_id, feature_id)) or by_product[(product_id or "", feature_id)]
                for sub in price_subs:
                    _grant(grants, attachment, sub)
    data = [_render(grant, customer_id, now) for grant in sorted(grants.values(), key=lambda g: g.feature.lookup_key)]
    return {"object": "customer_entitlements", "customer": customer_id, "as_of": _iso(now), "data": data}


def _grant(grants: dict[str, _Grant], attachment: FeatureAttachment, sub: Subscription) -> None:
    feature = attachment.feature
    grant = grants.setdefault(feature.id, _Grant(feature=feature))
    grant.subscriptions.add(sub.id)
    if feature.type == Feature.Type.STATIC:
        if grant.value_started is None or sub.start_date >= grant.value_started:
            grant.value, grant.value_started = attachment.value, sub.start_date
    elif feature.type == Feature.Type.METERED:
        if attachment.limit is None:
            grant.unlimited = True
        else:
            grant.limit = (grant.limit or Decimal(0)) + attachment.limit
        if grant.period_start is None or sub.current_period_start < grant.period_start:
            grant.period_start = sub.current_period_start
        if grant.period_end is None or sub.current_period_end > grant.period_end:
            grant.period_end = sub.current_period_end


def _render(grant: _Grant, customer_id: str, now: datetime) -> dict[str, Any]:
    feature = grant.feature
    row: dict[str, Any] = {
        "feature": feature.lookup_key,
        "feature_id": feature.id,
        "name": feature.name,
        "type": feature.type,
        "value": True if feature.type == Feature.Type.BOOLEAN else grant.value,
        "limit": None,
        "usage": None,
        "remaining": None,
        "period_start": None,
        "period_end": None,
        "subscriptions": sorted(grant.subscriptions),
    }
    if feature.type == Feature.Type.METERED and grant.period_start is not None:
        end = min(now, grant.period_end) if grant.period_end else now
        usage = Decimal(0)
        if end > grant.period_start:
            usage = usage_aggregate_many(
                meter=feature.meter, customer_ids=[customer_id], start=grant.period_start, end=end
            )[customer_id].value
        row.update(
            usage=decimal_to_str(usage),
            period_start=_iso(grant.period_start),
            period_end=_iso(grant.period_end) if grant.period_end else None,
        )
        if not grant.unlimited:
            limit = grant.limit or Decimal(0)
            row.update(limit=decimal_to_str(limit), remaining=decimal_to_str(max(limit - usage, Decimal(0))))
    return row


def customer_entitlements(*, customer_id: str, now: datetime) -> dict[str, Any]:
    """The cached answer, or a new one (then cached). A customer that does not exist (or is deleted) is a
    404; deleting a customer drops its cached answer. A test clock's customer is answered at its clock's
    time."""
    try:
        key: str | None = entitlements_key(customer_id, entitlements_state(customer_id))
        cached = cache.get(key)
    except Exception:  # the cache is down: answer from the database, uncached
        logger.warning("entitlements cache unreachable; answering from the database", exc_info=True)
        key = cached = None
    if cached is not None:
        return cached
    customer = Customer.objects.exclude(status=Customer.Status.DELETED).filter(pk=customer_id).first()
    if customer is None:
        raise NotFound(f"No such customer: {customer_id}", param="id")
    answer = entitlements_build(customer_id=customer_id, now=customer_now(customer, now))
    if key is not None:
        try:
            cache.set(key, answer, timeout=settings.ENTITLEMENTS_CACHE_SECONDS)
        except Exception:
            logger.warning("entitlements cache unreachable; answer not cached", exc_info=True)
    return answer
