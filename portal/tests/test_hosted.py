"""The hosted invoice page: links (made at finalization, hashed, revocable, regenerated), the page, the PDF,
paying with the sandbox's test cards (declines, 3-D Secure-like authentication, double submits) and CSRF."""

from __future__ import annotations

import pytest
from django.test import Client
from django.utils import timezone

from billing_site.public_urls import public_url
from invoicing.models import Invoice
from payments.models import PaymentIntent, PaymentMethod
from payments.processors.sandbox import sandbox_charges
from portal.links import hosted_invoice_link_regenerate, hosted_invoice_link_revoke, link_token, token_hash
from portal.models import HostedInvoiceLink
from portal.tests.support import finalized_invoice, nonce_of, path_of

pytestmark = pytest.mark.django_db


def _open(client: Client, invoice: dict):
    page = client.get(path_of(invoice["hosted_invoice_url"]))
    assert page.status_code == 200
    return page


def _pay(client: Client, invoice: dict, token: str, nonce: str | None = None):
    path = path_of(invoice["hosted_invoice_url"])
    nonce = nonce or nonce_of(client.get(path).content.decode())
    return client.post(f"{path}/pay", {"token": token, "nonce": nonce})


def test_finalizing_makes_an_unguessable_link_stored_only_as_a_hash(api):
    invoice = finalized_invoice(api)
    url = invoice["hosted_invoice_url"]
    assert url.startswith("http://testserver/i/")
    token = url.rsplit("/", 1)[1]
    assert len(token) == 43  # 256 bits, base64url
    link = HostedInvoiceLink.objects.get(invoice_id=invoice["id"])
    assert link.token_hash == token_hash(token) != token
    assert not HostedInvoiceLink.objects.filter(token_hash=token).exists()
    # The API shows the same URL every time (recomputed from the row, not stored).
    assert api.get(f"/api/v1/invoices/{invoice['id']}").json()["hosted_invoice_url"] == url
    assert api.get("/api/v1/invoices").json()["data"][0]["hosted_invoice_url"] == url


def test_a_draft_has_no_hosted_page(api):
    from customers.tests.factories import CustomerFactory

    customer = CustomerFactory()
    draft = api.post(
        "/api/v1/invoices", {"customer": customer.id, "lines": [{"description": "x", "amount": 100}]}, format="json"
    ).json()
    assert draft["hosted_invoice_url"] is None
    assert not HostedInvoiceLink.objects.filter(invoice_id=draft["id"]).exists()


def test_the_page_shows_the_invoice_document_with_a_pdf_and_a_pay_form(api, client, settings):
    settings.SELLER_NAME, settings.SELLER_TAX_ID = "Northwind Analytics Ltd", "IE1234567T"
    invoice = finalized_invoice(api)
    page = _open(client, invoice)
    html = page.content.decode()
    assert invoice["number"] in html and "Onboarding workshop" in html and "Łukasz 東京" in html
    assert "$25.00" in html and 'name="token" value="tok_visa"' in html
    assert "Northwind Analytics Ltd" in html and "IE1234567T" in html
    assert "js.stripe.com" not in html  # the sandbox needs no external script
    assert page["Referrer-Policy"] == "same-origin" and page["Cache-Control"] == "no-store"
    pdf = client.get(path_of(invoice["hosted_invoice_url"]) + "/pdf")
    assert pdf.status_code == 200 and pdf["Content-Type"] == "application/pdf" and pdf.content.startswith(b"%PDF")


@pytest.mark.parametrize("token", ["x", "a" * 43, "a" * 101, "not-a-token-but-long-enough"])
def test_a_bad_token_is_a_404_page(client, token):
    page = client.get(f"/i/{token}")
    assert page.status_code == 404
    assert b"No such invoice page" in page.content
    assert client.post(f"/i/{token}/pay", {"token": "tok_visa", "nonce": "0" * 32}).status_code in (403, 404)


def test_revoked_links_close_the_page_and_regenerating_makes_a_new_url(api, client):
    invoice = finalized_invoice(api)
    old = path_of(invoice["hosted_invoice_url"])
    row = Invoice.objects.get(pk=invoice["id"])
    hosted_invoice_link_revoke(invoice=row, now=timezone.now())
    assert client.get(old).status_code == 404
    assert client.get(old + "/pdf").status_code == 404
    assert api.get(f"/api/v1/invoices/{invoice['id']}").json()["hosted_invoice_url"] is None
    with pytest.raises(Exception, match="no live hosted link"):
        hosted_invoice_link_revoke(invoice=row, now=timezone.now())

    link = hosted_invoice_link_regenerate(invoice=row, now=timezone.now())
    new = api.get(f"/api/v1/invoices/{invoice['id']}").json()["hosted_invoice_url"]
    assert new == public_url(f"/i/{link_token(link)}") and path_of(new) != old
    assert client.get(path_of(new)).status_code == 200
    assert client.get(old).status_code == 404
    assert HostedInvoiceLink.objects.filter(invoice_id=invoice["id"]).count() == 2


