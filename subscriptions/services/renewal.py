"""Renewal: what happens at the end of a subscription's period, for one subscription or thousands.

`plan_step` decides what the end of the current period means (the trial ends, the period is billed and
the next one starts, or a pending cancellation takes effect) and builds the invoice for it; it writes
nothing. Renewal applies steps until the subscription is up to date; the upcoming-invoice preview shows
the next step's invoice. Same code, so the preview is what renewal will bill.

The beat sweep (`renew_subscriptions_job`) only finds due subscriptions and enqueues one task per batch of
them (`subscriptions.tasks.subscriptions_renew_batch`); the task claims its batch with SKIP LOCKED (so an
overlapping sweep, a retried task or a second worker pass over what is taken), reads everything the batch
needs in a few queries (`BillingContext`) and writes its invoices in a few statements
(`SubscriptionInvoiceWriter`), one transaction per batch. If a batch fails, its subscriptions are retried one by one
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
from django.db.models import Min, QuerySet

from billing_site.locks import LockRank, lock_rows
from billing_site.tasks import enqueue_each
from customers.clocks import clock_scope
from customers.models import Customer
from invoicing.drafts import Draft
from subscriptions.locks import claim_subscriptions
from subscriptions.models import Subscription, SubscriptionItem, SubscriptionPriceMigration
from subscriptions.services.builder import (
    CHANGE_MARGIN,
    Reason,
    SubscriptionInvoiceWriter,
    consolidation_key,
    draft_for_cycle,
    item_usage_window,
    late_usage_lines,
    new_draft,
    subscription_draft_finish,
)
from subscriptions.services.context import BillingContext, ItemMove
from subscriptions.services.lifecycle import _first_period, _next_period, _period_of, subscription_end, zone_of
from subscriptions.services.status import LIVE, Status, subscription_event_emit, subscription_status_change

logger = logging.getLogger(__name__)


@dataclass
class Step:
    event: str
    previous: dict[str, Any]
    updates: dict[str, Any] = field(default_factory=dict)
    draft: Draft | None = None
    status: str | None = None  # the status the step moves to, when it changes one
    ends: bool = False  # a pending cancellation takes effect: `subscription_end` applies it
    moves: list[ItemMove] = field(default_factory=list)  # price migrations applied at this boundary


def plan_step(sub: Subscription, *, now: datetime, ctx: BillingContext) -> Step:
    """What the end of the subscription's current period does, with the invoice it issues."""
    ended = _period_of(sub)
    at = ended.end  # each step happens at the boundary it belongs to, even when catching up
    if sub.cancel_at_period_end:
        # The subscription ends at the boundary. A trial's usage is never billed and no first period
        # starts, so a trial ends without an invoice; otherwise the period's usage is billed in arrears.
        draft = None
        if sub.status != Status.TRIALING:
            draft = draft_for_cycle(sub, now=now, ended=ended, advance=None, reason=Reason.SUBSCRIPTION_CANCEL, ctx=ctx)
        return Step(
            event="subscription.canceled",
            previous={"status": sub.status},
            draft=draft if draft is not None and draft.lines else None,
            status=Status.CANCELED,
            ends=True,
        )
    moves = ctx.move_items(sub, at=at)
    if sub.status == Status.TRIALING:
        first, fraction = _first_period(
            sub.billing_cycle_anchor, sub.interval_unit, sub.interval_amount, at, zone_of(sub)
        )
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
            previous={},
            updates={"current_period_start": first.start, "current_period_end": first.end},
            draft=draft,
            status=Status.ACTIVE,
            moves=moves,
        )
    following = _next_period(sub, ended)
    draft = draft_for_cycle(sub, now=now, ended=ended, advance=following, reason=Reason.SUBSCRIPTION_CYCLE, ctx=ctx)
    return Step(
        event="subscription.renewed",
        previous={"current_period_start": ended.start.isoformat()},
        updates={"current_period_start": following.start, "current_period_end": following.end},
        draft=draft,
        moves=moves,
    )


