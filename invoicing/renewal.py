"""Renewal: what happens at the end of a subscription's period, for one subscription or thousands.

`plan_step` decides what the end of the current period means (the trial ends, the period is billed and
the next one starts, or a pending cancellation takes effect) and builds the invoice for it; it writes
nothing. Renewal applies steps until the subscription is up to date; the upcoming-invoice preview shows
the next step's invoice. Same code, so the preview is what renewal will bill.

The beat job claims subscriptions in batches with SKIP LOCKED (concurrent workers split the work), reads
everything a batch needs in a few queries (`BillingContext`) and writes its invoices in a few statements
(`InvoiceWriter`), one transaction per batch. If a batch fails, its subscriptions are retried one by one
so one bad subscription cannot hold back the others. The unique constraint on (subscription,
cycle_period_start) keeps a period from being invoiced twice whatever happens.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction

from invoicing.billing import (
    LIVE,
    Reason,
    Status,
    _first_period,
    _next_period,
    _period_of,
    draft_for_cycle,
    subscription_snapshot,
)
from invoicing.context import BillingContext
from invoicing.drafts import CHANGE_MARGIN, Draft, finish, item_usage_window, late_usage_lines
from invoicing.writer import InvoiceWriter
from subscriptions.models import Subscription

logger = logging.getLogger(__name__)


@dataclass
class Step:
    event: str
    previous: dict[str, Any]
    updates: dict[str, Any] = field(default_factory=dict)
    draft: Draft | None = None


def plan_step(sub: Subscription, *, now: datetime, ctx: BillingContext) -> Step:
    """What the end of the subscription's current period does, with the invoice it issues."""
    ended = _period_of(sub)
    at = ended.end  # each step happens at the boundary it belongs to, even when catching up
    if sub.status == Status.TRIALING and sub.cancel_at_period_end:
        # Canceled during the trial: it ends at trial end. Trial usage is never billed, and no first
        # period starts, so there is nothing to invoice.
        return Step(
            event="subscription.canceled",
            previous={"status": Status.TRIALING},
            updates={"status": Status.CANCELED, "ended_at": at, "cancel_at_period_end": False},
        )
    if sub.status == Status.TRIALING:
        first, fraction = _first_period(sub.billing_cycle_anchor, sub.interval_unit, sub.interval_amount, at)
        draft = draft_for_cycle(
            sub,
            now=now,
            ended=None,
            advance=first,
            reason=Reason.SUBSCRIPTION_CREATE,
            proration_fraction=fraction,
            ctx=ctx,
        )
        return Step(
            event="subscription.trial_ended",
            previous={"status": Status.TRIALING},
            updates={"status": Status.ACTIVE, "current_period_start": first.start, "current_period_end": first.end},
            draft=draft,
        )
    if sub.cancel_at_period_end:
        draft = draft_for_cycle(sub, now=now, ended=ended, advance=None, reason=Reason.SUBSCRIPTION_CANCEL, ctx=ctx)
        return Step(
            event="subscription.canceled",
            previous={"status": sub.status},
            updates={"status": Status.CANCELED, "ended_at": at, "cancel_at_period_end": False},
            draft=draft if draft.lines else None,
        )
    following = _next_period(sub, ended)
    draft = draft_for_cycle(sub, now=now, ended=ended, advance=following, reason=Reason.SUBSCRIPTION_CYCLE, ctx=ctx)
    return Step(
        event="subscription.renewed",
        previous={"current_period_start": ended.start.isoformat()},
        updates={"current_period_start": following.start, "current_period_end": following.end},
        draft=draft,
    )


def renew_one(sub: Subscription, *, now: datetime, ctx: BillingContext, writer: InvoiceWriter) -> int:
    """Bring one locked subscription up to `now` (one invoice per ended period, in order), collecting the
    writes in `writer`. Returns the number of invoices it issued."""
    issued = 0
    while sub.status in LIVE and sub.current_period_end <= now:
        step = plan_step(sub, now=now, ctx=ctx)
        if step.draft is not None:
            writer.add(step.draft)
            issued += 1
        writer.update_subscription(sub, **step.updates)
        data = subscription_snapshot(sub, items=ctx.live_items(sub))
        writer.emit(step.event, "subscription", sub.id, sub.customer_id, data, step.previous)
    return issued