def test_paying_with_a_test_card_pays_the_invoice_once(api, client):
    invoice = finalized_invoice(api)
    path = path_of(invoice["hosted_invoice_url"])
    nonce = nonce_of(client.get(path).content.decode())
    first = client.post(f"{path}/pay", {"token": "tok_visa", "nonce": nonce})
    assert first.status_code == 303 and "?payment=pi_" in first["Location"]
    # A double click (the same form again) pays nothing more and shows the same payment.
    second = client.post(f"{path}/pay", {"token": "tok_visa", "nonce": nonce})
    assert second.status_code == 303 and second["Location"] == first["Location"]
    assert sandbox_charges() == 1
    assert PaymentIntent.objects.filter(invoice_id=invoice["id"]).count() == 1
    paid = api.get(f"/api/v1/invoices/{invoice['id']}").json()
    assert paid["status"] == "paid" and paid["amount_remaining"] == 0 and paid["amount_paid"] == 2500
    shown = client.get(path + "?" + first["Location"].split("?")[1]).content.decode()
    assert "Payment received" in shown and "This invoice is paid" in shown and 'name="token"' not in shown
    # A new form on a paid invoice is refused, and charges nothing.
    again = _pay(client, invoice, "tok_visa", nonce="f" * 32)
    assert again.status_code == 400 and b"nothing is to be paid" in again.content
    assert sandbox_charges() == 1


def test_a_declined_card_leaves_the_invoice_open_and_another_card_pays_it(api, client):
    invoice = finalized_invoice(api)
    declined = _pay(client, invoice, "tok_chargeDeclined")
    assert declined.status_code == 303
    page = client.get(declined["Location"]).content.decode()
    assert "The payment failed: Your card was declined." in page and 'data-testid="pay-button"' in page
    assert Invoice.objects.get(pk=invoice["id"]).status == "open"
    ok = _pay(client, invoice, "tok_mastercard")
    assert client.get(ok["Location"]).content.decode().count("Payment received") == 1
    assert Invoice.objects.get(pk=invoice["id"]).status == "paid" and sandbox_charges() == 1


def test_a_bad_card_token_is_a_400_naming_the_problem_and_charges_nothing(api, client):
    invoice = finalized_invoice(api)
    page = _pay(client, invoice, "tok_nonsense")
    assert page.status_code == 400 and b"No such token" in page.content
    missing = _pay(client, invoice, "")
    assert missing.status_code == 400 and b"Choose a card" in missing.content
    stale = client.post(path_of(invoice["hosted_invoice_url"]) + "/pay", {"token": "tok_visa", "nonce": "x"})
    assert stale.status_code == 400 and b"reload the page" in stale.content
    assert sandbox_charges() == 0 and not PaymentIntent.objects.exists()


def test_authentication_required_shows_the_challenge_and_approving_pays(api, client):
    invoice = finalized_invoice(api)
    started = _pay(client, invoice, "tok_authenticationRequired")
    assert started.status_code == 303 and "/authenticate/pi_" in started["Location"]
    intent_id = started["Location"].rsplit("/", 1)[1]
    shown = api.get(f"/api/v1/payment-intents/{intent_id}").json()
    assert shown["status"] == "requires_action" and shown["next_action"] == {"type": "sandbox_authenticate"}
    assert shown["client_secret"].startswith(shown["provider_ref"] + "_secret_")
    challenge = client.get(started["Location"])
    assert challenge.status_code == 200 and b"$25.00" in challenge.content and b"3184" in challenge.content
    done = client.post(started["Location"], {"outcome": "approve"})
    assert done.status_code == 303 and done["Location"].endswith(f"?payment={intent_id}")
    assert b"Payment received" in client.get(done["Location"]).content
    after = api.get(f"/api/v1/payment-intents/{intent_id}").json()
    assert after["status"] == "succeeded" and after["next_action"] is None
    assert Invoice.objects.get(pk=invoice["id"]).status == "paid" and sandbox_charges() == 1
    # Approving again changes nothing; the challenge page now just returns to the invoice.
    assert client.post(started["Location"], {"outcome": "approve"}).status_code == 303
    assert client.get(started["Location"]).status_code == 303 and sandbox_charges() == 1


