"""The customer portal: sessions (created by the operator, expiring, hashed), and pages scoped to the one
customer of the session: usage per meter (matching the usage API), upcoming invoice, invoices and their
PDFs, balance and grants, payment methods."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone

from customers.tests.factories import CustomerFactory
from payments.models import PaymentMethod
from payments.services.grants import credit_grant_create
from payments.services.ledger import balance_adjust
from payments.tests.factories import PaymentMethodFactory
from portal.models import PortalSession
from portal.selectors import PortalSessionExpired, portal_session_by_token
from portal.services import portal_session_create
from portal.tests.support import finalized_invoice, metered_customer, nonce_of, path_of

pytestmark = pytest.mark.django_db


def _session(customer, now=None) -> str:
    _, url = portal_session_create(customer=customer, now=now or timezone.now())
    return path_of(url)


def test_the_api_creates_a_short_lived_url_stored_only_as_a_hash(api, client, settings):
    settings.PORTAL_SESSION_MINUTES = 30
    customer = CustomerFactory()
    before = timezone.now()
    answer = api.post(f"/api/v1/customers/{customer.id}/portal-sessions", {}, format="json")
    assert answer.status_code == 201, answer.json()
    body = answer.json()
    assert body["object"] == "portal_session" and body["customer"] == customer.id
    assert body["url"].startswith("http://testserver/portal/") and body["url"].endswith("/")
    expires = timezone.datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00"))
    assert timedelta(minutes=29) < expires - before <= timedelta(minutes=30, seconds=5)
    token = body["url"].rstrip("/").rsplit("/", 1)[1]
    session = PortalSession.objects.get(pk=body["id"])
    assert token not in session.token_hash and len(session.token_hash) == 64
    page = client.get(path_of(body["url"]))
    assert page.status_code == 200 and customer.name.encode() in page.content


def test_the_api_refuses_unknown_fields_and_unknown_customers(api):
    customer = CustomerFactory()
    bad = api.post(f"/api/v1/customers/{customer.id}/portal-sessions", {"return_url": "x"}, format="json")
    assert bad.status_code == 400 and "return_url" in str(bad.json()["error"])
    missing = api.post("/api/v1/customers/cus_nope/portal-sessions", {}, format="json")
    assert missing.status_code == 404
    assert not PortalSession.objects.exists()


def test_the_api_needs_billing_write(make_client):
    customer = CustomerFactory()
    reader = make_client("billing:read")
    assert reader.post(f"/api/v1/customers/{customer.id}/portal-sessions", {}, format="json").status_code == 403


def test_sessions_expire(client):
    customer = CustomerFactory()
    now = timezone.now()
    _, url = portal_session_create(customer=customer, now=now)
    token = url.rstrip("/").rsplit("/", 1)[1]
    assert portal_session_by_token(token, now=now + timedelta(minutes=59)).customer_id == customer.id
    with pytest.raises(PortalSessionExpired):
        portal_session_by_token(token, now=now + timedelta(minutes=60))
    old = _session(customer, now=now - timedelta(hours=2))
    page = client.get(old)
    assert page.status_code == 404 and b"expired" in page.content
    assert client.get(old + "payment-methods").status_code == 404
    assert client.post(old + "payment-methods", {"token": "tok_visa", "nonce": "a" * 32}).status_code == 404
    assert not PaymentMethod.objects.filter(customer=customer).exists()


@pytest.mark.parametrize("token", ["short", "b" * 43])
def test_a_bad_token_is_a_404(client, token):
    assert client.get(f"/portal/{token}/").status_code == 404
    assert client.get(f"/portal/{token}/invoices").status_code == 404


def test_overview_shows_usage_that_matches_the_usage_api(api, client):
    now = timezone.now()
    customer, price, sub = metered_customer(now)
    page = client.get(_session(customer)).content.decode()
    api_value = api.get(
        f"/api/v1/usage/{price.meter_id}",
        {
            "customer": customer.id,
            "start": sub.current_period_start.isoformat(),
            "end": sub.current_period_end.isoformat(),
        },
    ).json()["data"][0]["value"]
    shown = re.search(r'data-testid="usage-total">([^<]+)<', page).group(1)
    assert Decimal(shown) == Decimal(api_value) == 23
    assert "<svg" in page and 'class="bar"' in page and "usage per day" in page
    # One bar per day of the period; their values add up to the total.
    bars = [Decimal(v) for v in re.findall(r'class="bar" data-value="([^"]+)"', page)]
    assert sum(bars) == 23 and len(bars) >= 28
    assert 'data-testid="upcoming"' in page and "$0.12" in page  # 23 units x 0.5 cents, billed in arrears


def test_overview_shows_balance_and_credit_grants(client):
    customer = CustomerFactory()
    now = timezone.now()
    balance_adjust(customer=customer, amount=1500, currency="usd", type="adjustment", description="Goodwill", now=now)
    credit_grant_create(customer=customer, amount=5000, currency="usd", name="Launch credit", now=now)
    page = client.get(_session(customer)).content.decode()
    assert "$15.00" in page and "Launch credit" in page and "$50.00" in page


def test_invoices_list_with_pdfs_and_another_customers_invoice_is_a_404(api, client):
    mine = CustomerFactory()
    theirs = CustomerFactory()
    invoice = finalized_invoice(api, mine)
    foreign = finalized_invoice(api, theirs)
    root = _session(mine)
    page = client.get(root + "invoices").content.decode()
    assert invoice["number"] in page and foreign["number"] not in page
    assert path_of(invoice["hosted_invoice_url"]) in page
    pdf = client.get(f"{root}invoices/{invoice['id']}/pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    assert client.get(f"{root}invoices/{foreign['id']}/pdf").status_code == 404
    assert client.get(f"{root}invoices/in_nope/pdf").status_code == 404


def test_payment_methods_add_set_default_and_remove(client):
    customer = CustomerFactory()
    root = _session(customer) + "payment-methods"
    html = client.get(root).content.decode()
    nonce = nonce_of(html)
    added = client.post(root, {"token": "tok_visa", "nonce": nonce})
    assert added.status_code == 303
    assert client.post(root, {"token": "tok_visa", "nonce": nonce}).status_code == 303  # a double click
    assert PaymentMethod.objects.filter(customer=customer).count() == 1
    client.post(root, {"token": "tok_mastercard", "nonce": nonce_of(client.get(root).content.decode())})
    visa = PaymentMethod.objects.get(customer=customer, last4="4242")
    master = PaymentMethod.objects.get(customer=customer, last4="4444")
    assert visa.is_default and not master.is_default
    assert client.post(f"{root}/{master.id}/default").status_code == 303
    visa.refresh_from_db()
    master.refresh_from_db()
    assert master.is_default and not visa.is_default
    assert client.post(f"{root}/{visa.id}/remove").status_code == 303
    visa.refresh_from_db()
    assert visa.detached_at is not None
    page = client.get(root).content.decode()
    assert f'data-method="{master.id}"' in page and f'data-method="{visa.id}"' not in page
    assert client.post(f"{root}/{visa.id}/remove").status_code == 404  # already removed


def test_a_bad_card_is_refused_with_its_reason(client):
    customer = CustomerFactory()
    root = _session(customer) + "payment-methods"
    refused = client.post(root, {"token": "tok_nonsense", "nonce": nonce_of(client.get(root).content.decode())})
    assert refused.status_code == 400 and b"No such token" in refused.content
    assert not PaymentMethod.objects.filter(customer=customer).exists()


def test_another_customers_payment_method_is_a_404_and_stays_untouched(client):
    mine, theirs = CustomerFactory(), CustomerFactory()
    method = PaymentMethodFactory(customer=theirs, is_default=False)
    root = _session(mine) + "payment-methods"
    assert client.post(f"{root}/{method.id}/default").status_code == 404
    assert client.post(f"{root}/{method.id}/remove").status_code == 404
    method.refresh_from_db()
    assert method.detached_at is None and not method.is_default
    assert method.id not in client.get(root).content.decode()


def test_portal_forms_need_the_csrf_token():
    customer = CustomerFactory()
    browser = Client(enforce_csrf_checks=True)
    root = _session(customer) + "payment-methods"
    html = browser.get(root).content.decode()
    assert browser.post(root, {"token": "tok_visa", "nonce": nonce_of(html)}).status_code == 403
    assert not PaymentMethod.objects.filter(customer=customer).exists()


def test_a_deleted_customers_session_opens_nothing(client):
    customer = CustomerFactory()
    root = _session(customer)
    customer.status, customer.deleted_at = "deleted", timezone.now()
    customer.save()
    assert client.get(root).status_code == 404


def test_the_purge_job_deletes_old_sessions_and_submissions_only(client):
    from django.core.management import call_command

    from portal.models import PortalSubmission

    customer = CustomerFactory()
    now = timezone.now()
    old = _session(customer, now=now - timedelta(days=3))
    fresh = _session(customer, now=now)
    PortalSubmission.objects.create(key="pay:x:old", created_at=now - timedelta(days=8))
    PortalSubmission.objects.create(key="pay:x:new", created_at=now - timedelta(days=1))
    call_command("run_job", "purge_portal_rows", "--now", now.isoformat())
    assert PortalSession.objects.count() == 1 and client.get(fresh).status_code == 200
    assert client.get(old).status_code == 404
    assert list(PortalSubmission.objects.values_list("key", flat=True)) == ["pay:x:new"]
