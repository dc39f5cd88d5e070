"""Credit grants: creation rules, eligibility, burn order, per-line caps, void, expiry, concurrency."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection

from billing_site.errors import Conflict, InvalidRequest
from billing_site.jobs import job_run
from customers.tests.factories import CustomerFactory
from metering.tests.factories import MeterFactory
from payments.audit import audit_all
from payments.models import CreditBurn, CreditGrant
from payments.selectors import credit_grant_remaining
from payments.services.grants import (
    credit_grant_create,
    credit_grant_void,
    credit_grants_expire_job,
    credits_burn_for_invoice,
    line_credit_caps,
)
from payments.tests.factories import LEDGER_T0, ledger_invoice
from subscriptions.tests.support import fixed_price
from webhooks.models import BillingEvent

pytestmark = pytest.mark.django_db

NOW = LEDGER_T0
DAY = timedelta(days=1)


def grant(customer, amount=1000, **kwargs):
    kwargs.setdefault("currency", "usd")
    kwargs.setdefault("effective_at", NOW - DAY)
    return credit_grant_create(customer=customer, amount=amount, now=NOW - DAY, **kwargs)


def burned(*grants):
    return [sum(CreditBurn.objects.filter(grant=g).values_list("amount", flat=True)) for g in grants]


def events(object_id):
    return list(BillingEvent.objects.filter(object_id=object_id).order_by("id").values_list("type", flat=True))


# --- Creating -------------------------------------------------------------------------------------


def test_create_stores_the_grant_and_emits_an_event():
    customer, meter, price = CustomerFactory(), MeterFactory(), fixed_price()
    g = credit_grant_create(
        customer=customer,
        amount=5000,
        currency="USD",
        priority=10,
        expires_at=NOW + DAY,
        meters=[meter.id, meter.id],
        prices=[price.id],
        name="Promo",
        now=NOW,
    )
    assert (g.id[:3], g.currency, g.priority, g.effective_at, g.status) == ("cg_", "usd", 10, NOW, "active")
    assert (g.eligible_meters, g.eligible_prices) == ([meter.id], [price.id])
    assert credit_grant_remaining(g) == 5000
    assert events(g.id) == ["credit_grant.created"]
    assert BillingEvent.objects.get(object_id=g.id).data["remaining"] == 5000


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"amount": 0}, "amount"),
        ({"amount": -5}, "amount"),
        ({"currency": "xyz"}, "currency"),
        ({"priority": -1}, "priority"),
        ({"priority": 40000}, "priority"),
        ({"expires_at": NOW}, "expires_at"),
        ({"expires_at": NOW - DAY}, "expires_at"),
        ({"meters": ["mtr_nope"]}, "meters[0]"),
        ({"prices": ["price_nope"]}, "prices[0]"),
    ],
)
def test_bad_grants_are_refused_naming_the_field(kwargs, param):
    values = {"amount": 100, "currency": "usd", "effective_at": NOW, **kwargs}
    with pytest.raises(InvalidRequest) as error:
        credit_grant_create(customer=CustomerFactory(), now=NOW, **values)
    assert error.value.param == param
    assert not CreditGrant.objects.exists()


def test_a_price_in_another_currency_is_refused():
    eur = fixed_price(currency="eur")
    with pytest.raises(InvalidRequest) as error:
        credit_grant_create(customer=CustomerFactory(), amount=100, currency="usd", prices=[eur.id], now=NOW)
    assert (error.value.param, error.value.code) == ("prices[0]", "currency_mismatch")


# --- Burning --------------------------------------------------------------------------------------


def test_burn_pays_the_invoice_and_records_burns_per_line():
    customer = CustomerFactory()
    g = grant(customer, 5000)
    invoice = ledger_invoice(customer, lines=(600, 400))
    assert credits_burn_for_invoice(invoice=invoice, now=NOW) == 1000
    assert (invoice.status, invoice.credits_applied, invoice.amount_paid, invoice.amount_remaining) == (
        "paid",
        1000,
        1000,
        0,
    )
    assert sorted(CreditBurn.objects.values_list("invoice_line__position", "amount")) == [(1, 600), (2, 400)]
    g.refresh_from_db()
    assert credit_grant_remaining(g) == 4000
    assert "invoice.paid" in events(invoice.id)
    assert credits_burn_for_invoice(invoice=invoice, now=NOW) == 0  # paid: nothing more
    assert audit_all() == []


def test_burn_order_is_priority_then_soonest_expiry_with_none_last_then_oldest():
    customer = CustomerFactory()
    late = grant(customer, 300, priority=50, expires_at=NOW + 9 * DAY)
    never = grant(customer, 300, priority=50)
    soon = grant(customer, 300, priority=50, expires_at=NOW + 2 * DAY)
    never_newer = grant(customer, 300, priority=50)
    first = grant(customer, 300, priority=1)  # lowest priority number wins over everything
    invoice = ledger_invoice(customer, lines=(1400,))
    assert credits_burn_for_invoice(invoice=invoice, now=NOW) == 1400
    assert burned(first, soon, late, never, never_newer) == [300, 300, 300, 300, 200]


def test_a_grant_pays_only_the_lines_it_is_eligible_for():
    customer, meter, other_meter, price = CustomerFactory(), MeterFactory(), MeterFactory(), fixed_price()
    by_meter = grant(customer, 10_000, meters=[meter.id], priority=1)
    by_price = grant(customer, 10_000, prices=[price.id], priority=2)
    invoice = ledger_invoice(
        customer,
        lines=({"amount": 300, "meter": meter}, {"amount": 500, "price": price}, {"amount": 200, "meter": other_meter}),
    )
    assert credits_burn_for_invoice(invoice=invoice, now=NOW) == 800
    assert burned(by_meter, by_price) == [300, 500]
    assert (invoice.status, invoice.amount_remaining) == ("open", 200)  # no grant covers the third line
    everything = grant(customer, 50)
    assert credits_burn_for_invoice(invoice=invoice, now=NOW) == 50
    assert CreditBurn.objects.get(grant=everything).invoice_line.position == 3
    assert audit_all() == []


def test_a_line_takes_at_most_its_share_of_what_is_due_across_repeated_burns():
    customer, meter = CustomerFactory(), MeterFactory()
    invoice = ledger_invoice(customer, lines=({"amount": 600, "meter": meter}, 400), tax=100)  # due 1100
    g = grant(customer, 200, meters=[meter.id])
    assert credits_burn_for_invoice(invoice=invoice, now=NOW) == 200
    grant(customer, 10_000, meters=[meter.id])
    # The metered line's share of 1100 is 660 (600 of 1000 weight, tax pro rata): 460 more, never more.
    assert credits_burn_for_invoice(invoice=invoice, now=NOW) == 460
    assert credits_burn_for_invoice(invoice=invoice, now=NOW) == 0
    assert (invoice.amount_remaining, invoice.credits_applied) == (440, 660)
    assert burned(g) == [200]
    assert audit_all() == []


def test_line_caps_split_the_amount_due_exactly_by_weight():
    lines = ledger_invoice(lines=(1, 1, 1, {"amount": 500, "discount_amount": 500}, -300)).lines.order_by("position")
    caps = line_credit_caps(list(lines), 100)
    assert list(caps.values()) == [34, 33, 33, 0, 0] and sum(caps.values()) == 100
    assert set(line_credit_caps(list(lines), 0).values()) == {0}


def test_grants_not_effective_expired_voided_or_in_another_currency_are_not_burned():
    customer = CustomerFactory()
    future = grant(customer, 500, effective_at=NOW + DAY)
    expired = grant(customer, 500, effective_at=NOW - 2 * DAY, expires_at=NOW)  # [effective, expires) ended
    voided = credit_grant_void(grant=grant(customer, 500), now=NOW)
    euros = grant(customer, 500, currency="eur")
    others = grant(CustomerFactory(), 500)
    invoice = ledger_invoice(customer, lines=(1000,))
    assert credits_burn_for_invoice(invoice=invoice, now=NOW) == 0
    assert not CreditBurn.objects.exists()
    assert [g.status for g in (future, expired, euros, others)] == ["active"] * 4 and voided.status == "voided"
    assert credits_burn_for_invoice(invoice=invoice, now=NOW + DAY) == 500  # now the future one is effective


@pytest.mark.parametrize("status", ["draft", "paid", "void", "uncollectible"])
def test_only_open_invoices_burn_credit(status):
    customer = CustomerFactory()
    grant(customer, 500)
    assert credits_burn_for_invoice(invoice=ledger_invoice(customer, status=status), now=NOW) == 0
    assert not CreditBurn.objects.exists()


# --- Void and expiry ------------------------------------------------------------------------------


def test_void_makes_the_rest_unusable_keeps_past_burns_and_is_refused_twice():
    customer = CustomerFactory()
    g = grant(customer, 1000)
    paid = ledger_invoice(customer, lines=(300,))
    credits_burn_for_invoice(invoice=paid, now=NOW)
    voided = credit_grant_void(grant=g, now=NOW)
    assert (voided.status, voided.voided_at, credit_grant_remaining(voided)) == ("voided", NOW, 0)
    assert burned(g) == [300]
    assert events(g.id) == ["credit_grant.created", "credit_grant.voided"]
    with pytest.raises(Conflict):
        credit_grant_void(grant=g, now=NOW)
    assert credits_burn_for_invoice(invoice=ledger_invoice(customer), now=NOW) == 0
    paid.refresh_from_db()
    assert paid.status == "paid"


def test_the_expiry_job_expires_grants_past_their_expiry_and_emits_events():
    customer = CustomerFactory()
    g = grant(customer, 1000, expires_at=NOW)
    later = grant(customer, 1000, expires_at=NOW + DAY)
    forever = grant(customer, 1000)
    credits_burn_for_invoice(invoice=ledger_invoice(customer, lines=(250,)), now=NOW - timedelta(hours=1))
    assert credit_grants_expire_job(now=NOW - timedelta(seconds=1)) == {"expired": 0}
    assert job_run("expire_credit_grants", now=NOW) == {"expired": 1}
    g.refresh_from_db()
    assert (g.status, g.expired_at, credit_grant_remaining(g)) == ("expired", NOW, 0)
    event = BillingEvent.objects.get(object_id=g.id, type="credit_grant.expired")
    assert event.previous_attributes == {"status": "active", "remaining": 750}
    assert credit_grants_expire_job(now=NOW) == {"expired": 0}  # once
    assert credit_grants_expire_job(now=NOW + 2 * DAY, batch_size=1) == {"expired": 1}
    later.refresh_from_db()
    forever.refresh_from_db()
    assert (later.status, forever.status) == ("expired", "active")
    with pytest.raises(Conflict):
        credit_grant_void(grant=g, now=NOW)


# --- Concurrency ----------------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_burns_on_several_invoices_never_overspend_a_grant():
    customer = CustomerFactory()
    g = grant(customer, 1000)
    invoices = [ledger_invoice(customer, lines=(300,)) for _ in range(6)]
    barrier = threading.Barrier(len(invoices) + 1)
    results: list[int] = []
    errors: list[BaseException] = []

    def burn(invoice) -> None:
        try:
            barrier.wait()
            results.append(credits_burn_for_invoice(invoice=invoice, now=NOW))
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    def void() -> None:
        try:
            barrier.wait()
            credit_grant_void(grant=g, now=NOW)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=burn, args=(i,)) for i in invoices] + [threading.Thread(target=void)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sum(results) == burned(g)[0] <= 1000
    assert audit_all() == []
