"""The upcoming-invoice preview: what renewal will issue at the end of the current period, with the
usage known now. It runs renewal's own `plan_step`, so the preview is exactly what renewal bills."""

from __future__ import annotations

from datetime import datetime

from billing_site.errors import Conflict
from invoicing.drafts import Draft
from subscriptions.models import Subscription
from subscriptions.services.builder import consolidation_key, drafts_merge
from subscriptions.services.context import BillingContext
from subscriptions.services.renewal import plan_step
from subscriptions.services.status import LIVE, Status


def subscription_upcoming_invoice(*, subscription: Subscription, now: datetime) -> Draft:
    sub = Subscription.objects.select_related("customer", "coupon").get(pk=subscription.pk)
    if sub.status == Status.CANCELED:
        raise Conflict(f"Subscription {sub.id} has ended; it has no upcoming invoice.", code="subscription_canceled")
    ctx = BillingContext(now=now)
    step = plan_step(sub, now=now, ctx=ctx)
    if step.draft is None:
        raise Conflict(f"Subscription {sub.id} ends without another invoice.", code="no_upcoming_invoice")
    key = consolidation_key(sub, step.draft)
    if key is None:
        return step.draft
    # The customer consolidates: the upcoming invoice is the one renewal issues for every aligned sibling.
    group = [(sub, step.draft)]
    siblings = (
        Subscription.objects.filter(
            customer_id=sub.customer_id,
            status__in=LIVE,
            current_period_start=sub.current_period_start,
            current_period_end=sub.current_period_end,
        )
        .exclude(pk=sub.pk)
        .select_related("customer", "coupon")
    )
    for other in siblings:
        other_step = plan_step(other, now=now, ctx=ctx)
        if other_step.draft is not None and consolidation_key(other, other_step.draft) == key:
            group.append((other, other_step.draft))
    return drafts_merge(sorted(group, key=lambda pair: pair[0].id)) if len(group) > 1 else step.draft
