"""The operator's admin (issue 14): every action shows a confirmation page, calls its service, shows the result
and turns bad input or a refusal into a message (never a 500); money is formatted in its currency; immutable
fields are read-only; the customer page shows what the customer has; the dashboard's figures are exact."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.admin.utils import quote
from django.contrib.auth import get_user_model
from django.utils import timezone

from billing_site.admin_kit import money_text, quantity_text
from customers.models import Customer
from customers.tests.factories import CustomerFactory
from invoicing.models import Invoice
from payments import dashboard
from payments.models import BalanceTransaction, CollectionAttempt, CreditGrant, CreditNote, PaymentIntent, Refund
from payments.services.methods import payment_method_create
from payments.tests.factories import ledger_invoice
from subscriptions.models import Subscription
from subscriptions.tests.support import fixed_price, metered_price, subscribe

pytestmark = pytest.mark.django_db

INVOICES = "/admin/invoicing/invoice/"
CUSTOMERS = "/admin/customers/customer/"
SUBSCRIPTIONS = "/admin/subscriptions/subscription/"
INTENTS = "/admin/payments/paymentintent/"


@pytest.fixture
def staff(client):
    client.force_login(get_user_model().objects.create_superuser("ops", "ops@example.com", "pw-tests-only"))
    return client


def ask(client, url, action, pk, **data):
    """The first step of an action: the confirmation page (nothing done yet)."""
    return client.post(url, {"action": action, "_selected_action": [pk], **data})


def confirm(client, url, action, pk, **data):
    return client.post(url, {"action": action, "_selected_action": [pk], "_confirm": "yes", **data}, follow=True)


def texts(response) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


def paid_invoice(staff, amount=2020):
    """An open invoice paid through the admin's "Retry payment" (the collection service, sandbox card)."""
    invoice = ledger_invoice(lines=(amount,))
    payment_method_create(customer=invoice.customer, token="tok_visa", default=True, now=timezone.now())
    response = confirm(staff, INVOICES, "retry_payment", invoice.pk)
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.PAID, texts(response)
    return invoice


# --- Formatting ---------------------------------------------------------------------------------------


def test_money_and_quantities_are_formatted():
    assert money_text(2020, "usd") == "$20.20"
    assert money_text(1500, "kwd") == "KWD\u00a01.500"
    assert money_text(1000, "jpy") == "¥1,000"
    assert money_text(Decimal("0.04"), "usd") == "$0.0004"
    assert money_text(None, "usd") == "-"
    assert quantity_text(Decimal("1200.000000000000")) == "1,200"
    assert quantity_text(Decimal("0.500000")) == "0.5"


def test_lists_and_pages_show_money_in_its_currency(staff):
    invoice = ledger_invoice(lines=({"amount": 2020, "quantity": Decimal("1200.000000000000"), "unit_amount": 2},))
    eur = ledger_invoice(lines=(3998,), currency="eur")
    listing = staff.get(INVOICES).content.decode()
    assert "$20.20" in listing and "€39.98" in listing and ">2020<" not in listing
    page = staff.get(f"{INVOICES}{invoice.pk}/change/").content.decode()
    assert "$20.20" in page and "1,200" in page and "1200.000000000000" not in page
    assert staff.get(f"{INVOICES}{eur.pk}/change/").status_code == 200


def test_every_admin_list_and_add_page_renders(staff):
    """A smoke pass over every registered model's list (and one object page each where rows exist)."""
    from django.contrib import admin

    invoice = paid_invoice(staff)
    subscribe(invoice.customer, fixed_price("1000"), metered_price())
    for model, model_admin in admin.site._registry.items():
        opts = model._meta
        url = f"/admin/{opts.app_label}/{opts.model_name}/"
        assert staff.get(url).status_code == 200, url
        row = model_admin.get_queryset(staff.get(url).wsgi_request).first()
        if row is not None:
            change = f"{url}{row.pk}/change/"
            assert staff.get(change).status_code == 200, change


# --- The customer page ----------------------------------------------------------------------------------