def renew_batch(subs: list[Subscription], now: datetime) -> int:
    """Renew locked subscriptions up to `now` in the caller's transaction; returns the invoices issued."""
    ctx = BillingContext.for_subscriptions(subs, now=now)
    # The common case, read in one query per meter: each subscription's ended period, in arrears.
    wanted = []
    for sub in subs:
        if sub.status == Status.TRIALING:
            continue
        for item in ctx.items(sub):
            window = item_usage_window(item, _period_of(sub)) if item.price.meter_id else None
            if window is not None:
                wanted.append((item.price.meter, sub.customer_id, window.start, window.end))
    ctx.prefetch_usage(wanted)
    writer = InvoiceWriter(now=now, ctx=ctx)
    issued = sum(renew_one(sub, now=now, ctx=ctx, writer=writer) for sub in subs)
    writer.flush()
    return issued


def _claim(now: datetime, size: int, skip: set[str]) -> list[Subscription]:
    # The subscription rows only: a locked customer must not make SKIP LOCKED pass over its
    # subscriptions, and the coupon join is nullable (FOR UPDATE cannot lock the nullable side).
    return list(
        Subscription.objects.select_for_update(skip_locked=True, of=("self",))
        .select_related("customer", "coupon")
        .filter(status__in=LIVE, current_period_end__lte=now)
        .exclude(pk__in=skip)
        .order_by("current_period_end", "id")[:size]
    )


def renew_subscriptions_job(*, now: datetime, limit: int | None = None) -> dict[str, int]:
    """The beat job: end trials, bill every ended period (catching up missed ones), end subscriptions
    canceled at period end. Safe to run concurrently and to re-run."""
    renewed = invoices = failed = 0
    failed_ids: set[str] = set()
    size = settings.RENEWAL_BATCH_SIZE
    while limit is None or renewed < limit:
        with transaction.atomic():
            subs = _claim(now, size if limit is None else min(size, limit - renewed), failed_ids)
            if not subs:
                break
            try:
                with transaction.atomic():
                    invoices += renew_batch(subs, now)
                renewed += len(subs)
                continue
            except Exception:
                logger.warning("renewal batch of %d failed; retrying one by one", len(subs), exc_info=True)
            for sub in subs:
                sub.refresh_from_db()
                try:
                    with transaction.atomic():
                        invoices += renew_batch([sub], now)
                    renewed += 1
                except IntegrityError:
                    # Another worker billed this period after all: the unique constraint refused the
                    # second invoice, which is the point. Nothing of ours was written.
                    logger.info("renewal of %s skipped: period already invoiced", sub.pk)
                    failed_ids.add(sub.pk)
                except Exception:
                    failed += 1
                    failed_ids.add(sub.pk)
                    logger.exception("renewal of %s failed", sub.pk)
    return {"renewed": renewed, "invoices": invoices, "failed": failed}


def ended_late_usage_job(*, now: datetime, batch: int = 200) -> dict[str, int]:
    """Usage can still arrive, or be canceled, for a subscription's last periods after it ended (events
    are accepted up to the backfill window after their timestamp). Bill the difference on a late-usage
    invoice, exactly as renewal does for live subscriptions; the watermarks make it once."""
    since = now - settings.METERING_BACKFILL_WINDOW - CHANGE_MARGIN
    ids = list(
        Subscription.objects.filter(status=Status.CANCELED, ended_at__gte=since)
        .order_by("id")
        .values_list("id", flat=True)
    )
    issued = 0
    for start in range(0, len(ids), batch):
        with transaction.atomic():
            subs = list(
                Subscription.objects.select_for_update(skip_locked=True, of=("self",))
                .select_related("customer", "coupon")
                .filter(pk__in=ids[start : start + batch], status=Status.CANCELED)
            )
            ctx = BillingContext.for_subscriptions(subs, now=now)
            writer = InvoiceWriter(now=now, ctx=ctx)
            for sub in subs:
                lines = late_usage_lines(sub, now=now, exclude=set(), ctx=ctx, changed_only=True)
                if lines:
                    draft = Draft(
                        customer=sub.customer,
                        currency=sub.currency,
                        subscription=sub,
                        billing_reason=Reason.SUBSCRIPTION_CANCEL,
                        lines=lines,
                    )
                    writer.add(finish(draft, ctx=ctx))
                    issued += 1
            writer.flush()
    return {"subscriptions": len(ids), "invoices": issued}


def upcoming_invoice(*, subscription: Subscription, now: datetime) -> Draft:
    """The invoice renewal will issue at the end of the current period, with the usage known now."""
    from billing_site.errors import Conflict

    sub = Subscription.objects.select_related("customer", "coupon").get(pk=subscription.pk)
    if sub.status == Status.CANCELED:
        raise Conflict(f"Subscription {sub.id} has ended; it has no upcoming invoice.", code="subscription_canceled")
    step = plan_step(sub, now=now, ctx=BillingContext(now=now))
    if step.draft is None:
        raise Conflict(f"Subscription {sub.id} ends without another invoice.", code="no_upcoming_invoice")
    return step.draft
