from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from invoicing.pdf import LINES_PER_PAGE, render_pdf
from subscriptions.tests.support import fixed_price, metered_price, subscribe

pytestmark = pytest.mark.django_db


def _xref_offsets_point_at_objects(pdf: bytes) -> None:
    start = int(re.search(rb"startxref\n(\d+)\n", pdf).group(1))
    assert pdf[start:].startswith(b"xref\n")
    count = int(re.search(rb"xref\n0 (\d+)\n", pdf[start:]).group(1))
    entries = re.findall(rb"(\d{10}) 00000 n \n", pdf[start:])
    assert len(entries) == count - 1
    for number, offset in enumerate(entries, start=1):
        assert pdf[int(offset) :].startswith(b"%d 0 obj\n" % number)


def test_invoice_pdf_endpoint(api):
    _, invoice = subscribe(None, fixed_price("1000"), metered_price())
    response = api.get(f"/api/v1/invoices/{invoice.id}/pdf")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"] == f'inline; filename="{invoice.number}.pdf"'
    pdf = response.content
    assert pdf.startswith(b"%PDF-1.4") and pdf.rstrip().endswith(b"%%EOF")
    assert invoice.number.encode() in pdf
    assert b"$10.00" in pdf
    _xref_offsets_point_at_objects(pdf)
    if shutil.which("pdftotext"):  # a real reader, where the machine has one
        text = subprocess.run(["pdftotext", "-", "-"], input=pdf, capture_output=True, check=True).stdout
        assert invoice.number.encode() in text


def test_long_invoices_spill_onto_more_pages_and_text_is_escaped():
    rows = [(f"line (n) \\ {i}", False) for i in range(LINES_PER_PAGE * 2 + 3)]
    pdf = render_pdf(rows)
    assert pdf.count(b"/Type /Page ") == 3
    assert b"line \\(n\\) \\\\ 0" in pdf
    _xref_offsets_point_at_objects(pdf)


def test_pdf_needs_billing_read(make_client):
    _, invoice = subscribe(None, fixed_price("1000"))
    assert make_client("payments:read").get(f"/api/v1/invoices/{invoice.id}/pdf").status_code == 403
    assert make_client("billing:read").get(f"/api/v1/invoices/{invoice.id}/pdf").status_code == 200
    assert make_client("billing:read").get("/api/v1/invoices/in_nope/pdf").status_code == 404