def test_customer_page_shows_everything_inline_with_links(staff):
    invoice = paid_invoice(staff)
    customer = invoice.customer
    sub, _ = subscribe(customer, fixed_price("1000"))
    confirm(staff, CUSTOMERS, "grant_credit", customer.pk, amount="5", name="welcome")
    confirm(staff, CUSTOMERS, "adjust_balance", customer.pk, amount="2.50", description="goodwill")
    page = staff.get(f"{CUSTOMERS}{customer.pk}/change/").content.decode()
    for fragment in (
        f"/admin/subscriptions/subscription/{quote(sub.pk)}/change/",
        f"/admin/invoicing/invoice/{quote(invoice.pk)}/change/",
        "Balance history",
        "goodwill",
        "$2.50",  # the balance and its history entry
        "welcome",
        "$5.00",  # the grant
        "4242",  # the card
        "Users",
        'data-action="adjust_balance"',
        'data-action="grant_credit"',
    ):
        assert fragment in page, fragment


def test_customer_external_id_is_read_only(staff):
    customer = CustomerFactory(external_id="tenant-1")
    page = staff.get(f"{CUSTOMERS}{customer.pk}/change/")
    form = page.context["adminform"].form
    assert "external_id" not in form.fields and "id" not in form.fields
    data = {name: form.initial.get(name) or "" for name in form.fields}
    data.update({"external_id": "tenant-2", "name": "Renamed", "metadata": "{}"})
    for inline in page.context["inline_admin_formsets"]:
        data.update({f"{inline.formset.prefix}-TOTAL_FORMS": "0", f"{inline.formset.prefix}-INITIAL_FORMS": "0"})
    assert staff.post(f"{CUSTOMERS}{customer.pk}/change/", data).status_code == 302
    customer.refresh_from_db()
    assert (customer.external_id, customer.name) == ("tenant-1", "Renamed")
    # On the add page it is typed, of course.
    assert "external_id" in staff.get(f"{CUSTOMERS}add/").context["adminform"].form.fields


def test_finalized_invoice_amounts_are_read_only(staff):
    invoice = ledger_invoice(lines=(1000,))
    page = staff.get(f"{INVOICES}{invoice.pk}/change/")
    assert page.context["adminform"].form.fields == {}
    staff.post(f"{INVOICES}{invoice.pk}/change/", {"total": "1", "amount_due": "1"})
    invoice.refresh_from_db()
    assert (invoice.total, invoice.amount_due) == (1000, 1000)


# --- Invoice actions ------------------------------------------------------------------------------------


def test_finalize_void_and_mark_uncollectible(staff):
    draft = ledger_invoice(lines=(1000,), status="draft")
    page = ask(staff, INVOICES, "finalize", draft.pk)
    assert page.status_code == 200 and "are you sure" in page.content.decode()
    draft.refresh_from_db()
    assert draft.status == "draft"  # nothing happened before the confirmation
    response = confirm(staff, INVOICES, "finalize", draft.pk)
    draft.refresh_from_db()
    assert draft.status == "open" and draft.number and "Finalized: 1." in texts(response)

    assert "are you sure" in ask(staff, INVOICES, "mark_uncollectible", draft.pk).content.decode()
    confirm(staff, INVOICES, "mark_uncollectible", draft.pk)
    draft.refresh_from_db()
    assert draft.status == "uncollectible"

    other = ledger_invoice(lines=(500,))
    confirm(staff, INVOICES, "void", other.pk)
    other.refresh_from_db()
    assert other.status == "void"
    # A refusal of the service is a message naming the row, not a 500.
    response = confirm(staff, INVOICES, "void", other.pk)
    assert response.status_code == 200
    assert any(m.startswith(f"{other.pk}: ") for m in texts(response))


def test_retry_payment_charges_and_reports(staff):
    invoice = ledger_invoice(lines=(1500,))
    assert "Retry payment" in ask(staff, INVOICES, "retry_payment", invoice.pk).content.decode()
    # No card yet: the attempt is recorded and reported, the invoice stays open.
    response = confirm(staff, INVOICES, "retry_payment", invoice.pk)
    invoice.refresh_from_db()
    assert invoice.status == "open" and any("not paid" in m for m in texts(response))
    payment_method_create(customer=invoice.customer, token="tok_visa", default=True, now=timezone.now())
    response = confirm(staff, INVOICES, "retry_payment", invoice.pk)
    invoice.refresh_from_db()
    assert invoice.status == "paid" and any("paid, now paid" in m for m in texts(response))
    assert CollectionAttempt.objects.filter(invoice=invoice).count() == 2


