"""Pushing metered usage to the provider exactly once, slice by slice.

A lane is one (customer, meter) of a provider-mode customer with a mapped meter. Each run of a lane
(`usage_push_lane_run`, one Celery task per lane, started by the `push_usage` job) repeats:

1. In one short transaction under the lane's row lock, decide the next step from the database alone:
   - an outstanding push (pending or unknown) is sent again with the same identifier while the
     provider's 24 h uniqueness window holds (minus a margin), and settled by reading the provider's meter
     event summaries after that, never sent blindly;
   - otherwise slices whose usage changed since they were pushed (late events, cancellations: read from
     metering's roll-up bookkeeping through `usage_changed_hours`, not by rescanning history; once per
     run) get a correction: a positive increment, or for a negative difference a cancel of pushed events
     still inside the provider's cancel window (and a new increment for what remains), or else an
     `unreconcilable` row with the amount and a `usage_push.unreconcilable` event;
   - otherwise the next closed slice, in order, is planned: its value (the usage inside the customer's
     provider intervals) is written as a `UsagePush` row, claimed, before any call, and the lane advances.
2. Outside any transaction, make the one call.
3. In a second short transaction, record the answer (compare-and-set on the row).

The database keeps the promises: at most one outstanding push per (customer, meter) (a partial unique
index: one call in flight, slices in order), one `push` per slice, one cancel per pushed event.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Sum

from billing_site.ids import new_id
from billing_site.money import decimal_to_str
from customers.models import Customer
from customers.selectors import provider_intervals
from metering.locks import lock_first_push, lock_meter_mapping, lock_push_lane, lock_usage_push
from metering.push.mappings import mapping_for
from metering.push.models import MeterMapping, UsagePush, UsagePushLane
from metering.push.provider import Outcome, ProviderRefused, ProviderUnavailable, UsageProvider, usage_provider
from metering.push.slices import Interval, clip, slice_floor, slice_length
from metering.selectors import usage_aggregate, usage_changed_hours, usage_series
from webhooks.services import event_emit

logger = logging.getLogger(__name__)

# How long a claimed push belongs to the worker that claimed it (longer than any one call with its retries).
LEASE = timedelta(minutes=10)
# Stripe enforces identifier uniqueness and keeps idempotency keys for at least 24 hours; a push is sent
# again only well inside that, and later settled by reading the provider.
RETRY_WINDOW = timedelta(hours=23)
# Stripe cancels meter events it received less than 24 hours ago; our clock starts at the first attempt,
# which is never after Stripe's receipt.
CANCEL_WINDOW = timedelta(hours=23)
# Stripe takes meter events with timestamps within the past 35 days; a slice older than this is not sent.
PROVIDER_MAX_AGE = timedelta(days=35) - timedelta(hours=1)
# Usage changes are found by when they happened; a change committed a little after a run looked, with an
# earlier time, is caught by looking back this much further (a false positive costs one usage read).
CHANGE_MARGIN = timedelta(minutes=15)
# Waiting after a push got no usable answer or a rate limit: doubling per attempt, capped.
BACKOFF_FIRST = timedelta(minutes=1)
BACKOFF_MAX = timedelta(hours=1)
# A provider meter that could not be found is looked up again after this long.
RESOLVE_RETRY = timedelta(minutes=15)
MAX_STEPS = 200
# The most a lane looks ahead in one read when it catches up (the provider takes 35 days at most).
CATCH_UP = timedelta(days=36)
ZERO = Decimal(0)


def push_slice_length() -> timedelta:
    return slice_length(settings.USAGE_PUSH_SLICE)


def backoff(attempts: int) -> timedelta:
    return min(BACKOFF_FIRST * (2 ** max(attempts - 1, 0)), BACKOFF_MAX)


@dataclass
class LaneResult:
    lane_id: int
    state: str = "idle"  # idle | waiting | busy | blocked | stale | unmapped
    sent: int = 0
    failed: int = 0
    unknown: int = 0
    rate_limited: int = 0
    corrections: int = 0
    cancels: int = 0
    unreconcilable: int = 0
    settled: int = 0
    retry_at: datetime | None = None
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["retry_at"] = self.retry_at.isoformat() if self.retry_at else None
        return data


@dataclass
class _Step:
    kind: str  # send | settle | resolve_mapping | ensure_customer | done
    push: UsagePush | None = None
    mapping: MeterMapping | None = None
    state: str = "idle"
    retry_at: datetime | None = None
    more: bool = True  # whether anything else may be due once this push is settled


def _provider_call_allowed() -> bool:
    """Provider calls never run inside a database transaction (a test's own wrapper does not count)."""
    if not connection.in_atomic_block:
        return True
    return all(getattr(block, "_from_testcase", False) for block in connection.atomic_blocks)


# --- one lane ---------------------------------------------------------------------------------------


def usage_push_lane_run(
    *, lane_id: int, now: datetime, provider: UsageProvider | None = None, max_steps: int = MAX_STEPS
) -> LaneResult:
    """Push everything that is due on one lane, one call at a time. Safe to run twice or concurrently: a
    second run finds the first one's claim and stops."""
    if not _provider_call_allowed():
        raise RuntimeError("usage_push_lane_run talks to the provider and must not run inside a transaction")
    provider = provider or usage_provider()
    result = LaneResult(lane_id)
    run = _Run()
    for _ in range(max_steps):
        step = _next_step(lane_id, now, result, run)
        if step.kind == "send":
            assert step.push is not None
            outcome = provider.send(kind=step.push.kind, params=step.push.params, idempotency_key=step.push.identifier)
            push_record(push=step.push, outcome=outcome, now=now, result=result)
            if outcome.sent and not step.more:
                return result  # the plan said nothing else was due: no need to look again
        elif step.kind == "settle":
            assert step.push is not None
            _settle(step.push, provider, now, result)
        elif step.kind == "resolve_mapping":
            assert step.mapping is not None
            run.mapping = None
            if not mapping_resolve(step.mapping, provider, now, result):
                return result
        elif step.kind == "ensure_customer":
            if not _ensure_customer(lane_id, provider, now, result):
                return result
        else:
            result.state, result.retry_at = step.state, step.retry_at
            return result
    result.state = "waiting"
    result.retry_at = now
    return result


@dataclass
class _Run:
    """What one run reads once rather than at every step (neither changes while a lane runs)."""

    mapping: MeterMapping | None = None
    intervals: list[Interval] | None = None


def lane_lock(lane_id: int) -> UsagePushLane:
    """The lane, row-locked, with its customer and meter. Only the lane's row: locking the joined customer
    and meter as well would make every lane of a meter wait for the others."""
    return lock_push_lane(lane_id)


def _next_step(lane_id: int, now: datetime, result: LaneResult, run: _Run) -> _Step:
    length = push_slice_length()
    with transaction.atomic():
        lane = lane_lock(lane_id)
        if lane.last_run_at is not None and now < lane.last_run_at - LEASE:
            # A task that waited in the queue past a later run: that run is the lane's present.
            return _Step("done", state="stale")
        if lane.blocked_at is not None:
            return _Step("done", state="blocked")
        outstanding = UsagePush.objects.filter(lane=lane, status__in=UsagePush.OUTSTANDING).first()
        if outstanding is not None:
            return _outstanding_step(outstanding, now)
        if run.mapping is None:
            run.mapping = mapping_for(meter_id=lane.meter_id, customer_id=lane.customer_id)
        mapping = run.mapping
        if mapping is None:
            _lane_error(lane, f"Meter {lane.meter.code} has no provider mapping; its usage is not pushed.")
            return _Step("done", state="unmapped")
        if not mapping.resolved:
            if mapping.resolve_failed_at is not None and now < mapping.resolve_failed_at + RESOLVE_RETRY:
                _lane_error(lane, mapping.resolve_error)
                return _Step("done", state="waiting", retry_at=mapping.resolve_failed_at + RESOLVE_RETRY)
            return _Step("resolve_mapping", mapping=mapping)
        if not lane.customer.provider_customer_id:
            return _Step("ensure_customer")
        if run.intervals is None:
            run.intervals = provider_intervals(customer_ids=[lane.customer_id])[lane.customer_id]
        before = (lane.pushed_through, lane.changes_checked_at, lane.error, lane.last_run_at)
        # Corrections of slices already pushed first (at most one scan per run: `now` does not move), then
        # the next closed slice.
        push = None
        if lane.changes_checked_at < now:
            push = _plan_correction(lane, mapping, run.intervals, length, now, result)
        more = push is not None
        if push is None:
            push = _plan_next_slice(lane, mapping, run.intervals, length, now, result)
            more = lane.pushed_through < slice_floor(now, length)
        lane.error = ""
        lane.last_run_at = max(lane.last_run_at or now, now)
        if (lane.pushed_through, lane.changes_checked_at, lane.error, lane.last_run_at) != before:
            lane.save(update_fields=["pushed_through", "changes_checked_at", "error", "last_run_at"])
        if push is not None:
            return _Step("send", push=push, more=more)
        return _Step("done", state="idle")


def _lane_error(lane: UsagePushLane, message: str) -> None:
    if lane.error != message:
        UsagePushLane.objects.filter(pk=lane.pk).update(error=message[:500])


def _outstanding_step(push: UsagePush, now: datetime) -> _Step:
    if push.claimed_until is not None and push.claimed_until > now:
        return _Step("done", state="busy")
    if push.next_attempt_at is not None and push.next_attempt_at > now:
        return _Step("done", state="waiting", retry_at=push.next_attempt_at)
    # A pending push with attempts behind it was claimed by a worker that never recorded the answer (it
    # died mid-call): the provider may have it, exactly like an unknown one.
    may_have_arrived = push.status == UsagePush.Status.UNKNOWN or push.attempts > 0
    if may_have_arrived and now >= _retry_deadline(push):
        return _Step("settle", push=push)
    _claim(push, now)
    return _Step("send", push=push)


def _retry_deadline(push: UsagePush) -> datetime:
    first = push.first_attempt_at or push.created_at
    deadline = first + RETRY_WINDOW
    if push.kind == UsagePush.Kind.CANCEL and push.cancels is not None and push.cancels.first_attempt_at:
        deadline = min(deadline, push.cancels.first_attempt_at + CANCEL_WINDOW)
    return deadline


def _claim(push: UsagePush, now: datetime) -> None:
    push.attempts += 1
    push.first_attempt_at = push.first_attempt_at or now
    push.last_attempt_at = now
    push.claimed_until = now + LEASE
    push.next_attempt_at = None
    push.updated_at = now
    push.save(
        update_fields=[
            "attempts",
            "first_attempt_at",
            "last_attempt_at",
            "claimed_until",
            "next_attempt_at",
            "updated_at",
        ]
    )


def _target(lane: UsagePushLane, intervals: list[Interval], start: datetime, end: datetime) -> Decimal:
    """The slice's usage inside the customer's provider intervals: what the provider should hold for it."""
    total = ZERO
    for lo, hi in clip(intervals, start, end):
        total += usage_aggregate(meter=lane.meter, customer=lane.customer, start=lo, end=hi).value
    return total


def _params(
    mapping: MeterMapping, customer: Customer, identifier: str, start: datetime, value: Decimal
) -> dict[str, Any]:
    return {
        "event_name": mapping.event_name,
        "identifier": identifier,
        # The slice's start: Stripe's summaries then put the value in the same hour or day as ours.
        "timestamp": int(start.timestamp()),
        "payload": {
            mapping.customer_payload_key: customer.provider_customer_id,
            mapping.value_payload_key: decimal_to_str(value),
        },
    }


def _new_push(
    lane: UsagePushLane,
    *,
    kind: str,
    start: datetime,
    end: datetime,
    value: Decimal,
    now: datetime,
    mapping: MeterMapping | None = None,
    cancels: UsagePush | None = None,
    status: str = UsagePush.Status.PENDING,
) -> UsagePush:
    push_id = new_id("upush")
    if cancels is not None:
        params = {"event_name": cancels.event_name, "type": "cancel", "cancel": {"identifier": cancels.identifier}}
        event_name = cancels.event_name
    elif status == UsagePush.Status.UNRECONCILABLE or mapping is None:
        params, event_name = {}, mapping.event_name if mapping else ""
    else:
        params, event_name = _params(mapping, lane.customer, push_id, start, value), mapping.event_name
    push = UsagePush(
        id=push_id,
        identifier=push_id,
        lane=lane,
        customer_id=lane.customer_id,
        meter_id=lane.meter_id,
        kind=kind,
        status=status,
        slice_start=start,
        slice_end=end,
        value=value,
        cancels=cancels,
        event_name=event_name,
        params=params,
        created_at=now,
        updated_at=now,
    )
    if status == UsagePush.Status.PENDING:
        # Claimed as it is written: the call follows right after this transaction commits.
        push.attempts, push.first_attempt_at, push.last_attempt_at = 1, now, now
        push.claimed_until = now + LEASE
    push.save(force_insert=True)
    return push


def _unreconcilable(
    lane: UsagePushLane,
    mapping: MeterMapping,
    start: datetime,
    end: datetime,
    difference: Decimal,
    why: str,
    now: datetime,
) -> UsagePush:
    push = _new_push(
        lane,
        kind=UsagePush.Kind.CORRECTION,
        start=start,
        end=end,
        value=difference,
        now=now,
        mapping=mapping,
        status=UsagePush.Status.UNRECONCILABLE,
    )
    UsagePush.objects.filter(pk=push.pk).update(error_code="unreconcilable", error_message=why[:500])
    event_emit(
        type="usage_push.unreconcilable",
        object_type="usage_push",
        object_id=push.id,
        customer_id=lane.customer_id,
        data={
            "id": push.id,
            "customer": lane.customer_id,
            "meter": lane.meter_id,
            "slice_start": start.isoformat(),
            "slice_end": end.isoformat(),
            "difference": decimal_to_str(difference),
            "reason": why,
        },
        now=now,
    )
    return push


def _slice_values(
    lane: UsagePushLane, intervals: list[Interval], start: datetime, end: datetime, length: timedelta
) -> dict[datetime, Decimal]:
    """Per slice start, the usage of [start, end) inside the provider intervals: one read per interval
    (roll-ups per hour or day), however many slices it spans. Slices without usage are absent."""
    values: dict[datetime, Decimal] = {}
    for lo, hi in clip(intervals, start, end):
        for bucket in usage_series(
            meter=lane.meter, customer=lane.customer, start=lo, end=hi, window=settings.USAGE_PUSH_SLICE
        ):
            key = slice_floor(bucket.start, length)
            values[key] = values.get(key, ZERO) + bucket.value
    return {key: value for key, value in values.items() if value != ZERO}


def _plan_next_slice(
    lane: UsagePushLane,
    mapping: MeterMapping,
    intervals: list[Interval],
    length: timedelta,
    now: datetime,
    result: LaneResult,
) -> UsagePush | None:
    """The next closed slice with usage becomes a push. Empty slices and native time are stepped over
    with the same single read, so a lane catching up after a pause costs one read, not one per slice."""
    closed = slice_floor(now, length)  # slices starting before this have ended
    horizon = min(closed, lane.pushed_through + CATCH_UP)
    if lane.pushed_through >= horizon:
        return None
    values = _slice_values(lane, intervals, lane.pushed_through, horizon, length)
    for start in sorted(values):
        end = start + length
        lane.pushed_through = end
        if start < now - PROVIDER_MAX_AGE:
            result.unreconcilable += 1
            _unreconcilable(
                lane, mapping, start, end, values[start], "The slice is older than the provider accepts (35 days).", now
            )
            continue
        return _new_push(
            lane, kind=UsagePush.Kind.PUSH, start=start, end=end, value=values[start], now=now, mapping=mapping
        )
    lane.pushed_through = horizon
    return None


def _plan_correction(
    lane: UsagePushLane,
    mapping: MeterMapping,
    intervals: list[Interval],
    length: timedelta,
    now: datetime,
    result: LaneResult,
) -> UsagePush | None:
    """The first pushed slice whose usage no longer matches what the provider holds gets its correction.
    Once every changed slice matches, the lane's change watermark moves to `now`."""
    since = lane.changes_checked_at - CHANGE_MARGIN
    changed = usage_changed_hours(pairs=[(lane.meter_id, lane.customer_id)], since=since)
    hours = {slice_floor(hour, length) for _, _, hour, _ in changed if lane.started_at <= hour < lane.pushed_through}
    # Slices whose push was found never recorded (or refused, then unblocked) since the last look.
    hours.update(
        UsagePush.objects.filter(lane=lane, status=UsagePush.Status.FAILED, updated_at__gte=since).values_list(
            "slice_start", flat=True
        )
    )
    starts = sorted(hours)
    if starts:
        rows: dict[datetime, list[UsagePush]] = {start: [] for start in starts}
        for push in UsagePush.objects.filter(lane=lane, slice_start__in=starts).order_by("created_at", "id"):
            rows[push.slice_start].append(push)
        for start in starts:
            push = _correct_slice(lane, mapping, intervals, start, start + length, rows[start], now, result)
            if push is not None:
                return push
    lane.changes_checked_at = max(lane.changes_checked_at, now)
    return None


def _correct_slice(
    lane: UsagePushLane,
    mapping: MeterMapping,
    intervals: list[Interval],
    start: datetime,
    end: datetime,
    rows: list[UsagePush],
    now: datetime,
    result: LaneResult,
) -> UsagePush | None:
    target = _target(lane, intervals, start, end)
    sent = [push for push in rows if push.status == UsagePush.Status.SENT]
    difference = target - sum((push.value for push in sent), ZERO)
    if difference == ZERO:
        return None
    latest = rows[-1] if rows else None
    if latest is not None and latest.status == UsagePush.Status.UNRECONCILABLE and latest.value == difference:
        return None  # already flagged, nothing changed since
    if difference > ZERO:
        if start < now - PROVIDER_MAX_AGE:
            result.unreconcilable += 1
            _unreconcilable(
                lane, mapping, start, end, difference, "The slice is older than the provider accepts (35 days).", now
            )
            return None
        kind = UsagePush.Kind.CORRECTION if any(p.kind == UsagePush.Kind.PUSH for p in rows) else UsagePush.Kind.PUSH
        result.corrections += 1
        return _new_push(lane, kind=kind, start=start, end=end, value=difference, now=now, mapping=mapping)
    canceled = {push.cancels_id for push in rows if push.cancels_id}
    cancellable = [
        push
        for push in sent
        if push.kind != UsagePush.Kind.CANCEL
        and push.id not in canceled
        and push.first_attempt_at is not None
        and now < push.first_attempt_at + CANCEL_WINDOW
    ]
    if cancellable:
        # Cancel the smallest event that covers the shortfall (the rest is pushed again as an increment),
        # or the largest one when none does.
        covering = [push for push in cancellable if push.value >= -difference]
        chosen = min(covering, key=lambda p: p.value) if covering else max(cancellable, key=lambda p: p.value)
        result.cancels += 1
        return _new_push(
            lane, kind=UsagePush.Kind.CANCEL, start=start, end=end, value=-chosen.value, now=now, cancels=chosen
        )
    result.unreconcilable += 1
    _unreconcilable(
        lane,
        mapping,
        start,
        end,
        difference,
        f"The slice's usage fell by {decimal_to_str(-difference)} after it was pushed, and none of its events can be "
        "canceled any more (the provider cancels events only within 24 hours of receiving them).",
        now,
    )
    return None


# --- recording answers ------------------------------------------------------------------------------


def push_record(*, push: UsagePush, outcome: Outcome, now: datetime, result: LaneResult | None = None) -> None:
    """Record the provider's answer to `push`, compare-and-set: nothing changes a push that is already
    settled, and a refusal or a lost answer does not overwrite the answer of a later claimer."""
    result = result or LaneResult(push.lane_id)
    outstanding = UsagePush.objects.filter(pk=push.pk, status__in=UsagePush.OUTSTANDING)
    if outcome.sent:
        # Whoever gets it, a provider's yes is the truth about the row: one UPDATE, no lock.
        if outstanding.update(
            status=UsagePush.Status.SENT,
            sent_at=now,
            settled_by=UsagePush.SettledBy.ANSWER,
            claimed_until=None,
            next_attempt_at=None,
            error_code="",
            error_message="",
            updated_at=now,
        ):
            result.sent += 1
        return
    with transaction.atomic():
        locked = lock_first_push(outstanding.filter(attempts=push.attempts))
        if locked is None:
            return  # settled, or claimed again meanwhile
        locked.claimed_until = None
        locked.updated_at = now
        locked.error_code, locked.error_message = outcome.code[:100], outcome.message[:500]
        if outcome.kind == "refused":
            locked.status = UsagePush.Status.FAILED
            locked.settled_by = UsagePush.SettledBy.ANSWER
            result.failed += 1
            if locked.kind != UsagePush.Kind.CANCEL:
                # The same request would be refused again; an operator looks before anything more goes out.
                UsagePushLane.objects.filter(pk=locked.lane_id).update(
                    blocked_at=now, error=f"{locked.id} refused: {outcome.message}"[:500]
                )
            event_emit(
                type="usage_push.failed",
                object_type="usage_push",
                object_id=locked.id,
                customer_id=locked.customer_id,
                data=push_snapshot(locked),
                now=now,
            )
        else:
            if outcome.kind == "unknown":
                locked.status = UsagePush.Status.UNKNOWN
                result.unknown += 1
            else:
                result.rate_limited += 1
            locked.next_attempt_at = now + backoff(locked.attempts)
            result.retry_at = locked.next_attempt_at
        locked.save()


def _settle(push: UsagePush, provider: UsageProvider, now: datetime, result: LaneResult) -> None:
    """Decide from the provider's summary whether a push whose answer was lost was recorded."""
    mapping = mapping_for(meter_id=push.meter_id, customer_id=push.customer_id)
    customer = Customer.objects.only("provider_customer_id").get(pk=push.customer_id)
    try:
        if mapping is None or not mapping.resolved:
            raise ProviderUnavailable("the provider meter is not known")
        total = provider.summary_total(
            meter_id=mapping.provider_meter_id,
            customer=customer.provider_customer_id,
            start=push.slice_start,
            end=push.slice_end,
        )
    except (ProviderUnavailable, ProviderRefused) as exc:
        UsagePush.objects.filter(pk=push.pk, status__in=UsagePush.OUTSTANDING).update(
            next_attempt_at=now + backoff(push.attempts), error_message=f"summary read failed: {exc}"[:500]
        )
        result.errors.append(str(exc))
        return
    with transaction.atomic():
        locked = lock_usage_push(push.pk)
        if locked.status not in UsagePush.OUTSTANDING:
            return
        others = (
            UsagePush.objects.filter(
                lane_id=locked.lane_id, slice_start=locked.slice_start, status=UsagePush.Status.SENT
            )
            .exclude(pk=locked.pk)
            .aggregate(total=Sum("value"))["total"]
            or ZERO
        )
        locked.claimed_until = None
        locked.updated_at = now
        if total == others + locked.value:
            locked.status, locked.sent_at = UsagePush.Status.SENT, now
            locked.settled_by = UsagePush.SettledBy.SUMMARY
            locked.error_code, locked.error_message = "", ""
        elif total == others:
            locked.status = UsagePush.Status.FAILED
            locked.settled_by = UsagePush.SettledBy.SUMMARY
            locked.error_code = "not_recorded"
            locked.error_message = (
                "The provider's summary shows it never arrived; the slice is corrected by a new push."
            )
        else:
            message = (
                f"Cannot settle {locked.id}: the provider holds {decimal_to_str(total)} for the slice, neither "
                f"{decimal_to_str(others)} (not recorded) nor {decimal_to_str(others + locked.value)} (recorded)."
            )
            locked.next_attempt_at = None
            locked.error_code, locked.error_message = "summary_mismatch", message[:500]
            UsagePushLane.objects.filter(pk=locked.lane_id).update(blocked_at=now, error=message[:500])
            result.errors.append(message)
        locked.save()
        result.settled += 1


def mapping_resolve(mapping: MeterMapping, provider: UsageProvider, now: datetime, result: LaneResult) -> bool:
    """Look the provider meter up by event_name and keep its id and payload keys; False when it cannot be."""
    error = ""
    try:
        meter = provider.find_meter(mapping.event_name)
    except (ProviderUnavailable, ProviderRefused) as exc:
        meter, error = None, f"Looking up the provider meter {mapping.event_name!r} failed: {exc}"
    if meter is None and not error:
        error = f"The provider has no active meter with event_name {mapping.event_name!r}."
    if meter is not None and meter.formula != "sum":
        error = (
            f"The provider meter {meter.id} ({mapping.event_name}) aggregates with {meter.formula}; usage is pushed "
            "as one increment per slice, which only a sum meter adds up."
        )
    with transaction.atomic():
        locked = lock_meter_mapping(mapping.pk)
        if error or meter is None:
            locked.resolve_error, locked.resolve_failed_at = error[:500], now
            locked.save(update_fields=["resolve_error", "resolve_failed_at", "updated_at"])
            result.errors.append(error)
            result.state, result.retry_at = "waiting", now + RESOLVE_RETRY
            return False
        locked.provider_meter_id = meter.id
        locked.customer_payload_key, locked.value_payload_key = meter.customer_key, meter.value_key
        locked.resolved_at, locked.resolve_failed_at, locked.resolve_error = now, None, ""
        locked.save()
    return True


def _ensure_customer(lane_id: int, provider: UsageProvider, now: datetime, result: LaneResult) -> bool:
    lane = UsagePushLane.objects.select_related("customer").get(pk=lane_id)
    try:
        provider.ensure_customer(customer=lane.customer, now=now)
    except (ProviderUnavailable, ProviderRefused) as exc:
        message = f"Creating the provider customer failed: {exc}"
        _lane_error(lane, message)
        result.errors.append(message)
        result.state, result.retry_at = "waiting", now + BACKOFF_FIRST
        return False
    return True


# --- operators ----------------------------------------------------------------------------------------


def push_snapshot(push: UsagePush) -> dict[str, Any]:
    return {
        "id": push.id,
        "customer": push.customer_id,
        "meter": push.meter_id,
        "kind": push.kind,
        "status": push.status,
        "slice_start": push.slice_start.isoformat(),
        "slice_end": push.slice_end.isoformat(),
        "value": decimal_to_str(push.value),
        "identifier": push.identifier,
        "error": {"code": push.error_code, "message": push.error_message} if push.error_code else None,
    }


def usage_push_lane_unblock(*, lane: UsagePushLane, now: datetime) -> UsagePushLane:
    """Let a blocked lane push again (after the cause of the refusal was fixed)."""
    with transaction.atomic():
        locked = lock_push_lane(lane.pk)
        if locked.blocked_at is not None:
            # The refused push's slice is looked at again by the next run (see _plan_correction).
            UsagePush.objects.filter(
                lane=locked, status=UsagePush.Status.FAILED, updated_at__gte=locked.blocked_at
            ).update(updated_at=now)
            locked.blocked_at, locked.error = None, ""
            locked.save(update_fields=["blocked_at", "error"])
            event_emit(
                type="usage_push_lane.unblocked",
                object_type="usage_push_lane",
                object_id=str(locked.pk),
                customer_id=locked.customer_id,
                data={"customer": locked.customer_id, "meter": locked.meter_id},
                now=now,
            )
    return locked


def usage_push_resolve(*, push: UsagePush, recorded: bool, now: datetime) -> UsagePush:
    """An operator's verdict on an outstanding push (after checking the provider's dashboard): recorded
    (sent) or not (failed, and the slice is pushed again). Unblocks its lane."""
    with transaction.atomic():
        locked = lock_usage_push(push.pk)
        if locked.status not in UsagePush.OUTSTANDING:
            return locked
        locked.status = UsagePush.Status.SENT if recorded else UsagePush.Status.FAILED
        locked.sent_at = now if recorded else None
        locked.settled_by = UsagePush.SettledBy.OPERATOR
        locked.claimed_until = locked.next_attempt_at = None
        locked.updated_at = now
        locked.save()
        UsagePushLane.objects.filter(pk=locked.lane_id).update(blocked_at=None, error="")
        event_emit(
            type="usage_push.resolved",
            object_type="usage_push",
            object_id=locked.id,
            customer_id=locked.customer_id,
            data=push_snapshot(locked),
            now=now,
        )
    return locked
