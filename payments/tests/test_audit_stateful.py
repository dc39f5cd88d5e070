"""Property: whatever sequence of balance adjustments, grant creations, voids and expiries, credit burns,
balance applications, negative invoices and credit notes (issued and voided) happens, `billing_audit`
finds nothing, and every balance equals what the operations themselves say they moved."""

from __future__ import annotations

import contextlib
from collections import defaultdict
from datetime import timedelta

import pytest
from django.db import transaction
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from billing_site.errors import Conflict, InvalidRequest
from customers.tests.factories import CustomerFactory
from invoicing.models import Invoice
from metering.tests.factories import MeterFactory
from payments.audit import audit_all
from payments.models import CreditGrant
from payments.selectors import balance_get
from payments.services.credit_notes import credit_note_create, credit_note_void
from payments.services.grants import (
    credit_grant_create,
    credit_grant_void,
    credit_grants_expire_job,
    credits_burn_for_invoice,
)
from payments.services.ledger import balance_adjust, balance_apply_to_invoice, invoices_negative_total_credit
from payments.tests.factories import LEDGER_T0, ledger_invoice
from subscriptions.tests.support import fixed_price

pytestmark = pytest.mark.django_db

CURRENCIES = ("usd", "eur")
currencies = st.sampled_from(("usd", "usd", "usd", "eur"))  # mostly one, so operations meet each other
pick = st.integers(min_value=0, max_value=10**6)


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        # Each run starts from an empty database: everything it writes is rolled back in teardown.
        self._atomic = transaction.atomic()
        # Marked as the test case's own blocks are: each operation's transaction is its own, for the lock
        # order checker too (otherwise every rule would look like one long transaction).
        self._atomic._from_testcase = True
        self._atomic.__enter__()
        self.now = LEDGER_T0
        self.customers = [CustomerFactory(), CustomerFactory()]
        self.meter = MeterFactory()
        self.price = fixed_price()
        self.grants: list[CreditGrant] = []
        self.invoices: list[Invoice] = []
        self.notes: list = []
        self.expected: dict[tuple[str, str], int] = defaultdict(int)

    def teardown(self) -> None:
        transaction.set_rollback(True)
        self._atomic.__exit__(None, None, None)

    def _moved(self, customer_id: str, currency: str, amount: int) -> None:
        self.expected[(customer_id, currency)] += amount

    @initialize(amount=st.integers(0, 3000))
    def start(self, amount: int) -> None:
        """Some credit and something to pay for each customer, so the first steps already meet."""
        for customer in self.customers:
            if amount:
                balance_adjust(
                    customer=customer, amount=amount, currency="usd", type="adjustment", description="", now=self.now
                )
                self._moved(customer.pk, "usd", amount)
            self.invoices.append(ledger_invoice(customer, lines=(700, {"amount": 500, "meter": self.meter})))
            self.grants.append(credit_grant_create(customer=customer, amount=400, currency="usd", now=self.now))

    @rule(hours=st.integers(1, 72))
    def advance(self, hours: int) -> None:
        self.now += timedelta(hours=hours)

    @rule(c=pick, amount=st.integers(-500, 3000).filter(bool), currency=currencies)
    def adjust(self, c: int, amount: int, currency: str) -> None:
        customer = self.customers[c % 2]
        balance_adjust(
            customer=customer, amount=amount, currency=currency, type="adjustment", description="", now=self.now
        )
        self._moved(customer.pk, currency, amount)

    @rule(
        c=pick,
        amount=st.integers(1, 2000),
        priority=st.integers(0, 3),
        starts=st.integers(-48, 24),
        lasts=st.one_of(st.none(), st.integers(1, 96)),
        eligible=st.sampled_from(["all", "meter", "price", "both"]),
        currency=currencies,
    )
    def grant(self, c: int, amount: int, priority: int, starts: int, lasts, eligible: str, currency: str) -> None:
        effective = self.now + timedelta(hours=starts)
        meters = [self.meter.id] if eligible in ("meter", "both") else []
        prices = [self.price.id] if eligible in ("price", "both") and currency == "usd" else []
        self.grants.append(
            credit_grant_create(
                customer=self.customers[c % 2],
                amount=amount,
                currency=currency,
                priority=priority,
                effective_at=effective,
                expires_at=effective + timedelta(hours=lasts) if lasts else None,
                meters=meters,
                prices=prices,
                now=self.now,
            )
        )

    @precondition(lambda self: self.grants)
    @rule(g=pick)
    def void_grant(self, g: int) -> None:
        with contextlib.suppress(Conflict):
            credit_grant_void(grant=self.grants[g % len(self.grants)], now=self.now)

    @rule()
    def expire(self) -> None:
        credit_grants_expire_job(now=self.now)

    @rule(
        c=pick,
        amounts=st.lists(st.integers(-300, 1500), min_size=1, max_size=3),
        kinds=st.lists(st.sampled_from(["plain", "meter", "price"]), min_size=3, max_size=3),
        tax=st.integers(0, 200),
        currency=currencies,
        paid=st.booleans(),
    )
    def invoice(self, c: int, amounts: list[int], kinds: list[str], tax: int, currency: str, paid: bool) -> None:
        lines = []
        for amount, kind in zip(amounts, kinds, strict=False):
            spec: dict = {"amount": amount}
            if kind == "meter":
                spec["meter"] = self.meter
            elif kind == "price" and currency == "usd":
                spec["price"] = self.price
            lines.append(spec)
        customer = self.customers[c % 2]
        total = sum(amounts) + tax
        status = "paid" if paid or total <= 0 else "open"
        invoice = ledger_invoice(customer, lines=lines, tax=tax, currency=currency, status=status, now=self.now)
        if total < 0:  # as finalization does: the negative total goes to the balance
            invoices_negative_total_credit([invoice], self.now)
            self._moved(customer.pk, currency, -total)
        self.invoices.append(invoice)

    @precondition(lambda self: self.invoices)
    @rule(i=pick)
    def burn(self, i: int) -> None:
        invoice = self.invoices[i % len(self.invoices)]
        before = Invoice.objects.get(pk=invoice.pk).amount_remaining
        burned = credits_burn_for_invoice(invoice=invoice, now=self.now)
        assert 0 <= burned <= max(before, 0)
        event("burned credit" if burned else "burned nothing")

    @precondition(lambda self: self.invoices)
    @rule(i=pick)
    def apply_balance(self, i: int) -> None:
        invoice = self.invoices[i % len(self.invoices)]
        current = Invoice.objects.get(pk=invoice.pk)
        available = balance_get(current.customer, current.currency)
        txn = balance_apply_to_invoice(invoice=invoice, now=self.now)
        if txn is not None:
            assert 0 < -txn.amount <= min(available, current.amount_remaining)
            self._moved(current.customer_id, current.currency, txn.amount)
        event("applied balance" if txn else "applied nothing")

    @precondition(lambda self: self.invoices)
    @rule(
        i=pick,
        share=st.integers(1, 110),
        by_line=st.booleans(),
        split=st.sampled_from(["credit", "out_of_band", "half"]),
    )
    def credit_note(self, i: int, share: int, by_line: bool, split: str) -> None:
        invoice = Invoice.objects.get(pk=self.invoices[i % len(self.invoices)].pk)
        left = invoice.total - invoice.credited
        amount = max(left * share // 100, 1)
        kwargs: dict = {"amount": amount}
        if by_line:
            line = invoice.lines.order_by("-amount").first()
            kwargs = {"lines": [{"invoice_line": line.id, "amount": max(min(amount, line.amount), 1)}]}
            amount = kwargs["lines"][0]["amount"]
        rest = amount - (min(amount, invoice.amount_remaining) if invoice.status == "open" else 0)
        if split == "credit":
            kwargs["credit_amount"] = rest
        elif split == "out_of_band":
            kwargs["out_of_band_amount"] = rest
        else:
            kwargs["credit_amount"] = rest // 2
            kwargs["out_of_band_amount"] = rest - rest // 2
        try:
            note = credit_note_create(invoice=invoice, now=self.now, **kwargs)
        except (InvalidRequest, Conflict) as error:
            event(f"credit note refused: {error.code}")
            return
        event("credit note issued")
        self.notes.append(note)
        if note.credit_amount:
            self._moved(invoice.customer_id, invoice.currency, note.credit_amount)

    @precondition(lambda self: self.notes)
    @rule(n=pick)
    def void_note(self, n: int) -> None:
        note = self.notes[n % len(self.notes)]
        try:
            voided = credit_note_void(credit_note=note, now=self.now)
        except Conflict as error:
            event(f"credit note void refused: {error.code}")
            return
        event("credit note voided")
        if voided.credit_amount:
            self._moved(voided.customer_id, voided.currency, -voided.credit_amount)

    @invariant()
    def books_are_clean(self) -> None:
        assert audit_all() == []
        for customer in self.customers:
            for currency in CURRENCIES:
                assert balance_get(customer, currency) == self.expected[(customer.pk, currency)]


def test_the_audit_stays_clean_through_random_operations():
    run_state_machine_as_test(
        LedgerMachine,
        settings=settings(
            max_examples=15,
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        ),
    )
