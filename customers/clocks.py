"""Test clocks (as Stripe defines them): services and selectors of the clock itself, and the one filter
every per-customer sweep applies.

A customer attached to a clock at creation lives on the clock's time. Two rules make that hold:
- `clock_scope(queryset, clock)`: every sweep of a per-customer job filters with it. With `clock=None`
  (the real-time jobs, beat) it keeps only customers without a clock; with a clock id it keeps only that
  clock's customers (the advance). So the real-time jobs never touch a clock's customers.
- `customer_now(customer, now)`: an API write about a clock customer happens at the clock's frozen time.

Advancing runs the jobs of apps above this one, so it lives at the top (`payments.clocks`); here is only
what customers (and every app above, which filter by it) need.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, TypeVar

from django.conf import settings
from django.db import models, transaction

from billing_site.errors import Conflict, InvalidRequest, NotFound, PermissionDeniedError
from billing_site.selectors import apply_filters
from customers.models import Customer, TestClock
from webhooks.services import object_event_emit

M = TypeVar("M", bound=models.Model)

# How far a clock may be set or moved from the wall clock (either way): far enough for years of a plan,
# near enough that every period and schedule computation stays within the datetime range.
MAX_DISTANCE = timedelta(days=366 * 20)


def test_clocks_enabled_check() -> None:
    """Refuse every clock operation (and attaching a customer to one) when TEST_CLOCKS_ENABLED is off."""
    if not settings.TEST_CLOCKS_ENABLED:
        raise PermissionDeniedError(
            "Test clocks are disabled on this service (live mode). Set TEST_CLOCKS_ENABLED=true on a test "
            "deployment to use them.",
            code="test_clocks_disabled",
        )


def clock_scope(queryset: models.QuerySet[M], clock: str | None, *, path: str = "customer") -> models.QuerySet[M]:
    """The sweep filter: the customers of `clock` only, or (None) only customers on no clock. `path` is the
    lookup from the queryset's model to the customer ("" for customers themselves)."""
    if not path:
        return queryset.filter(test_clock__isnull=True) if clock is None else queryset.filter(test_clock_id=clock)
    # A subquery on the customer ids, not a join: sweeps lock their rows (SELECT ... FOR UPDATE), and a
    # join would lock the customers' rows too. The real-time case excludes the (few) clock customers.
    on_clocks = Customer.objects.filter(test_clock__isnull=False).values("pk")
    if clock is None:
        return queryset.exclude(**{f"{path}_id__in": on_clocks})
    return queryset.filter(**{f"{path}_id__in": Customer.objects.filter(test_clock_id=clock).values("pk")})


def customer_now(customer: Customer | None, now: datetime) -> datetime:
    """The time an operation about `customer` happens: its clock's frozen time when it is on one."""
    if customer is None or customer.test_clock_id is None:
        return now
    frozen = TestClock.objects.filter(pk=customer.test_clock_id).values_list("frozen_time", flat=True).first()
    return frozen if frozen is not None else now


def customer_now_by_id(customer_id: str | None, now: datetime) -> datetime:
    if not customer_id:
        return now
    frozen = (
        Customer.objects.filter(pk=customer_id, test_clock__isnull=False)
        .values_list("test_clock__frozen_time", flat=True)
        .first()
    )
    return frozen if frozen is not None else now


def test_clock_snapshot(clock: TestClock) -> dict[str, Any]:
    return {
        "id": clock.id,
        "name": clock.name,
        "frozen_time": clock.frozen_time.isoformat(),
        "status": clock.status,
        "target_frozen_time": clock.target_frozen_time.isoformat() if clock.target_frozen_time else None,
    }


def _check_distance(value: datetime, now: datetime, param: str) -> None:
    if abs(value - now) > MAX_DISTANCE:
        raise InvalidRequest(
            f"{param} must be within {MAX_DISTANCE.days} days of the current time.",
            code="parameter_invalid",
            param=param,
        )


def test_clock_create(*, frozen_time: datetime, now: datetime, name: str = "") -> TestClock:
    test_clocks_enabled_check()
    _check_distance(frozen_time, now, "frozen_time")
    with transaction.atomic():
        clock = TestClock.objects.create(
            name=name,
            frozen_time=frozen_time,
            deletes_after=test_clock_lifetime_end(now),
        )
        object_event_emit(
            type="test_clock.created", obj=clock, data=test_clock_snapshot(clock), now=now, customer_id=""
        )
    return clock


