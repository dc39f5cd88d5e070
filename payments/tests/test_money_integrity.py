"""Issue 10 (items 1, 2, 6, 7 and idempotency through a 5xx): never take more than is owed while a charge is
in flight, one lock order for what gives money back, no orphaned payments, deleted customers never charged,
and an Idempotency-Key that a failure after commit does not free."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

import billing_site.locks as core_locks
from billing_site.models import IdempotencyRecord
from customers.models import Customer
from customers.tests.factories import CustomerFactory
from invoicing.models import Invoice
from payments.models import BalanceTransaction, CollectionAttempt, CreditNote, PaymentIntent, Refund
from payments.processors.sandbox import sandbox_charges
from payments.selectors import balance_get
from payments.services import intents
from payments.services.collection import invoice_collect, invoices_collect_job
from payments.services.credit_notes import credit_note_create
from payments.services.grants import credit_grant_create
from payments.services.intents import payment_intent_resolve_unknown_job
from payments.services.ledger import balance_adjust
from payments.services.methods import payment_method_create
from payments.services.refunds import refund_create
from payments.services.settlement import invoice_apply_payment
from payments.tests.factories import ledger_invoice, open_invoice
from subscriptions.tests.support import fixed_price, subscribe

pytestmark = pytest.mark.django_db

API = CollectionAttempt.Trigger.API
S = PaymentIntent.Status


def card(customer, token="tok_visa"):
    return payment_method_create(customer=customer, token=token, default=True, now=timezone.now())


def provider_money() -> int:
    """What the sandbox provider actually took, all payments together."""
    from payments.models import SandboxPayment

    return sum(SandboxPayment.objects.filter(kind="payment", status="succeeded").values_list("amount", flat=True))


# --- 1. Nothing applied while a charge is in flight ------------------------------------------------


@pytest.mark.parametrize("extra", ["balance", "credit_note", "grant"])
def test_the_issue_scenario_the_customer_pays_1000_and_nothing_is_applied_twice(api, extra):
    customer = CustomerFactory()
    card(customer, "tok_timeout")
    invoice = ledger_invoice(customer, lines=(1000,), now=timezone.now())  # lines: credit grants burn per line
    first = api.post(f"/api/v1/invoices/{invoice.id}/pay")
    assert first.status_code == 200, first.content
    assert PaymentIntent.objects.get(invoice=invoice).status == S.UNKNOWN  # the provider took 1000

    now = timezone.now()
    if extra == "balance":
        balance_adjust(customer=customer, amount=300, currency="usd", type="adjustment", description="x", now=now)
    elif extra == "credit_note":
        response = api.post("/api/v1/credit-notes", {"invoice": invoice.id, "amount": 300}, format="json")
        assert response.status_code == 201, response.content
    else:
        credit_grant_create(customer=customer, amount=300, currency="usd", now=now, effective_at=now)

    again = api.post(f"/api/v1/invoices/{invoice.id}/pay")
    assert again.status_code == 200, again.content
    attempt = again.json()["attempt"]
    assert attempt["error"].startswith("payment_in_progress") and attempt["success"] is False
    assert (attempt["credit_used"], attempt["balance_used"], attempt["amount_charged"]) == (0, 0, 0)
    invoice.refresh_from_db()
    assert (invoice.credits_applied, invoice.balance_applied) == (0, 0)  # nothing applied beside the charge

    payment_intent_resolve_unknown_job(now=timezone.now())
    invoice.refresh_from_db()
    assert invoice.status == "paid"
    assert provider_money() == 1000 and sandbox_charges() == 1  # the customer paid 1000 in all
    if extra == "credit_note":
        # The note took 300 off what was due, so 300 of the 1000 is more than was owed: credited back,
        # explained, never dropped.
        assert invoice.amount_paid == 700
        overpayment = BalanceTransaction.objects.get(customer=customer, type="overpayment")
        assert overpayment.amount == 300 and "more than invoice" in overpayment.description
        assert balance_get(customer, "usd") == 300
    else:
        assert invoice.amount_paid == 1000 and (invoice.credits_applied, invoice.balance_applied) == (0, 0)
        assert not BalanceTransaction.objects.filter(type="overpayment").exists()
        # The 300 is still the customer's, unspent.
        if extra == "balance":
            assert balance_get(customer, "usd") == 300
        else:
            assert invoice.credits_applied == 0


def test_a_charge_is_sized_under_the_invoice_lock_by_what_remains():
    customer = CustomerFactory()
    method = card(customer)
    invoice = open_invoice(customer, amount=1000)
    stale = Invoice.objects.get(pk=invoice.pk)
    Invoice.objects.filter(pk=invoice.pk).update(amount_remaining=600)  # paid in part meanwhile
    intent = intents.payment_intent_create(
        customer=customer, amount=None, currency="usd", payment_method=method, invoice=stale, now=timezone.now()
    )
    assert intent.amount == 600


def test_money_an_invoice_cannot_take_is_reported_never_dropped():
    customer = CustomerFactory()
    invoice = open_invoice(customer, amount=500)
    from django.db import transaction

    with transaction.atomic():
        updated, applied = invoice_apply_payment(invoice_id=invoice.pk, amount=800, now=timezone.now())
    assert applied == 500 and updated.status == "paid"
    with transaction.atomic():
        _, applied = invoice_apply_payment(invoice_id=invoice.pk, amount=100, now=timezone.now())
    assert applied == 0  # paid: the caller (payment_apply) credits the whole 100 to the balance


# --- 2. One lock order; the on-commit hook ----------------------------------------------------------


def _paid_by_card(amount=2000):
    customer = CustomerFactory()
    card(customer)
    invoice = open_invoice(customer, amount=amount)
    assert invoice_collect(invoice=invoice, trigger=API, now=timezone.now()).attempt.success
    invoice.refresh_from_db()
    return invoice


def _lock_sequence(monkeypatch) -> list[str]:
    taken: list[str] = []
    real = core_locks.lock_rows

    def spy(queryset, rank, **kwargs):
        taken.append(queryset.model._meta.label)
        return real(queryset, rank, **kwargs)

    monkeypatch.setattr(core_locks, "lock_rows", spy)
    return taken


def test_a_refund_locks_the_invoice_before_its_payment_like_a_credit_note(monkeypatch):
    invoice = _paid_by_card()
    taken = _lock_sequence(monkeypatch)
    refund_create(invoice=invoice, amount=100, now=timezone.now())
    assert taken.index("invoicing.Invoice") < taken.index("payments.PaymentIntent")
    taken.clear()
    credit_note_create(invoice=invoice, amount=100, refund_amount=100, now=timezone.now())
    assert taken.index("invoicing.Invoice") < taken.index("payments.PaymentIntent")


def test_a_failing_refund_hook_after_the_credit_note_committed_is_logged_not_a_500(
    api, monkeypatch, django_capture_on_commit_callbacks
):
    invoice = _paid_by_card()
    from payments.processors.sandbox import SandboxProcessor

    def broken(self, **kwargs):
        raise RuntimeError("provider exploded")

    monkeypatch.setattr(SandboxProcessor, "refund", broken)
    body = {"invoice": invoice.id, "amount": 500, "refund_amount": 500}
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post("/api/v1/credit-notes", body, format="json", HTTP_IDEMPOTENCY_KEY="cn-hook")
    assert response.status_code == 201, response.content
    refund = Refund.objects.get(credit_note_id=response.json()["id"])
    assert refund.status == Refund.Status.PENDING  # the resend job asks again with its own key


# --- Idempotency through a 5xx ----------------------------------------------------------------------


def test_a_failure_after_the_credit_note_committed_keeps_the_key(api, monkeypatch):
    invoice = _paid_by_card()
    from payments import apis

    monkeypatch.setattr(apis.selectors, "credit_note_get", _explode)
    body = {"invoice": invoice.id, "amount": 500, "refund_amount": 500}
    first = api.post("/api/v1/credit-notes", body, format="json", HTTP_IDEMPOTENCY_KEY="cn-1")
    assert first.status_code == 500
    monkeypatch.undo()
    retry = api.post("/api/v1/credit-notes", body, format="json", HTTP_IDEMPOTENCY_KEY="cn-1")
    assert retry.status_code == 500 and retry["Idempotent-Replayed"] == "true"
    assert CreditNote.objects.filter(invoice=invoice).count() == 1
    assert Refund.objects.filter(invoice=invoice).count() == 1


def test_a_failure_after_the_refund_committed_keeps_the_key(api, monkeypatch):
    invoice = _paid_by_card()
    from payments import apis

    monkeypatch.setattr(apis, "RefundOutput", _explode)
    body = {"invoice": invoice.id, "amount": 300}
    assert api.post("/api/v1/refunds", body, format="json", HTTP_IDEMPOTENCY_KEY="re-1").status_code == 500
    monkeypatch.undo()
    assert api.post("/api/v1/refunds", body, format="json", HTTP_IDEMPOTENCY_KEY="re-1").status_code == 500
    assert Refund.objects.filter(invoice=invoice).count() == 1
    assert PaymentIntent.objects.get(invoice=invoice).amount_refunded == 300


def test_a_failure_after_the_charge_committed_keeps_the_key(api, monkeypatch):
    customer = CustomerFactory()
    card(customer)
    invoice = open_invoice(customer, amount=700)
    from payments import apis

    monkeypatch.setattr(apis, "attempt_data", _explode)
    assert api.post(f"/api/v1/invoices/{invoice.id}/pay", HTTP_IDEMPOTENCY_KEY="pay-1").status_code == 500
    monkeypatch.undo()
    Invoice.objects.filter(pk=invoice.pk).update(status="open", amount_remaining=700)  # as if it could pay again
    assert api.post(f"/api/v1/invoices/{invoice.id}/pay", HTTP_IDEMPOTENCY_KEY="pay-1").status_code == 500
    assert sandbox_charges() == 1


def test_a_5xx_whose_work_rolled_back_frees_the_key(api, monkeypatch):
    """The other side: the service wrote, then failed inside its transaction; nothing committed."""
    invoice = _paid_by_card()
    from payments.services import credit_notes

    monkeypatch.setattr(credit_notes, "allocate_numbers", _explode)  # the last step inside the transaction
    body = {"invoice": invoice.id, "amount": 500, "credit_amount": 500}
    assert api.post("/api/v1/credit-notes", body, format="json", HTTP_IDEMPOTENCY_KEY="cn-2").status_code == 500
    assert not IdempotencyRecord.objects.filter(key="cn-2").exists()
    assert not CreditNote.objects.exists()
    monkeypatch.undo()
    assert api.post("/api/v1/credit-notes", body, format="json", HTTP_IDEMPOTENCY_KEY="cn-2").status_code == 201
    assert CreditNote.objects.count() == 1


def _explode(*args, **kwargs):
    raise RuntimeError("failure after the work")


# --- 6. Orphans -----------------------------------------------------------------------------------


def test_a_pay_that_loses_the_race_leaves_no_intent_in_flight_on_the_paid_invoice():
    customer = CustomerFactory()
    method = card(customer)
    invoice = open_invoice(customer, amount=400)
    now = timezone.now()
    intent = intents.payment_intent_create(
        customer=customer, amount=400, currency="usd", payment_method=method, invoice=invoice, now=now
    )
    credit_note_create(invoice=invoice, amount=400, now=now)  # paid another way before the confirmation
    with pytest.raises(Exception) as error:
        intents.payment_intent_confirm(payment_intent=intent, off_session=True, now=now)
    assert getattr(error.value, "code", "") == "invoice_not_open"
    assert not PaymentIntent.objects.filter(invoice=invoice, status__in=PaymentIntent.IN_FLIGHT).exists()
    assert sandbox_charges() == 0


def test_a_worker_killed_between_create_and_confirm_does_not_leave_the_invoice_stuck(monkeypatch):
    customer = CustomerFactory()
    card(customer)
    invoice = open_invoice(customer, amount=900)
    now = timezone.now()

    def killed(**kwargs):
        raise SystemExit("worker killed")

    monkeypatch.setattr(intents, "payment_intent_confirm", killed)
    with pytest.raises(SystemExit):
        invoice_collect(invoice=invoice, trigger=API, now=now)
    monkeypatch.undo()
    orphan = PaymentIntent.objects.get(invoice=invoice)
    assert orphan.status == S.REQUIRES_CONFIRMATION
    blocked = invoice_collect(invoice=invoice, trigger=API, now=now + timedelta(minutes=1))
    assert blocked.attempt.error.startswith("payment_in_progress")
    # Inside the window the sweep leaves it (a confirmation may still be on its way) ...
    payment_intent_resolve_unknown_job(now=now + timedelta(minutes=5))
    orphan.refresh_from_db()
    assert orphan.status == S.REQUIRES_CONFIRMATION
    # ... after it, the sweep cancels it, counts the attempt and makes the invoice due again.
    later = now + intents.ABANDONED_AFTER + timedelta(minutes=1)
    payment_intent_resolve_unknown_job(now=later)
    orphan.refresh_from_db()
    invoice.refresh_from_db()
    assert orphan.status == S.CANCELED and orphan.cancellation_reason == "abandoned"
    assert invoice.attempt_count == 1 and invoice.next_payment_attempt == later
    assert invoices_collect_job(now=later)["collected"] == 1
    invoice.refresh_from_db()
    assert invoice.status == "paid" and sandbox_charges() == 1


def test_pay_after_someone_else_paid_is_a_clear_409_not_a_second_success(api):
    customer = CustomerFactory()
    card(customer)
    invoice = open_invoice(customer, amount=700)
    assert api.post(f"/api/v1/invoices/{invoice.id}/pay").json()["attempt"]["success"] is True
    again = api.post(f"/api/v1/invoices/{invoice.id}/pay")
    assert again.status_code == 409 and again.json()["error"]["code"] == "invoice_status_conflict"


# --- 7. Deleted customers are never charged ----------------------------------------------------------


def test_a_deleted_customer_is_never_charged(api):
    customer = CustomerFactory()
    card(customer)
    invoice = open_invoice(customer, amount=700)
    Invoice.objects.filter(pk=invoice.pk).update(next_payment_attempt=timezone.now() - timedelta(minutes=1))
    assert api.delete(f"/api/v1/customers/{customer.id}").status_code == 204
    response = api.post(f"/api/v1/invoices/{invoice.id}/pay")
    assert response.status_code == 409, response.content
    assert response.json()["error"]["code"] == "customer_deleted"
    assert invoices_collect_job(now=timezone.now())["attempted"] == 0
    with pytest.raises(Exception) as error:
        intents.payment_intent_create(
            customer=customer, amount=100, currency="usd", payment_method=None, now=timezone.now()
        )
    assert getattr(error.value, "code", "") == "customer_deleted"
    assert sandbox_charges() == 0 and not PaymentIntent.objects.exists()


def test_a_deleted_customers_subscription_cannot_change_or_be_created(api):
    customer = CustomerFactory()
    price = fixed_price("1000")
    sub, _ = subscribe(customer, price)
    bigger = fixed_price("5000")
    assert api.delete(f"/api/v1/customers/{customer.id}").status_code == 204
    body = {"items": [{"price": bigger.id}], "proration_behavior": "always_invoice"}
    response = api.post(f"/api/v1/subscriptions/{sub.id}/change", body, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "customer_deleted"
    created = api.post(
        "/api/v1/subscriptions", {"customer": customer.id, "items": [{"price": price.id}]}, format="json"
    )
    assert created.status_code == 400 and created.json()["error"]["param"] == "customer"  # not found: deleted
    sub.refresh_from_db()
    assert [i.price_id for i in sub.items.filter(removed_at__isnull=True)] == [price.id]


def test_a_deactivated_customer_is_still_charged_for_what_it_owes(api):
    customer = CustomerFactory()
    card(customer)
    Customer.objects.filter(pk=customer.pk).update(status=Customer.Status.DEACTIVATED)
    invoice = open_invoice(customer, amount=700)
    response = api.post(f"/api/v1/invoices/{invoice.id}/pay")
    assert response.status_code == 200 and response.json()["attempt"]["success"] is True
