"""Stripe's refund webhooks (charge.refunded, refund.created|updated|failed), end to end on Stripe's own
example objects signed for real: our refunds settled once whatever the order, a failed refund reversed in
our books (the amount refundable again, a credit note's refund credited to the balance), refunds made in
Stripe's dashboard recorded once; `billing_audit` after every scenario."""

from __future__ import annotations

import pytest
import stripe

from billing_site.errors import Conflict, InvalidRequest
from payments.audit import audit_all
from payments.models import BalanceTransaction, PaymentIntent, Refund
from payments.selectors import balance_get
from payments.services.credit_notes import credit_note_create, credit_note_void
from payments.services.refunds import refund_create
from payments.tests.factories import PAY_T0, ledger_invoice
from payments.tests.stripe_events import (
    CHARGE,
    T,
    charge,
    charge_object,
    deliver,
    pi_object,
    post,
    process_again,
    refund_object,
    stripe_customer,
    stripe_http,
    stripe_method,
)
from webhooks.models import BillingEvent

pytestmark = pytest.mark.django_db

NOW = PAY_T0


@pytest.fixture
def http(settings, monkeypatch):
    return stripe_http(settings, monkeypatch)


@pytest.fixture
def paid(http):
    """An invoice of 2000 paid by a Stripe card payment."""
    customer = stripe_customer()
    stripe_method(customer)
    invoice = ledger_invoice(customer, lines=(2000,))
    intent = charge(invoice, http, "succeeded")
    assert intent.status == "succeeded"
    invoice.refresh_from_db()
    assert invoice.status == "paid"
    return invoice, intent


def stripe_refunds(http, status, *, ref: str = "re_3PgcHandlersRefund000001") -> None:
    """How Stripe answers our `POST /v1/refunds`: a refund with that status, or an error (an exception of
    the HTTP layer, or an error response)."""
    if not isinstance(status, str):
        http.route("POST", "/v1/refunds", status)
        return

    def answer(sent):
        refund = Refund.objects.get(idempotency_key=sent.params["metadata[idempotency_key]"])
        return 200, refund_object(ref, amount=refund.amount, status=status, refund=refund)

    http.route("POST", "/v1/refunds", answer)


def types(obj) -> list[str]:
    return list(BillingEvent.objects.filter(object_id=obj.id).order_by("id").values_list("type", flat=True))


def refunded(intent) -> int:
    return PaymentIntent.objects.get(pk=intent.pk).amount_refunded


# --- Our refunds ----------------------------------------------------------------------------------


def test_refund_updated_before_refund_created_settles_a_lost_refund_once(paid, http):
    _, intent = paid
    stripe_refunds(http, stripe.APIConnectionError("Read timed out", should_retry=False))
    refund = refund_create(payment_intent=intent, amount=700, now=NOW)
    assert (refund.status, refund.provider_ref) == ("pending", "")  # the answer was lost
    ref = "re_3PgcHandlersRefund000001"
    succeeded = refund_object(ref, amount=700, status="succeeded", refund=refund, payment_intent=intent.provider_ref)
    pending = refund_object(ref, amount=700, status="pending", refund=refund, payment_intent=intent.provider_ref)
    first = deliver("refund.updated", succeeded, event_id="evt_upd", created=T + 5)
    late = deliver("refund.created", pending, event_id="evt_cre", created=T)
    assert first.result == f"{refund.id}: pending -> succeeded"
    assert "superseded" in late.result
    refund.refresh_from_db()
    assert (refund.status, refund.provider_ref) == ("succeeded", ref)
    # charge.refunded, later, lists the same refund: still one refund, one reservation, one event.
    charge = charge_object(intent.provider_ref, amount=2000, refunds=[succeeded])
    deliver("charge.refunded", charge, event_id="evt_ch", created=T + 6)
    process_again(first)
    assert Refund.objects.count() == 1 and refunded(intent) == 700
    assert types(refund) == ["refund.created", "refund.succeeded"]
    assert audit_all() == []