def test_clock_get(*, clock_id: str) -> TestClock:
    clock = TestClock.objects.filter(pk=clock_id, deleted_at__isnull=True).first()
    if clock is None:
        raise NotFound(f"No such test clock: {clock_id}", param="id")
    return clock


def test_clock_list(*, filters: Mapping[str, Any] | None = None) -> models.QuerySet[TestClock]:
    from customers.filters import TestClockFilter

    live = TestClock.objects.filter(deleted_at__isnull=True).annotate(
        customer_count=models.Count("customers", filter=~models.Q(customers__status=Customer.Status.DELETED))
    )
    return apply_filters(TestClockFilter, filters or {}, live)


def test_clock_for_customer(*, clock_id: str) -> TestClock:
    """A clock named on `POST /customers`: must exist, be live and not be advancing (400 on the field)."""
    test_clocks_enabled_check()
    clock = TestClock.objects.filter(pk=clock_id, deleted_at__isnull=True).first()
    if clock is None:
        raise InvalidRequest(f"No such test clock: {clock_id}", code="resource_missing", param="test_clock")
    if clock.status != TestClock.Status.READY:
        raise InvalidRequest(
            f"Test clock {clock_id} is {clock.status}; customers attach to a ready clock.",
            code="test_clock_not_ready",
            param="test_clock",
        )
    return clock


def test_clock_lifetime_end(now: datetime) -> datetime:
    """The earliest `deletes_after` a clock created or advanced at `now` keeps (TEST_CLOCK_LIFETIME_DAYS)."""
    return now + timedelta(days=settings.TEST_CLOCK_LIFETIME_DAYS)


def test_clock_delete(*, clock: TestClock, now: datetime) -> TestClock:
    """Soft delete: the clock and its customers (as `customer_delete` does: history kept, the API stops
    showing them). A deleted clock is never advanced again, so its customers stay frozen. A clock that is
    advancing is refused (409 `test_clock_advancing`): its run would go on billing deleted customers."""
    test_clocks_enabled_check()
    return _test_clock_soft_delete(clock, now=now)


def _test_clock_soft_delete(clock: TestClock, *, now: datetime) -> TestClock:
    """The compare-and-set delete, shared by `DELETE /test-clocks/{id}` and the expiry job: live and not
    advancing, or nothing changes (of a delete and an advance racing, one wins)."""
    from customers.services import customer_delete

    with transaction.atomic():
        changed = (
            TestClock.objects.filter(pk=clock.pk, deleted_at__isnull=True)
            .exclude(status=TestClock.Status.ADVANCING)
            .update(deleted_at=now, updated_at=now)
        )
        if changed != 1:
            if TestClock.objects.filter(pk=clock.pk, deleted_at__isnull=True).exists():
                raise Conflict(
                    f"Test clock {clock.pk} is advancing; wait until it is ready (or internal_failure), then "
                    "delete it.",
                    code="test_clock_advancing",
                )
            raise NotFound(f"No such test clock: {clock.pk}", param="id")
        for customer in Customer.objects.filter(test_clock=clock).exclude(status=Customer.Status.DELETED):
            customer_delete(customer=customer, now=now)
        clock.refresh_from_db()
        object_event_emit(
            type="test_clock.deleted", obj=clock, data=test_clock_snapshot(clock), now=now, customer_id=""
        )
    return clock


def test_clocks_expire_job(*, now: datetime) -> dict[str, int]:
    """The `expire_test_clocks` sweep: soft-delete every live clock whose `deletes_after` has passed, as
    `DELETE /test-clocks/{id}` does (its customers too), except a clock that is advancing (an advance
    pushes `deletes_after` on; a clock stuck advancing waits for its run to finish). Runs whatever
    TEST_CLOCKS_ENABLED says: expiry is cleanup. Safe to re-run and to race a delete or an advance: each
    clock is deleted by the same compare-and-set, and one that changed meanwhile is left to the next run."""
    due = (
        TestClock.objects.filter(deleted_at__isnull=True, deletes_after__lte=now)
        .exclude(status=TestClock.Status.ADVANCING)
        .order_by("deletes_after", "id")
    )
    deleted = skipped = 0
    for clock in due:
        try:
            _test_clock_soft_delete(clock, now=now)
        except (Conflict, NotFound):
            skipped += 1  # advanced or deleted meanwhile
            continue
        deleted += 1
    return {"deleted": deleted, "skipped": skipped}