def moves_write(moves: list[ItemMove], *, now: datetime) -> None:
    """Write the price migrations a renewal step applied in memory, before its invoice (whose lines refer
    to the new items): the old item ends at the boundary, the new one is inserted, the move is marked."""
    for move in moves:
        status = SubscriptionPriceMigration.Status.SKIPPED
        if move.new is not None and move.old is not None:
            SubscriptionItem.objects.filter(pk=move.old.pk).update(removed_at=move.at)
            move.new.save(force_insert=True)
            status = SubscriptionPriceMigration.Status.APPLIED
        SubscriptionPriceMigration.objects.filter(
            pk=move.move.pk, status=SubscriptionPriceMigration.Status.PENDING
        ).update(status=status, applied_at=now, updated_at=now)


def _renew_step(
    sub: Subscription,
    *,
    now: datetime,
    ctx: BillingContext,
    writer: SubscriptionInvoiceWriter,
    consolidate: dict[tuple[Any, ...], list[tuple[Subscription, Draft]]] | None,
    last_only: bool,
) -> tuple[int, bool]:
    """Take one renewal step of a locked, due subscription: the end of its current period. A cycle draft
    with a `consolidation_key` goes to `consolidate` (with `last_only`, only the step renewal lands in)
    instead of the writer. Returns the invoices it issued and whether the subscription ended."""
    if sub.cancel_at_period_end:
        invoice = subscription_end(sub, at=sub.current_period_end, now=now, ctx=ctx, writer=writer)
        return int(invoice is not None), True
    issued = 0
    step = plan_step(sub, now=now, ctx=ctx)
    moves_write(step.moves, now=now)
    if step.draft is not None:
        key = consolidation_key(sub, step.draft) if consolidate is not None else None
        last = not last_only or step.updates.get("current_period_end", now) > now
        if key is not None and last and consolidate is not None:
            consolidate.setdefault(key, []).append((sub, step.draft))
        else:
            writer.add_for(sub, step.draft)
            issued += 1
    if step.status is not None:
        subscription_status_change(
            subscription=sub,
            to=step.status,
            now=now,
            event=step.event,
            fields=step.updates,
            previous=step.previous,
            writer=writer,
            items=ctx.items(sub),
        )
    else:
        writer.update_subscription(sub, **step.updates)
        subscription_event_emit(sub, step.event, now=now, previous=step.previous, writer=writer, items=ctx.items(sub))
    return issued, False


def renew_one(
    sub: Subscription,
    *,
    now: datetime,
    ctx: BillingContext,
    writer: SubscriptionInvoiceWriter,
    consolidate: dict[tuple[Any, ...], list[tuple[Subscription, Draft]]] | None = None,
) -> int:
    """Bring one locked subscription up to `now` (one invoice per ended period, in order), collecting the
    writes in `writer`. Returns the number of invoices it issued. With `consolidate`, the cycle invoice of
    the last step (the period renewal lands in, never a catch-up step) is set aside under its
    `consolidation_key` for the batch to bill with its siblings (`renew_by_boundary` consolidates the
    catch-up steps as well)."""
    issued = 0
    while sub.status in LIVE and sub.current_period_end <= now:
        made, ended = _renew_step(sub, now=now, ctx=ctx, writer=writer, consolidate=consolidate, last_only=True)
        issued += made
        if ended:
            break
    return issued


