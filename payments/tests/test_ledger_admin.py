"""Admin pages of balances, credit grants and credit notes render, and their void actions work."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from payments.models import BalanceTransaction, CreditGrant, CustomerBalance
from payments.services.credit_notes import credit_note_create
from payments.services.grants import credit_grant_create, credits_burn_for_invoice
from payments.services.ledger import balance_adjust
from payments.tests.factories import LEDGER_T0, ledger_invoice

pytestmark = pytest.mark.django_db

NOW = LEDGER_T0
NOTES_ADMIN = "/admin/payments/creditnote/"


@pytest.fixture
def staff(client):
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw-for-tests-only")
    client.force_login(user)
    return client


def test_pages_render(staff):
    invoice = ledger_invoice(lines=(1000,), status="paid")
    customer = invoice.customer
    balance_adjust(customer=customer, amount=300, currency="usd", type="adjustment", description="hi", now=NOW)
    grant = credit_grant_create(customer=customer, amount=500, currency="usd", now=NOW)
    credits_burn_for_invoice(invoice=ledger_invoice(customer, lines=(200,)), now=NOW)
    note = credit_note_create(invoice=invoice, amount=100, credit_amount=100, now=NOW)
    balance = CustomerBalance.objects.get(customer=customer)
    txn = BalanceTransaction.objects.first()
    for url in (
        "/admin/payments/customerbalance/",
        f"/admin/payments/customerbalance/{balance.pk}/change/",
        "/admin/payments/balancetransaction/?type__exact=credit_note",
        f"/admin/payments/balancetransaction/{txn.pk}/change/",
        "/admin/payments/creditgrant/?status__exact=active",
        f"/admin/payments/creditgrant/{grant.pk}/change/",
        "/admin/payments/creditnote/",
        f"/admin/payments/creditnote/{note.pk}/change/",
    ):
        assert staff.get(url).status_code == 200, url
    page = staff.get(f"/admin/payments/creditgrant/{grant.pk}/change/").content.decode()
    assert "$3.00" in page  # remaining after a burn of 200, formatted in its currency


def test_void_actions(staff):
    invoice = ledger_invoice(lines=(1000,))
    grant = credit_grant_create(customer=invoice.customer, amount=500, currency="usd", now=NOW)
    note = credit_note_create(invoice=invoice, amount=100, now=NOW)
    response = staff.post(
        "/admin/payments/creditgrant/",
        {"action": "void", "_confirm": "yes", "_selected_action": [grant.pk]},
        follow=True,
    )
    assert response.status_code == 200 and CreditGrant.objects.get(pk=grant.pk).status == "voided"
    response = staff.post(
        NOTES_ADMIN, {"action": "void", "_confirm": "yes", "_selected_action": [note.pk]}, follow=True
    )
    assert response.status_code == 200
    note.refresh_from_db()
    assert note.status == "void"
    # A second void is refused and reported, not raised.
    response = staff.post(
        NOTES_ADMIN, {"action": "void", "_confirm": "yes", "_selected_action": [note.pk]}, follow=True
    )
    assert "is void" in response.content.decode()
