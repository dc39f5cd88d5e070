"""Progressive billing: a subscription with usage thresholds is invoiced as soon as its current period's
usage amount crosses one, instead of only at the period's end; the period's final invoice then subtracts
what was already billed (a `progressive_credit` line, `builder.progressive_credit_lines`).

The job evaluates subscriptions in claimed batches (SKIP LOCKED), reading their usage with one query per
meter and window (`BillingContext.prefetch_usage`), never one query per event. A crossing is billed exactly
once: the `ProgressiveBilling` rows are unique per (subscription, period, threshold), written in the
transaction that writes the invoice, under the subscription's lock.

Ingestion triggers it too: a committed batch enqueues `subscriptions.evaluate_progressive_billing` for its
customers with thresholds (`subscriptions.progressive_ingest`), which runs the same evaluation for one
customer (`customer_bill_thresholds`); the job catches up whatever a lost task left.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.conf import settings
from django.db import IntegrityError, transaction

from billing_site.errors import InvalidRequest
from billing_site.locks import LockRank, lock_rows
from customers.clocks import clock_scope
from customers.locks import lock_customer
from invoicing.models import Invoice, InvoiceLine
from subscriptions.locks import claim_subscriptions
from subscriptions.models import ProgressiveBilling, Subscription
from subscriptions.periods import Period
from subscriptions.services.builder import (
    SubscriptionInvoiceWriter,
    item_usage_window,
    metered_line,
    new_draft,
    progressive_credit_line,
    subscription_draft_finish,
)
from subscriptions.services.context import BillingContext
from subscriptions.services.status import LIVE, Status

logger = logging.getLogger(__name__)
Kind = InvoiceLine.Kind
MAX_MINOR = 2**63 - 1


def thresholds_clean(value: object, param: str = "progressive_billing_thresholds") -> list[int]:
    """Ascending, distinct, positive integer amounts in minor units (at most 20)."""
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > 20:
        raise InvalidRequest("A list of at most 20 amounts in minor units.", param=param, code="parameter_invalid")
    for index, amount in enumerate(value):
        if isinstance(amount, bool) or not isinstance(amount, int) or not 1 <= amount <= MAX_MINOR:
            message = "A threshold is a positive integer amount in minor units."
            raise InvalidRequest(message, param=f"{param}[{index}]", code="parameter_invalid")
        if index and amount <= value[index - 1]:
            raise InvalidRequest(
                "Thresholds must be in ascending order, each once.", param=f"{param}[{index}]", code="parameter_invalid"
            )
    return list(value)


def _bill_one(sub: Subscription, *, now: datetime, ctx: BillingContext, writer: SubscriptionInvoiceWriter) -> bool:
    period = Period(sub.current_period_start, sub.current_period_end)
    if sub.status == Status.TRIALING or sub.cancel_at_period_end or not period.contains(now):
        return False
    lines = []
    for item in ctx.items(sub):
        if item.price.meter_id is None:
            continue
        line = metered_line(item, period, sub.customer, until=now, ctx=ctx)
        if line is not None and line.amount:
            line.watermark = None  # the period's final invoice bills (and watermarks) the usage
            lines.append(line)
    usage = sum(line.amount for line in lines)
    done = ctx.progressive_thresholds(sub, period.start)
    crossed = [t for t in sub.progressive_billing_thresholds if t <= usage and t not in done]
    already = ctx.progressive_billed(sub, period.start)
    if not crossed or usage <= already:
        return False
    draft = new_draft(sub, reason=Invoice.BillingReason.SUBSCRIPTION_THRESHOLD, period=Period(period.start, now))
    draft.lines.extend(lines)
    if already:
        draft.lines.append(progressive_credit_line(already, period))
    invoice = writer.add_for(sub, subscription_draft_finish(draft, sub, ctx=ctx))
    writer.progressive.extend(
        ProgressiveBilling(
            subscription=sub, period_start=period.start, threshold=t, invoice=invoice, amount=usage - already
        )
        for t in crossed
    )
    return True


def _bill_batch(subs: list[Subscription], *, now: datetime) -> int:
    """Evaluate these locked subscriptions (the caller's transaction holds their rows): one usage read per
    meter and window for the batch, then the threshold invoices, their `ProgressiveBilling` rows and
    whatever finalization does (collection is enqueued on commit), all or nothing."""
    ctx = BillingContext.for_subscriptions(subs, now=now)
    wanted = []
    for sub in subs:
        period = Period(sub.current_period_start, sub.current_period_end)
        for item in ctx.items(sub):
            window = item_usage_window(item, period) if item.price.meter_id else None
            if window is not None and window.start < now:
                wanted.append((item.price.meter, sub.customer_id, window.start, min(window.end, now)))
    ctx.prefetch_usage(wanted)
    writer = SubscriptionInvoiceWriter(now=now, ctx=ctx)
    try:
        with transaction.atomic():
            invoices = sum(_bill_one(sub, now=now, ctx=ctx, writer=writer) for sub in subs)
            writer.flush()
    except IntegrityError:
        # A threshold billed concurrently (the constraint decided): nothing of this batch was written;
        # the next run re-reads what is billed.
        logger.info("progressive billing batch skipped: a threshold was billed concurrently")
        return 0
    return invoices


def subscriptions_with_thresholds():
    """Live subscriptions with progressive thresholds."""
    return Subscription.objects.filter(status__in=LIVE).exclude(progressive_billing_thresholds=[])


def subscriptions_bill_thresholds(
    *, now: datetime, ids: list[str] | None = None, clock: str | None = None
) -> dict[str, int]:
    """Invoice every live subscription with thresholds whose current period's usage crossed one since it
    was last billed. Claims batches with SKIP LOCKED; safe to run concurrently and to re-run. Without
    `ids`, only the subscriptions of customers on no test clock (`clock=None`) or of `clock`'s customers
    (`customers.clocks.clock_scope`)."""
    due = subscriptions_with_thresholds()
    due = clock_scope(due, clock) if ids is None else due.filter(pk__in=ids)
    seen: set[str] = set()
    invoices = checked = 0
    while True:
        with transaction.atomic():
            subs = claim_subscriptions(due.exclude(pk__in=seen), limit=settings.RENEWAL_BATCH_SIZE)
            if not subs:
                break
            seen.update(s.pk for s in subs)
            checked += len(subs)
            invoices += _bill_batch(subs, now=now)
    return {"subscriptions": checked, "invoices": invoices}


def customer_bill_thresholds(*, customer_id: str, now: datetime) -> dict[str, int]:
    """One customer's evaluation (the `subscriptions.evaluate_progressive_billing` task ingestion enqueues):
    the same per-subscription evaluation as the job, for this customer's live subscriptions with thresholds.
    Locks the customer, then those subscriptions, waiting for them (customer -> subscription -> invoice):
    a job batch or another task holding one is waited for, not passed over, so its usage read sees every
    batch committed before this task started; what it billed is then read under the lock, and the unique
    constraint keeps each crossing once whatever runs concurrently."""
    with transaction.atomic():
        lock_customer(customer_id)
        subs = lock_rows(
            subscriptions_with_thresholds().filter(customer_id=customer_id).select_related("customer", "coupon"),
            LockRank.SUBSCRIPTION,
        )
        invoices = _bill_batch(subs, now=now) if subs else 0
    return {"subscriptions": len(subs), "invoices": invoices}


def progressive_billing_job(*, now: datetime, clock: str | None = None) -> dict[str, int]:
    """The sweep (behind ingestion's per-customer task; also after a bulk load): every subscription with
    thresholds (`clock`: see `customers.clocks.clock_scope`). No `next_due`: a threshold is crossed by
    usage, which a clock customer records at its clock's time; an advance evaluates it at the clock's
    current time first, then at every later due moment (before each renewal bills the period)."""
    return subscriptions_bill_thresholds(now=now, clock=clock)
