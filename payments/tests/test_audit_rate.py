"""Issue 15: billing_audit's per-row totals are aggregated once per key and left-joined (`_with_totals`):
a row with nothing to total counts 0, only the rows that break the invariant come back, in id order,
and the totals are integers on every database."""

from __future__ import annotations

import pytest
from django.db.models import BigIntegerField, Value

from customers.tests.factories import CustomerFactory
from payments.audit import _with_totals, audit_balances
from payments.models import BalanceTransaction, CustomerBalance
from payments.services.ledger import balance_adjust
from payments.tests.factories import LEDGER_T0

pytestmark = pytest.mark.django_db

NOW = LEDGER_T0


def _balance_with_history(amounts: tuple[int, ...]) -> CustomerBalance:
    customer = CustomerFactory()
    for amount in amounts:
        balance_adjust(customer=customer, amount=amount, currency="usd", type="adjustment", description="", now=NOW)
    return CustomerBalance.objects.get(customer=customer, currency="usd")


def test_a_balance_without_transactions_totals_zero_and_only_the_broken_ones_are_reported_in_id_order():
    clean = _balance_with_history((700, -200))
    broken = _balance_with_history((300,))
    CustomerBalance.objects.filter(pk=broken.pk).update(balance=301)
    empty = CustomerBalance.objects.create(customer=CustomerFactory(), currency="usd", balance=5, updated_at=NOW)
    zero = CustomerBalance.objects.create(customer=CustomerFactory(), currency="usd", balance=0, updated_at=NOW)

    problems = audit_balances()

    expected = {
        broken.pk: f"customer {broken.customer_id} usd: balance 301, but its transactions sum to 300",
        empty.pk: f"customer {empty.customer_id} usd: balance 5, but its transactions sum to 0",
    }
    assert problems == [expected[pk] for pk in sorted(expected)]
    assert all(str(b.customer_id) not in " ".join(problems) for b in (clean, zero))


def test_the_joined_totals_are_integers_and_zero_where_there_is_nothing_to_total():
    with_history = _balance_with_history((700, -200, 45))
    empty = CustomerBalance.objects.create(customer=CustomerFactory(), currency="usd", balance=0, updated_at=NOW)

    rows = list(
        _with_totals(
            CustomerBalance.objects.filter(pk__in=[with_history.pk, empty.pk]),
            ("id", "balance"),
            {
                "total": (BalanceTransaction.objects.all(), "balance_id", "amount"),
                "count": (BalanceTransaction.objects.all(), "balance_id", Value(1, output_field=BigIntegerField())),
            },
            "total >= %s",
            (0,),
        )
    )

    by_id = {row[0]: row for row in rows}
    assert set(by_id) == {with_history.pk, empty.pk}
    assert by_id[with_history.pk][1:] == (545, 545, 3)
    assert by_id[empty.pk][1:] == (0, 0, 0)
    assert all(type(value) is int for row in rows for value in row[1:])
