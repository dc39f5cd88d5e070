"""`GET /invoices/{id}/pdf`: stored once and immutable, rendered outside transactions, a 503 that names
the missing library where WeasyPrint cannot load, and the usual scope and 404 checks."""

from __future__ import annotations

import hashlib
import importlib.abc
import sys
import threading

import pytest
from django.db import connection

from customers.tests.factories import CustomerFactory
from invoicing.documents import engine
from invoicing.documents.invoice import invoice_document_html, invoice_pdf
from invoicing.documents.store import stored_pdf_get_or_render
from invoicing.models import StoredDocument
from invoicing.tests.documents_support import DOC_T0, invoice_with_lines, pdf_text

pytestmark = pytest.mark.django_db


def simple_invoice(name: str = "Acme GmbH", **kwargs):
    return invoice_with_lines(
        customer=CustomerFactory(name=name, currency="eur"),
        currency="eur",
        lines=[{"description": "Pro plan", "amount": 3998}],
        **kwargs,
    )


def test_the_pdf_endpoint_serves_the_invoice(api, settings):
    settings.SELLER_NAME = "Seller Ltd"
    invoice = simple_invoice()
    response = api.get(f"/api/v1/invoices/{invoice.id}/pdf")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"] == f'inline; filename="{invoice.number}.pdf"'
    assert response["ETag"] == f'"{hashlib.sha256(response.content).hexdigest()}"'
    assert response["Cache-Control"] == "private, max-age=86400"
    text = pdf_text(response.content)
    assert f"Invoice number {invoice.number}" in text
    assert "Seller Ltd" in text and "Bill to Acme GmbH" in text and "Total (EUR) €39.98" in text


def test_a_finalized_invoice_is_rendered_once_and_never_changes(api, settings):
    settings.SELLER_NAME = "Seller Ltd"
    invoice = simple_invoice(name="Old Name GmbH")
    first = api.get(f"/api/v1/invoices/{invoice.id}/pdf")
    row = StoredDocument.objects.get()
    assert (row.kind, row.object_id, row.customer_id, row.filename, row.locale) == (
        "invoice",
        invoice.id,
        invoice.customer_id,
        f"{invoice.number}.pdf",
        "en",
    )
    assert bytes(row.content) == first.content and row.size == len(first.content)
    assert row.sha256 == hashlib.sha256(first.content).hexdigest()

    # Everything a fresh rendering would show differently changes...
    customer = invoice.customer
    customer.name = "New Name AG"
    customer.save()
    invoice.customer_snapshot = {**invoice.customer_snapshot, "name": "New Name AG"}
    invoice.save(update_fields=["customer_snapshot"])
    settings.SELLER_NAME = "Renamed Seller plc"
    settings.DOCUMENT_LOCALE = "de"
    assert "Renamed Seller plc" in invoice_document_html(invoice=invoice, now=DOC_T0)

    # ...and the document the customer received does not.
    second = api.get(f"/api/v1/invoices/{invoice.id}/pdf")
    assert second.status_code == 200
    assert second.content == first.content
    assert second["ETag"] == first["ETag"]
    text = pdf_text(second.content)
    assert "Old Name GmbH" in text and "Seller Ltd" in text and "€39.98" in text
    assert StoredDocument.objects.count() == 1


def test_a_draft_is_served_unstored_and_not_cached(api):
    invoice = simple_invoice(finalize=False)
    response = api.get(f"/api/v1/invoices/{invoice.id}/pdf")
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    assert response["Content-Disposition"] == f'inline; filename="{invoice.id}.pdf"'
    assert "DRAFT" in pdf_text(response.content)
    assert not StoredDocument.objects.exists()


