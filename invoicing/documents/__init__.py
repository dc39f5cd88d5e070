"""Documents: invoices, credit notes and receipts as PDF.

- `engine`: HTML templates (Django's loader, `templates/documents/`) rendered to PDF by WeasyPrint.
- `formatting`: money, numbers, dates and countries per locale, through Babel.
- `store`: a finalized document is rendered once, outside any transaction, and its bytes are kept.
- `invoice`: the invoice document. What payments knows about an invoice (payments, refunds, credit
  notes) reaches it through `hooks`, which the payments app fills at start.
- `apis`: `GET /invoices/{id}/pdf`.

The credit note and receipt documents are built by `payments.documents` with this engine.
"""
