"""Issue 10's racing pairs, from threads on PostgreSQL: refunds against credit notes on one paid invoice (the
deadlock behind a burst of 500s), and concurrent /pay callers (exactly one is told it paid)."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from django.db.models import Sum
from rest_framework.test import APIClient

from billing_site.services import api_key_create
from customers.tests.factories import CustomerFactory
from invoicing.models import Invoice
from payments.audit import audit_all
from payments.models import PaymentIntent, Refund
from payments.processors.sandbox import sandbox_charges
from payments.services.collection import invoice_collect
from payments.services.methods import payment_method_create
from payments.tests.factories import open_invoice

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _client(raw: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def _race(calls) -> list:
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = calls[i]()
        except Exception as exc:  # a raised error is a result the test reports
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a request never finished (a deadlock?)"
    return results


def test_concurrent_refunds_and_credit_notes_on_one_paid_invoice():
    from django.utils import timezone

    customer = CustomerFactory()
    payment_method_create(customer=customer, token="tok_visa", default=True, now=timezone.now())
    invoice = open_invoice(customer, amount=2000)
    assert invoice_collect(invoice=invoice, trigger="api", now=timezone.now()).attempt.success
    _, raw = api_key_create(name="race", scopes=["admin"])

    def credit_note(i: int):
        body = {"invoice": invoice.id, "amount": 150, "refund_amount": 150}
        return _client(raw).post("/api/v1/credit-notes", body, format="json", HTTP_IDEMPOTENCY_KEY=f"cn-{i}")

    def refund(i: int):
        body = {"invoice": invoice.id, "amount": 150}
        return _client(raw).post("/api/v1/refunds", body, format="json", HTTP_IDEMPOTENCY_KEY=f"re-{i}")

    calls = [lambda i=i: credit_note(i) for i in range(10)] + [lambda i=i: refund(i) for i in range(10)]
    results = _race(calls)
    errors = [r for r in results if isinstance(r, Exception)]
    assert not errors, errors
    statuses = [r.status_code for r in results]
    assert all(s < 500 for s in statuses), [(r.status_code, r.content[:300]) for r in results if r.status_code >= 500]
    assert statuses.count(201) >= 1
    given_back = Refund.objects.filter(invoice=invoice).exclude(status="failed").aggregate(total=Sum("amount"))
    assert (given_back["total"] or 0) <= 2000
    intent = PaymentIntent.objects.get(invoice=invoice)
    assert intent.amount_refunded == given_back["total"] <= intent.amount_received
    invoice.refresh_from_db()
    assert invoice.credited <= invoice.total
    # Every 201 is one refund, and every refund is one 201: nothing issued twice.
    assert Refund.objects.filter(invoice=invoice).count() == statuses.count(201)
    assert audit_all() == []


def test_concurrent_pay_callers_exactly_one_is_told_it_paid():
    from django.utils import timezone

    customer = CustomerFactory()
    payment_method_create(customer=customer, token="tok_visa", default=True, now=timezone.now())
    invoice = open_invoice(customer, amount=1000)
    _, raw = api_key_create(name="pay", scopes=["admin"])
    results = _race([lambda: _client(raw).post(f"/api/v1/invoices/{invoice.id}/pay") for _ in range(12)])
    errors = [r for r in results if isinstance(r, Exception)]
    assert not errors, errors
    assert all(r.status_code < 500 for r in results)
    told_paid = [r for r in results if r.status_code == 200 and r.json()["attempt"]["success"]]
    assert len(told_paid) == 1
    for r in results:
        if r not in told_paid:
            code = r.json()["error"]["code"] if r.status_code == 409 else r.json()["attempt"]["error"].split(":")[0]
            assert code in ("invoice_status_conflict", "payment_in_progress"), r.content
    invoice.refresh_from_db()
    assert invoice.status == "paid" and invoice.amount_paid == 1000 and sandbox_charges() == 1
    assert not PaymentIntent.objects.filter(invoice=invoice, status__in=PaymentIntent.IN_FLIGHT).exists()
    assert Invoice.objects.get(pk=invoice.pk).amount_remaining == 0
    assert audit_all() == []


def test_concurrent_pay_and_credit_notes_on_one_open_invoice_take_nothing_twice():
    from django.utils import timezone

    from payments.models import BalanceTransaction, SandboxPayment

    customer = CustomerFactory()
    payment_method_create(customer=customer, token="tok_visa", default=True, now=timezone.now())
    invoice = open_invoice(customer, amount=1000)
    _, raw = api_key_create(name="mix", scopes=["admin"])

    def pay():
        return _client(raw).post(f"/api/v1/invoices/{invoice.id}/pay")

    def credit_note():
        return _client(raw).post("/api/v1/credit-notes", {"invoice": invoice.id, "amount": 100}, format="json")

    results = _race([pay, credit_note] * 5)
    errors = [r for r in results if isinstance(r, Exception)]
    assert not errors, errors
    assert all(r.status_code < 500 for r in results), [r.content[:300] for r in results if r.status_code >= 500]
    invoice.refresh_from_db()
    assert invoice.status == "paid" and sandbox_charges() == 1
    received = sum(SandboxPayment.objects.filter(kind="payment", status="succeeded").values_list("amount", flat=True))
    overpaid = sum(BalanceTransaction.objects.filter(type="overpayment").values_list("amount", flat=True))
    # Every cent the provider took is applied to the invoice or credited back, explained; never both.
    assert received == invoice.amount_paid + overpaid
    assert invoice.amount_paid <= invoice.amount_due <= invoice.total and invoice.credited <= invoice.total
    assert audit_all() == []
