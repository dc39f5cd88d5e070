"""The invoice PDF: rendered by WeasyPrint, read back with pypdf, every figure asserted exactly.

Each test renders real PDFs (no stub of the engine) in the currencies and locales that break naive
formatting: EUR (symbol placement, decimal comma), JPY (no decimals), KWD (three), and names in Polish
and Japanese script.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from customers.tests.factories import CustomerFactory
from invoicing.documents.invoice import invoice_document_html, invoice_pdf
from invoicing.models import StoredDocument
from invoicing.services import invoice_void, tax_rate_create
from invoicing.tests.documents_support import DOC_T0, at, invoice_with_lines, pdf_text
from subscriptions.tests.support import metered_price

pytestmark = pytest.mark.django_db

TIERS = [{"up_to": 1000, "unit": "0.5", "flat": 0}, {"up_to": None, "unit": "0.1", "flat": 500}]


@pytest.fixture
def seller(settings):
    settings.SELLER_NAME = "Łódź Software Sp. z o.o."
    settings.SELLER_ADDRESS = ["ul. Piotrkowska 1", "90-001 Łódź", "Poland"]
    settings.SELLER_TAX_ID = "PL1234567890"
    settings.DOCUMENT_FOOTER = "IBAN PL61 1090 1014 0000 0712 1981 2874 — thank you"
    return settings


def eur_invoice(**kwargs):
    """A EUR invoice for a customer named in two scripts: a seat billed in advance for Jan 3 - Feb 3
    (discounted 10% by coupon, 20% VAT) and tiered API usage billed in arrears for Dec 3 - Jan 3."""
    price = metered_price(tiers=TIERS, currency="eur")
    vat = tax_rate_create(display_name="VAT", percentage=Decimal("20"), country="PL", now=DOC_T0)
    customer = CustomerFactory(
        name="Łukasz 東京",
        currency="eur",
        address_line1="丸の内 1-1",
        address_city="東京",
        address_postal_code="100-0005",
        address_country="JP",
        email="lukasz@example.jp",
    )
    lines = [
        {
            "description": "Pro plan",
            "amount": 3998,
            "quantity": 1,
            "unit_amount": Decimal(3998),
            "discount_amount": 400,
            "taxes": [{"tax_rate": vat.id, "amount": 720}],
        },
        {
            "description": "API calls",
            "kind": "usage",
            "amount": 1050,
            "quantity": 1500,
            "price": price,
            "meter": price.meter,
            "period_start": at(2025, 12, 3),
            "period_end": at(2026, 1, 3),
            "taxes": [{"tax_rate": vat.id, "amount": 210}],
        },
        {"description": "SPRING (10% off)", "kind": "discount", "amount": -400},
    ]
    return invoice_with_lines(customer=customer, currency="eur", lines=lines, tax=930, **kwargs)


def test_eur_invoice_in_english(seller):
    invoice = eur_invoice()
    text = pdf_text(invoice_pdf(invoice=invoice, now=DOC_T0).content)
    # The seller, from settings, and the customer as finalization recorded it.
    for part in ("Łódź Software Sp. z o.o.", "ul. Piotrkowska 1", "90-001 Łódź", "Tax ID: PL1234567890"):
        assert part in text
    assert "Bill to Łukasz 東京 丸の内 1-1 100-0005 東京 Japan lukasz@example.jp" in text
    assert f"Invoice number {invoice.number}" in text
    assert "Date of issue Feb 3, 2026 Date due Mar 5, 2026 Billing period Jan 3 – Feb 3, 2026" in text
    # Each line with its own period: the usage of Dec 3 - Jan 3 is not put under the invoice's period.
    assert "Pro plan Jan 3 – Feb 3, 2026 1 €39.98 €39.98 Discount -€4.00 VAT 20% €7.20" in text
    assert "API calls Dec 3, 2025 – Jan 3, 2026 1,500 €10.50" in text
    # The tier breakdown of 1,500 calls: 1,000 at €0.005, then 500 at €0.001 plus the tier's €5 flat fee.
    assert "Tier 1 (up to 1,000): 1,000 × €0.005 €5.00" in text
    assert "Tier 2 (over 1,000): 500 × €0.001 + €5.00 flat fee €5.50 VAT 20% €2.10" in text
    # Totals: the coupon, tax per rate, and what is due.
    assert "Subtotal €50.48 Discount: SPRING (10% off) -€4.00 VAT 20% €9.30 Total (EUR) €55.78" in text
    assert "Amount due €55.78" in text
    assert "Payments as of Feb 3, 2026 Amount paid €0.00 Amount remaining €55.78" in text
    assert "IBAN PL61 1090 1014 0000 0712 1981 2874 — thank you" in text
    assert "Page 1 of 1" in text
    assert "?" not in text  # nothing replaced for want of a glyph or an encoding


def test_eur_invoice_in_german(seller):
    seller.DOCUMENT_LOCALE = "de"
    invoice = eur_invoice()
    text = pdf_text(invoice_pdf(invoice=invoice, now=DOC_T0).content)
    assert "Bill to Łukasz 東京 丸の内 1-1 100-0005 東京 Japan" in text  # country names in the document's language
    assert "Date of issue 03.02.2026 Date due 05.03.2026 Billing period 3. Jan. – 3. Feb. 2026" in text
    assert "Pro plan 3. Jan. – 3. Feb. 2026 1 39,98 € 39,98 € Discount -4,00 € VAT 20 % 7,20 €" in text
    assert "API calls 3. Dez. 2025 – 3. Jan. 2026 1.500 10,50 €" in text
    assert "Tier 1 (up to 1.000): 1.000 × 0,005 € 5,00 €" in text
    assert "Tier 2 (over 1.000): 500 × 0,001 € + 5,00 € flat fee 5,50 €" in text
    assert "Subtotal 50,48 € Discount: SPRING (10% off) -4,00 € VAT 20 % 9,30 € Total (EUR) 55,78 €" in text


def test_jpy_invoice_has_no_decimals(settings):
    customer = CustomerFactory(name="株式会社東京", currency="jpy", address_country="JP")
    invoice = invoice_with_lines(
        customer=customer,
        currency="jpy",
        lines=[{"description": "Seats", "amount": 3000, "quantity": 3, "unit_amount": Decimal(1000)}],
    )
    text = pdf_text(invoice_pdf(invoice=invoice, now=DOC_T0).content)
    assert "Bill to 株式会社東京 Japan" in text
    assert "Seats Jan 3 – Feb 3, 2026 3 ¥1,000 ¥3,000" in text
    assert "Total (JPY) ¥3,000 Amount due ¥3,000" in text

    settings.DOCUMENT_LOCALE = "ja"
    other = invoice_with_lines(
        customer=customer,
        currency="jpy",
        lines=[{"description": "Seats", "amount": 3000, "quantity": 3, "unit_amount": Decimal(1000)}],
    )
    text = pdf_text(invoice_pdf(invoice=other, now=DOC_T0).content)
    assert "Bill to 株式会社東京 日本" in text
    assert "Seats 2026年1月3日～2月3日 3 ￥1,000 ￥3,000" in text
    assert "Total (JPY) ￥3,000" in text


def test_kwd_invoice_has_three_decimals_and_fractional_unit_prices():
    customer = CustomerFactory(name="شركة الكويت", currency="kwd", address_country="KW")
    invoice = invoice_with_lines(
        customer=customer,
        currency="kwd",
        lines=[
            {
                "description": "Storage",
                "kind": "usage",
                "amount": 1500,
                "quantity": 3000,
                "unit_amount": Decimal("0.5"),
            },
        ],
    )
    text = pdf_text(invoice_pdf(invoice=invoice, now=DOC_T0).content)
    assert "Storage Jan 3 – Feb 3, 2026 3,000 KWD 0.0005 KWD 1.500" in text
    assert "Total (KWD) KWD 1.500 Amount due KWD 1.500" in text
    assert "Kuwait" in text


def test_inclusive_tax_is_shown_as_included_per_rate():
    vat = tax_rate_create(display_name="MwSt", percentage=Decimal("19"), country="DE", inclusive=True, now=DOC_T0)
    reduced = tax_rate_create(display_name="MwSt", percentage=Decimal("7"), country="DE", inclusive=True, now=DOC_T0)
    invoice = invoice_with_lines(
        currency="eur",
        lines=[
            {
                "description": "Software",
                "amount": 11900,
                "taxes": [{"tax_rate": vat.id, "amount": 1900}],
                "inclusive_tax": True,
            },
            {
                "description": "Books",
                "amount": 1070,
                "taxes": [{"tax_rate": reduced.id, "amount": 70}],
                "inclusive_tax": True,
            },
            {
                "description": "More software",
                "amount": 2380,
                "taxes": [{"tax_rate": vat.id, "amount": 380}],
                "inclusive_tax": True,
            },
        ],
    )
    text = pdf_text(invoice_pdf(invoice=invoice, now=DOC_T0).content)
    assert "Software Jan 3 – Feb 3, 2026 €119.00 MwSt 19% (included) €19.00" in text
    assert "Total (EUR) €153.50 Includes MwSt 19% €22.80 Includes MwSt 7% €0.70 Amount due €153.50" in text


def test_a_draft_is_rendered_fresh_every_time_marked_and_never_stored(seller):
    customer = CustomerFactory(name="First Name Ltd")
    invoice = invoice_with_lines(customer=customer, lines=[{"description": "Seat", "amount": 1000}], finalize=False)
    first = invoice_pdf(invoice=invoice, now=DOC_T0)
    assert first.stored is False
    text = pdf_text(first.content)
    assert "Draft invoice" in text and "Invoice number Draft" in text and "Bill to First Name Ltd" in text
    customer.name = "Second Name Ltd"
    customer.save()
    invoice.refresh_from_db()
    assert "Bill to Second Name Ltd" in pdf_text(invoice_pdf(invoice=invoice, now=DOC_T0).content)
    assert not StoredDocument.objects.exists()


def test_a_voided_invoice_is_stamped_void(seller):
    invoice = invoice_with_lines(lines=[{"description": "Seat", "amount": 1000}])
    invoice = invoice_void(invoice=invoice, now=DOC_T0)
    text = pdf_text(invoice_pdf(invoice=invoice, now=DOC_T0).content)
    assert "VOID" in text  # the stamp across the page
    assert "This invoice was voided on Feb 3, 2026; nothing is owed on it." in text


def test_tier_breakdown_of_a_volume_price_and_none_for_a_prorated_line():
    volume = metered_price(
        tiers=[{"up_to": 100, "unit": "10", "flat": 0}, {"up_to": None, "unit": "5", "flat": 0}],
    )
    volume.amount = {**volume.amount, "mode": "total"}
    volume.save(update_fields=["amount"])
    invoice = invoice_with_lines(
        lines=[
            {"description": "Messages", "kind": "usage", "amount": 750, "quantity": 150, "price": volume},
            # 150 units would cost 750; a line of another amount (a proration) shows no breakdown.
            {"description": "Messages (prorated)", "kind": "fixed", "amount": 375, "quantity": 150, "price": volume},
        ],
    )
    html = invoice_document_html(invoice=invoice, now=DOC_T0)
    assert html.count("Tier 2 (volume, over 100): 150 × $0.05") == 1
    text = pdf_text(invoice_pdf(invoice=invoice, now=DOC_T0).content)
    assert "Messages Jan 3 – Feb 3, 2026 150 $7.50 Tier 2 (volume, over 100): 150 × $0.05 $7.50" in text
    assert "Messages (prorated) Jan 3 – Feb 3, 2026 150 $3.75 Subtotal" in text


def test_text_a_customer_typed_is_escaped_and_fetches_nothing():
    customer = CustomerFactory(name='<img src="file:///etc/passwd"> & <b>Co</b>')
    invoice = invoice_with_lines(customer=customer, lines=[{"description": "<script>x</script>", "amount": 100}])
    html = invoice_document_html(invoice=invoice, now=DOC_T0)
    assert "<img src=" not in html and "&lt;img src=&quot;file:///etc/passwd&quot;&gt;" in html
    text = pdf_text(invoice_pdf(invoice=invoice, now=DOC_T0).content)
    assert '<img src="file:///etc/passwd"> & <b>Co</b>' in text
    assert "<script>x</script>" in text


def test_addresses_follow_the_country_and_name_it_in_the_documents_language(settings):
    from invoicing.documents.formatting import Formatter
    from invoicing.documents.invoice import party_context

    us = {"line1": "1 Main St", "city": "Springfield", "state": "IL", "postal_code": "62701", "country": "US"}
    pl = {"line1": "ul. Piotrkowska 1", "city": "Łódź", "state": "łódzkie", "postal_code": "90-001", "country": "PL"}
    en, de = Formatter(locale="en", currency="usd"), Formatter(locale="de", currency="eur")
    assert party_context({"name": "Acme", "address": us}, en)["address"] == [
        "1 Main St",
        "Springfield, IL 62701",
        "United States",
    ]
    assert party_context({"name": "Łukasz", "address": pl}, de)["address"] == [
        "ul. Piotrkowska 1",
        "90-001 Łódź",
        "łódzkie",
        "Polen",
    ]
    # A customer without a name is named by its tenant id, never left blank.
    assert party_context({"name": "", "external_id": "tenant-9", "address": {}}, en)["name"] == "tenant-9"


def test_without_a_settlement_provider_what_was_paid_shows_as_one_figure(monkeypatch):
    """Invoicing alone (no payments app to list payments): the invoice's own amounts still add up."""
    from invoicing.models import Invoice

    monkeypatch.setattr("invoicing.documents.hooks.invoice_settlement_providers", [])
    invoice = invoice_with_lines(lines=[{"description": "Seat", "amount": 1000}])
    Invoice.objects.filter(pk=invoice.pk).update(
        status="paid", amount_paid=1000, amount_remaining=0, balance_applied=250, paid_at=DOC_T0
    )
    invoice.refresh_from_db()
    text = pdf_text(invoice_pdf(invoice=invoice, now=DOC_T0).content)
    assert "Paid from the account balance $2.50 Paid $7.50 Amount paid $10.00 Amount remaining $0.00" in text