def test_refund_failed_after_success_reverses_a_credit_note_refund_into_the_balance(
    paid, http, django_capture_on_commit_callbacks
):
    invoice, intent = paid
    stripe_refunds(http, "succeeded")
    with django_capture_on_commit_callbacks(execute=True):
        note = credit_note_create(invoice=invoice, amount=800, refund_amount=800, now=NOW)
    refund = Refund.objects.get(credit_note=note)
    assert refund.status == "succeeded" and refunded(intent) == 800
    customer = invoice.customer

    # Days later the card turns out closed: Stripe's refund.failed.
    failed = refund_object(refund.provider_ref, amount=800, status="failed", refund=refund)
    row = deliver("refund.failed", failed, event_id="evt_rf", created=T + 86400)
    assert row.result == f"{refund.id}: succeeded -> failed"
    refund.refresh_from_db()
    assert refund.status == "failed" and refund.last_error["code"] == "refund_failed"
    assert "expired_or_canceled_card" in refund.last_error["message"]
    assert refunded(intent) == 0  # refundable again
    # The customer is still owed the credit note's 800: on their balance, linked to the refund and note.
    credit = BalanceTransaction.objects.get(type="refund_failed")
    assert (credit.amount, credit.refund_id, credit.credit_note_id) == (800, refund.id, note.id)
    assert balance_get(customer, "usd") == 800
    assert types(refund)[-1] == "refund.failed"

    # Redelivered, reprocessed, and an older refund.updated (succeeded) arriving late: nothing more.
    post("refund.failed", failed, event_id="evt_rf", created=T + 86400)
    process_again(row)
    late = refund_object(refund.provider_ref, amount=800, status="succeeded", refund=refund)
    deliver("refund.updated", late, event_id="evt_late", created=T + 60)
    refund.refresh_from_db()
    assert refund.status == "failed" and balance_get(customer, "usd") == 800 and refunded(intent) == 0
    assert BalanceTransaction.objects.filter(type="refund_failed").count() == 1
    assert types(refund).count("refund.failed") == 1
    assert audit_all() == []

    # Voiding the note now takes back the credit its failed refund left on the balance.
    credit_note_void(credit_note=note, now=NOW)
    assert balance_get(customer, "usd") == 0
    assert audit_all() == []


def test_a_credit_note_refund_stripe_refuses_at_once_is_credited_to_the_balance_too(
    paid, http, django_capture_on_commit_callbacks
):
    invoice, intent = paid
    refusal = {"type": "invalid_request_error", "code": "charge_disputed", "message": "The charge is disputed."}
    stripe_refunds(http, (400, {"error": refusal}))
    with django_capture_on_commit_callbacks(execute=True):
        note = credit_note_create(invoice=invoice, amount=500, refund_amount=500, now=NOW)
    refund = Refund.objects.get(credit_note=note)
    assert (refund.status, refund.last_error["code"]) == ("failed", "charge_disputed")
    assert refunded(intent) == 0 and balance_get(invoice.customer, "usd") == 500
    assert audit_all() == []


def test_a_failed_refund_without_a_credit_note_only_gives_the_amount_back(paid, http):
    _, intent = paid
    stripe_refunds(http, "pending")
    refund = refund_create(payment_intent=intent, amount=2000, now=NOW)
    assert refund.status == "pending" and refunded(intent) == 2000
    with pytest.raises(Conflict):
        refund_create(payment_intent=intent, amount=1, now=NOW)
    failed = refund_object(refund.provider_ref, amount=2000, status="failed", refund=refund)
    assert deliver("refund.failed", failed, event_id="f", created=T).result == f"{refund.id}: pending -> failed"
    assert refunded(intent) == 0 and not BalanceTransaction.objects.exists()
    stripe_refunds(http, "succeeded", ref="re_3PgcHandlersRefund000002")
    assert refund_create(payment_intent=intent, amount=2000, now=NOW).status == "succeeded"  # refundable again
    assert audit_all() == []


# --- Refunds made at Stripe (its dashboard) --------------------------------------------------------