def renew_by_boundary(
    subs: list[Subscription], *, now: datetime, ctx: BillingContext, writer: SubscriptionInvoiceWriter
) -> int:
    """Bring locked subscriptions of consolidating customers up to `now` boundary by boundary, so catch-up
    periods (renewal long after several periods ended) are consolidated as the last one is: at each step,
    every subscription whose period ends at the soonest boundary takes one step, the cycle drafts of that
    boundary are billed together by `consolidation_key`, then the next boundary. Billing a boundary before
    the next one keeps the context true (watermarks, consumed pending items) for the later steps."""
    issued = 0
    ended: set[str] = set()
    while True:
        due = [s for s in subs if s.pk not in ended and s.status in LIVE and s.current_period_end <= now]
        if not due:
            return issued
        boundary = min(s.current_period_end for s in due)
        consolidate: dict[tuple[Any, ...], list[tuple[Subscription, Draft]]] = {}
        for sub in due:
            if sub.current_period_end != boundary:
                continue
            made, done = _renew_step(sub, now=now, ctx=ctx, writer=writer, consolidate=consolidate, last_only=False)
            issued += made
            if done:
                ended.add(sub.pk)
        for group in consolidate.values():
            writer.add_consolidated(sorted(group, key=lambda pair: pair[0].id))
            issued += 1


def renew_batch(subs: list[Subscription], now: datetime) -> int:
    """Renew locked subscriptions up to `now` in the caller's transaction; returns the invoices issued.
    Subscriptions of consolidating customers are renewed boundary by boundary (`renew_by_boundary`), the
    others one after the other (`renew_one`)."""
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
    writer = SubscriptionInvoiceWriter(now=now, ctx=ctx)
    consolidating = [sub for sub in subs if sub.customer.invoice_consolidation]
    issued = sum(
        renew_one(sub, now=now, ctx=ctx, writer=writer) for sub in subs if not sub.customer.invoice_consolidation
    )
    issued += renew_by_boundary(consolidating, now=now, ctx=ctx, writer=writer)
    writer.flush()
    return issued


def _claim_siblings(subs: list[Subscription], due: QuerySet[Subscription]) -> list[Subscription]:
    """The due subscriptions of the batch's consolidating customers that another batch did not claim, so a
    customer's aligned subscriptions are renewed (and invoiced) together."""
    customers = {s.customer_id for s in subs if s.customer.invoice_consolidation}
    if not customers:
        return []
    siblings = due.filter(customer_id__in=customers).exclude(pk__in=[s.pk for s in subs])
    return claim_subscriptions(siblings, limit=settings.RENEWAL_BATCH_SIZE)


def subscriptions_due(now: datetime, *, clock: str | None = None, every_clock: bool = False) -> QuerySet[Subscription]:
    """Live subscriptions whose period has ended. Those of a deactivated customer (suspended by the
    control plane) wait, except a cancellation at period end, which still takes effect at its boundary:
    their ended periods are billed, in order, when the customer is activated again.

    Only customers on no test clock (`clock=None`, real time), or only those of `clock` (its advance);
    `every_clock` drops that filter, for a task renewing ids its sweep already chose."""
    due = Subscription.objects.filter(status__in=LIVE, current_period_end__lte=now).exclude(
        customer__status=Customer.Status.DEACTIVATED, cancel_at_period_end=False
    )
    return due if every_clock else clock_scope(due, clock)


def subscriptions_renew(*, now: datetime, ids: list[str] | None = None, limit: int | None = None) -> dict[str, int]:
    """Renew due subscriptions (only those of `ids`, when given) up to `now`: claim a batch with SKIP
    LOCKED, renew it in one transaction, repeat until nothing due is left to claim. Safe to run
    concurrently and to re-run: what another worker holds is passed over, what is no longer due is not
    claimed. If a batch fails, its subscriptions are retried one by one so one bad subscription cannot
    hold back the others."""
    renewed = invoices = failed = 0
    failed_ids: set[str] = set()
    size = settings.RENEWAL_BATCH_SIZE
    due = subscriptions_due(now) if ids is None else subscriptions_due(now, every_clock=True).filter(pk__in=ids)
    while limit is None or renewed < limit:
        with transaction.atomic():
            subs = claim_subscriptions(
                due.exclude(pk__in=failed_ids), limit=size if limit is None else min(size, limit - renewed)
            )
            if not subs:
                break
            subs = subs + _claim_siblings(subs, due.exclude(pk__in=failed_ids))
            try:
                with transaction.atomic():
                    invoices += renew_batch(subs, now)
                renewed += len(subs)
                if ids is not None and len(subs) >= len(ids) - len(failed_ids):
                    break  # a task's batch, all of it renewed: no claim that can only come back empty
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