def test_failing_authentication_leaves_the_invoice_open(api, client):
    invoice = finalized_invoice(api)
    started = _pay(client, invoice, "tok_authenticationRequired")
    done = client.post(started["Location"], {"outcome": "decline"})
    page = client.get(done["Location"]).content.decode()
    assert "The customer did not complete authentication." in page and 'data-testid="pay-button"' in page
    assert Invoice.objects.get(pk=invoice["id"]).status == "open" and sandbox_charges() == 0


def test_an_abandoned_challenge_is_canceled_when_the_customer_pays_another_way(api, client):
    invoice = finalized_invoice(api)
    started = _pay(client, invoice, "tok_authenticationRequired")
    first = started["Location"].rsplit("/", 1)[1]
    page = client.get(path_of(invoice["hosted_invoice_url"])).content.decode()
    assert "Complete authentication" in page
    paid = _pay(client, invoice, "tok_visa")
    assert b"Payment received" in client.get(paid["Location"]).content
    assert PaymentIntent.objects.get(pk=first).status == "canceled" and sandbox_charges() == 1


def test_another_invoices_payment_is_a_404_on_this_page(api, client):
    one, two = finalized_invoice(api), finalized_invoice(api)
    started = _pay(client, two, "tok_authenticationRequired")
    intent_id = started["Location"].rsplit("/", 1)[1]
    foreign = f"{path_of(one['hosted_invoice_url'])}/authenticate/{intent_id}"
    assert client.get(foreign).status_code == 404
    assert client.post(foreign, {"outcome": "approve"}).status_code == 404
    assert PaymentIntent.objects.get(pk=intent_id).status == "requires_action"
    assert client.get(f"{path_of(one['hosted_invoice_url'])}/return?payment_intent={intent_id}").status_code == 404


def test_voided_invoices_show_without_a_pay_form_and_refuse_payment(api, client):
    invoice = finalized_invoice(api)
    assert api.post(f"/api/v1/invoices/{invoice['id']}/void").status_code == 200
    page = _open(client, invoice).content.decode()
    assert "This invoice was voided" in page and 'data-testid="pay-button"' not in page
    refused = client.post(path_of(invoice["hosted_invoice_url"]) + "/pay", {"token": "tok_visa", "nonce": "a" * 32})
    assert refused.status_code == 400 and sandbox_charges() == 0
    assert not PaymentMethod.objects.filter(customer_id=invoice["customer"]).exists()


def test_paying_needs_the_csrf_token(api):
    invoice = finalized_invoice(api)
    browser = Client(enforce_csrf_checks=True)
    path = path_of(invoice["hosted_invoice_url"])
    html = browser.get(path).content.decode()
    forged = browser.post(f"{path}/pay", {"token": "tok_visa", "nonce": nonce_of(html)})
    assert forged.status_code == 403 and sandbox_charges() == 0
    csrf = html.split('name="csrfmiddlewaretoken" value="')[1].split('"')[0]
    paid = browser.post(f"{path}/pay", {"token": "tok_visa", "nonce": nonce_of(html), "csrfmiddlewaretoken": csrf})
    assert paid.status_code == 303 and sandbox_charges() == 1


def test_get_is_not_a_way_to_pay(api, client):
    invoice = finalized_invoice(api)
    assert client.get(path_of(invoice["hosted_invoice_url"]) + "/pay").status_code == 405
    assert sandbox_charges() == 0


def test_stripe_customers_get_stripe_js_and_the_client_secret_for_next_action(api, client, settings):
    from customers.tests.factories import CustomerFactory

    settings.STRIPE_PUBLISHABLE_KEY = "pk_test_hosted"
    customer = CustomerFactory(provider="stripe")
    invoice = finalized_invoice(api, customer)
    page = _open(client, invoice).content.decode()
    assert '<script src="https://js.stripe.com/v3/"></script>' in page and 'data-stripe="pk_test_hosted"' in page
    assert 'name="token" value="tok_visa"' not in page
    # A payment waiting for 3-D Secure: the page hands its client secret to Stripe.js, and comes back.
    row = Invoice.objects.get(pk=invoice["id"])
    PaymentIntent.objects.create(
        customer=customer,
        invoice=row,
        amount=2500,
        currency="usd",
        provider="stripe",
        provider_ref="pi_3x",
        status="requires_action",
        client_secret="pi_3x_secret_abc",
        next_action={"type": "use_stripe_sdk"},
    )
    page = _open(client, invoice).content.decode()
    assert 'data-client-secret="pi_3x_secret_abc"' in page and "/return?payment_intent=" in page
