"""Document settings are read strictly (a bad value stops the process, naming the variable), and the seller
identity they give reaches the documents, logo included."""

from __future__ import annotations

import base64
import io
import subprocess
import sys

import pytest
from pypdf import PdfReader

from billing_site.tests.test_settings_env import ROOT, _import_settings
from invoicing.documents.engine import seller_context
from invoicing.documents.invoice import invoice_pdf
from invoicing.tests.documents_support import DOC_T0, invoice_with_lines

# A 2x2 red PNG.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAFklEQVR4nGP8z8DAwMDAxMDAwMDAAAANHQEDasKb6QAAAABJRU5ErkJggg=="
)


def test_an_unknown_document_locale_stops_the_process():
    result = _import_settings(DEBUG="true", DOCUMENT_LOCALE="klingon")
    assert result.returncode != 0
    assert "DOCUMENT_LOCALE must be a CLDR locale" in result.stderr


def test_a_missing_or_unsupported_logo_stops_the_process(tmp_path):
    result = _import_settings(DEBUG="true", SELLER_LOGO_PATH=str(tmp_path / "missing.png"))
    assert result.returncode != 0
    assert "SELLER_LOGO_PATH names no readable file" in result.stderr
    (tmp_path / "logo.bmp").write_bytes(b"BM")
    result = _import_settings(DEBUG="true", SELLER_LOGO_PATH=str(tmp_path / "logo.bmp"))
    assert result.returncode != 0
    assert "SELLER_LOGO_PATH must be a .png, .jpg or .svg file" in result.stderr


def test_seller_address_lines_split_on_newlines_or_a_literal_backslash_n(tmp_path):
    (tmp_path / "logo.png").write_bytes(PNG)
    script = (
        "from billing_site import settings as s; print(repr(s.SELLER_ADDRESS), s.DOCUMENT_LOCALE, s.SELLER_LOGO_PATH)"
    )
    env = {
        "DEBUG": "true",
        "SELLER_ADDRESS": "1 Market St\\nSan Francisco, CA 94105\n  \nUSA",
        "DOCUMENT_LOCALE": "de-DE",
        "SELLER_LOGO_PATH": str(tmp_path / "logo.png"),
        "PATH": "/usr/bin:/bin",
    }
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == (f"['1 Market St', 'San Francisco, CA 94105', 'USA'] de-DE {tmp_path / 'logo.png'}")


@pytest.mark.django_db
def test_the_logo_is_inlined_and_drawn(settings, tmp_path):
    logo = tmp_path / "logo.png"
    logo.write_bytes(PNG)
    settings.SELLER_LOGO_PATH = str(logo)
    settings.SELLER_NAME = "Logo Co"
    assert seller_context()["logo"] == "data:image/png;base64," + base64.b64encode(PNG).decode()
    invoice = invoice_with_lines(lines=[{"description": "Seat", "amount": 1000}])
    reader = PdfReader(io.BytesIO(invoice_pdf(invoice=invoice, now=DOC_T0).content))
    assert len(reader.pages[0].images) == 1
    assert "Logo Co" in reader.pages[0].extract_text()


@pytest.mark.django_db
def test_without_seller_settings_the_document_still_renders(settings):
    settings.SELLER_NAME = ""
    settings.SELLER_ADDRESS = []
    settings.SELLER_TAX_ID = ""
    invoice = invoice_with_lines(lines=[{"description": "Seat", "amount": 1000}])
    text = PdfReader(io.BytesIO(invoice_pdf(invoice=invoice, now=DOC_T0).content)).pages[0].extract_text()
    assert "Tax ID" not in text and "Seat" in text