def renew_subscriptions_job(*, now: datetime, clock: str | None = None) -> dict[str, int]:
    """The beat sweep: find every subscription whose period has ended (trials ending, periods to bill,
    cancellations at period end) and enqueue one renewal task per batch of them. `clock`: see
    `customers.clocks.clock_scope` (None: customers on no test clock)."""
    from subscriptions.tasks import subscriptions_renew_batch

    ids = list(subscriptions_due(now, clock=clock).order_by("current_period_end", "id").values_list("id", flat=True))
    size = settings.RENEWAL_BATCH_SIZE
    batches = [(ids[start : start + size], now.isoformat()) for start in range(0, len(ids), size)]
    done = enqueue_each(subscriptions_renew_batch, batches)
    if done or not ids:  # ran inline (run_job, tests): what the tasks did
        return {"renewed": done["renewed"], "invoices": done["invoices"], "failed": done["failed"]}
    return {"due": len(ids), "tasks": len(batches)}


def subscriptions_bill_ended_late_usage(*, now: datetime, ids: list[str]) -> dict[str, int]:
    """Usage can still arrive, or be canceled, for a subscription's last periods after it ended (events
    are accepted up to the backfill window after their timestamp). Bill the difference on a late-usage
    invoice, exactly as renewal does for live subscriptions; the watermarks make it once."""
    issued = 0
    with transaction.atomic():
        subs = lock_rows(
            Subscription.objects.filter(pk__in=ids, status=Status.CANCELED).select_related("customer", "coupon"),
            LockRank.SUBSCRIPTION,
            skip_locked=True,
        )
        ctx = BillingContext.for_subscriptions(subs, now=now)
        writer = SubscriptionInvoiceWriter(now=now, ctx=ctx)
        for sub in subs:
            lines = late_usage_lines(sub, now=now, exclude=set(), ctx=ctx, changed_only=True)
            if lines:
                draft = new_draft(sub, reason=Reason.SUBSCRIPTION_CANCEL, period=None, lines=lines)
                writer.add_for(sub, subscription_draft_finish(draft, sub, ctx=ctx))
                issued += 1
        writer.flush()
    return {"subscriptions": len(subs), "invoices": issued}


def ended_late_usage_job(*, now: datetime, batch: int = 200, clock: str | None = None) -> dict[str, int]:
    """The sweep: subscriptions that ended within the backfill window, in batches, one task each
    (`clock`: see `customers.clocks.clock_scope`)."""
    from subscriptions.tasks import subscriptions_bill_ended_late_usage_batch

    since = now - settings.METERING_BACKFILL_WINDOW - CHANGE_MARGIN
    ids = list(
        clock_scope(Subscription.objects.filter(status=Status.CANCELED, ended_at__gte=since), clock)
        .order_by("id")
        .values_list("id", flat=True)
    )
    batches = [(ids[start : start + batch], now.isoformat()) for start in range(0, len(ids), batch)]
    done = enqueue_each(subscriptions_bill_ended_late_usage_batch, batches)
    return {"subscriptions": len(ids), "invoices": done["invoices"]}


def renewal_next_due(*, clock: str, after: datetime) -> datetime | None:
    """The test clock's next renewal moment after `after`: the soonest end of a live period (a trial, a
    period to bill, a cancellation at period end) of the clock's customers that renewal would act on."""
    live = Subscription.objects.filter(status__in=LIVE, current_period_end__gt=after).exclude(
        customer__status=Customer.Status.DEACTIVATED, cancel_at_period_end=False
    )
    return clock_scope(live, clock).aggregate(at=Min("current_period_end"))["at"]
