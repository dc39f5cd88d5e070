from django.urls import path

from invoicing import apis
from invoicing.documents import apis as document_apis

urlpatterns = [
    path("exports/invoices.csv", apis.InvoiceExportApi.as_view(), name="export-invoices"),
    path("exports/invoice-lines.csv", apis.InvoiceLineExportApi.as_view(), name="export-invoice-lines"),
    path("invoices", apis.InvoiceListApi.as_view(), name="invoice-list"),
    path("invoices/<str:invoice_id>", apis.InvoiceDetailApi.as_view(), name="invoice-detail"),
    path("invoices/<str:invoice_id>/finalize", apis.InvoiceFinalizeApi.as_view()),
    path("invoices/<str:invoice_id>/pdf", document_apis.InvoicePdfApi.as_view(), name="invoice-pdf"),
    path("invoices/<str:invoice_id>/void", apis.InvoiceVoidApi.as_view()),
    path("invoices/<str:invoice_id>/mark-uncollectible", apis.InvoiceMarkUncollectibleApi.as_view()),
    path("invoice-items", apis.InvoiceItemListCreateApi.as_view(), name="invoice-item-list"),
    path("invoice-items/<str:invoice_item_id>", apis.InvoiceItemDetailApi.as_view(), name="invoice-item-detail"),
    path("tax-rates", apis.TaxRateListCreateApi.as_view(), name="tax-rate-list"),
    path("tax-rates/<str:tax_rate_id>", apis.TaxRateDetailApi.as_view(), name="tax-rate-detail"),
]
