"""The upcoming-invoice preview: what renewal will issue at the end of the current period, with the
usage known now. It runs renewal's own `plan_step`, so the preview is exactly what renewal bills."""

from __future__ import annotations

from datetime import datetime

from billing_site.errors import Conflict
from invoicing.drafts import Draft
from subscriptions.models import Subscription
from subscriptions.services.context import BillingContext
from subscriptions.services.renewal import plan_step
from subscriptions.services.status import Status


def subscription_upcoming_invoice(*, subscription: Subscription, now: datetime) -> Draft:
    sub = Subscription.objects.select_related("customer", "coupon").get(pk=subscription.pk)
    if sub.status == Status.CANCELED:
        raise Conflict(f"Subscription {sub.id} has ended; it has no upcoming invoice.", code="subscription_canceled")
    step = plan_step(sub, now=now, ctx=BillingContext(now=now))
    if step.draft is None:
        raise Conflict(f"Subscription {sub.id} ends without another invoice.", code="no_upcoming_invoice")
    return step.draft