def test_refund_action_asks_for_an_amount_and_refunds(staff):
    invoice = paid_invoice(staff)
    page = ask(staff, INVOICES, "refund", invoice.pk)
    assert page.status_code == 200 and 'name="amount"' in page.content.decode()
    # Bad input: the page again, with the field's error; nothing refunded.
    page = confirm(staff, INVOICES, "refund", invoice.pk, amount="twelve")
    assert "is not an amount" in page.content.decode() and not Refund.objects.exists()
    page = confirm(staff, INVOICES, "refund", invoice.pk, amount="5,20")
    assert "with a dot for decimals" in page.content.decode() and not Refund.objects.exists()
    page = confirm(staff, INVOICES, "refund", invoice.pk, amount="0.001")
    assert any("more decimals than USD" in m for m in texts(page)) and not Refund.objects.exists()
    page = confirm(staff, INVOICES, "refund", invoice.pk, amount="99")
    assert any("more than" in m for m in texts(page)) and not Refund.objects.exists()

    response = confirm(staff, INVOICES, "refund", invoice.pk, amount="5.20", reason="requested_by_customer")
    refund = Refund.objects.get()
    assert (refund.amount, refund.status, refund.reason) == (520, "succeeded", "requested_by_customer")
    assert any("$5.20 is succeeded" in m for m in texts(response))
    # Empty amount: all that is left.
    confirm(staff, INVOICES, "refund", invoice.pk, amount="")
    assert sorted(Refund.objects.values_list("amount", flat=True)) == [520, 1500]
    page = staff.get(f"{INVOICES}{invoice.pk}/change/").content.decode()
    assert "$5.20" in page and "$15.00" in page  # the refunds inline


def test_issue_credit_note_action(staff):
    invoice = paid_invoice(staff)
    assert 'name="credit_amount"' in ask(staff, INVOICES, "issue_credit_note", invoice.pk).content.decode()
    # The split must add up on a paid invoice: the service says so, the admin shows it.
    response = confirm(staff, INVOICES, "issue_credit_note", invoice.pk, amount="5", credit_amount="4")
    assert any("credit_note" in m or "split" in m or "equal" in m for m in texts(response)), texts(response)
    assert not CreditNote.objects.exists()
    # A missing amount is the form's error.
    page = confirm(staff, INVOICES, "issue_credit_note", invoice.pk, credit_amount="4")
    assert "This field is required" in page.content.decode()

    response = confirm(
        staff, INVOICES, "issue_credit_note", invoice.pk, amount="5", credit_amount="3", refund_amount="2", memo="sorry"
    )
    note = CreditNote.objects.get()
    assert (note.amount, note.credit_amount, note.refund_amount, note.memo) == (500, 300, 200, "sorry")
    assert any("of $5.00 issued" in m for m in texts(response))
    assert BalanceTransaction.objects.get(credit_note=note).amount == 300
    assert Refund.objects.get(credit_note=note).amount == 200


def test_payment_intent_refund_action(staff):
    invoice = paid_invoice(staff)
    intent = PaymentIntent.objects.get(invoice=invoice)
    assert "are you sure" in ask(staff, INTENTS, "refund", intent.pk).content.decode()
    confirm(staff, INTENTS, "refund", intent.pk, amount="1")
    assert Refund.objects.get(payment_intent=intent).amount == 100


def test_action_from_an_object_page_returns_to_it(staff):
    invoice = paid_invoice(staff)
    page = f"{INVOICES}{invoice.pk}/change/"
    assert 'data-action="issue_credit_note"' in staff.get(page).content.decode()
    confirmation = staff.post(INVOICES, {"action": "refund", "_selected_action": [invoice.pk], "_return": page})
    assert f'name="_return" value="{page}"' in confirmation.content.decode()
    response = staff.post(
        INVOICES,
        {"action": "refund", "_selected_action": [invoice.pk], "_return": page, "_confirm": "yes", "amount": "1"},
    )
    assert response.status_code == 302 and response["Location"] == page
    # Only a path of this site is followed.
    response = staff.post(
        INVOICES,
        {"action": "refund", "_selected_action": [invoice.pk], "_return": "https://evil.example/", "_confirm": "yes"},
    )
    assert response.status_code == 302 and response["Location"] != "https://evil.example/"


