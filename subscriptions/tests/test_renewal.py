"""Renewal: licensed items in advance, metered in arrears, tiered pricing, watermarks, and exactly one
invoice per subscription and period (re-runs, two workers, concurrent finalization)."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta
from decimal import Decimal
from io import StringIO

import orjson
import pytest
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction

from catalog.pricing import quote
from catalog.tests.factories import GRADUATED_USD
from customers.tests.factories import CustomerFactory
from invoicing.models import Invoice, UsageWatermark
from invoicing.services import invoice_finalize
from subscriptions.periods import Period
from subscriptions.services.builder import Reason, draft_for_cycle, draft_save
from subscriptions.services.renewal import renew_subscriptions_job
from subscriptions.tests.support import (
    T0,
    at,
    event_types,
    fixed_price,
    invoices_of,
    kinds,
    metered_price,
    subscribe,
    use,
)

FEB28 = at(2, 28)
MAR31 = at(3, 31)


@pytest.mark.django_db
def test_licensed_in_advance_and_metered_in_arrears():
    customer = CustomerFactory()
    seats, calls = fixed_price("1000"), metered_price(unit="0.5")
    sub, _ = subscribe(customer, seats, calls, quantity=Decimal(2))
    use(customer, calls, 100, at(2, 1))
    use(customer, calls, 1, FEB28 - timedelta(microseconds=1))  # the last instant of the period
    use(customer, calls, 50, FEB28)  # exactly at the end: the next period's

    assert renew_subscriptions_job(now=FEB28) == {"renewed": 1, "invoices": 1, "failed": 0}
    sub.refresh_from_db()
    assert (sub.current_period_start, sub.current_period_end) == (FEB28, MAR31)
    invoice = invoices_of(sub)[-1]
    assert invoice.billing_reason == Invoice.BillingReason.SUBSCRIPTION_CYCLE
    assert (invoice.number, invoice.status, invoice.finalized_at) == ("INV-000002", "open", FEB28)
    assert (invoice.cycle_period_start, invoice.period_start, invoice.period_end) == (FEB28, FEB28, MAR31)
    fixed, usage = invoice.lines.all()
    assert (fixed.kind, fixed.amount, fixed.quantity, fixed.unit_amount) == ("fixed", 2000, 2, 1000)
    assert (fixed.period_start, fixed.period_end) == (FEB28, MAR31)
    assert (usage.kind, usage.quantity, usage.amount, usage.unit_amount) == ("usage", 101, 51, Decimal("0.5"))
    assert (usage.period_start, usage.period_end) == (T0, FEB28)
    assert (usage.meter_id, usage.price_id) == (calls.meter_id, calls.id)
    assert invoice.total == 2051

    wm = UsageWatermark.objects.get()
    assert (wm.invoice_id, wm.line_id, wm.customer_id, wm.meter_id) == (
        invoice.id,
        usage.id,
        customer.id,
        calls.meter_id,
    )
    assert (wm.period_start, wm.period_end, wm.value, wm.event_count, wm.amount_billed) == (T0, FEB28, 101, 2, 51)
    assert not wm.superseded and wm.computed_at == FEB28

    # The event at Feb 28 12:00 is billed with the next period.
    renew_subscriptions_job(now=MAR31)
    assert [(line.quantity, line.amount) for line in invoices_of(sub)[-1].lines.filter(kind="usage")] == [(50, 25)]


@pytest.mark.django_db
def test_graduated_tiers_are_priced_by_the_engine_on_the_aggregate():
    customer = CustomerFactory()
    calls = metered_price(tiers=GRADUATED_USD["tiers"])
    sub, _ = subscribe(customer, calls)
    use(customer, calls, 900, at(2, 1))
    use(customer, calls, 600, at(2, 2))
    renew_subscriptions_job(now=FEB28)
    [line] = invoices_of(sub)[-1].lines.all()
    # 1000 x 0.5 + 500 x 0.1 + the second tier's flat 500; each event alone would have priced differently.
    assert line.amount == 1050 == quote(calls.engine_amount, Decimal(1500)).amount
    assert line.quantity == 1500 and line.unit_amount is None


@pytest.mark.django_db
def test_no_usage_gives_a_zero_usage_line():
    sub, _ = subscribe(None, fixed_price(), metered_price())
    renew_subscriptions_job(now=FEB28)
    assert kinds(invoices_of(sub)[-1]) == [("fixed", 1000), ("usage", 0)]


@pytest.mark.django_db
def test_renewal_run_twice_creates_one_invoice_per_subscription_and_period():
    subs = [subscribe(None, fixed_price(), metered_price())[0] for _ in range(3)]
    first = renew_subscriptions_job(now=FEB28)
    second = renew_subscriptions_job(now=FEB28)
    later = renew_subscriptions_job(now=FEB28 + timedelta(minutes=5))
    assert first == {"renewed": 3, "invoices": 3, "failed": 0}
    assert second == later == {"renewed": 0, "invoices": 0, "failed": 0}
    per_period = Counter(Invoice.objects.values_list("subscription_id", "cycle_period_start"))
    assert per_period == {(s.id, p): 1 for s in subs for p in (T0, FEB28)}


@pytest.mark.django_db
def test_the_database_refuses_a_second_invoice_for_a_period():
    sub, _ = subscribe(None, fixed_price())
    draft = draft_for_cycle(sub, now=T0, ended=None, advance=Period(T0, FEB28), reason=Reason.SUBSCRIPTION_CREATE)
    with pytest.raises(IntegrityError), transaction.atomic():
        draft_save(sub, draft, now=T0)
    assert Invoice.objects.count() == 1


@pytest.mark.django_db
def test_run_job_command_renews_for_the_given_time():
    subscribe(None, fixed_price())
    out = StringIO()
    call_command("run_job", "renew_subscriptions", "--now", "2026-02-28T12:00:00Z", stdout=out)
    assert orjson.loads(out.getvalue())["result"] == {"renewed": 1, "invoices": 1, "failed": 0}
    assert Invoice.objects.filter(cycle_period_start=FEB28).count() == 1


@pytest.mark.django_db
def test_one_failing_subscription_does_not_stop_the_others(monkeypatch):
    _good, _ = subscribe(None, fixed_price())
    bad, _ = subscribe(None, fixed_price())
    from subscriptions.services import renewal

    real = renewal.renew_one

    def flaky(sub, **kwargs):
        invoices = real(sub, **kwargs)
        if sub.pk == bad.pk:  # after the invoice, its events and the period's advance were collected
            raise RuntimeError("boom")
        return invoices

    monkeypatch.setattr(renewal, "renew_one", flaky)
    assert renew_subscriptions_job(now=FEB28) == {"renewed": 1, "invoices": 1, "failed": 1}
    bad.refresh_from_db()
    assert bad.current_period_start == T0  # rolled back whole, retried by the next run
    assert not Invoice.objects.filter(subscription=bad, cycle_period_start=FEB28).exists()
    assert "subscription.renewed" not in event_types(bad.id)
    assert "subscription.renewed" in event_types(_good.id)
    assert sorted(Invoice.objects.values_list("number", flat=True)) == ["INV-000001", "INV-000002", "INV-000003"]


# --- Concurrency (PostgreSQL) ---------------------------------------------------------------------


def _in_threads(count: int, target) -> list:
    barrier = threading.Barrier(count)
    results: list = []
    errors: list = []

    def run(index: int) -> None:
        try:
            barrier.wait()
            results.append(target(index))
        except Exception as exc:  # surfaced by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    return results


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_renewal_workers_produce_exactly_one_invoice_per_subscription_and_period(settings):
    settings.RENEWAL_BATCH_SIZE = 5
    customer = CustomerFactory()
    seats, calls = fixed_price(), metered_price()
    subs = [subscribe(customer, seats, calls)[0] for _ in range(20)]
    use(customer, calls, 7, at(2, 1))
    results = _in_threads(4, lambda _: renew_subscriptions_job(now=MAR31))
    assert sum(r["failed"] for r in results) == 0
    # Two periods ended by Mar 31 for each: the Feb 28 and Mar 31 cycle invoices.
    assert sum(r["invoices"] for r in results) == 40
    per_period = Counter(Invoice.objects.values_list("subscription_id", "cycle_period_start"))
    assert per_period == {(s.id, p): 1 for s in subs for p in (T0, FEB28, MAR31)}
    numbers = sorted(Invoice.objects.values_list("number", flat=True))
    assert numbers == [f"INV-{n:06d}" for n in range(1, 61)]
    for sub in subs:
        sub.refresh_from_db()
        assert sub.current_period_start == MAR31
    assert UsageWatermark.objects.filter(superseded=False).count() == 40


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_numbering_is_gapless_and_unique_under_concurrent_finalization(settings):
    settings.INVOICE_AUTO_FINALIZE = False
    price = fixed_price()
    drafts = [subscribe(None, price)[1] for _ in range(24)]
    assert {d.status for d in drafts} == {"draft"}

    def finalize(index: int) -> list[str]:
        mine = drafts[index::6]
        return [invoice_finalize(invoice=d, now=T0).number for d in mine]

    numbers = [n for batch in _in_threads(6, finalize) for n in batch]
    assert sorted(numbers) == [f"INV-{n:06d}" for n in range(1, 25)]
    assert sorted(Invoice.objects.values_list("number", flat=True)) == sorted(numbers)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("interval", "every", "boundaries"),
    [
        ("day", 1, [at(2, 1), at(2, 2), at(2, 3)]),
        ("week", 2, [at(2, 14), at(2, 28), at(3, 14)]),
        ("month", 3, [at(4, 30), at(7, 31), at(10, 31)]),
        ("year", 1, [at(1, 31, year=2027), at(1, 31, year=2028), at(1, 31, year=2029)]),
    ],
)
def test_every_interval_renews_on_its_anchored_boundaries(interval, every, boundaries):
    sub, first = subscribe(None, fixed_price("700", interval=interval, every=every))
    assert first.period_end == boundaries[0]
    assert renew_subscriptions_job(now=boundaries[1])["invoices"] == 2
    cycle = invoices_of(sub)[1:]
    assert [(i.period_start, i.period_end) for i in cycle] == [
        (boundaries[0], boundaries[1]),
        (boundaries[1], boundaries[2]),
    ]
    assert [kinds(i) for i in cycle] == [[("fixed", 700)]] * 2