def test_a_refund_made_at_stripe_is_recorded_once_from_whichever_event_comes_first(paid, http):
    invoice, intent = paid
    dashboard = refund_object("re_3PgcDashboard0000000001", amount=300, payment_intent=intent.provider_ref)
    row = deliver(
        "charge.refunded", charge_object(intent.provider_ref, amount=2000, refunds=[dashboard]), event_id="c", created=T
    )
    refund = Refund.objects.get(provider_ref="re_3PgcDashboard0000000001")
    assert row.result == f"{refund.id}: recorded re_3PgcDashboard0000000001 made at Stripe (succeeded)"
    assert (refund.payment_intent_id, refund.invoice_id, refund.amount, refund.status, refund.credit_note_id) == (
        intent.id,
        invoice.id,
        300,
        "succeeded",
        None,
    )
    assert refunded(intent) == 300 and types(refund) == ["refund.created", "refund.succeeded"]
    deliver("refund.created", dashboard, event_id="r", created=T - 1)
    process_again(row)
    assert Refund.objects.count() == 1 and refunded(intent) == 300
    # What is left to refund counts it: 1700, not 2000.
    with pytest.raises(InvalidRequest) as error:
        refund_create(payment_intent=intent, amount=1701, now=NOW)
    assert error.value.param == "amount" and "1700 left" in error.value.message
    # It fails later at Stripe: reversed like ours.
    failed = {**dashboard, "status": "failed", "failure_reason": "lost_or_stolen_card"}
    deliver("refund.failed", failed, event_id="rf", created=T + 10)
    refund.refresh_from_db()
    assert refund.status == "failed" and refunded(intent) == 0
    assert audit_all() == []


def test_charge_refunded_without_embedded_refunds_lists_them_from_stripe_at_the_configured_base(paid, http, settings):
    _, intent = paid
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"  # the SDK must go here (the fake HTTP layer answers)
    listed = refund_object("re_3PgcDashboard0000000002", amount=2000, payment_intent=intent.provider_ref)
    http.route(
        "GET", "/v1/refunds", (200, {"object": "list", "data": [listed], "has_more": False, "url": "/v1/refunds"})
    )
    charge = charge_object(intent.provider_ref, amount=2000, refunds=None)
    row = deliver("charge.refunded", charge, event_id="c2", created=T)
    assert row.status == "processed", row.error
    listing = next(s for s in http.sent if s.path == "/v1/refunds")
    assert listing.url.startswith("http://127.0.0.1:9/v1/refunds?") and listing.params["charge"] == CHARGE
    assert Refund.objects.get().amount == 2000 and refunded(intent) == 2000
    assert audit_all() == []


def test_a_refund_event_before_the_payments_success_waits_for_it(http):
    customer = stripe_customer()
    stripe_method(customer)
    invoice = ledger_invoice(customer, lines=(2000,))
    intent = charge(invoice, http, "processing")
    dashboard = refund_object("re_3PgcDashboard0000000003", amount=500, payment_intent=intent.provider_ref)
    row = deliver("refund.created", dashboard, event_id="early", created=T + 10)
    assert row.status == "pending" and "not yet" in row.error and not Refund.objects.exists()
    deliver(
        "payment_intent.succeeded", pi_object(intent, "succeeded", ref=intent.provider_ref), event_id="s", created=T
    )
    row = process_again(row)  # the retry, when it is due
    assert row.status == "processed" and refunded(intent) == 500
    assert audit_all() == []


def test_refunds_of_payments_that_are_not_ours_change_nothing(paid, http):
    stranger = refund_object("re_3Stranger", amount=100, payment_intent="pi_3Stranger")
    assert deliver("refund.created", stranger, event_id="x", created=T).result == (
        "re_3Stranger is not a refund of a payment of ours"
    )
    assert not Refund.objects.exists()


def test_the_audit_reports_a_credit_note_refund_left_unaccounted_and_a_stale_reservation(
    paid, http, django_capture_on_commit_callbacks
):
    invoice, intent = paid
    stripe_refunds(http, "succeeded")
    with django_capture_on_commit_callbacks(execute=True):
        note = credit_note_create(invoice=invoice, amount=400, refund_amount=400, now=NOW)
    assert audit_all() == []
    Refund.objects.filter(credit_note=note).update(status="failed")  # failed without the reversal
    problems = audit_all()
    assert any(
        f"credit note {note.id}: refund_amount 400, but its live refunds and failed-refund credits sum to 0" in p
        for p in problems
    )
    assert any(f"payment intent {intent.id}: amount_refunded 400, but its live refunds sum to 0" in p for p in problems)