# --- Customer actions -----------------------------------------------------------------------------------


def test_adjust_balance_and_grant_credit(staff):
    customer = CustomerFactory(currency="usd")
    assert 'name="description"' in ask(staff, CUSTOMERS, "adjust_balance", customer.pk).content.decode()
    response = confirm(staff, CUSTOMERS, "adjust_balance", customer.pk, amount="12.50", description="goodwill")
    txn = BalanceTransaction.objects.get(customer=customer)
    assert (txn.amount, txn.type, txn.description) == (1250, "adjustment", "goodwill")
    assert any("balance now $12.50" in m for m in texts(response))
    confirm(staff, CUSTOMERS, "adjust_balance", customer.pk, amount="-2.50")
    assert BalanceTransaction.objects.filter(customer=customer).order_by("-id").first().ending_balance == 1000
    # Bad input: an unknown currency is the service's refusal; a zero amount the form's.
    response = confirm(staff, CUSTOMERS, "adjust_balance", customer.pk, amount="1", currency="zzz")
    assert any(m.startswith(f"{customer.pk}: ") for m in texts(response))
    assert "non-zero" in confirm(staff, CUSTOMERS, "adjust_balance", customer.pk, amount="0").content.decode()
    assert BalanceTransaction.objects.filter(customer=customer).count() == 2

    assert 'name="expires_at"' in ask(staff, CUSTOMERS, "grant_credit", customer.pk).content.decode()
    response = confirm(staff, CUSTOMERS, "grant_credit", customer.pk, amount="20", name="promo", priority="10")
    grant = CreditGrant.objects.get(customer=customer)
    assert (grant.amount, grant.currency, grant.name, grant.priority) == (2000, "usd", "promo", 10)
    assert any("of $20.00" in m for m in texts(response))
    page = confirm(staff, CUSTOMERS, "grant_credit", customer.pk, amount="-5")
    assert "greater than zero" in page.content.decode() and CreditGrant.objects.count() == 1


def test_deactivate_and_activate(staff):
    customer = CustomerFactory()
    assert "are you sure" in ask(staff, CUSTOMERS, "deactivate", customer.pk).content.decode()
    confirm(staff, CUSTOMERS, "deactivate", customer.pk)
    customer.refresh_from_db()
    assert customer.status == Customer.Status.DEACTIVATED
    confirm(staff, CUSTOMERS, "activate", customer.pk)
    customer.refresh_from_db()
    assert customer.status == Customer.Status.ACTIVE
    assert "are you sure" in ask(staff, CUSTOMERS, "soft_delete", customer.pk).content.decode()
    confirm(staff, CUSTOMERS, "soft_delete", customer.pk)
    customer.refresh_from_db()
    assert customer.status == Customer.Status.DELETED
    confirm(staff, CUSTOMERS, "restore", customer.pk)
    customer.refresh_from_db()
    assert customer.status == Customer.Status.ACTIVE
    # Restoring what is not deleted is the service's refusal, shown as a message.
    response = confirm(staff, CUSTOMERS, "restore", customer.pk)
    assert any(m.startswith(f"{customer.pk}: ") for m in texts(response))


# --- Subscription actions -------------------------------------------------------------------------------


def test_cancel_at_period_end_then_reactivate_then_cancel_now(staff):
    sub, _ = subscribe(None, fixed_price("1000"))
    assert "are you sure" in ask(staff, SUBSCRIPTIONS, "cancel_at_period_end", sub.pk).content.decode()
    confirm(staff, SUBSCRIPTIONS, "cancel_at_period_end", sub.pk)
    sub.refresh_from_db()
    assert sub.cancel_at_period_end
    assert "are you sure" in ask(staff, SUBSCRIPTIONS, "reactivate", sub.pk).content.decode()
    confirm(staff, SUBSCRIPTIONS, "reactivate", sub.pk)
    sub.refresh_from_db()
    assert not sub.cancel_at_period_end
    # Nothing to undo now: the service's refusal is a message.
    response = confirm(staff, SUBSCRIPTIONS, "reactivate", sub.pk)
    assert any("no pending cancellation" in m for m in texts(response))
    response = confirm(staff, SUBSCRIPTIONS, "cancel_now", sub.pk)
    sub.refresh_from_db()
    assert sub.status == Subscription.Status.CANCELED and "Canceled: 1." in texts(response)