def test_when_two_renderings_race_both_readers_get_the_winners_bytes():
    invoice = simple_invoice()

    def render_while_another_request_stores_first() -> bytes:
        StoredDocument.objects.create(
            kind="invoice",
            object_id=invoice.id,
            customer_id=invoice.customer_id,
            filename="winner.pdf",
            content=b"%PDF-winner",
            sha256=hashlib.sha256(b"%PDF-winner").hexdigest(),
            size=11,
            locale="en",
            created_at=DOC_T0,
        )
        return b"%PDF-loser"

    pdf = stored_pdf_get_or_render(
        kind="invoice",
        object_id=invoice.id,
        customer_id=invoice.customer_id,
        filename="loser.pdf",
        locale="en",
        render=render_while_another_request_stores_first,
        now=DOC_T0,
    )
    assert (pdf.content, pdf.filename, pdf.stored) == (b"%PDF-winner", "winner.pdf", True)
    assert StoredDocument.objects.count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_first_downloads_store_one_document_and_serve_it_to_both():
    invoice = simple_invoice()
    barrier = threading.Barrier(4)
    results: list = []

    def download() -> None:
        try:
            results.append(invoice_pdf(invoice=invoice, now=DOC_T0))
        finally:
            connection.close()

    real = engine.html_to_pdf

    def render_after_everyone_looked(html: str) -> bytes:
        barrier.wait(timeout=30)  # all four found nothing stored before any of them inserts
        return real(html)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("invoicing.documents.invoice.html_to_pdf", render_after_everyone_looked)
        threads = [threading.Thread(target=download) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len(results) == 4
    assert StoredDocument.objects.filter(object_id=invoice.id).count() == 1
    stored = bytes(StoredDocument.objects.get(object_id=invoice.id).content)
    assert all(pdf.content == stored and pdf.stored for pdf in results)


def test_the_database_refuses_a_second_document_for_one_object():
    from django.db import IntegrityError, transaction

    invoice = simple_invoice()
    fields = dict(
        kind="invoice",
        object_id=invoice.id,
        customer_id=invoice.customer_id,
        filename="a.pdf",
        content=b"%PDF-a",
        sha256="0" * 64,
        size=6,
        locale="en",
        created_at=DOC_T0,
    )
    StoredDocument.objects.create(**fields)
    with pytest.raises(IntegrityError), transaction.atomic():
        StoredDocument.objects.create(**fields)
    with pytest.raises(IntegrityError), transaction.atomic():
        StoredDocument.objects.create(**{**fields, "kind": "receipt", "size": 0})


@pytest.mark.django_db(transaction=True)
def test_rendering_runs_outside_any_transaction(api, monkeypatch):
    invoice = simple_invoice()
    seen = []
    real = engine.html_to_pdf

    def spy(html: str) -> bytes:
        seen.append(connection.in_atomic_block)
        return real(html)

    monkeypatch.setattr("invoicing.documents.invoice.html_to_pdf", spy)
    assert api.get(f"/api/v1/invoices/{invoice.id}/pdf").status_code == 200
    assert seen == [False]
    assert StoredDocument.objects.filter(object_id=invoice.id).count() == 1


class _PangoMissing(importlib.abc.MetaPathFinder):
    """Imports of weasyprint fail the way they do on a machine without Pango: cffi's dlopen raises."""

    def find_spec(self, name, path=None, target=None):
        if name == "weasyprint" or name.startswith("weasyprint."):
            raise OSError(
                "cannot load library 'libpango-1.0-0': libpango-1.0-0: cannot open shared object file: "
                "No such file or directory"
            )
        return None


@pytest.fixture
def without_weasyprint_modules(monkeypatch):
    for name in [n for n in sys.modules if n == "weasyprint" or n.startswith("weasyprint.")]:
        monkeypatch.delitem(sys.modules, name)


def test_without_pango_the_endpoint_answers_503_naming_the_library(api, monkeypatch, without_weasyprint_modules):
    monkeypatch.setattr(sys, "meta_path", [_PangoMissing(), *sys.meta_path])
    invoice = simple_invoice()
    response = api.get(f"/api/v1/invoices/{invoice.id}/pdf")
    assert response.status_code == 503
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("api_error", "pdf_renderer_unavailable")
    assert "libpango-1.0-0" in error["message"] and "WeasyPrint" in error["message"]
    assert not StoredDocument.objects.exists()


def test_without_the_weasyprint_package_the_endpoint_answers_503(api, monkeypatch, without_weasyprint_modules):
    monkeypatch.setitem(sys.modules, "weasyprint", None)  # what `import weasyprint` meets when it is not installed
    invoice = simple_invoice()
    response = api.get(f"/api/v1/invoices/{invoice.id}/pdf")
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "pdf_renderer_unavailable"
    assert "WeasyPrint package is not installed" in error["message"]


def test_a_stored_document_is_served_even_where_rendering_is_unavailable(api, monkeypatch):
    invoice = simple_invoice()
    first = api.get(f"/api/v1/invoices/{invoice.id}/pdf")
    for name in [n for n in sys.modules if n == "weasyprint" or n.startswith("weasyprint.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [_PangoMissing(), *sys.meta_path])
    again = api.get(f"/api/v1/invoices/{invoice.id}/pdf")
    assert again.status_code == 200 and again.content == first.content


def test_the_pdf_needs_billing_read_and_an_existing_invoice(make_client):
    invoice = simple_invoice()
    assert make_client("payments:read").get(f"/api/v1/invoices/{invoice.id}/pdf").status_code == 403
    assert make_client("billing:read").get(f"/api/v1/invoices/{invoice.id}/pdf").status_code == 200
    missing = make_client("billing:read").get("/api/v1/invoices/in_nope/pdf")
    assert missing.status_code == 404
    assert missing.json()["error"] == {
        "type": "not_found",
        "code": "resource_missing",
        "message": "No such invoice: in_nope",
        "param": "id",
    }
    assert make_client("admin").post(f"/api/v1/invoices/{invoice.id}/pdf").status_code == 405
