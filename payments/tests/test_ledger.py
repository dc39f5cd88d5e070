"""The customer balance ledger: adjustments, spending a balance on invoices, negative invoice totals."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection

from billing_site.errors import InvalidRequest
from customers.tests.factories import CustomerFactory
from invoicing.models import Invoice
from invoicing.services import invoice_finalize
from payments import selectors
from payments.audit import audit_all
from payments.models import BalanceTransaction, CustomerBalance
from payments.selectors import balance_get
from payments.services import ledger
from payments.services.ledger import balance_adjust, balance_apply_to_invoice
from payments.tests.factories import LEDGER_T0, ledger_invoice
from subscriptions.services.lifecycle import ItemSpec, subscription_change
from subscriptions.tests.support import T0, fixed_price, metered_price, subscribe
from webhooks.models import BillingEvent

pytestmark = pytest.mark.django_db

NOW = LEDGER_T0
ADJ = BalanceTransaction.Type.ADJUSTMENT


def adjust(customer, amount, currency="usd", type=ADJ, **kwargs):
    return balance_adjust(
        customer=customer, amount=amount, currency=currency, type=type, description="t", now=NOW, **kwargs
    )


def ledger_of(customer, currency="usd"):
    return list(
        BalanceTransaction.objects.filter(customer=customer, currency=currency)
        .order_by("id")
        .values_list("type", "amount", "ending_balance")
    )


# --- Adjustments ----------------------------------------------------------------------------------


def test_adjustments_append_entries_whose_ending_balances_chain_and_sum_to_the_balance():
    customer = CustomerFactory()
    first = adjust(customer, 500)
    assert (first.id[:4], first.type, first.amount, first.ending_balance) == ("cbt_", ADJ, 500, 500)
    adjust(customer, -200)
    adjust(customer, 1000, currency="EUR")  # any case; stored lower
    adjust(customer, -400)  # an adjustment may take the balance below zero: the customer owes it
    assert ledger_of(customer) == [(ADJ, 500, 500), (ADJ, -200, 300), (ADJ, -400, -100)]
    assert ledger_of(customer, "eur") == [(ADJ, 1000, 1000)]
    assert balance_get(customer, "usd") == -100 and balance_get(customer, "EUR") == 1000
    assert balance_get(customer, "gbp") == 0 and not CustomerBalance.objects.filter(currency="gbp").exists()
    assert [(b.currency, b.balance) for b in selectors.balance_list(customer)] == [("eur", 1000), ("usd", -100)]
    assert audit_all() == []


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"amount": 0}, "amount"),
        ({"amount": True}, "amount"),
        ({"amount": "10"}, "amount"),
        ({"currency": "usdx"}, "currency"),
        ({"type": "gift"}, "type"),
    ],
)
def test_bad_adjustments_are_refused_naming_the_field_and_write_nothing(kwargs, param):
    customer = CustomerFactory()
    values = {"amount": 100, "currency": "usd", "type": ADJ, **kwargs}
    with pytest.raises(InvalidRequest) as error:
        balance_adjust(customer=customer, description="", now=NOW, **values)
    assert error.value.param == param
    assert not BalanceTransaction.objects.exists() and not CustomerBalance.objects.exists()


def test_entries_written_within_one_millisecond_still_sort_in_ledger_order(monkeypatch):
    customer = CustomerFactory()
    monkeypatch.setattr(ledger, "new_id", lambda prefix: f"{prefix}_{'0' * 26}")  # the clock stands still
    ids = [adjust(customer, amount).id for amount in (5, -3, 7, -9)]
    assert ids == sorted(ids) and len(set(ids)) == 4
    assert [row[2] for row in ledger_of(customer)] == [5, 2, 9, 0]
    assert audit_all() == []


# --- Applying a balance to an invoice -------------------------------------------------------------


def test_a_balance_smaller_than_the_amount_due_is_spent_whole_and_the_invoice_stays_open():
    customer = CustomerFactory()
    adjust(customer, 300)
    invoice = ledger_invoice(customer, lines=(1000,))
    txn = balance_apply_to_invoice(invoice=invoice, now=NOW)
    assert (txn.type, txn.amount, txn.ending_balance, txn.invoice_id) == ("invoice_payment", -300, 0, invoice.id)
    # The caller's instance is brought up to date.
    assert (invoice.status, invoice.balance_applied, invoice.amount_paid, invoice.amount_remaining) == (
        "open",
        300,
        300,
        700,
    )
    invoice.refresh_from_db()
    assert (invoice.status, invoice.balance_applied, invoice.amount_paid, invoice.amount_remaining) == (
        "open",
        300,
        300,
        700,
    )
    assert balance_get(customer, "usd") == 0
    assert balance_apply_to_invoice(invoice=invoice, now=NOW) is None  # nothing left to spend
    assert BalanceTransaction.objects.count() == 2
    assert audit_all() == []


def test_a_balance_larger_than_the_amount_due_pays_the_invoice_and_keeps_the_rest():
    customer = CustomerFactory()
    adjust(customer, 5000)
    invoice = ledger_invoice(customer, lines=(1000, 250))
    txn = balance_apply_to_invoice(invoice=invoice, now=NOW + timedelta(hours=1))
    assert (txn.amount, txn.ending_balance) == (-1250, 3750)
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_paid, invoice.amount_remaining, invoice.paid_at) == (
        "paid",
        1250,
        0,
        NOW + timedelta(hours=1),
    )
    assert BillingEvent.objects.filter(object_id=invoice.id, type="invoice.paid").count() == 1
    assert balance_apply_to_invoice(invoice=invoice, now=NOW) is None  # paid: never spent twice
    assert balance_get(customer, "usd") == 3750
    assert audit_all() == []


def test_nothing_is_applied_without_a_positive_balance_in_the_invoice_currency():
    customer = CustomerFactory()
    invoice = ledger_invoice(customer, lines=(1000,))
    assert balance_apply_to_invoice(invoice=invoice, now=NOW) is None
    assert not CustomerBalance.objects.exists()  # applying never creates a balance row
    adjust(customer, 800, currency="eur")
    assert balance_apply_to_invoice(invoice=invoice, now=NOW) is None
    adjust(customer, -50)
    assert balance_apply_to_invoice(invoice=invoice, now=NOW) is None  # a debt is not spent
    invoice.refresh_from_db()
    assert (invoice.amount_paid, invoice.amount_remaining, invoice.balance_applied) == (0, 1000, 0)
    assert balance_get(customer, "usd") == -50


@pytest.mark.parametrize("status", ["draft", "paid", "void", "uncollectible"])
def test_only_open_invoices_take_a_balance(status):
    customer = CustomerFactory()
    adjust(customer, 800)
    invoice = ledger_invoice(customer, status=status)
    assert balance_apply_to_invoice(invoice=invoice, now=NOW) is None
    assert balance_get(customer, "usd") == 800


# --- Negative invoice totals ----------------------------------------------------------------------


def test_a_downgrade_invoice_with_a_negative_total_credits_the_balance_once():
    basic, pro = fixed_price("2800"), fixed_price("5600")
    sub, _ = subscribe(None, pro)
    _, invoice = subscription_change(
        subscription=sub, items=[ItemSpec(price=basic, quantity=None)], proration_behavior="always_invoice", now=T0
    )
    assert (invoice.total, invoice.amount_due, invoice.status) == (-2800, 0, "paid")
    assert ledger_of(sub.customer) == [("invoice_credit", 2800, 2800)]
    assert BalanceTransaction.objects.get(type="invoice_credit").invoice_id == invoice.id
    # The hook running again (a retry) changes nothing: once per invoice.
    ledger.invoices_negative_total_credit([invoice], T0)
    assert ledger_of(sub.customer) == [("invoice_credit", 2800, 2800)]
    assert audit_all() == []


def test_finalizing_a_negative_draft_by_hand_credits_the_balance(settings):
    basic, pro = fixed_price("2800"), fixed_price("5600")
    sub, _ = subscribe(None, pro)
    settings.INVOICE_AUTO_FINALIZE = False
    _, draft = subscription_change(
        subscription=sub, items=[ItemSpec(price=basic, quantity=None)], proration_behavior="always_invoice", now=T0
    )
    assert draft.status == "draft" and not BalanceTransaction.objects.exists()
    invoice = invoice_finalize(invoice=draft, now=T0)
    assert invoice.status == "paid"
    assert balance_get(sub.customer, "usd") == 2800


def test_positive_and_zero_totals_do_not_touch_the_balance():
    _, invoice = subscribe(None, fixed_price("1000"))
    _, zero = subscribe(None, metered_price())
    assert (invoice.total, zero.total, zero.status) == (1000, 0, "paid")
    assert not BalanceTransaction.objects.exists() and not CustomerBalance.objects.exists()


def test_the_credit_then_pays_the_next_invoice():
    customer = CustomerFactory()
    ledger.invoices_negative_total_credit([ledger_invoice(customer, lines=(-700,), status="paid")], NOW)
    nxt = ledger_invoice(customer, lines=(1000,))
    assert balance_apply_to_invoice(invoice=nxt, now=NOW).amount == -700
    nxt.refresh_from_db()
    assert (nxt.amount_remaining, nxt.balance_applied) == (300, 700)
    assert audit_all() == []


# --- Concurrency ----------------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_adjustments_and_applications_keep_the_ledger_exact():
    customer = CustomerFactory()
    adjust(customer, 1000)
    invoices = [ledger_invoice(customer, lines=(400,)) for _ in range(4)]
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def run(fn) -> None:
        try:
            barrier.wait()
            fn()
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    jobs = [lambda i=i: balance_apply_to_invoice(invoice=i, now=NOW) for i in invoices]
    jobs += [lambda: adjust(customer, 100) for _ in range(4)]
    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    applied = sum(Invoice.objects.filter(pk__in=[i.pk for i in invoices]).values_list("balance_applied", flat=True))
    # 1000 + 4 x 100 went in; at most 1400 came out, never more than the four invoices' 1600.
    assert balance_get(customer, "usd") == 1400 - applied >= 0
    assert 1000 <= applied <= 1400
    assert audit_all() == []