def test_bill_now_reports_nothing_due(staff):
    sub, _ = subscribe(None, fixed_price("1000"), now=timezone.now())
    assert "are you sure" in ask(staff, SUBSCRIPTIONS, "bill_now", sub.pk).content.decode()
    response = confirm(staff, SUBSCRIPTIONS, "bill_now", sub.pk)
    assert any("nothing due before" in m for m in texts(response))


# --- Webhook delivery resend ----------------------------------------------------------------------------


def test_resend_a_webhook_delivery_asks_first(staff):
    from webhooks import delivery as d
    from webhooks.endpoints import endpoint_create
    from webhooks.models import WebhookDelivery
    from webhooks.tests.helpers import Reply, local_server

    with local_server() as server:
        server.script = [Reply(400)]
        endpoint = endpoint_create(url=f"{server.url}/hook", enabled_events=["customer.*"], now=timezone.now())
        CustomerFactory()
        from customers.services import customer_create

        customer_create(external_id="t-9", name="Nine", now=timezone.now())
        d.events_dispatch(now=timezone.now())
        delivery = WebhookDelivery.objects.filter(endpoint=endpoint).first()
        d.delivery_attempt(delivery_id=delivery.id, now=timezone.now())
    url = "/admin/webhooks/webhookdelivery/"
    page = ask(staff, url, "redeliver", delivery.pk)
    assert page.status_code == 200 and "Resend now" in page.content.decode()
    delivery.refresh_from_db()
    before = delivery.next_attempt_at
    response = confirm(staff, url, "redeliver", delivery.pk)
    assert "Queued again: 1." in texts(response)
    delivery.refresh_from_db()
    assert delivery.status == "pending" and delivery.next_attempt_at != before


# --- Dashboard ------------------------------------------------------------------------------------------

NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)


def test_dashboard_figures_on_known_data():
    earlier = NOW - timedelta(days=40)  # last month
    overdue = ledger_invoice(lines=(1000,), now=NOW - timedelta(days=3))
    Invoice.objects.filter(pk=overdue.pk).update(due_date=NOW - timedelta(days=1))
    not_yet = ledger_invoice(lines=(500,), now=NOW - timedelta(days=2))
    Invoice.objects.filter(pk=not_yet.pk).update(due_date=NOW + timedelta(days=10))
    ledger_invoice(lines=(700,), currency="eur", now=NOW - timedelta(days=1))  # no due date: open, not overdue
    ledger_invoice(lines=(2000,), status="paid", now=NOW - timedelta(days=5))
    ledger_invoice(lines=(9000,), status="paid", now=earlier)  # invoiced last month
    void = ledger_invoice(lines=(4000,), now=NOW - timedelta(days=1))
    Invoice.objects.filter(pk=void.pk).update(status="void", amount_remaining=0)
    ledger_invoice(lines=(123,), status="draft", now=NOW)
    # Two refused attempts on one invoice, one older than the window, one success.
    CollectionAttempt.objects.create(invoice=overdue, trigger="job", error="no_payment_method: none", created_at=NOW)
    CollectionAttempt.objects.create(
        invoice=overdue, trigger="job", error="no_payment_method: none", created_at=NOW - timedelta(days=1)
    )
    CollectionAttempt.objects.create(invoice=overdue, trigger="job", error="no_payment_method", created_at=earlier)
    CollectionAttempt.objects.create(invoice=not_yet, trigger="job", success=True, created_at=NOW)

    figures = dashboard.dashboard_read(now=NOW)
    as_tuples = lambda rows: [(r.currency, r.amount, r.count) for r in rows]  # noqa: E731
    assert as_tuples(figures.open_receivables) == [("eur", 700, 1), ("usd", 1500, 2)]
    assert as_tuples(figures.overdue_receivables) == [("usd", 1000, 1)]
    assert as_tuples(figures.invoiced_this_month) == [("eur", 700, 1), ("usd", 3500, 3)]
    assert (figures.failed_payments, figures.failed_payment_invoices) == (2, 1)


