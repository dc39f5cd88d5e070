"""A finalized invoice as a PDF, written by hand: one standard font, text only, no dependency.

PDF is a text format at heart: a few numbered objects (catalog, pages, fonts, one content stream per
page) and a cross-reference table of their byte offsets. Generating it directly keeps the service free
of a rendering stack (and of its native libraries) for what is a list of lines and totals.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from billing_site.money import format_amount

PAGE_WIDTH, PAGE_HEIGHT = 595, 842  # A4 in points
MARGIN = 50
LINE_HEIGHT = 14
LINES_PER_PAGE = (PAGE_HEIGHT - 2 * MARGIN) // LINE_HEIGHT


def _escape(text: str) -> str:
    # The standard fonts speak Latin-1 (WinAnsi); anything else is replaced rather than garbled.
    latin = text.encode("latin-1", "replace").decode("latin-1")
    return latin.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def _date(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d") if value else "-"


def invoice_text_lines(invoice: dict[str, Any]) -> list[tuple[str, bool]]:
    """(text, bold) rows of the document, in order."""
    money = lambda amount: format_amount(amount, invoice["currency"])  # noqa: E731
    customer = invoice.get("customer_snapshot") or {}
    address = customer.get("address") or {}
    rows: list[tuple[str, bool]] = [
        (f"Invoice {invoice['number'] or '(draft)'}", True),
        ("", False),
        (f"Status: {invoice['status']}", False),
        (f"Issued: {_date(invoice['finalized_at'])}    Due: {_date(invoice['due_date'])}", False),
        (f"Period: {_date(invoice['period_start'])} - {_date(invoice['period_end'])}", False),
        ("", False),
        ("Bill to", True),
        (customer.get("name") or invoice["customer"], False),
    ]
    for part in ("line1", "line2", "city", "state", "postal_code", "country"):
        if address.get(part):
            rows.append((str(address[part]), False))
    if customer.get("email"):
        rows.append((customer["email"], False))
    rows += [("", False), (f"{'Description':<72}{'Amount':>14}", True)]
    for line in invoice["lines"]:
        description = line["description"][:70]
        rows.append((f"{description:<72}{money(line['amount']):>14}", False))
    rows += [
        ("", False),
        (f"{'Subtotal':<72}{money(invoice['subtotal']):>14}", False),
        (f"{'Discount':<72}{money(-invoice['discount']):>14}", False),
        (f"{'Tax':<72}{money(invoice['tax']):>14}", False),
        (f"{'Total':<72}{money(invoice['total']):>14}", True),
        (f"{'Paid':<72}{money(invoice['amount_paid']):>14}", False),
        (f"{'Amount remaining':<72}{money(invoice['amount_remaining']):>14}", True),
    ]
    if invoice.get("tax_note"):
        rows += [("", False), (invoice["tax_note"], False)]
    return rows


def render_pdf(rows: list[tuple[str, bool]]) -> bytes:
    pages = [rows[i : i + LINES_PER_PAGE] for i in range(0, len(rows), LINES_PER_PAGE)] or [[]]
    objects: list[bytes] = []  # object n is objects[n - 1]

    def add(body: bytes) -> int:
        objects.append(body)
        return len(objects)

    catalog = add(b"")  # filled in once the page tree exists
    tree = add(b"")
    regular = add(b"<< /Type /Font /Subtype /Type1 /BaseFont /Courier /Encoding /WinAnsiEncoding >>")
    bold = add(b"<< /Type /Font /Subtype /Type1 /BaseFont /Courier-Bold /Encoding /WinAnsiEncoding >>")
    page_ids = []
    for page_rows in pages:
        parts = ["BT", f"{MARGIN} {PAGE_HEIGHT - MARGIN} Td", f"{LINE_HEIGHT} TL"]
        for text, is_bold in page_rows:
            parts.append(f"/F{2 if is_bold else 1} 9 Tf ({_escape(text)}) Tj T*")
        parts.append("ET")
        stream = "\n".join(parts).encode("latin-1")
        content = add(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
        page_ids.append(
            add(
                b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 %d %d] /Contents %d 0 R "
                b"/Resources << /Font << /F1 %d 0 R /F2 %d 0 R >> >> >>"
                % (tree, PAGE_WIDTH, PAGE_HEIGHT, content, regular, bold)
            )
        )
    kids = b" ".join(b"%d 0 R" % pid for pid in page_ids)
    objects[tree - 1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, len(page_ids))
    objects[catalog - 1] = b"<< /Type /Catalog /Pages %d 0 R >>" % tree

    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, catalog, xref)
    return bytes(out)