def test_mrr_counts_licensed_prices_per_month():
    subscribe(None, fixed_price("1000"), quantity=Decimal("2"))  # $20.00 / month
    subscribe(None, fixed_price("12000", interval="year"))  # $120 / year = $10.00 / month
    subscribe(None, fixed_price("700", every=3))  # $7 / 3 months = $2.333...
    eur_customer = CustomerFactory(currency="eur")
    subscribe(eur_customer, fixed_price("900", currency="eur"), metered_price(currency="eur"))  # usage is not MRR
    ended, _ = subscribe(None, fixed_price("5000"))
    Subscription.objects.filter(pk=ended.pk).update(status="canceled")
    trial, _ = subscribe(None, fixed_price("5000"))
    Subscription.objects.filter(pk=trial.pk).update(status="trialing")
    figures = {f.currency: (f.amount, f.count) for f in dashboard.mrr(now=NOW)}
    assert figures == {"eur": (900, 1), "usd": (2000 + 1000 + 233, 3)}


def test_dashboard_page_is_linked_and_shows_the_figures(staff):
    ledger_invoice(lines=(1000,), now=timezone.now())
    assert "/admin/dashboard/" in staff.get("/admin/").content.decode()
    page = staff.get("/admin/dashboard/")
    body = page.content.decode()
    assert page.status_code == 200 and "Open receivables" in body and "$10.00" in body and "MRR" in body
    assert "?overdue=yes" in body


def test_overdue_filter_lists_open_invoices_past_due(staff):
    late = ledger_invoice(lines=(1000,))
    Invoice.objects.filter(pk=late.pk).update(due_date=timezone.now() - timedelta(days=1))
    later = ledger_invoice(lines=(1000,))
    Invoice.objects.filter(pk=later.pk).update(due_date=timezone.now() + timedelta(days=1))
    shown = [row.pk for row in staff.get(f"{INVOICES}?overdue=yes").context["cl"].result_list]
    assert shown == [late.pk]


def test_dashboard_is_for_staff_only(client):
    response = client.get("/admin/dashboard/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


MONEY_NAMES = ("amount", "total", "balance", "tax", "discount", "credited", "applied", "used", "charged", "paid")


def test_every_money_column_in_admin_is_formatted():
    """Every integer money field an admin shows (list columns, read-only fields, inlines) is formatted in its
    currency (billing_site.admin_kit.FormattedFields), never a raw count of minor units."""
    from django.contrib import admin
    from django.db import models

    raw = []

    def check(model_admin, model, names):
        for name in names:
            if not isinstance(name, str) or not any(part in name for part in MONEY_NAMES):
                continue
            try:
                field = model._meta.get_field(name)
            except Exception:
                continue
            if isinstance(field, models.BigIntegerField) and name not in getattr(model_admin, "money_fields", ()):
                raw.append(f"{type(model_admin).__name__}.{name}")

    for model, model_admin in admin.site._registry.items():
        check(model_admin, model, model_admin.list_display)
        check(model_admin, model, [f.name for f in model._meta.fields])
        for inline in model_admin.inlines:
            check(inline, inline.model, inline.fields or ())
    assert raw == []


def test_webhook_endpoint_actions_ask_first(staff):
    from webhooks.endpoints import endpoint_create
    from webhooks.models import WebhookDelivery, WebhookEndpoint

    endpoint = endpoint_create(url="https://hooks.example.com/in", enabled_events=["*"], now=timezone.now())
    url = "/admin/webhooks/webhookendpoint/"
    assert "are you sure" in ask(staff, url, "disable", endpoint.pk).content.decode()
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).status == "enabled"
    confirm(staff, url, "disable", endpoint.pk)
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).status == "disabled"
    confirm(staff, url, "enable", endpoint.pk)
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).status == "enabled"
    assert "are you sure" in ask(staff, url, "send_test", endpoint.pk).content.decode()
    response = confirm(staff, url, "send_test", endpoint.pk)
    assert "Test events queued: 1." in texts(response)
    assert WebhookDelivery.objects.filter(endpoint=endpoint).count() == 1
